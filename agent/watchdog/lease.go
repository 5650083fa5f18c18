package watchdog

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MonoTime is a reading of the machine's CLOCK_MONOTONIC in nanoseconds,
// as seen from the initial time namespace. CLOCK_MONOTONIC is one clock for
// every process of a machine, so readings taken by the agent and by the
// watchdog compare soundly; it never jumps with the wall clock (NTP steps,
// an operator's `date`), and it restarts at boot, so a reading is only
// meaningful together with the boot it was taken in (see BootID).
//
// A time namespace (`unshare --time --monotonic N`) shifts CLOCK_MONOTONIC
// for the processes inside it. Now takes its namespace's offset back out,
// so an agent and a watchdog in different time namespaces still agree.
type MonoTime int64

// Add returns m+d.
func (m MonoTime) Add(d time.Duration) MonoTime { return m + MonoTime(d) }

// Sub returns the duration m-o.
func (m MonoTime) Sub(o MonoTime) time.Duration { return time.Duration(m - o) }

// String prints the reading as seconds since boot.
func (m MonoTime) String() string { return time.Duration(m).String() }

// Now reads CLOCK_MONOTONIC, corrected for this process's time namespace.
// Go's time.Now carries a monotonic reading but does not expose its value,
// so the clock is read with clock_gettime.
func Now() MonoTime {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		// CLOCK_MONOTONIC exists on every Linux Stead runs on.
		panic(fmt.Sprintf("clock_gettime(CLOCK_MONOTONIC): %v", err))
	}
	return MonoTime(ts.Nano()) - timeNSOffset()
}

var (
	offsetOnce sync.Once
	offset     MonoTime
)

// timeNSOffset is how far this process's time namespace moves
// CLOCK_MONOTONIC (zero outside a time namespace or on kernels without
// them). A process cannot change its own time namespace, so it is read once.
func timeNSOffset() MonoTime {
	offsetOnce.Do(func() {
		b, err := os.ReadFile("/proc/self/timens_offsets")
		if err == nil {
			offset = parseTimeNSOffset(b)
		}
	})
	return offset
}

// parseTimeNSOffset reads the monotonic line of /proc/PID/timens_offsets
// ("monotonic <seconds> <nanoseconds>").
func parseTimeNSOffset(b []byte) MonoTime {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || (f[0] != "monotonic" && f[0] != strconv.Itoa(unix.CLOCK_MONOTONIC)) {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0
		}
		return MonoTime(sec*int64(time.Second) + nsec)
	}
	return 0
}

var (
	bootOnce sync.Once
	bootID   string
	bootErr  error
)

// BootID identifies the running boot of the machine
// (/proc/sys/kernel/random/boot_id). A lease written in another boot is
// void: CLOCK_MONOTONIC restarted at zero, so its expiry would look far
// away.
func BootID() (string, error) {
	bootOnce.Do(func() {
		b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
		if err != nil {
			bootErr = fmt.Errorf("read boot id: %w", err)
			return
		}
		bootID = strings.TrimSpace(string(b))
	})
	return bootID, bootErr
}

// Lease is the content of the lease file: until when the node may run its
// pods. The agent writes it after each successful heartbeat; the watchdog
// reads it.
type Lease struct {
	// ExpiresMono is when the lease ends: the MonoTime read before the
	// heartbeat that granted it was sent, plus the TTL the server answered.
	// The server counts the TTL from when it received the heartbeat, so the
	// node's copy always ends first.
	ExpiresMono MonoTime `json:"expiresMono"`
	// Boot is the BootID of the boot ExpiresMono was read in.
	Boot string `json:"boot"`
	// Node is the node's name, for logs and fence records.
	Node string `json:"node"`
	// Pid is the writing agent's process id, for logs.
	Pid int `json:"pid"`
	// Checksum is "sha256:" and the hex SHA-256 of the JSON encoding of
	// the lease with an empty Checksum; a file that does not match is
	// corrupt.
	Checksum string `json:"checksum"`
}

// ErrCorrupt: the lease or fence file does not parse or its checksum does
// not match. The watchdog treats a corrupt lease as expired.
var ErrCorrupt = errors.New("corrupt file")

func (l Lease) checksum() string {
	l.Checksum = ""
	b, _ := json.Marshal(l)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// WriteLease records that the node's lease lasts until expires: it writes
// path atomically (a temporary file beside it, fsync, rename, fsync of the
// directory), so a reader sees the old lease or the new one, never a mix,
// even if the writer dies half way.
func WriteLease(path string, expires MonoTime, node string) error {
	boot, err := BootID()
	if err != nil {
		return fmt.Errorf("write lease %s: %w", path, err)
	}
	l := Lease{ExpiresMono: expires, Boot: boot, Node: node, Pid: os.Getpid()}
	l.Checksum = l.checksum()
	b, err := json.Marshal(l)
	if err != nil {
		return fmt.Errorf("write lease %s: %w", path, err)
	}
	if err := writeAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write lease %s: %w", path, err)
	}
	return nil
}

// ReadLease reads the lease at path. A missing file is an error matching
// os.ErrNotExist; one that does not parse or whose checksum does not match
// matches ErrCorrupt.
func ReadLease(path string) (Lease, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Lease{}, fmt.Errorf("read lease: %w", err)
	}
	var l Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return Lease{}, fmt.Errorf("read lease %s: %w: %v", path, ErrCorrupt, err)
	}
	if l.Checksum == "" || l.Checksum != l.checksum() {
		return Lease{}, fmt.Errorf("read lease %s: %w: checksum mismatch", path, ErrCorrupt)
	}
	return l, nil
}

// Verdict is what a lease means at a given moment.
type Verdict int

// Verdicts of Judge. Only VerdictValid lets the node run its pods.
const (
	// VerdictValid: the lease is readable, from this boot and not expired.
	VerdictValid Verdict = iota
	// VerdictMissing: there is no lease file.
	VerdictMissing
	// VerdictExpired: the lease's expiry has passed.
	VerdictExpired
	// VerdictOtherBoot: the lease was written before the machine last
	// booted.
	VerdictOtherBoot
	// VerdictUnreadable: the lease file is corrupt or cannot be read.
	VerdictUnreadable
)

func (v Verdict) String() string {
	switch v {
	case VerdictValid:
		return "valid"
	case VerdictMissing:
		return "missing"
	case VerdictExpired:
		return "expired"
	case VerdictOtherBoot:
		return "from another boot"
	case VerdictUnreadable:
		return "unreadable"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// Judge says what a lease read with ReadLease (l, err) means at now, in
// boot. A lease is valid strictly before its expiry.
func Judge(l Lease, err error, now MonoTime, boot string) Verdict {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return VerdictMissing
	case err != nil:
		return VerdictUnreadable
	case l.Boot != boot:
		return VerdictOtherBoot
	case now >= l.ExpiresMono:
		return VerdictExpired
	}
	return VerdictValid
}

// writeAtomic replaces path with data: written to path+".tmp", synced,
// renamed over path, and the directory synced so the rename is durable. A
// temporary file left by a writer that died is truncated and reused.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
