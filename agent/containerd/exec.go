package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
)

// ExecOptions describe a process run inside a running container.
type ExecOptions struct {
	// Cmd is the program and its arguments (required).
	Cmd []string
	// Env entries are added to the container's environment.
	Env []string
	// Stdin, Stdout and Stderr are connected when not nil. Stdin's EOF
	// closes the process's standard input.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// TTY gives the process a terminal (output then arrives on Stdout).
	TTY bool
	// Resize, with TTY, carries the terminal's sizes (columns, rows) to
	// apply while the process runs.
	Resize <-chan [2]uint16
}

// Exec runs opts.Cmd in the running container id, with the container's
// user, working directory and environment, and returns its exit code once
// it exited and its output was copied. Ending ctx kills the process.
func (r *Runtime) Exec(ctx context.Context, id string, opts ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("exec in container %s: empty command", id)
	}
	nctx := r.ctx(context.WithoutCancel(ctx))
	c, err := r.client.LoadContainer(nctx, id)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, notFound(err, ErrNotFound))
	}
	t, err := c.Task(nctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return -1, fmt.Errorf("exec in container %s: it does not run", id)
		}
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	spec, err := c.Spec(nctx)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = opts.Cmd
	pspec.Terminal = opts.TTY
	if len(opts.Env) > 0 {
		s := &oci.Spec{Process: &pspec}
		pspec.Env = append([]string{}, pspec.Env...)
		if err := oci.WithEnv(opts.Env)(nctx, nil, nil, s); err != nil {
			return -1, fmt.Errorf("exec in container %s: %w", id, err)
		}
	}

	var b [6]byte
	_, _ = rand.Read(b[:])
	execID := "exec-" + hex.EncodeToString(b[:])

	var stdin io.Reader
	var closer *closingReader
	if opts.Stdin != nil {
		closer = &closingReader{r: opts.Stdin, ready: make(chan struct{}), onEOF: func() {}}
		stdin = closer
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	copts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if opts.TTY {
		copts = append(copts, cio.WithTerminal)
	}
	p, err := t.Exec(nctx, execID, &pspec, cio.NewCreator(copts...))
	if closer != nil {
		if err == nil {
			closer.onEOF = func() { _ = p.CloseIO(nctx, containerd.WithStdinCloser) }
		}
		close(closer.ready)
	}
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	defer func() {
		if _, err := p.Delete(nctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("remove exec process", "container", id, "exec", execID, "error", err)
		}
	}()
	exited, err := p.Wait(nctx)
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if err := p.Start(nctx); err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	if opts.TTY && opts.Resize != nil {
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-done:
					return
				case sz, ok := <-opts.Resize:
					if !ok {
						return
					}
					_ = p.Resize(nctx, uint32(sz[0]), uint32(sz[1]))
				}
			}
		}()
	}
	var st containerd.ExitStatus
	select {
	case st = <-exited:
	case <-ctx.Done():
		_ = p.Kill(nctx, 9)
		<-exited
		return -1, fmt.Errorf("exec in container %s: %w", id, ctx.Err())
	}
	code, _, err := st.Result()
	if err != nil {
		return -1, fmt.Errorf("exec in container %s: %w", id, err)
	}
	// The shim closed the process's output; let the copies finish.
	p.IO().Wait()
	return int(code), nil
}

// closingReader calls onEOF once when r is exhausted, to close the
// process's stdin. onEOF is only read after ready is closed, which happens
// once the process exists.
type closingReader struct {
	r     io.Reader
	ready chan struct{}
	onEOF func()
	once  sync.Once
}

func (c *closingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if errors.Is(err, io.EOF) {
		c.once.Do(func() {
			<-c.ready
			c.onEOF()
		})
	}
	return n, err
}
