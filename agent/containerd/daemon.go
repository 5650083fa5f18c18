package containerd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// DefaultSocket is where a system containerd listens.
const DefaultSocket = "/run/containerd/containerd.sock"

// maxSocketPath is the longest path a unix socket address can hold
// (sizeof(sockaddr_un.sun_path) minus the terminating NUL).
const maxSocketPath = 107

// DaemonOptions says where an agent-owned containerd keeps its files.
type DaemonOptions struct {
	// Dir holds the daemon's config, root, state, socket, pid file and log
	// (for the agent: <data dir>/containerd). Its path must be short enough
	// for a unix socket (Dir/containerd.sock.ttrpc ≤ 107 bytes).
	Dir string
	// Binary is the containerd executable; empty means `containerd` on PATH.
	Binary string
	// Logger receives the supervisor's messages; nil discards them.
	Logger hclog.Logger
	// After waits between restarts of a daemon that died; nil means
	// time.After. Tests pass a fake.
	After func(time.Duration) <-chan time.Time
}

// DaemonPaths are the files of an agent-owned containerd under Dir.
type DaemonPaths struct {
	Config, Root, State, Socket, PidFile, Log string
}

// Paths returns where the daemon of these options keeps its files.
func (o DaemonOptions) Paths() DaemonPaths {
	return DaemonPaths{
		Config:  filepath.Join(o.Dir, "config.toml"),
		Root:    filepath.Join(o.Dir, "root"),
		State:   filepath.Join(o.Dir, "state"),
		Socket:  filepath.Join(o.Dir, "containerd.sock"),
		PidFile: filepath.Join(o.Dir, "containerd.pid"),
		Log:     filepath.Join(o.Dir, "containerd.log"),
	}
}

// DaemonConfig returns the containerd configuration (version 2 TOML) for
// paths: everything under the agent's directory, the CRI plugin and the
// snapshotters that cannot work here disabled, no TCP, debug or metrics
// listener, and sockets owned by root:root (containerd creates them 0660).
func DaemonConfig(p DaemonPaths) string {
	q := strconv.Quote
	return `version = 2
root = ` + q(p.Root) + `
state = ` + q(p.State) + `
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = ` + q(p.Socket) + `
  tcp_address = ""
  uid = 0
  gid = 0

[ttrpc]
  address = ` + q(p.Socket+".ttrpc") + `
  uid = 0
  gid = 0

[debug]
  address = ""
  level = "warn"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = ` + q(filepath.Join(p.Root, "opt")) + `
`
}

// Answers reports whether a containerd serves on socket, waiting at most
// timeout for the answer.
func Answers(ctx context.Context, socket string, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return false
	}
	conn.Close()
	c, err := newClient(ctx, socket, "", timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	ok, err := c.IsServing(ctx)
	return err == nil && ok
}

