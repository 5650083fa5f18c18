package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/api"
)

// Names inside a volume's directory and the Manager's directory.
const (
	dataDir     = "data"
	imageFile   = "disk.img"
	imageTmp    = "disk.img.tmp"
	metaFile    = "meta.json"
	controlDir  = "control"
	trashPrefix = ".deleted-"

	localSubdir    = "local"
	mountsSubdir   = "mounts"
	attachedSubdir = "attached"
	stagingSubdir  = "staging"
)

// Image sizes: at least MinImageSize (ext4 needs room for its journal),
// rounded up to a multiple of imageAlign.
const (
	MinImageSize = 4 << 20
	imageAlign   = 4096
)

// ExecFunc runs a program and returns its combined output. The Manager
// runs mkfs.ext4, e2fsck and resize2fs through it.
type ExecFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

// Options configure a Manager.
type Options struct {
	// Node is this node's name, written into fence markers and journal
	// records.
	Node string
	// Dir is the directory the Manager owns on this node (for example
	// <agent data dir>/volumes): volumes of local classes without a root,
	// image mount points and the record of what is attached here.
	Dir string
	// Logger is named "volumes" by NewManager; nil discards logs.
	Logger hclog.Logger
	// Exec runs mkfs.ext4, e2fsck and resize2fs; nil runs them with os/exec.
	Exec ExecFunc
	// Mono returns CLOCK_MONOTONIC nanoseconds for journal records; nil
	// reads the clock.
	Mono func() int64
}

// Manager creates, attaches, detaches, resizes and deletes the volumes of
// one node. Its methods are safe for concurrent use; operations on one
// volume (by UID) run one at a time.
type Manager struct {
	node string
	dir  string
	log  hclog.Logger
	exec ExecFunc
	mono func() int64
	pid  int
	seq  atomic.Uint64 // journal seq of this process's records

	mu    sync.Mutex
	locks map[string]*volumeLock
}

type volumeLock struct {
	sync.Mutex
	refs int
}

// NewManager returns a Manager for node, creating opts.Dir if needed.
func NewManager(opts Options) (*Manager, error) {
	if opts.Node == "" {
		return nil, errors.New("volumes: node name is empty")
	}
	if !filepath.IsAbs(opts.Dir) {
		return nil, fmt.Errorf("volumes: directory %q is not an absolute path", opts.Dir)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	// Mount points are compared with /proc/self/mountinfo, which shows
	// them with symlinks resolved.
	dir, err := filepath.EvalSymlinks(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("volumes: %w", err)
	}
	for _, sub := range []string{mountsSubdir, attachedSubdir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("volumes: %w", err)
		}
	}
	m := &Manager{
		node:  opts.Node,
		dir:   dir,
		log:   opts.Logger,
		exec:  opts.Exec,
		mono:  opts.Mono,
		pid:   os.Getpid(),
		locks: map[string]*volumeLock{},
	}
	if m.log == nil {
		m.log = hclog.NewNullLogger()
	}
	m.log = m.log.Named("volumes")
	if m.exec == nil {
		m.exec = func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		}
	}
	if m.mono == nil {
		m.mono = monotonicNow
	}
	return m, nil
}

func monotonicNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// StagingDir is the default directory for StageSubPath on this node.
func (m *Manager) StagingDir() string { return filepath.Join(m.dir, stagingSubdir) }

// lock serialises operations on one volume.
func (m *Manager) lock(uid string) func() {
	m.mu.Lock()
	l := m.locks[uid]
	if l == nil {
		l = &volumeLock{}
		m.locks[uid] = l
	}
	l.refs++
	m.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		m.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(m.locks, uid)
		}
		m.mu.Unlock()
	}
}

// classRoot is the directory holding a class's volumes on this node.
func (m *Manager) classRoot(c Class) string {
	if c.Root != "" {
		return c.Root
	}
	return filepath.Join(m.dir, localSubdir, c.Name)
}

// VolumeDir is the volume's directory, <root>/<uid>.
func (m *Manager) VolumeDir(v Volume) string {
	return filepath.Join(m.classRoot(v.Class), v.UID)
}

