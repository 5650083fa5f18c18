package raftstore

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/hashicorp/raft"
)

// A backup (`stead operator snapshot save`) is the state in the format of
// Raft's own snapshots (see snapshot.go), behind a header that says what
// it is and how to check it:
//
//	STEADSNAP1
//	{"clusterID":"…","index":N,"term":T,"size":S,"sha256":"<hex>"}
//	<S bytes: the snapshot, which ends with its own checksum>
//
// The header's SHA-256 covers the S bytes after it. A backup is read
// whole (magic, header, size, both checksums, every object decoded)
// before any of it is restored, so a damaged file changes nothing.
const backupMagic = "STEADSNAP1"

// maxBackupHeader bounds the header line, so that a file that is not a
// backup is refused without reading it all.
const maxBackupHeader = 64 << 10

// restoreGap is how far above the higher of Raft's last index and the
// backup's index a restored state is placed (see RestoreSnapshot).
//
// Every assignment of a pod to a node carries a generation, the index
// that committed it, and a volume's fence marker refuses a mount with a
// generation below the highest that mounted it. A backup restored into a
// new cluster, whose log starts at 1, must still hand out generations
// above any the lost cluster reached after the backup was saved, or the
// volumes it mounted since would refuse every new assignment: 2^32
// writes is far more than any cluster commits between two backups. The
// same margin covers the entries the leader appends between reading its
// last index and installing the snapshot.
const restoreGap = 1 << 32

// ErrBadBackup is wrapped by every error about a backup that is not whole
// and well formed. Nothing was restored from it.
var ErrBadBackup = errors.New("not a valid Stead snapshot")

// BackupMeta is the header of a backup.
type BackupMeta struct {
	// ClusterID is the cluster the backup was saved from.
	ClusterID string `json:"clusterID,omitempty"`
	// Index is the applied log index of the saved state: every object's
	// resourceVersion is at most Index.
	Index uint64 `json:"index"`
	// Term is the Raft term of the server that saved it, when known.
	Term uint64 `json:"term,omitempty"`
	// Size is the length in bytes of the snapshot after the header.
	Size int64 `json:"size"`
	// SHA256 is the hex SHA-256 of those Size bytes.
	SHA256 string `json:"sha256"`
}

// BackupInfo describes a verified backup.
type BackupInfo struct {
	BackupMeta
	// Objects counts the objects of each kind; kinds without objects are
	// absent.
	Objects map[Kind]int
}

// Backup is the state of one moment, ready to be written as a backup
// file. It holds an immutable version of the state, so writing it does
// not block Apply.
type Backup struct {
	meta BackupMeta
	head []byte // magic and header lines
	st   *state
}

// Meta returns the backup's header.
func (b *Backup) Meta() BackupMeta { return b.meta }

// Len returns the number of bytes WriteTo writes.
func (b *Backup) Len() int64 { return int64(len(b.head)) + b.meta.Size }

// WriteTo writes the backup file to w. It fails if the snapshot it
// writes is not the one its header describes, which would mean the
// encoding of the state is not deterministic; the reader refuses such a
// file in any case.
func (b *Backup) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	if _, err := cw.Write(b.head); err != nil {
		return cw.n, fmt.Errorf("write snapshot header: %w", err)
	}
	sum := sha256.New()
	if err := writeSnapshot(io.MultiWriter(cw, sum), b.st); err != nil {
		return cw.n, err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != b.meta.SHA256 || cw.n != b.Len() {
		return cw.n, fmt.Errorf("snapshot at index %d changed while written: %d bytes with sha256 %s, header says %d bytes with %s",
			b.meta.Index, cw.n, got, b.Len(), b.meta.SHA256)
	}
	return cw.n, nil
}

// Backup returns the local replica's current state as a backup. On the
// leader it first waits for a Barrier, so the backup holds every write
// committed before the call; on a follower it is the state this server
// has applied so far, which may lag behind (but works without a leader,
// after a loss of quorum).
func (s *Store) Backup(ctx context.Context) (*Backup, error) {
	var term uint64
	if s.IsLeader() {
		if err := s.Barrier(ctx); err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		term, _ = strconv.ParseUint(s.raft.Stats()["term"], 10, 64)
	}
	return newBackup(s.fsm.cur.Load(), s.clusterID, term)
}

// SaveSnapshot writes a backup of the current state to w (see Backup)
// and returns its header.
func (s *Store) SaveSnapshot(ctx context.Context, w io.Writer) (BackupMeta, error) {
	b, err := s.Backup(ctx)
	if err != nil {
		return BackupMeta{}, err
	}
	if _, err := b.WriteTo(w); err != nil {
		return b.meta, fmt.Errorf("save snapshot at index %d: %w", b.meta.Index, err)
	}
	return b.meta, nil
}

