package volumes

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// requireRoot skips tests that need root and real mounts, loop devices
// and e2fsprogs; `go test -short` skips them too.
func requireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, mounts and loop devices; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, prog := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("needs %s (e2fsprogs)", prog)
		}
	}
	if _, err := os.Stat(loopControl); err != nil {
		t.Skipf("needs %s", loopControl)
	}
}

// testDir returns a fresh directory, with symlinks resolved, whose mounts
// and loop devices are all undone when the test ends, even on failure.
func testDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { undoUnder(t, dir) })
	return dir
}

// undoUnder unmounts every mount under dir (innermost first) and releases
// every loop device whose backing file is under dir.
func undoUnder(t testing.TB, dir string) {
	ms, err := mounts()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if under(ms[i].Mountpoint, dir) {
			if err := unix.Unmount(ms[i].Mountpoint, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", ms[i].Mountpoint, err)
			}
		}
	}
	for dev, file := range loopBackingFiles(t) {
		if under(file, dir) {
			if err := detachLoop(dev); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// loopBackingFiles maps each bound loop device to its backing file, as
// /sys/block/loopN/loop/backing_file shows it.
func loopBackingFiles(t testing.TB) map[string]string {
	t.Helper()
	files, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // released meanwhile
		}
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		out[dev] = strings.TrimSuffix(string(data), "\n")
	}
	return out
}

// assertNothingLeft fails if a mount remains under the Manager's
// directory or a loop device is bound to a file under dir. Autoclear
// releases a loop device as its last user goes, so it waits for that with
// a deadline.
func assertNothingLeft(t testing.TB, mgr *Manager, dir string) {
	t.Helper()
	mdir := mgr.dir
	ms, err := mounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if under(m.Mountpoint, mdir) {
			t.Errorf("mount left at %s (%s from %s)", m.Mountpoint, m.FSType, m.Source)
		}
	}
	var left []string
	waitFor(t, 5*time.Second, func() bool {
		left = left[:0]
		for dev, file := range loopBackingFiles(t) {
			if under(file, dir) {
				left = append(left, dev+" → "+file)
			}
		}
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Errorf("loop devices left: %v", left)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// mountTmpfs mounts a tmpfs of size bytes at dir/name.
func mountTmpfs(t testing.TB, dir, name string, size int64) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size="+strconv.FormatInt(size, 10)); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	return p
}

// newManager returns a Manager for node with its directory under dir.
func newManager(t testing.TB, dir, node string) *Manager {
	t.Helper()
	m, err := NewManager(Options{
		Node:   node,
		Dir:    filepath.Join(dir, "node-"+node),
		Logger: hclog.New(&hclog.LoggerOptions{Name: node, Level: hclog.Warn, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// hasCapability reports whether this process has capability c in its
// effective set.
func hasCapability(t testing.TB, c int) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(l, "CapEff:"); ok {
			v, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v&(1<<c) != 0
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return false
}
