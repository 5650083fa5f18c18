package volumes

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Mountpoint string
	FSType     string
	Source     string
}

// mounts lists the mounts of this process's mount namespace, in the
// order of /proc/self/mountinfo.
func mounts() ([]mountEntry, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, err
	}
	out := make([]mountEntry, 0, len(infos))
	for _, m := range infos {
		out = append(out, mountEntry{Mountpoint: m.Mountpoint, FSType: m.FSType, Source: m.Source})
	}
	return out, nil
}

// mountAt returns the topmost mount at path, if any.
func mountAt(path string) (mountEntry, bool, error) {
	ms, err := mounts()
	if err != nil {
		return mountEntry{}, false, fmt.Errorf("list mounts: %w", err)
	}
	ent, ok := topMount(ms, path)
	return ent, ok, nil
}

// topMount returns the last (topmost) of ms mounted at path.
func topMount(ms []mountEntry, path string) (mountEntry, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Mountpoint == path {
			return ms[i], true
		}
	}
	return mountEntry{}, false
}

// BindMount bind-mounts the file or directory open as src (an O_PATH file
// from ResolveSubPath will do) onto target, which must exist and be of the
// same type, read-only if readOnly. The mount source is the descriptor
// (/proc/self/fd/N), never a path, so nothing swapped in the source's place
// after it was opened can be mounted instead. It checks that target then
// is src (same device and inode), and undoes the mount if not.
func BindMount(src *os.File, target string, readOnly bool) error {
	source := "/proc/self/fd/" + strconv.Itoa(int(src.Fd()))
	if err := unix.Mount(source, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", src.Name(), target, err)
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			_ = unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("bind mount %s on %s read-only: %w", src.Name(), target, err)
		}
	}
	var want, got unix.Stat_t
	err := unix.Fstat(int(src.Fd()), &want)
	if err == nil {
		err = unix.Stat(target, &got)
	}
	if err == nil && (want.Dev != got.Dev || want.Ino != got.Ino) {
		err = errors.New("the mount shows another file than the one opened")
	}
	if err != nil {
		_ = unix.Unmount(target, unix.MNT_DETACH)
		return fmt.Errorf("bind mount %s on %s: %w", src.Name(), target, err)
	}
	return nil
}

// Unmount unmounts target. A target that is not a mount point or does not
// exist is already unmounted; a mount still in use (a container or another
// mount holds it) is reported with ErrBusy, and stays mounted.
func Unmount(target string) error {
	err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
	switch {
	case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("unmount %s: %w (a process or another mount still uses it)", target, ErrBusy)
	default:
		return fmt.Errorf("unmount %s: %w", target, err)
	}
}

// MountsUnder returns the mount points at or under dir in this process's
// mount namespace, deepest first, so that unmounting them in order never
// meets a busy parent.
func MountsUnder(dir string) ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(infos))
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}