func newBackup(st *state, clusterID string, term uint64) (*Backup, error) {
	sum := sha256.New()
	cw := &countWriter{w: sum}
	if err := writeSnapshot(cw, st); err != nil {
		return nil, fmt.Errorf("snapshot at index %d: %w", st.index, err)
	}
	meta := BackupMeta{ClusterID: clusterID, Index: st.index, Term: term, Size: cw.n, SHA256: hex.EncodeToString(sum.Sum(nil))}
	hdr, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	head := make([]byte, 0, len(backupMagic)+len(hdr)+2)
	head = append(head, backupMagic+"\n"...)
	head = append(head, hdr...)
	head = append(head, '\n')
	return &Backup{meta: meta, head: head, st: st}, nil
}

// InspectBackup reads a whole backup from r, verifies it as
// RestoreSnapshot would, and describes it. Its errors wrap ErrBadBackup.
func InspectBackup(r io.Reader) (BackupInfo, error) {
	meta, st, err := readBackup(r)
	if err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{BackupMeta: meta, Objects: map[Kind]int{}}
	it := st.objects.Root().Iterator()
	for key, _, ok := it.Next(); ok; key, _, ok = it.Next() {
		info.Objects[Kind(key[:bytes.IndexByte(key, keySep)])]++
	}
	return info, nil
}

// Restored says what RestoreSnapshot did.
type Restored struct {
	// From is the header of the backup that was restored.
	From BackupMeta
	// Index is the log index at which the restored state now stands on
	// every server: 2^32 above any index the cluster or the backup had
	// (see restoreGap), so that watchers see a change and new assignments
	// outrank the volumes' fence markers. Objects keep their saved
	// resourceVersions and generations.
	Index uint64
}

// RestoreSnapshot replaces the whole replicated state with the backup
// read from r, on every server. Leader only.
//
// It reads and verifies the entire backup first; a backup that is not
// whole and well formed is refused with an error wrapping ErrBadBackup
// and nothing changes. It then installs the state through Raft's user
// restore: the leader takes it as a new snapshot, past a gap in its log,
// so every follower (and any server that joins later) installs it too.
// Writes in flight on the leader fail with raft.ErrAbortedByRestore.
//
// The restored state is the backup's, except for the records of the
// servers (kind Servers): like the Raft configuration, which Raft keeps,
// they describe the cluster that is running now, which may not be the
// one that saved the backup. ACL tokens are the backup's overlaid with the
// running cluster's: a token revoked (or created) since the backup stays
// so, and the tokens of a lost cluster come back into a new one.
//
// Pods keep the generations of their saved assignments. A volume that a
// newer assignment mounted since refuses them, which keeps two
// incarnations from writing to it; deleting such a pod makes its set
// create it again, with a generation above any used before.
//
// Restoring takes the cluster back in time; use it to recover from the
// loss of the state (docs/operations/backup.md), not in normal operation.
// An error other than ErrBadBackup or *NotLeaderError leaves the outcome
// unknown: inspect the state before trying again.
func (s *Store) RestoreSnapshot(ctx context.Context, r io.Reader) (Restored, error) {
	meta, st, err := readBackup(r)
	if err != nil {
		return Restored{}, err
	}
	if !s.IsLeader() {
		return Restored{}, s.notLeader()
	}
	cur := s.fsm.cur.Load().objects
	st.objects = withServers(st.objects, cur)
	st.objects = overlay(st.objects, cur, Tokens)

	// Raft installs the snapshot at max(meta index, last index)+1, past
	// a hole in its log; the state says that index too, so View.Index
	// agrees with Raft on every server and only goes up.
	base := max(meta.Index, s.raft.LastIndex()) + restoreGap
	st.index = base + 1
	cw := &countWriter{w: io.Discard}
	if err := writeSnapshot(cw, st); err != nil {
		return Restored{}, fmt.Errorf("restore snapshot of index %d: %w", meta.Index, err)
	}
	pr, pw := io.Pipe()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		pw.CloseWithError(writeSnapshot(pw, st))
	}()
	defer func() {
		// Raft reads all of it unless it failed; either way the writer
		// must not wait for a reader that has gone.
		pr.CloseWithError(errors.New("restore ended"))
		<-wrote
	}()

	timeout, err := timeoutOf(ctx)
	if err != nil {
		return Restored{}, fmt.Errorf("restore snapshot of index %d: %w", meta.Index, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.raft.Restore(&raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: base, Size: cw.n}, pr, timeout)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return Restored{}, fmt.Errorf("restore snapshot of index %d: outcome unknown: %w", meta.Index, ctx.Err())
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) {
			return Restored{}, s.notLeader()
		}
		return Restored{}, fmt.Errorf("restore snapshot of index %d: %w", meta.Index, err)
	}
	if got, _ := strconv.ParseUint(s.raft.Stats()["last_snapshot_index"], 10, 64); got != st.index {
		// More than restoreGap entries came in meanwhile: the state
		// says an index below Raft's until the next write.
		s.logger.Warn("restored state is at another index than Raft's snapshot", "state_index", st.index, "snapshot_index", got)
	}
	s.logger.Info("restored a backup", "saved_index", meta.Index, "saved_cluster", meta.ClusterID, "index", st.index)
	return Restored{From: meta, Index: st.index}, nil
}

