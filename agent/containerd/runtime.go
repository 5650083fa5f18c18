// Package containerd is the node agent's narrow runtime over containerd: it
// imports and unpacks images, creates, starts, stops, inspects, lists, execs
// into and deletes containers, reports their exits, rotates their log files,
// and can start and supervise a private containerd daemon.
//
// It is the only package of Stead that imports containerd. Everything the
// agent needs to rebuild its view after a restart (pod identity, generation,
// log path, start time) lives in containerd labels, so a restarted agent
// lists what runs instead of guessing. Containers are run by containerd's
// io.containerd.runc.v2 shim with runc; the shim owns each task, so tasks and
// their log output outlive the agent process.
//
// All containers live in one containerd namespace (Options.Namespace,
// "stead" by default); nothing outside it is ever listed or touched.
//
// The client is containerd v1.7; the daemon may be 1.6 (Debian 12 ships
// 1.6.20). Only services both have are used: containers, tasks, images,
// content, snapshots, leases and events — not the transfer or sandbox
// services of 1.7. Seccomp and AppArmor profiles are not applied (the
// client's default spec has none); Privileged grants every capability and
// device.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/hashicorp/go-hclog"
)

// DefaultNamespace is the containerd namespace holding Stead's containers.
const DefaultNamespace = "stead"

// DefaultSnapshotter unpacks images and holds container root filesystems.
const DefaultSnapshotter = "overlayfs"

// Labels this package sets on containers for its own use. Callers' labels
// must not use the prefix.
const (
	labelPrefix = "runtime.stead.io/"
	// LabelLogPath holds the container's log file.
	LabelLogPath = labelPrefix + "log-path"
	// LabelStartedAt holds when the container's current task was started
	// (RFC 3339 with nanoseconds, UTC).
	LabelStartedAt = labelPrefix + "started-at"
)

// Errors returned by the Runtime, matched with errors.Is.
var (
	// ErrNotFound: no container with that ID in the namespace.
	ErrNotFound = errors.New("container not found")
	// ErrAlreadyExists: Create with an ID that is taken.
	ErrAlreadyExists = errors.New("container already exists")
	// ErrImageNotFound: the image is not in the store (import or pull it).
	ErrImageNotFound = errors.New("image not found")
)

// PullError reports a failed image pull; the agent reports it as
// ErrImagePull. It unwraps to the cause.
type PullError struct {
	Ref string
	Err error
}

func (e *PullError) Error() string { return fmt.Sprintf("pull image %s: %v", e.Ref, e.Err) }
func (e *PullError) Unwrap() error { return e.Err }

// Options configure Connect.
type Options struct {
	// Socket is containerd's gRPC address; empty means DefaultSocket.
	Socket string
	// Namespace holds every container and image; empty means
	// DefaultNamespace.
	Namespace string
	// Snapshotter; empty means DefaultSnapshotter.
	Snapshotter string
	// Logger; nil discards.
	Logger hclog.Logger
	// Now stamps start times; nil means time.Now.
	Now func() time.Time
	// DialTimeout bounds the connection attempt; zero means 10s.
	DialTimeout time.Duration
}

// Runtime is a connection to containerd scoped to one namespace.
//
// Concurrency: a Runtime is safe for use by many goroutines. Calls that
// change a container (Create, Start, Stop, Delete) are serialized per
// container ID, so the agent may work on different pods in parallel while a
// stop and a delete of one container never interleave. Inspect, List, Wait,
// Exits and Exec take no lock. Close ends the connection; tasks keep running.
type Runtime struct {
	client      *containerd.Client
	ns          string
	snapshotter string
	log         hclog.Logger
	now         func() time.Time

	mu    sync.Mutex
	locks map[string]*idLock
}

type idLock struct {
	mu   sync.Mutex
	refs int
}

// Connect dials containerd and checks that it serves.
func Connect(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Socket == "" {
		opts.Socket = DefaultSocket
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Snapshotter == "" {
		opts.Snapshotter = DefaultSnapshotter
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 10 * time.Second
	}
	c, err := newClient(ctx, opts.Socket, opts.Namespace, opts.DialTimeout)
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", opts.Socket, err)
	}
	r := &Runtime{
		client:      c,
		ns:          opts.Namespace,
		snapshotter: opts.Snapshotter,
		log:         opts.Logger,
		now:         opts.Now,
		locks:       make(map[string]*idLock),
	}
	if _, err := c.Version(r.ctx(ctx)); err != nil {
		c.Close()
		return nil, fmt.Errorf("connect to containerd at %s: %w", opts.Socket, err)
	}
	return r, nil
}

func newClient(ctx context.Context, socket, ns string, timeout time.Duration) (*containerd.Client, error) {
	opts := []containerd.ClientOpt{containerd.WithTimeout(timeout)}
	if ns != "" {
		opts = append(opts, containerd.WithDefaultNamespace(ns))
	}
	type result struct {
		c   *containerd.Client
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := containerd.New(socket, opts...)
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		return r.c, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Close closes the connection to containerd. Running tasks are not touched.
func (r *Runtime) Close() error { return r.client.Close() }

// Namespace is the containerd namespace the runtime works in.
func (r *Runtime) Namespace() string { return r.ns }

// Version is the daemon's version string.
func (r *Runtime) Version(ctx context.Context) (string, error) {
	v, err := r.client.Version(r.ctx(ctx))
	if err != nil {
		return "", fmt.Errorf("containerd version: %w", err)
	}
	return v.Version, nil
}

func (r *Runtime) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, r.ns)
}

// lock serializes changes to one container and returns the unlock.
func (r *Runtime) lock(id string) func() {
	r.mu.Lock()
	l := r.locks[id]
	if l == nil {
		l = &idLock{}
		r.locks[id] = l
	}
	l.refs++
	r.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		r.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(r.locks, id)
		}
		r.mu.Unlock()
	}
}

// notFound maps containerd's not-found to sentinel, keeping the cause.
func notFound(err error, sentinel error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("%w: %v", sentinel, err)
	}
	return err
}
