package volumes

// The image driver: a sparse file formatted ext4, loop-mounted on attach,
// grown with resize2fs.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkFree refuses a size that the class root's filesystem cannot hold;
// grown is the volume's size before a resize (0 when it is created).
func (m *Manager) checkFree(v Volume, r *os.Root, size, grown int64) error {
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
		what := formatSize(size)
		if grown > 0 {
			what = fmt.Sprintf("%s more to grow it from %s to %s", formatSize(size), formatSize(grown), formatSize(grown+size))
		}
		return fmt.Errorf("volume %s: %w: class %q cannot provide %s: its root %s has %s free", v, ErrInsufficientSpace, v.Class.Name, what, m.classRoot(v.Class), formatSize(free))
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

// mountedFrom reports whether any of ms is a mount of source.
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
		err = m.checkFree(v, r, v.Size-cur, cur)
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
			if strings.Contains(string(out), "Permission denied to resize") {
				return fmt.Errorf("resize volume %s: %w: resize2fs %s: %v: %s (the kernel allows online resizing only with CAP_SYS_RESOURCE: detach the volume and resize it offline)",
					v, ErrOnlineResize, ent.Source, err, strings.TrimSpace(string(out)))
			}
			return fmt.Errorf("resize volume %s: resize2fs %s: %w: %s", v, ent.Source, err, strings.TrimSpace(string(out)))
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

// ImageSize is the size an image volume of the requested size gets: n
// rounded up to 4 KiB. Compare it, not the request, with Size.
func ImageSize(n int64) int64 { return alignUp(n) }

// Size returns the size the volume has, as recorded in meta.json once
// Create or Resize completed: for an image volume its filesystem's size
// (a resize that failed half-way, its file grown but not its filesystem,
// does not count), for local and shared volumes the advisory size.
func (m *Manager) Size(v Volume) (int64, error) {
	if err := v.validate(); err != nil {
		return 0, err
	}
	vr, err := m.openVolume(v)
	if err != nil {
		return 0, err
	}
	defer vr.Close()
	data, err := vr.ReadFile(metaFile)
	if err != nil {
		return 0, fmt.Errorf("size of volume %s: %w", v, err)
	}
	var md meta
	if err := json.Unmarshal(data, &md); err != nil {
		return 0, fmt.Errorf("size of volume %s: %s: %w", v, metaFile, err)
	}
	return md.Size, nil
}

func alignUp(n int64) int64 {
	return (n + imageAlign - 1) / imageAlign * imageAlign
}
