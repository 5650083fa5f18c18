package watchdog

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/api"
)

// labelPod is the label the agent puts on every container with
// "<namespace>/<name>" of its pod.
const labelPod = "stead.io/pod"

// Containerd is the Runtime of a real node: it kills through containerd
// and, at the same time, through runc's own state, so the fence does not
// depend on containerd either. An agent-owned containerd dies with the
// agent (while the shims keep the containers running), and a system one
// may hang; runc alone needs neither.
//
// Concurrency: KillAll and Close may be called from several goroutines.
type Containerd struct {
	// Socket is containerd's address; empty means containerd's default.
	Socket string
	// Namespace is Stead's containerd namespace; empty means
	// containerd.DefaultNamespace.
	Namespace string
	// Runtime, when set, is an open connection to use (the agent's own);
	// otherwise one is dialled on first use and redialled after failures.
	Runtime *containerd.Runtime
	// RuncBinary is runc's path; empty means runc on PATH.
	RuncBinary string
	// Logger; nil discards.
	Logger hclog.Logger
	// Clock stamps the kills; nil means SystemClock.
	Clock Clock

	mu     sync.Mutex
	dialed *containerd.Runtime
}

// KillAll implements Runtime: SIGKILL to every task through containerd and
// through runc, concurrently, so that a hung containerd cannot delay the
// fence; then, while containerd answers, the pod and generation of each
// task killed from its labels. It fails only when both ways fail.
func (c *Containerd) KillAll(ctx context.Context) ([]KilledTask, error) {
	ns := c.Namespace
	if ns == "" {
		ns = containerd.DefaultNamespace
	}
	clock := c.Clock
	if clock == nil {
		clock = SystemClock{}
	}
	type result struct {
		tasks []KilledTask
		err   error
	}
	viaRunc := make(chan result, 1)
	go func() {
		killed, err := containerd.KillAllRunc(ctx, c.RuncBinary, ns, syscall.SIGKILL)
		now := clock.Now()
		var r result
		for _, k := range killed {
			r.tasks = append(r.tasks, KilledTask{ID: k.ID, Pid: k.Pid, KilledMono: now})
		}
		if err != nil {
			r.err = fmt.Errorf("through runc: %w", err)
		}
		viaRunc <- r
	}()

	var tasks []KilledTask
	var errs []error
	rt, err := c.runtime(ctx)
	if err == nil {
		killed, kerr := rt.KillAll(ctx, syscall.SIGKILL)
		now := clock.Now()
		for _, k := range killed {
			tasks = append(tasks, KilledTask{
				ID:         k.ID,
				Pid:        k.Pid,
				Pod:        k.Labels[labelPod],
				Generation: k.Labels[api.AnnotationGeneration],
				KilledMono: now,
			})
		}
		err = kerr
	}
	apiFailed := err != nil && len(tasks) == 0
	if err != nil {
		errs = append(errs, fmt.Errorf("through containerd: %w", err))
	}
	if apiFailed {
		c.forget(rt)
	}

	r := <-viaRunc
	if r.err != nil {
		errs = append(errs, r.err)
	}
	// A task containerd reported is not listed again from runc.
	seen := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		seen[t.ID] = true
	}
	for _, t := range r.tasks {
		if !seen[t.ID] {
			tasks = append(tasks, t)
		}
	}
	if !apiFailed {
		c.label(ctx, rt, tasks)
	}
	if apiFailed && r.err == nil {
		// runc reached every container: the fence holds. Say why
		// containerd did not help, without failing.
		c.logger().Debug("containerd unavailable; killed through runc", "error", errs[0])
		return tasks, nil
	}
	return tasks, errors.Join(errs...)
}

// label fills in the pod and generation of tasks that runc killed first,
// from containerd's labels; they only inform the fence record, so failures
// are ignored.
func (c *Containerd) label(ctx context.Context, rt *containerd.Runtime, tasks []KilledTask) {
	missing := false
	for _, t := range tasks {
		missing = missing || t.Pod == ""
	}
	if !missing {
		return
	}
	cs, err := rt.List(ctx)
	if err != nil {
		return
	}
	byID := make(map[string]containerd.Container, len(cs))
	for _, ct := range cs {
		byID[ct.ID] = ct
	}
	for i, t := range tasks {
		if ct, ok := byID[t.ID]; ok && t.Pod == "" {
			tasks[i].Pod = ct.Labels[labelPod]
			tasks[i].Generation = ct.Labels[api.AnnotationGeneration]
		}
	}
}

// runtime returns the connection to use, dialling one if needed.
func (c *Containerd) runtime(ctx context.Context) (*containerd.Runtime, error) {
	if c.Runtime != nil {
		return c.Runtime, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialed != nil {
		return c.dialed, nil
	}
	timeout := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	rt, err := containerd.Connect(ctx, containerd.Options{
		Socket:      c.Socket,
		Namespace:   c.Namespace,
		Logger:      c.logger(),
		DialTimeout: timeout,
	})
	if err != nil {
		return nil, err
	}
	c.dialed = rt
	return rt, nil
}

// forget drops a dialled connection after a failure, so the next call
// dials again.
func (c *Containerd) forget(rt *containerd.Runtime) {
	if rt == nil || rt == c.Runtime {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialed == rt {
		c.dialed = nil
		rt.Close()
	}
}

// Close closes a connection KillAll dialled; a Runtime given by the caller
// stays open.
func (c *Containerd) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dialed == nil {
		return nil
	}
	err := c.dialed.Close()
	c.dialed = nil
	return err
}

func (c *Containerd) logger() hclog.Logger {
	if c.Logger == nil {
		return hclog.NewNullLogger()
	}
	return c.Logger
}
