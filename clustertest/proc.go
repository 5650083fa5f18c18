package clustertest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// proc is one long-running process of the cluster (a server or an agent),
// run in its host's network namespace. It can be killed, paused and
// started again with the same arguments.
//
// Concurrency: its methods may be called from several goroutines.
type proc struct {
	name    string
	host    *Host
	bin     string
	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process exited
	err    error         // its exit status, once exited
	starts int
}

// start runs the process; it must not be running.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.exited:
		default:
			return fmt.Errorf("%s: already running as pid %d", p.name, p.cmd.Process.Pid)
		}
	}
	logFile, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	defer logFile.Close()
	p.starts++
	fmt.Fprintf(logFile, "==== clustertest: start %d of %s at %s\n", p.starts, p.name, time.Now().Format(time.RFC3339Nano))
	// nsenter enters the network namespace only (not a new mount
	// namespace, as `ip netns exec` would make): the agent's mounts, such
	// as its pods' pinned network namespaces, stay where the next agent
	// process finds them.
	cmd := exec.Command("nsenter", append([]string{"--net=" + p.host.NSPath(), "--", p.bin}, p.args...)...)
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Dir = "/"
	// Its own process group, so a terminal's signals reach the test
	// only; killed if the test process dies before its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.err = cmd, exited, nil
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(exited)
	}()
	return nil
}

// pid is the current process's id; 0 when none runs.
func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || !p.runningLocked() {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) runningLocked() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// running reports whether the process runs (paused counts as running).
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && p.runningLocked()
}

// signal sends sig to the running process.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("%s: not started", p.name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("%s: %v: %w", p.name, sig, err)
	}
	return nil
}

// kill sends SIGKILL and waits (bounded) for the exit. A process that is
// not running is no error.
func (p *proc) kill() error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("%s: kill: %w", p.name, err)
	}
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s: pid %d still runs 10s after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// exitErr is how the last process exited; nil while it runs.
func (p *proc) exitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.runningLocked() {
		return nil
	}
	if p.err == nil {
		return errors.New("exited with status 0")
	}
	return p.err
}

// tail returns the last n bytes of the process's log.
func (p *proc) tail(n int64) string { return tailFile(p.logPath, n) }