// Daemon is a containerd process started by StartDaemon.
type Daemon struct {
	// Socket is the address the daemon serves on.
	Socket string
	// Pid is the daemon's process id.
	Pid int

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// Done is closed when the daemon process has exited.
func (d *Daemon) Done() <-chan struct{} { return d.done }

// Err is how the daemon exited; valid once Done is closed.
func (d *Daemon) Err() error { <-d.done; return d.err }

// Stop sends SIGTERM, waits up to grace for the exit, then SIGKILLs and
// waits again. Containers survive: their shims do not depend on containerd.
func (d *Daemon) Stop(grace time.Duration) error {
	select {
	case <-d.done:
		return nil
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-d.done:
		return nil
	case <-t.C:
	}
	_ = d.cmd.Process.Kill()
	<-d.done
	return fmt.Errorf("containerd pid %d ignored SIGTERM for %s", d.Pid, grace)
}

// StartDaemon writes the config for opts, starts containerd with it and
// waits (bounded by ctx) until it answers on its socket. The daemon gets
// SIGTERM when the thread that started it dies, i.e. when this process
// dies, even by kill -9: an agent that restarts starts a fresh daemon,
// which reconnects to the shims that kept the containers running.
func StartDaemon(ctx context.Context, opts DaemonOptions) (*Daemon, error) {
	p := opts.Paths()
	if len(p.Socket)+len(".ttrpc") > maxSocketPath {
		return nil, fmt.Errorf("start containerd: socket path %s is longer than %d bytes; use a shorter data dir", p.Socket, maxSocketPath-len(".ttrpc"))
	}
	bin := opts.Binary
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("containerd"); err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
	}
	for _, dir := range []string{opts.Dir, p.Root, p.State} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("start containerd: %w", err)
		}
	}
	if err := os.WriteFile(p.Config, []byte(DaemonConfig(p)), 0o600); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	logFile, err := os.OpenFile(p.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	defer logFile.Close()

	d := &Daemon{Socket: p.Socket, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking thread exits, so this goroutine
		// keeps its thread for the whole life of the child.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cmd := exec.Command(bin, "--config", p.Config)
		cmd.Stdout, cmd.Stderr = logFile, logFile
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		d.cmd, d.Pid = cmd, cmd.Process.Pid
		started <- nil
		d.err = cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	if err := os.WriteFile(p.PidFile, []byte(strconv.Itoa(d.Pid)+"\n"), 0o600); err != nil {
		_ = d.Stop(5 * time.Second)
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	for {
		if Answers(ctx, p.Socket, time.Second) {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("start containerd: exited before answering (%v); see %s", d.err, p.Log)
		case <-ctx.Done():
			_ = d.Stop(5 * time.Second)
			return nil, fmt.Errorf("start containerd: no answer on %s: %w", p.Socket, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stopPrevious ends a daemon that a previous agent process started from the
// same directory and that still runs (it is shutting down after its parent
// died, or it was started without a parent-death signal).
func stopPrevious(p DaemonPaths, grace time.Duration) error {
	b, err := os.ReadFile(p.PidFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), p.Config) {
		return nil // gone, or the pid now belongs to someone else
	}
	// A pidfd turns readable when the process exits, so the wait needs no
	// polling loop.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // already gone
	}
	defer unix.Close(pidfd)
	_ = unix.PidfdSendSignal(pidfd, unix.SIGTERM, nil, 0)
	if exited(pidfd, grace) {
		return nil
	}
	_ = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	if !exited(pidfd, grace) {
		return fmt.Errorf("containerd pid %d survived SIGKILL for %s", pid, grace)
	}
	return nil
}

// exited waits up to timeout for the process behind pidfd to exit.
func exited(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left < 0 {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == nil && n > 0 {
			return true
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
	}
}

// EnsureDaemon returns the socket of a containerd to use. If one answers on
// socket, that is it and stop does nothing. Otherwise, when containerd is
// installed, it starts one under opts.Dir (stopping a leftover one from a
// previous agent first), supervises it — a daemon that dies is restarted
// with backoff — and returns its socket; stop ends supervision and the
// daemon. ctx bounds only the first start.
func EnsureDaemon(ctx context.Context, socket string, opts DaemonOptions) (addr string, stop func(), err error) {
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if socket == "" {
		socket = DefaultSocket
	}
	if Answers(ctx, socket, 2*time.Second) {
		return socket, func() {}, nil
	}
	bin := opts.Binary
	if bin == "" {
		if bin, err = exec.LookPath("containerd"); err != nil {
			return "", nil, fmt.Errorf("no containerd answers on %s and none is installed: %w", socket, err)
		}
	}
	opts.Binary = bin
	p := opts.Paths()
	if err := stopPrevious(p, 10*time.Second); err != nil {
		return "", nil, fmt.Errorf("stop previous containerd: %w", err)
	}
	d, err := StartDaemon(ctx, opts)
	if err != nil {
		return "", nil, err
	}
	log.Info("started containerd", "socket", p.Socket, "pid", d.Pid)

	after := opts.After
	if after == nil {
		after = time.After
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	cur := d
	wg.Add(1)
	go func() {
		defer wg.Done()
		backoff := 100 * time.Millisecond
		for {
			mu.Lock()
			running := cur
			mu.Unlock()
			select {
			case <-quit:
				return
			case <-running.Done():
			}
			log.Error("containerd exited; restarting", "pid", running.Pid, "error", running.Err(), "backoff", backoff)
			select {
			case <-quit:
				return
			case <-after(backoff):
			}
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			next, err := StartDaemon(sctx, opts)
			cancel()
			if err != nil {
				log.Error("restart containerd", "error", err)
				backoff = min(2*backoff, 30*time.Second)
				// Wait on an exited placeholder so the loop retries.
				next = &Daemon{done: make(chan struct{}), err: err}
				close(next.done)
			} else {
				log.Info("restarted containerd", "pid", next.Pid)
				backoff = 100 * time.Millisecond
			}
			mu.Lock()
			cur = next
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			if cur.cmd != nil {
				if err := cur.Stop(10 * time.Second); err != nil {
					log.Warn("stop containerd", "error", err)
				}
			}
		})
	}
	return p.Socket, stop, nil
}