// withServers returns objects with its Servers records replaced by those
// of current.
func withServers(objects, current *iradix.Tree[Object]) *iradix.Tree[Object] {
	txn := objects.Txn()
	txn.DeletePrefix(kindPrefix(Servers))
	it := current.Root().Iterator()
	it.SeekPrefix(kindPrefix(Servers))
	for key, obj, ok := it.Next(); ok; key, obj, ok = it.Next() {
		txn.Insert(key, obj)
	}
	return txn.CommitOnly()
}

// overlay returns objects with every record of kind that current holds
// put over it; records only objects has are kept.
func overlay(objects, current *iradix.Tree[Object], kind Kind) *iradix.Tree[Object] {
	txn := objects.Txn()
	it := current.Root().Iterator()
	it.SeekPrefix(kindPrefix(kind))
	for key, obj, ok := it.Next(); ok; key, obj, ok = it.Next() {
		txn.Insert(key, obj)
	}
	return txn.CommitOnly()
}

// readBackup reads a whole backup from r and returns its header and the
// state it holds. Its errors wrap ErrBadBackup.
func readBackup(r io.Reader) (BackupMeta, *state, error) {
	var meta BackupMeta
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(backupMagic)+1)
	_, err := io.ReadFull(br, magic)
	switch {
	case err != nil && err != io.EOF && err != io.ErrUnexpectedEOF:
		return meta, nil, fmt.Errorf("%w: read: %w", ErrBadBackup, err)
	case err != nil || string(magic) != backupMagic+"\n":
		return meta, nil, fmt.Errorf("%w: it does not start with %q (is it a file of 'stead operator snapshot save'?)", ErrBadBackup, backupMagic)
	}
	line, err := readLine(br, maxBackupHeader)
	if err != nil {
		return meta, nil, fmt.Errorf("%w: read header: %w", ErrBadBackup, err)
	}
	if err := json.Unmarshal(line, &meta); err != nil {
		return meta, nil, fmt.Errorf("%w: decode header: %v", ErrBadBackup, err)
	}
	if meta.Size <= 0 || len(meta.SHA256) != 2*sha256.Size {
		return meta, nil, fmt.Errorf("%w: header has size %d and sha256 %q", ErrBadBackup, meta.Size, meta.SHA256)
	}

	// The snapshot is decoded while it is hashed. A damaged byte usually
	// stops the decoding first; the rest is still hashed, so the error
	// says the file is damaged rather than what the damage looked like.
	sum := sha256.New()
	body := &hashReader{r: io.LimitReader(br, meta.Size), sum: sum}
	st, decodeErr := readSnapshot(body)
	if _, err := io.Copy(io.Discard, body); err != nil {
		return meta, nil, fmt.Errorf("%w: read snapshot: %w", ErrBadBackup, err)
	}
	switch got := hex.EncodeToString(sum.Sum(nil)); {
	case body.n != meta.Size:
		return meta, nil, fmt.Errorf("%w: truncated: %d bytes of snapshot, header says %d", ErrBadBackup, body.n, meta.Size)
	case got != meta.SHA256:
		return meta, nil, fmt.Errorf("%w: checksum mismatch, the file is damaged: sha256 %s, header says %s", ErrBadBackup, got, meta.SHA256)
	case decodeErr != nil:
		return meta, nil, fmt.Errorf("%w: %w", ErrBadBackup, decodeErr)
	case st.index != meta.Index:
		return meta, nil, fmt.Errorf("%w: snapshot of index %d, header says %d", ErrBadBackup, st.index, meta.Index)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return meta, nil, fmt.Errorf("%w: data after the snapshot", ErrBadBackup)
	}
	return meta, st, nil
}

// readLine reads one line of at most limit bytes, without its newline.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > limit {
			return nil, fmt.Errorf("line longer than %d bytes", limit)
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// hashReader hashes and counts what is read through it.
type hashReader struct {
	r   io.Reader
	sum hash.Hash
	n   int64
}

func (h *hashReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.sum.Write(p[:n])
	h.n += int64(n)
	return n, err
}

// countWriter counts what is written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