// ControlDir is the directory holding the volume's fence marker, lock and
// journal (<root>/<uid>/control). A workload that checks the marker before
// it writes needs this directory (not the files: the marker is replaced by
// rename) bind-mounted; it can then also rewrite the marker, so expose it
// only to workloads that are trusted to.
func (m *Manager) ControlDir(v Volume) string {
	return filepath.Join(m.VolumeDir(v), controlDir)
}

func (m *Manager) mountpoint(v Volume) string {
	return filepath.Join(m.dir, mountsSubdir, v.UID)
}

// openClassRoot opens the class root. Roots that are local to this node
// are created when create is set; a shared root must already exist, so
// that an unmounted network filesystem is never replaced by a local
// directory.
func (m *Manager) openClassRoot(v Volume, create bool) (*os.Root, error) {
	root := m.classRoot(v.Class)
	if create && !v.Class.Shared {
		if err := os.MkdirAll(root, 0o700); err != nil {
			return nil, fmt.Errorf("volume %s: class %q root: %w", v, v.Class.Name, err)
		}
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		if isNotExist(err) && v.Class.Shared {
			return nil, fmt.Errorf("volume %s: class %q root %s does not exist: is the network filesystem mounted?", v, v.Class.Name, root)
		}
		if isNotExist(err) {
			return nil, fmt.Errorf("volume %s: %w (class %q root %s does not exist)", v, ErrNotFound, v.Class.Name, root)
		}
		return nil, fmt.Errorf("volume %s: class %q root: %w", v, v.Class.Name, err)
	}
	return r, nil
}

// openVolume opens <root>/<uid>.
func (m *Manager) openVolume(v Volume) (*os.Root, error) {
	r, err := m.openClassRoot(v, false)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	vr, err := r.OpenRoot(v.UID)
	if isNotExist(err) {
		return nil, fmt.Errorf("volume %s: %w in class %q (uid %s): create it first", v, ErrNotFound, v.Class.Name, v.UID)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", v, err)
	}
	return vr, nil
}

// meta is meta.json, for operators.
type meta struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	Class     string `json:"class"`
	Driver    Driver `json:"driver"`
	Size      int64  `json:"size"`
}

func metaOf(v Volume) []byte {
	b, _ := json.MarshalIndent(meta{v.Namespace, v.Name, v.UID, v.Class.Name, v.Class.Driver, v.Size}, "", "  ")
	return append(b, '\n')
}

