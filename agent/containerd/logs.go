package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Log rotation.
//
// A container's stdout and stderr go to its log file through containerd's
// file:// log URI: the shim itself opens the file (O_APPEND) and copies the
// output into it. The shim owns the task, so output keeps flowing to the file
// while the agent is dead or restarting, with no extra process per container.
//
// The shim never reopens the file, so rotation cannot rename it away. The
// agent rotates in place instead: the head of the file is copied to
// <path>.1 (older copies shift to .2 … .keep) and then cut out of the live
// file with fallocate(FALLOC_FL_COLLAPSE_RANGE), which removes whole blocks
// from the front atomically with respect to the shim's appends — nothing
// written meanwhile is lost, and the few bytes after the last whole block
// stay in the live file. On filesystems without collapse-range (tmpfs, some
// network filesystems) it falls back to copy-then-truncate, which can lose
// what the container writes between the copy and the truncate.
//
// A binary:// logging driver (a process per container, started by the shim)
// was not chosen: a driver that dies or stalls blocks or breaks the
// container's stdout, and the shim passes the driver's arguments in random
// order, so it would need its own executable. Rotation does not run while the
// agent is down; the file grows meanwhile and is rotated at the next pass.

// RotateLog rotates the file at path when it is larger than maxBytes,
// keeping keep older copies (<path>.1 newest). It reports whether it rotated.
// A missing file is not an error.
func RotateLog(path string, maxBytes int64, keep int) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	size := st.Size
	if size <= maxBytes {
		return false, nil
	}

	// Shift the old copies: .keep-1 → .keep, …, .1 → .2.
	if keep > 0 {
		_ = os.Remove(path + "." + strconv.Itoa(keep))
		for i := keep - 1; i >= 1; i-- {
			err := os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return false, fmt.Errorf("rotate log %s: %w", path, err)
			}
		}
	}

	// Collapse-range needs whole blocks and must leave at least a byte.
	blk := int64(st.Blksize)
	if blk <= 0 {
		blk = 4096
	}
	n := (size - 1) / blk * blk
	if n > 0 {
		if err := saveHead(f, path, n, keep); err != nil {
			return false, err
		}
		err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_COLLAPSE_RANGE, 0, n)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.EINVAL) {
			return false, fmt.Errorf("rotate log %s: collapse: %w", path, err)
		}
	}
	// Fallback: copy everything, then truncate.
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("rotate log %s: %w", path, err)
	}
	if err := saveHead(f, path, fi.Size(), keep); err != nil {
		return false, err
	}
	if err := f.Truncate(0); err != nil {
		return false, fmt.Errorf("rotate log %s: truncate: %w", path, err)
	}
	return true, nil
}

// saveHead writes the first n bytes of f to path.1 (through a temporary
// file), unless keep is 0.
func saveHead(f *os.File, path string, n int64, keep int) error {
	if keep <= 0 {
		return nil
	}
	tmp := path + ".1.tmp"
	dst, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate log %s: %w", path, err)
	}
	_, err = io.Copy(dst, io.NewSectionReader(f, 0, n))
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path+".1")
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rotate log %s: %w", path, err)
	}
	return nil
}

// RotateLogs rotates the log file of every container in the namespace that
// exceeds maxBytes, keeping keep older copies; the agent calls it
// periodically. It returns the IDs of the containers whose logs rotated.
func (r *Runtime) RotateLogs(ctx context.Context, maxBytes int64, keep int) ([]string, error) {
	cs, err := r.client.Containers(r.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("rotate logs: %w", err)
	}
	var rotated []string
	var errs []error
	for _, c := range cs {
		labels, err := c.Labels(r.ctx(ctx))
		if err != nil {
			continue
		}
		p := labels[LabelLogPath]
		if p == "" {
			continue
		}
		ok, err := RotateLog(p, maxBytes, keep)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if ok {
			rotated = append(rotated, c.ID())
		}
	}
	return rotated, errors.Join(errs...)
}
