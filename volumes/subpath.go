package volumes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxSubPathLen is PATH_MAX: a longer subPath cannot name a file.
const maxSubPathLen = 4095

// checkSubPath is the lexical half of subPath safety: a relative path
// that stays inside the volume, as written.
func checkSubPath(sub string) error {
	switch {
	case sub == "":
		return fmt.Errorf("%w: subPath is empty", ErrUnsafeSubPath)
	case strings.IndexByte(sub, 0) >= 0:
		return fmt.Errorf("%w: subPath %q contains a NUL byte", ErrUnsafeSubPath, sub)
	case len(sub) > maxSubPathLen:
		return fmt.Errorf("%w: subPath is %d bytes long (at most %d)", ErrUnsafeSubPath, len(sub), maxSubPathLen)
	case filepath.IsAbs(sub):
		return fmt.Errorf("%w: subPath %q is absolute: it must be relative to the volume", ErrUnsafeSubPath, sub)
	case !filepath.IsLocal(sub):
		return fmt.Errorf("%w: subPath %q leaves the volume through '..'", ErrUnsafeSubPath, sub)
	}
	return nil
}

// ResolveSubPath opens subPath inside the volume at hostPath and returns
// it as an O_PATH descriptor, to be mounted with BindMount. subPath must
// be relative and stay inside the volume as written (no "..", no absolute
// path, no NUL); it is then opened beneath hostPath with os.Root, so a
// symlink in it is followed only while it stays inside the volume, and one
// that leads out (a planted "link -> /", CVE-2017-1002101) is refused.
// A missing subPath is created as a directory, as the kubelet does. Only
// directories and regular files can be mounted. The caller closes the file.
func ResolveSubPath(hostPath, subPath string) (*os.File, error) {
	if err := checkSubPath(subPath); err != nil {
		return nil, err
	}
	name := filepath.Clean(subPath)
	root, err := os.OpenRoot(hostPath)
	if err != nil {
		return nil, fmt.Errorf("resolve subPath %q: %w", subPath, err)
	}
	defer root.Close()
	f, err := root.OpenFile(name, unix.O_PATH|unix.O_DIRECTORY, 0)
	if errors.Is(err, os.ErrNotExist) {
		if err := root.MkdirAll(name, 0o755); err != nil {
			return nil, fmt.Errorf("resolve subPath %q: create it: %w", subPath, subPathErr(err))
		}
		f, err = root.OpenFile(name, unix.O_PATH|unix.O_DIRECTORY, 0)
	}
	if errors.Is(err, unix.ENOTDIR) {
		// Not a directory, maybe through a symlink: the kernel resolves
		// it, refusing anything that leaves the volume.
		f, err = openBeneath(hostPath, name)
	}
	if err != nil {
		return nil, fmt.Errorf("resolve subPath %q: %w", subPath, subPathErr(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("resolve subPath %q: %w", subPath, err)
	}
	if !fi.IsDir() && !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: subPath %q is a %s: only directories and regular files can be mounted", ErrUnsafeSubPath, subPath, fileType(fi.Mode()))
	}
	return f, nil
}

// openBeneath opens name under dir with openat2(RESOLVE_BENEATH), which
// fails with EXDEV when resolution would leave dir.
func openBeneath(dir, name string) (*os.File, error) {
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(dfd)
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	}
	var fd int
	for {
		fd, err = unix.Openat2(dfd, name, &how)
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "openat2", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(dir, name)), nil
}

// subPathErr marks resolution errors that mean "leaves the volume":
// EXDEV from openat2, and os.Root's error, which is not exported (its text
// is checked by TestResolveSubPath, so a change in Go shows there).
func subPathErr(err error) error {
	if errors.Is(err, unix.EXDEV) || strings.Contains(err.Error(), "path escapes from parent") {
		return fmt.Errorf("%w: it leads outside the volume through a symlink (%v)", ErrUnsafeSubPath, err)
	}
	return err
}

func fileType(m os.FileMode) string {
	switch {
	case m&os.ModeSymlink != 0:
		return "symlink"
	case m&os.ModeNamedPipe != 0:
		return "named pipe"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// StageSubPath resolves subPath inside the volume at hostPath
// (ResolveSubPath) and bind-mounts the opened descriptor onto a new,
// private path under stagingDir, which it returns. Hand that path to the
// container runtime as the bind-mount source: it is a mount of exactly the
// file or directory that was checked, so swapping a symlink into the volume
// afterwards (CVE-2021-25741) changes nothing. cleanup unmounts and removes
// the staged path; call it once the containers that use it are dead (a
// staged mount keeps an image volume's mount busy, so Detach waits for it).
func StageSubPath(hostPath, subPath, stagingDir string) (staged string, cleanup func() error, err error) {
	f, err := ResolveSubPath(hostPath, subPath)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, fmt.Errorf("stage subPath %q: %w", subPath, err)
	}
	if err := os.MkdirAll(stagingDir, 0o700); err != nil {
		return "", nil, fmt.Errorf("stage subPath %q: %w", subPath, err)
	}
	dir, err := os.MkdirTemp(stagingDir, "subpath-")
	if err != nil {
		return "", nil, fmt.Errorf("stage subPath %q: %w", subPath, err)
	}
	target := dir
	if !fi.IsDir() {
		target = filepath.Join(dir, "file")
		tf, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			_ = removeStaged(dir, target)
			return "", nil, fmt.Errorf("stage subPath %q: %w", subPath, err)
		}
		tf.Close()
	}
	if err := BindMount(f, target, false); err != nil {
		_ = removeStaged(dir, target)
		return "", nil, fmt.Errorf("stage subPath %q: %w", subPath, err)
	}
	cleanup = func() error {
		if err := Unmount(target); err != nil {
			return err
		}
		return removeStaged(dir, target)
	}
	return target, cleanup, nil
}

// removeStaged removes a staging directory and the file in it, never
// recursively: if a mount were still there, rmdir would fail rather than
// delete the volume's data through it.
func removeStaged(dir, target string) error {
	if target != dir {
		if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove staged subPath %s: %w", target, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove staged subPath %s: %w", dir, err)
	}
	return nil
}

// CleanStaging unmounts every mount under dir and removes dir with what
// StageSubPath made in it, never recursively through a mount: it is how an
// agent that restarted (and lost the cleanup functions) removes the staging
// mounts of a pod, given a staging directory per pod. A mount still in use
// is reported with ErrBusy. A missing dir is already clean.
func CleanStaging(dir string) error {
	dir = filepath.Clean(dir)
	ms, err := mounts()
	if err != nil {
		return fmt.Errorf("clean staging %s: %w", dir, err)
	}
	for i := len(ms) - 1; i >= 0; i-- {
		p := ms[i].Mountpoint
		if p == dir || strings.HasPrefix(p, dir+"/") {
			if err := Unmount(p); err != nil {
				return fmt.Errorf("clean staging %s: %w", dir, err)
			}
		}
	}
	var paths []string
	err = filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("clean staging %s: %w", dir, err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		if err := os.Remove(paths[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("clean staging %s: %w", dir, err)
		}
	}
	return nil
}
