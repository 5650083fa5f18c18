package volumes

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Mountpoint string
	FSType     string
	Source     string
}

// mountInfoPath is read by mounts; tests never change it.
const mountInfoPath = "/proc/self/mountinfo"

// mounts lists the mounts of this process's mount namespace.
func mounts() ([]mountEntry, error) {
	f, err := os.Open(mountInfoPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		out = append(out, mountEntry{
			Mountpoint: unescapeMountField(fields[4]),
			FSType:     fields[sep+1],
			Source:     unescapeMountField(fields[sep+2]),
		})
	}
	return out, sc.Err()
}

// unescapeMountField undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo fields.
func unescapeMountField(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
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
	ms, err := mounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Mountpoint == dir || strings.HasPrefix(m.Mountpoint, dir+"/") {
			out = append(out, m.Mountpoint)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}
