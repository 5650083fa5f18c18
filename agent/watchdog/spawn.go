package watchdog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrRunning: another watchdog holds the lock of the data directory's pid
// file.
var ErrRunning = errors.New("a watchdog already runs")

// Lock makes this process the data directory's one watchdog: it takes an
// exclusive lock on pidFile and writes its pid there. The lock is an open
// file description lock (fcntl F_OFD_SETLK: like flock, held by the open
// file and released when the process dies, however it dies), so that
// Running can test it without taking it. The pid file is never removed: a
// stale pid in an unlocked file means no watchdog runs. When another
// process holds the lock, Lock returns an error matching ErrRunning.
// unlock releases the lock.
func Lock(pidFile string) (unlock func(), err error) {
	if err := ensureDir(pidFile); err != nil {
		return nil, fmt.Errorf("lock %s: %w", pidFile, err)
	}
	f, err := os.OpenFile(pidFile, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", pidFile, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			pid, _ := readPid(pidFile)
			return nil, fmt.Errorf("lock %s: %w (pid %d)", pidFile, ErrRunning, pid)
		}
		return nil, fmt.Errorf("lock %s: %w", pidFile, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", pidFile, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", pidFile, err)
	}
	return func() { f.Close() }, nil
}

// Running reports whether a watchdog holds the lock of pidFile, and its pid
// (0 while a new holder has not written it yet: the file may still name a
// previous watchdog that is gone).
func Running(pidFile string) (pid int, running bool, err error) {
	f, err := os.Open(pidFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("check watchdog lock %s: %w", pidFile, err)
	}
	defer f.Close()
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return 0, false, fmt.Errorf("check watchdog lock %s: %w", pidFile, err)
	}
	if lk.Type == unix.F_UNLCK {
		return 0, false, nil
	}
	pid, _ = readPid(pidFile)
	if pid > 0 && errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
		pid = 0
	}
	return pid, true, nil
}

func readPid(pidFile string) (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// Spawn starts binary with args as a process that shares nothing of its
// starter's fate: a session and process group of its own (so a kill of the
// starter's process group, or the starter's death, leaves it running), no
// parent-death signal, stdin from /dev/null, stdout and stderr appended to
// logPath, working directory "/". The starter reaps it if it exits first.
func Spawn(binary string, args []string, logPath string) (*os.Process, error) {
	p, _, err := spawn(binary, args, logPath)
	return p, err
}

func spawn(binary string, args []string, logPath string) (*os.Process, <-chan error, error) {
	if err := ensureDir(logPath); err != nil {
		return nil, nil, fmt.Errorf("spawn %s: %w", binary, err)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("spawn %s: %w", binary, err)
	}
	defer logFile.Close()
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("spawn %s: %w", binary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd.Process, done, nil
}

// Command says how to run `stead watchdog` for an agent.
type Command struct {
	// Binary is the stead executable; empty means this process's own.
	Binary string
	// DataDir is the agent's data directory (see PathsIn).
	DataDir string
	// ContainerdSocket is the containerd the agent uses.
	ContainerdSocket string
	// ContainerdNamespace holds Stead's containers; empty means "stead".
	ContainerdNamespace string
	// Interval between reads of the lease; zero means DefaultInterval.
	Interval time.Duration
}

// Args are the command-line arguments of `stead watchdog` for c (without
// the binary).
func (c Command) Args() []string {
	args := []string{"watchdog", "--data-dir", c.DataDir}
	if c.ContainerdSocket != "" {
		args = append(args, "--containerd-socket", c.ContainerdSocket)
	}
	if c.ContainerdNamespace != "" {
		args = append(args, "--containerd-namespace", c.ContainerdNamespace)
	}
	if c.Interval > 0 {
		args = append(args, "--interval", c.Interval.String())
	}
	return args
}

// EnsureRunning makes sure a watchdog runs for c.DataDir and returns its
// pid: the one running already, or one it spawns (output to the data
// directory's watchdog.log). It waits, bounded by ctx, until the watchdog
// holds its lock. Two agents racing both end up with the same watchdog: the
// lock lets one of the spawned processes run and the other exit. It is
// cheap when one runs (one fcntl), so the agent may call it on every
// heartbeat and so replace a watchdog that died.
func EnsureRunning(ctx context.Context, c Command) (int, error) {
	paths := PathsIn(c.DataDir)
	if pid, ok, err := Running(paths.PidFile); err != nil {
		return 0, err
	} else if ok && pid > 0 {
		return pid, nil
	}
	bin := c.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return 0, fmt.Errorf("start watchdog: %w", err)
		}
	}
	p, done, err := spawn(bin, c.Args(), paths.Log)
	if err != nil {
		return 0, fmt.Errorf("start watchdog: %w", err)
	}
	exited := false
	for {
		pid, ok, err := Running(paths.PidFile)
		if err != nil {
			return 0, fmt.Errorf("start watchdog: %w", err)
		}
		if ok && pid > 0 {
			return pid, nil
		}
		if exited {
			return 0, fmt.Errorf("start watchdog: pid %d exited and no watchdog runs; see %s", p.Pid, paths.Log)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("start watchdog: pid %d did not take its lock: %w", p.Pid, ctx.Err())
		case <-done:
			// Lost a race to another watchdog, or failed: look once more.
			exited = true
		case <-time.After(10 * time.Millisecond):
		}
	}
}
