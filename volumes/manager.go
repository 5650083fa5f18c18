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
	"syscall"

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
			if err := m.checkFree(v, r, v.Size); err != nil {
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

// checkFree refuses a size that the class root's filesystem cannot hold.
func (m *Manager) checkFree(v Volume, r *os.Root, size int64) error {
	d, err := r.Open(".")
	if err != nil {
		return fmt.Errorf("volume %s: %w", v, err)
	}
	defer d.Close()
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(d.Fd()), &st); err != nil {
		return fmt.Errorf("volume %s: free space of class %q root: %w", v, v.Class.Name, err)
	}
	free := int64(st.Bavail) * st.Bsize
	if size > free {
		return fmt.Errorf("volume %s: %w: class %q cannot provide %s: its root %s has %s free", v, ErrInsufficientSpace, v.Class.Name, formatSize(size), m.classRoot(v.Class), formatSize(free))
	}
	return nil
}

// createImage makes disk.img: a sparse temporary file, formatted, synced
// and renamed into place, so a crash never leaves a half-made image under
// the real name.
func (m *Manager) createImage(ctx context.Context, v Volume, vr *os.Root) error {
	if fi, err := vr.Lstat(imageFile); err == nil {
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("create volume %s: %s is a %s, not an image", v, imageFile, fileType(fi.Mode()))
		}
		return nil
	}
	_ = vr.Remove(imageTmp)
	f, err := vr.OpenFile(imageTmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	ok := false
	defer func() {
		f.Close()
		if !ok {
			_ = vr.Remove(imageTmp)
		}
	}()
	if err := f.Truncate(v.Size); err != nil {
		return fmt.Errorf("create volume %s: size the image: %w", v, err)
	}
	tmpPath := filepath.Join(m.VolumeDir(v), imageTmp)
	// -m 0: no blocks reserved for root, the whole size is the volume's.
	// Lazy inode table and journal init: the sparse file reads as zeros.
	out, err := m.exec(ctx, "mkfs.ext4", "-F", "-q", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard", "-L", "stead", tmpPath)
	if err != nil {
		return fmt.Errorf("create volume %s: mkfs.ext4: %w: %s", v, err, strings.TrimSpace(string(out)))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("create volume %s: sync the image: %w", v, err)
	}
	if err := vr.Rename(imageTmp, imageFile); err != nil {
		return fmt.Errorf("create volume %s: %w", v, err)
	}
	ok = true
	return nil
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

// mountImage loop-mounts disk.img at mp unless it is mounted there already.
func (m *Manager) mountImage(v Volume, vr *os.Root, mp string) error {
	if ent, ok, err := mountAt(mp); err != nil {
		return err
	} else if ok {
		if ent.FSType != "ext4" {
			return fmt.Errorf("%s holds a %s mount, not the volume", mp, ent.FSType)
		}
		return nil
	}
	img, err := vr.OpenFile(imageFile, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open image: %w", err)
	}
	defer img.Close()
	if fi, err := img.Stat(); err != nil {
		return err
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is a %s, not an image", imageFile, fileType(fi.Mode()))
	}
	if err := os.Mkdir(mp, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	dev, devf, err := attachLoop(img)
	if err != nil {
		_ = os.Remove(mp)
		return err
	}
	defer devf.Close() // the mount keeps the device; autoclear frees it on unmount
	if err := unix.Mount(dev, mp, "ext4", unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		_ = unix.IoctlSetInt(int(devf.Fd()), unix.LOOP_CLR_FD, 0)
		_ = os.Remove(mp)
		return fmt.Errorf("mount %s (%s) on %s: %w", imageFile, dev, mp, err)
	}
	m.log.Debug("image mounted", "volume", v.String(), "device", dev, "path", mp)
	return nil
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

// unmountImage unmounts the image's mount point and releases every loop
// device of this node bound to the image.
func (m *Manager) unmountImage(ctx context.Context, v Volume) error {
	mp := m.mountpoint(v)
	ms, err := mounts()
	if err != nil {
		return err
	}
	if ent, ok := topMount(ms, mp); ok {
		// A bind mount of the volume (a subPath staging mount) keeps the
		// filesystem and its loop device alive after the unmount: refuse
		// before unmounting anything.
		for _, e := range ms {
			if e.Source == ent.Source && e.Mountpoint != mp {
				return fmt.Errorf("%w: %s is still mounted at %s (a subPath staging mount?): unmount it first", ErrBusy, mp, e.Mountpoint)
			}
		}
	}
	// Unmount until nothing is left: a crash can leave a mount stacked on
	// another.
	for i := 0; ; i++ {
		ent, ok, err := mountAt(mp)
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if i == maxStackedMounts {
			return fmt.Errorf("%s is still mounted after %d unmounts", mp, i)
		}
		if err := Unmount(mp); err != nil {
			return err
		}
		m.log.Debug("image unmounted", "volume", v.String(), "device", ent.Source, "path", mp)
	}
	if err := os.Remove(mp); err != nil && !isNotExist(err) {
		return err
	}
	return m.releaseLoops(ctx, v)
}

// releaseLoops detaches the loop devices bound to the volume's image that
// no mount uses (autoclear normally did it already on unmount; a crash
// between binding and mounting can leave one).
func (m *Manager) releaseLoops(ctx context.Context, v Volume) error {
	vr, err := m.openVolume(v)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer vr.Close()
	fi, err := vr.Lstat(imageFile)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("no device and inode for %s", imageFile)
	}
	devs, err := loopsBackedBy(uint64(st.Dev), st.Ino)
	if err != nil || len(devs) == 0 {
		return err
	}
	ms, err := mounts()
	if err != nil {
		return err
	}
	for _, d := range devs {
		if mountedFrom(ms, d) {
			return fmt.Errorf("%w: %s (the image's loop device) is still mounted elsewhere on this node", ErrBusy, d)
		}
		if err := detachLoop(d); err != nil {
			return err
		}
		m.log.Debug("loop device released", "volume", v.String(), "device", d)
	}
	return ctx.Err()
}

// maxStackedMounts bounds how many mounts Detach takes off a mount point.
const maxStackedMounts = 8

func mountedFrom(ms []mountEntry, source string) bool {
	for _, e := range ms {
		if e.Source == source {
			return true
		}
	}
	return false
}

// Resize grows an image volume to newSize bytes (rounded up to 4 KiB):
// the file grows sparsely and the ext4 filesystem with it, online with
// resize2fs if the volume is mounted on this node, or offline (e2fsck,
// resize2fs) if not. A smaller size is refused with ErrShrink; growth
// beyond the free space of the class root with ErrInsufficientSpace. An
// image on a shared root must not be attached on another node while it is
// resized offline. For local and shared volumes the size is advisory: only
// meta.json changes.
func (m *Manager) Resize(ctx context.Context, v Volume, newSize int64) error {
	v.Size = newSize
	if err := v.validate(); err != nil {
		return err
	}
	defer m.lock(v.UID)()
	vr, err := m.openVolume(v)
	if err != nil {
		return err
	}
	defer vr.Close()
	if v.Class.Driver != DriverImage {
		if err := writeFileAtomic(vr, metaFile, metaOf(v)); err != nil {
			return fmt.Errorf("resize volume %s: %w", v, err)
		}
		return nil
	}
	v.Size = alignUp(newSize)
	img, err := vr.OpenFile(imageFile, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("resize volume %s: %w", v, err)
	}
	defer img.Close()
	fi, err := img.Stat()
	if err != nil {
		return fmt.Errorf("resize volume %s: %w", v, err)
	}
	cur := fi.Size()
	if v.Size < cur {
		return fmt.Errorf("resize volume %s: %w: it is %s and %s was asked; ext4 images only grow", v, ErrShrink, formatSize(cur), formatSize(v.Size))
	}
	if v.Size > cur {
		r, err := m.openClassRoot(v, false)
		if err != nil {
			return err
		}
		err = m.checkFree(v, r, v.Size-cur)
		r.Close()
		if err != nil {
			return err
		}
		if err := img.Truncate(v.Size); err != nil {
			return fmt.Errorf("resize volume %s: grow the image: %w", v, err)
		}
		if err := img.Sync(); err != nil {
			return fmt.Errorf("resize volume %s: %w", v, err)
		}
	}
	ent, mounted, err := mountAt(m.mountpoint(v))
	if err != nil {
		return fmt.Errorf("resize volume %s: %w", v, err)
	}
	if mounted {
		if err := setLoopCapacity(ent.Source); err != nil {
			return fmt.Errorf("resize volume %s: %w", v, err)
		}
		if out, err := m.exec(ctx, "resize2fs", ent.Source); err != nil {
			hint := ""
			if strings.Contains(string(out), "Permission denied to resize") {
				hint = " (the kernel allows online resizing only with CAP_SYS_RESOURCE: detach the volume and resize it offline)"
			}
			return fmt.Errorf("resize volume %s: resize2fs %s: %w: %s%s", v, ent.Source, err, strings.TrimSpace(string(out)), hint)
		}
	} else {
		path := filepath.Join(m.VolumeDir(v), imageFile)
		// e2fsck exits 1 when it corrected errors; resize2fs wants a
		// freshly checked filesystem.
		if out, err := m.exec(ctx, "e2fsck", "-f", "-p", path); err != nil && exitCode(err) != 1 {
			return fmt.Errorf("resize volume %s: e2fsck: %w: %s", v, err, strings.TrimSpace(string(out)))
		}
		if out, err := m.exec(ctx, "resize2fs", path); err != nil {
			return fmt.Errorf("resize volume %s: resize2fs: %w: %s", v, err, strings.TrimSpace(string(out)))
		}
	}
	if err := writeFileAtomic(vr, metaFile, metaOf(v)); err != nil {
		return fmt.Errorf("resize volume %s: %w", v, err)
	}
	m.log.Info("volume resized", "volume", v.String(), "size", v.Size, "online", mounted)
	return nil
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
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

func alignUp(n int64) int64 {
	return (n + imageAlign - 1) / imageAlign * imageAlign
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