// Create makes the volume if it does not exist, and is a no-op if it does
// (it never changes an existing volume's size: see Resize). Local and
// shared volumes are a directory and their size is only recorded. An image
// volume is a sparse file of v.Size bytes (at least MinImageSize, rounded
// up to 4 KiB) formatted ext4; a size larger than the free space of the
// class root is refused with ErrInsufficientSpace before anything is made.
// The fence marker starts at generation 0.
func (m *Manager) Create(ctx context.Context, v Volume) error {
	if err := v.validate(); err != nil {
		return err
	}
	if v.Class.Driver == DriverImage {
		if v.Size < MinImageSize {
			return fmt.Errorf("volume %s: %w: class %q keeps ext4 images of at least %s; %s requested", v, ErrInvalidVolume, v.Class.Name, formatSize(MinImageSize), formatSize(v.Size))
		}
		v.Size = alignUp(v.Size)
	}
	defer m.lock(v.UID)()

	r, err := m.openClassRoot(v, true)
	if err != nil {
		return err
	}
	defer r.Close()

	if v.Class.Driver == DriverImage {
		if _, err := r.Lstat(filepath.Join(v.UID, imageFile)); isNotExist(err) {
			if err := m.checkFree(v, r, v.Size, 0); err != nil {
				return err
			}
		}
	}
	if err := r.Mkdir(v.UID, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	vr, err := r.OpenRoot(v.UID)
	if err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	defer vr.Close()
	if _, err := vr.Lstat(metaFile); isNotExist(err) {
		if err := writeFileAtomic(vr, metaFile, metaOf(v)); err != nil {
			return fmt.Errorf("create volume %s: %w", v, err)
		}
	}
	if err := m.createControl(v, vr); err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	switch v.Class.Driver {
	case DriverImage:
		if err := m.createImage(ctx, v, vr); err != nil {
			return err
		}
	default:
		if err := vr.Mkdir(dataDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create volume %s: %w", v, err)
		}
	}
	if err := syncDir(vr); err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	if err := syncDir(r); err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	m.log.Debug("volume created", "volume", v.String(), "uid", v.UID, "class", v.Class.Name, "size", v.Size)
	return nil
}

// createControl makes control/ with its lock file and a generation-0
// marker, keeping any marker already there.
func (m *Manager) createControl(v Volume, vr *os.Root) error {
	if err := vr.Mkdir(controlDir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	cr, err := vr.OpenRoot(controlDir)
	if err != nil {
		return err
	}
	defer cr.Close()
	lf, err := cr.OpenFile(lockFile, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	lf.Close()
	if _, err := cr.Lstat(fenceFile); isNotExist(err) {
		if err := writeFenceAt(cr, 0, m.node); err != nil {
			return err
		}
	}
	return syncDir(cr)
}

// Attachment is what this node records about a volume it attached.
type Attachment struct {
	Volume   Volume `json:"volume"`
	Gen      uint64 `json:"gen"`
	HostPath string `json:"hostPath"`
}

func (m *Manager) readAttachment(uid string) (*Attachment, error) {
	data, err := os.ReadFile(filepath.Join(m.dir, attachedSubdir, uid+".json"))
	if isNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var a Attachment
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("attachment record of %s: %w", uid, err)
	}
	return &a, nil
}

func (m *Manager) writeAttachment(a Attachment) error {
	r, err := os.OpenRoot(filepath.Join(m.dir, attachedSubdir))
	if err != nil {
		return err
	}
	defer r.Close()
	data, _ := json.Marshal(a)
	return writeFileAtomic(r, a.Volume.UID+".json", append(data, '\n'))
}

func (m *Manager) removeAttachment(uid string) error {
	err := os.Remove(filepath.Join(m.dir, attachedSubdir, uid+".json"))
	if err != nil && !isNotExist(err) {
		return err
	}
	return nil
}

// Attachments lists the volumes attached on this node, by UID, so that a
// restarted agent can detach what it no longer runs.
func (m *Manager) Attachments() ([]Attachment, error) {
	ents, err := os.ReadDir(filepath.Join(m.dir, attachedSubdir))
	if err != nil {
		return nil, fmt.Errorf("list attachments: %w", err)
	}
	var out []Attachment
	for _, e := range ents {
		uid, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || validUID(uid) != nil {
			continue
		}
		a, err := m.readAttachment(uid)
		if err != nil {
			return nil, fmt.Errorf("list attachments: %w", err)
		}
		if a != nil {
			out = append(out, *a)
		}
	}
	return out, nil
}

// Attach makes the volume usable on this node for an assignment of
// generation gen and returns the host path to bind into the pod's
// containers: the data directory of a local or shared volume, or the
// mount point of an image volume (loop-mounted ext4, nosuid, nodev).
//
// It first checks and raises the volume's fence marker under the fence
// lock: a gen lower than the marker is refused with *StaleGenerationError
// and nothing is mounted; a higher one is written to the marker (and a
// fence record to the journal) before anything is mounted. Attaching again
// with the same or a higher gen is a no-op apart from that. A mount record
// goes to the journal. On failure nothing stays mounted.
func (m *Manager) Attach(ctx context.Context, v Volume, gen uint64) (string, error) {
	if err := v.validate(); err != nil {
		return "", err
	}
	defer m.lock(v.UID)()
	vr, err := m.openVolume(v)
	if err != nil {
		return "", err
	}
	defer vr.Close()
	cr, err := vr.OpenRoot(controlDir)
	if err != nil {
		return "", fmt.Errorf("attach volume %s: %w: %v", v, ErrFenceCorrupt, err)
	}
	defer cr.Close()
	// The exclusive fence lock is held until the mount record is written,
	// so that in the journal no fence of a higher generation comes between
	// this generation's check and its mount.
	unlock, err := lockControl(ctx, cr, unix.LOCK_EX)
	if err != nil {
		return "", fmt.Errorf("attach volume %s: %w", v, err)
	}
	defer unlock()
	if err := m.raiseFence(v, cr, gen, true); err != nil {
		var se *StaleGenerationError
		if errors.As(err, &se) {
			return "", err // it names the volume
		}
		return "", fmt.Errorf("attach volume %s: %w", v, err)
	}

	prev, err := m.readAttachment(v.UID)
	if err != nil {
		return "", fmt.Errorf("attach volume %s: %w", v, err)
	}
	var hostPath string
	switch v.Class.Driver {
	case DriverImage:
		hostPath = m.mountpoint(v)
	default:
		fi, err := vr.Lstat(dataDir)
		if err != nil {
			return "", fmt.Errorf("attach volume %s: %w", v, err)
		}
		if !fi.IsDir() {
			return "", fmt.Errorf("attach volume %s: %s is a %s, not a directory", v, dataDir, fileType(fi.Mode()))
		}
		hostPath = filepath.Join(m.VolumeDir(v), dataDir)
	}
	// Record the attachment before mounting, so that a crash in between
	// leaves a record that Detach cleans up from.
	a := Attachment{Volume: v, Gen: gen, HostPath: hostPath}
	if err := m.writeAttachment(a); err != nil {
		return "", fmt.Errorf("attach volume %s: %w", v, err)
	}
	if v.Class.Driver == DriverImage {
		if err := m.mountImage(v, vr, hostPath); err != nil {
			if prev == nil {
				_ = m.removeAttachment(v.UID)
			}
			return "", fmt.Errorf("attach volume %s: %w", v, err)
		}
	}
	if prev == nil || prev.Gen != gen {
		m.journal(v, cr, KindMount, gen)
	}
	m.log.Info("volume attached", "volume", v.String(), "uid", v.UID, "gen", gen, "path", hostPath)
	return hostPath, nil
}

// raiseFence checks gen against the marker and raises the marker to gen if
// it is lower, appending a fence record. The caller holds the exclusive
// fence lock.
// With refuseStale a gen below the marker is an error; without, it is a
// no-op (the volume is already fenced at least that high).
func (m *Manager) raiseFence(v Volume, cr *os.Root, gen uint64, refuseStale bool) error {
	cur, err := readFenceAt(cr)
	if isNotExist(err) {
		return fmt.Errorf("%w: the marker is missing", ErrFenceCorrupt)
	}
	if err != nil {
		return err
	}
	if gen < cur.Generation {
		if !refuseStale {
			return nil
		}
		m.log.Warn("stale generation refused", "volume", v.String(), "gen", gen, "marker", cur.Generation, "marker_node", cur.Node)
		return &StaleGenerationError{Volume: v.String(), Gen: gen, MarkerGen: cur.Generation}
	}
	if gen == cur.Generation {
		return nil
	}
	if err := writeFenceAt(cr, gen, m.node); err != nil {
		return err
	}
	m.journal(v, cr, KindFence, gen)
	m.log.Info("fence raised", "volume", v.String(), "gen", gen, "previous", cur.Generation)
	return nil
}

// Fence raises the volume's marker to gen without attaching, so that no
// assignment below gen can attach it any more (an operator's "this node is
// dead"). A marker already at gen or higher is left as it is.
func (m *Manager) Fence(ctx context.Context, v Volume, gen uint64) error {
	if err := v.validate(); err != nil {
		return err
	}
	defer m.lock(v.UID)()
	vr, err := m.openVolume(v)
	if err != nil {
		return err
	}
	defer vr.Close()
	cr, err := vr.OpenRoot(controlDir)
	if err != nil {
		return fmt.Errorf("fence volume %s: %w: %v", v, ErrFenceCorrupt, err)
	}
	defer cr.Close()
	unlock, err := lockControl(ctx, cr, unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("fence volume %s: %w", v, err)
	}
	defer unlock()
	if err := m.raiseFence(v, cr, gen, false); err != nil {
		return fmt.Errorf("fence volume %s: %w", v, err)
	}
	return nil
}

// journal appends a record for this node's agent. The journal is a record
// for checks and operators: failing to write it (a full disk) is logged and
// does not fail the operation.
func (m *Manager) journal(v Volume, cr *os.Root, kind Kind, gen uint64) {
	ord := -1
	if _, o, ok := api.ParseOrdinal(v.Name); ok {
		ord = o
	}
	rec := Record{Ord: ord, Gen: gen, Node: m.node, PID: m.pid, Seq: m.seq.Add(1), Mono: m.mono(), Kind: kind}
	f, err := cr.OpenFile(journalFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err == nil {
		err = AppendRecord(f, rec)
		f.Close()
	}
	if err != nil {
		m.log.Warn("journal record not written", "volume", v.String(), "kind", string(kind), "gen", gen, "error", err)
	}
}

// Detach undoes Attach on this node: it unmounts an image volume and
// releases its loop device, writes an unmount record and forgets the
// attachment. Call it after the pod's containers are dead and its subPath
// staging mounts are cleaned up; a mount still in use is reported with
// ErrBusy and stays attached. Detaching a volume that is not attached here
// is a no-op.
func (m *Manager) Detach(ctx context.Context, v Volume) error {
	if err := v.validate(); err != nil {
		return err
	}
	defer m.lock(v.UID)()
	a, err := m.readAttachment(v.UID)
	if err != nil {
		return fmt.Errorf("detach volume %s: %w", v, err)
	}
	if v.Class.Driver == DriverImage {
		if err := m.unmountImage(ctx, v); err != nil {
			return fmt.Errorf("detach volume %s: %w", v, err)
		}
	}
	if a != nil {
		if vr, err := m.openVolume(v); err == nil {
			if cr, err := vr.OpenRoot(controlDir); err == nil {
				m.journal(v, cr, KindUnmount, a.Gen)
				cr.Close()
			}
			vr.Close()
		}
		if err := m.removeAttachment(v.UID); err != nil {
			return fmt.Errorf("detach volume %s: %w", v, err)
		}
		m.log.Info("volume detached", "volume", v.String(), "uid", v.UID, "gen", a.Gen)
	}
	return nil
}

// Delete removes the volume and its data. It refuses (ErrAttached) while
// the volume is attached on this node; whether another node holds a shared
// volume is for the servers to know. The directory is first renamed aside,
// then removed without following symlinks. Deleting a volume that does not
// exist is a no-op.
func (m *Manager) Delete(ctx context.Context, v Volume) error {
	if err := v.validate(); err != nil {
		return err
	}
	defer m.lock(v.UID)()
	a, err := m.readAttachment(v.UID)
	if err != nil {
		return fmt.Errorf("delete volume %s: %w", v, err)
	}
	if a != nil {
		return fmt.Errorf("delete volume %s: %w on node %s (generation %d): detach it first", v, ErrAttached, m.node, a.Gen)
	}
	if _, ok, err := mountAt(m.mountpoint(v)); err != nil {
		return fmt.Errorf("delete volume %s: %w", v, err)
	} else if ok {
		return fmt.Errorf("delete volume %s: %w: it is mounted at %s: detach it first", v, ErrAttached, m.mountpoint(v))
	}
	if v.Class.Driver == DriverImage {
		if err := m.releaseLoops(ctx, v); err != nil {
			return fmt.Errorf("delete volume %s: %w", v, err)
		}
	}
	r, err := m.openClassRoot(v, false)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer r.Close()
	// A delete that crashed left its trash behind: finish it first.
	trash := trashPrefix + v.UID
	if err := r.RemoveAll(trash); err != nil {
		return fmt.Errorf("delete volume %s: %w", v, err)
	}
	if err := r.Rename(v.UID, trash); err != nil && !isNotExist(err) {
		return fmt.Errorf("delete volume %s: %w", v, err)
	}
	if err := r.RemoveAll(trash); err != nil {
		return fmt.Errorf("delete volume %s: %w", v, err)
	}
	if err := syncDir(r); err != nil {
		return fmt.Errorf("delete volume %s: %w", v, err)
	}
	m.log.Info("volume deleted", "volume", v.String(), "uid", v.UID)
	return nil
}

// writeFileAtomic replaces name in r with data: temporary file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(r *os.Root, name string, data []byte) error {
	tmp := "." + name + ".tmp"
	_ = r.Remove(tmp)
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.Rename(tmp, name)
	}
	if err != nil {
		_ = r.Remove(tmp)
		return err
	}
	return syncDir(r)
}
