package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// logPoll is how often a followed log is checked for new output.
const logPoll = 200 * time.Millisecond

// streamLog copies a container's log file to w: its last tail lines (all
// when tail < 0, including the rotated copy), then, when follow is set,
// what the container writes next, until it stops running or ctx ends.
// Rotation (which cuts the head of the live file) is followed: the cut is
// as long as the newest rotated copy.
func streamLog(ctx context.Context, w io.Writer, path string, tail int, follow bool, running func(context.Context) bool, clock Clock) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		if !follow {
			return nil
		}
	} else if err != nil {
		return err
	}
	var off int64
	if f != nil {
		defer f.Close()
		if off, err = writeTail(w, f, path, tail); err != nil {
			return err
		}
	}
	if !follow {
		return nil
	}
	buf := make([]byte, 32<<10)
	checked := clock.Now()
	for {
		if f == nil {
			if f, err = os.Open(path); err == nil {
				defer f.Close()
			}
		}
		if f != nil {
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if fi.Size() < off {
				// Rotated: the head that was cut is in path.1.
				cut := int64(0)
				if r, err := os.Stat(path + ".1"); err == nil {
					cut = r.Size()
				}
				off = max(0, off-cut)
				if off > fi.Size() {
					off = 0
				}
			}
			for off < fi.Size() {
				n, err := f.ReadAt(buf[:min(int64(len(buf)), fi.Size()-off)], off)
				if n > 0 {
					if _, werr := w.Write(buf[:n]); werr != nil {
						return werr
					}
					off += int64(n)
				}
				if err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				if n == 0 {
					break
				}
			}
		}
		now := clock.Now()
		if now.Sub(checked) >= time.Second {
			checked = now
			if !running(ctx) {
				// Read what came after the exit, then stop.
				if f != nil {
					if rest, err := io.ReadAll(io.NewSectionReader(f, off, 1<<40)); err == nil && len(rest) > 0 {
						w.Write(rest)
					}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-clock.After(logPoll):
		}
	}
}

// writeTail writes the last tail lines of f (all of it and of its rotated
// copy when tail < 0) and returns the offset in f reached.
func writeTail(w io.Writer, f *os.File, path string, tail int) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if tail < 0 {
		if old, err := os.ReadFile(path + ".1"); err == nil {
			if _, err := w.Write(old); err != nil {
				return 0, err
			}
		}
		if _, err := io.Copy(w, io.NewSectionReader(f, 0, size)); err != nil {
			return 0, err
		}
		return size, nil
	}
	if tail == 0 {
		return size, nil
	}
	// Read backwards in chunks until tail+1 newlines are seen.
	const chunk = 16 << 10
	var data []byte
	start := size
	for start > 0 && bytes.Count(data, []byte{'\n'}) <= tail {
		n := min(chunk, start)
		start -= n
		b := make([]byte, n)
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("read %s: %w", path, err)
		}
		data = append(b, data...)
	}
	lines := bytes.SplitAfter(data, []byte{'\n'})
	if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	for _, l := range lines {
		if _, err := w.Write(l); err != nil {
			return 0, err
		}
	}
	return size, nil
}
