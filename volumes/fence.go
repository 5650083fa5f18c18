package volumes

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Names inside a volume's control directory.
const (
	fenceFile   = "fence"
	lockFile    = "lock"
	journalFile = "journal"
	fenceTmp    = ".fence.tmp-"
)

// maxFenceSize bounds what ReadFence reads: a marker is about 120 bytes.
const maxFenceSize = 4096

// fenceBody is what the checksum covers.
type fenceBody struct {
	Generation uint64 `json:"generation"`
	Node       string `json:"node"`
}

// fenceMarker is the marker file: the body and the hex SHA-256 of the
// body's JSON encoding, so a torn or altered marker is detected.
type fenceMarker struct {
	Generation uint64 `json:"generation"`
	Node       string `json:"node"`
	SHA256     string `json:"sha256"`
}

func encodeFence(gen uint64, node string) []byte {
	body, _ := json.Marshal(fenceBody{Generation: gen, Node: node})
	sum := sha256.Sum256(body)
	out, _ := json.Marshal(fenceMarker{Generation: gen, Node: node, SHA256: hex.EncodeToString(sum[:])})
	return append(out, '\n')
}

func decodeFence(data []byte) (fenceMarker, error) {
	var m fenceMarker
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return fenceMarker{}, fmt.Errorf("%w: %v", ErrFenceCorrupt, err)
	}
	body, _ := json.Marshal(fenceBody{Generation: m.Generation, Node: m.Node})
	sum := sha256.Sum256(body)
	if m.SHA256 != hex.EncodeToString(sum[:]) {
		return fenceMarker{}, fmt.Errorf("%w: checksum %q does not match its content", ErrFenceCorrupt, m.SHA256)
	}
	return m, nil
}

// ReadFence returns the generation in the fence marker of the control
// directory dir (a volume's <root>/<uid>/control). A marker that does not
// parse or whose checksum does not match is reported with ErrFenceCorrupt;
// a missing one with an error matching fs.ErrNotExist.
func ReadFence(dir string) (uint64, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return 0, fmt.Errorf("read fence marker: %w", err)
	}
	defer r.Close()
	m, err := readFenceAt(r)
	if err != nil {
		return 0, fmt.Errorf("read fence marker in %s: %w", dir, err)
	}
	return m.Generation, nil
}

func readFenceAt(r *os.Root) (fenceMarker, error) {
	f, err := r.Open(fenceFile)
	if err != nil {
		return fenceMarker{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFenceSize+1))
	if err != nil {
		return fenceMarker{}, err
	}
	if len(data) > maxFenceSize {
		return fenceMarker{}, fmt.Errorf("%w: larger than %d bytes", ErrFenceCorrupt, maxFenceSize)
	}
	return decodeFence(data)
}

// fenceSeq makes temporary marker names unique within the process.
var fenceSeq atomic.Uint64

// testHookBeforeFenceRename, when set by tests, runs after the temporary
// marker is written and synced and before it is renamed over the marker;
// an error stands for a crash at that point (the rename never happens).
var testHookBeforeFenceRename func() error

// writeFenceAt replaces the marker atomically: a temporary file is written
// and fsynced, renamed over the marker, and the directory is fsynced. On
// any error the old marker is left as it was. The caller holds the lock.
func writeFenceAt(r *os.Root, gen uint64, node string) (err error) {
	removeStaleFenceTemps(r)
	tmp := fmt.Sprintf("%s%d-%d", fenceTmp, os.Getpid(), fenceSeq.Add(1))
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write fence marker: %w", err)
	}
	renamed := false
	defer func() {
		if !renamed {
			_ = r.Remove(tmp)
		}
	}()
	if _, err := f.Write(encodeFence(gen, node)); err != nil {
		f.Close()
		return fmt.Errorf("write fence marker: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync fence marker: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write fence marker: %w", err)
	}
	if testHookBeforeFenceRename != nil {
		if err := testHookBeforeFenceRename(); err != nil {
			renamed = true // a crash leaves the temporary file behind
			return err
		}
	}
	if err := r.Rename(tmp, fenceFile); err != nil {
		return fmt.Errorf("replace fence marker: %w", err)
	}
	renamed = true
	return syncDir(r)
}

// removeStaleFenceTemps removes temporary markers that a crash left.
func removeStaleFenceTemps(r *os.Root) {
	d, err := r.Open(".")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if strings.HasPrefix(n, fenceTmp) {
			_ = r.Remove(n)
		}
	}
}

func syncDir(r *os.Root) error {
	d, err := r.Open(".")
	if err != nil {
		return fmt.Errorf("sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", r.Name(), err)
	}
	return nil
}

// lockPoll is how often a busy fence lock is tried again.
const lockPoll = 5 * time.Millisecond

// lockControl takes flock(2) how (unix.LOCK_EX or unix.LOCK_SH) on the
// control directory's lock file, trying until ctx is done. Writers that
// check the marker hold it shared while they check and append; raising the
// marker holds it exclusive, so no write checked against the old marker
// lands after the new one. flock works across nodes on NFSv4 (Linux maps
// it to a POSIX lock there).
func lockControl(ctx context.Context, r *os.Root, how int) (unlock func(), err error) {
	f, err := r.OpenFile(lockFile, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open fence lock: %w", err)
	}
	fd := int(f.Fd())
	var t *time.Timer
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock fence: %w", err)
		}
		if t == nil {
			t = time.NewTimer(lockPoll)
		} else {
			t.Reset(lockPoll)
		}
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, fmt.Errorf("lock fence: held by a writer or another attach: %w", ctx.Err())
		case <-t.C:
		}
	}
	if t != nil {
		t.Stop()
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// LockShared takes the shared fence lock of a volume's control directory
// dir, waiting until ctx is done. A workload that checks the marker before
// each write holds it across the check and the write, so an attach that
// raises the marker waits for the write to finish. Call unlock when done.
func LockShared(ctx context.Context, dir string) (unlock func(), err error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("lock fence: %w", err)
	}
	defer r.Close()
	return lockControl(ctx, r, unix.LOCK_SH)
}

// isNotExist reports whether err says a file is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
