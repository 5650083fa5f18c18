// Package containerdtest starts a private containerd daemon for tests, like
// httptest starts a server: its own config, root, state and socket under a
// short temporary directory, its own containerd namespace, and a cleanup
// that removes every container it ran, stops the daemon by its pid and
// unmounts what it left mounted.
//
// It also builds test images from the tiny static program in
// testdata/stub (see StubImage) through agent/image, so tests need no
// registry.
package containerdtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/image"
	"github.com/stead-io/stead/volumes"
)

// Daemon is a running private containerd.
type Daemon struct {
	// Dir holds config, root, state and socket.
	Dir string
	// Socket is the daemon's gRPC address.
	Socket string
	// Namespace is unique to this daemon, so cgroups of concurrent test
	// daemons never collide.
	Namespace string
	// Pid of the containerd process.
	Pid int

	d *containerd.Daemon
}

// Skip skips t unless the machine can run containers: root, containerd and
// runc on PATH.
func Skip(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run containerd")
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs %s on PATH: %v", bin, err)
		}
	}
}

// Start starts a daemon and registers its cleanup. It skips the test when
// the machine cannot run containers and fails it when the daemon does not
// answer within 30 seconds.
func Start(t testing.TB) *Daemon {
	t.Helper()
	Skip(t)
	// Unix socket paths hold at most 107 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("/tmp", "ctd-")
	if err != nil {
		t.Fatal(err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := "stead-test-" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := containerd.StartDaemon(ctx, containerd.DaemonOptions{Dir: dir})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start containerd: %v", err)
	}
	td := &Daemon{Dir: dir, Socket: d.Socket, Namespace: ns, Pid: d.Pid, d: d}
	t.Cleanup(func() { td.cleanup(t) })
	return td
}

// Connect returns a Runtime on the daemon in its namespace, closed at the
// end of the test.
func (d *Daemon) Connect(t testing.TB) *containerd.Runtime {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt, err := containerd.Connect(ctx, containerd.Options{
		Socket:    d.Socket,
		Namespace: d.Namespace,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "containerd", Level: hclog.Warn}),
	})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

// Restart stops the daemon, leaving its containers running under their
// shims, and starts a new one on the same directories, as when the agent
// that owns it restarts. d then describes the new daemon.
func (d *Daemon) Restart(t testing.TB) *Daemon {
	t.Helper()
	if err := d.d.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop containerd: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nd, err := containerd.StartDaemon(ctx, containerd.DaemonOptions{Dir: d.Dir})
	if err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	d.d, d.Pid = nd, nd.Pid
	return d
}

func (d *Daemon) cleanup(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Containers outlive containerd (their shims do not need it), so remove
	// them before stopping it.
	if rt, err := containerd.Connect(ctx, containerd.Options{Socket: d.Socket, Namespace: d.Namespace, DialTimeout: 5 * time.Second}); err == nil {
		if cs, err := rt.List(ctx); err == nil {
			for _, c := range cs {
				if err := rt.Delete(ctx, c.ID); err != nil {
					t.Logf("cleanup: delete container %s: %v", c.ID, err)
				}
			}
		}
		rt.Close()
	}
	if err := d.d.Stop(10 * time.Second); err != nil {
		t.Logf("cleanup: %v", err)
	}
	// Shims of containers that could not be deleted: found by the daemon
	// address on their command line, killed by pid.
	for _, pid := range shimPids(d.Socket) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, mp := range MountsUnder(d.Dir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", mp, err)
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// shimPids lists the shim processes serving the daemon at socket.
func shimPids(socket string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		for _, a := range args {
			if a == socket || a == socket+".ttrpc" {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// MountsUnder returns the mount points at or under dir in this process's
// mount namespace, deepest first (the order to unmount them); none when
// mountinfo cannot be read.
func MountsUnder(dir string) []string {
	mps, _ := volumes.MountsUnder(dir)
	return mps
}

// StubTag is the name StubImage gives the test image.
const StubTag = "stead-test/stub:1"

var (
	stubOnce sync.Once
	stubBin  string
	stubErr  error
)

// StubBinary builds testdata/stub (static, CGO_ENABLED=0) and returns its
// path. The binary is kept under the temporary directory, named by the hash
// of its source, so test runs share one build instead of leaving copies.
func StubBinary(t testing.TB) string {
	t.Helper()
	stubOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		src := filepath.Join(filepath.Dir(file), "testdata", "stub")
		code, err := os.ReadFile(filepath.Join(src, "main.go"))
		if err != nil {
			stubErr = err
			return
		}
		sum := sha256.Sum256(append(code, runtime.Version()...))
		dir := filepath.Join(os.TempDir(), "stead-stub-"+hex.EncodeToString(sum[:8]))
		stubBin = filepath.Join(dir, "stub")
		if _, err := os.Stat(stubBin); err == nil {
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			stubErr = err
			return
		}
		// Built aside and renamed, so concurrent test binaries never see
		// half a file.
		tmp := filepath.Join(dir, fmt.Sprintf(".stub-%d", os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, ".")
		cmd.Dir = src
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			stubErr = &buildError{err: err, out: out.String()}
			return
		}
		stubErr = os.Rename(tmp, stubBin)
	})
	if stubErr != nil {
		t.Fatalf("build stub: %v", stubErr)
	}
	return stubBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// StubImage builds the stub program into an image tagged StubTag (entrypoint
// /stub, default command "info"), imports it into rt and returns its full
// name.
func StubImage(t testing.TB, rt *containerd.Runtime) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := image.BuildFromBinary(&buf, image.BuildOptions{
		Binary: StubBinary(t),
		Tag:    StubTag,
		Cmd:    []string{"info"},
		Env:    []string{"STUB_IMAGE_ENV=from-image"},
	}); err != nil {
		t.Fatalf("build stub image: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := rt.ImportArchive(ctx, &buf)
	if err != nil {
		t.Fatalf("import stub image: %v", err)
	}
	if len(names) != 1 {
		t.Fatalf("import stub image: got names %v, want one", names)
	}
	return names[0]
}
