package agent

import (
	"context"
	"io"
	"net/netip"
	"syscall"
	"time"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
)

// Containers is the container runtime the agent drives: the methods of
// agent/containerd's Runtime it uses, so that the pod lifecycle can be
// tested against a fake. Implementations must be safe for concurrent use;
// calls that change one container are serialized by the caller's pod
// worker.
type Containers interface {
	// Create makes a container from spec without starting it.
	Create(ctx context.Context, spec containerd.ContainerSpec) error
	// Start starts its task.
	Start(ctx context.Context, id string) error
	// Stop signals the container (sig 0: its image's stop signal), waits
	// up to grace, then kills it.
	Stop(ctx context.Context, id string, grace time.Duration, sig syscall.Signal) error
	// Delete removes the container, its task and its snapshot.
	Delete(ctx context.Context, id string) error
	// Inspect reports one container's state.
	Inspect(ctx context.Context, id string) (containerd.Status, error)
	// List returns every container with its labels and status.
	List(ctx context.Context) ([]containerd.Container, error)
	// ListLabeled returns the containers whose label key is value.
	ListLabeled(ctx context.Context, key, value string) ([]containerd.Container, error)
	// Exec runs a process in a running container and returns its exit code.
	Exec(ctx context.Context, id string, opts containerd.ExecOptions) (int, error)
	// Exits streams the exits of containers' main processes.
	Exits(ctx context.Context) (<-chan containerd.Exit, <-chan error)
	// HasImage reports whether the image is in the store.
	HasImage(ctx context.Context, ref string) (bool, error)
	// Pull fetches the image from its registry.
	Pull(ctx context.Context, ref string) error
	// ImageDigest is the digest of the image in the store.
	ImageDigest(ctx context.Context, ref string) (string, error)
	// ImportArchive loads the images of an OCI or Docker archive.
	ImportArchive(ctx context.Context, archive io.Reader) ([]string, error)
	// ListImages names the images in the store.
	ListImages(ctx context.Context) ([]string, error)
	// RotateLogs rotates the log files larger than maxBytes.
	RotateLogs(ctx context.Context, maxBytes int64, keep int) ([]string, error)
}

// Networks gives pods their own network namespace and IP (agent/network's
// Network). Implementations must be safe for concurrent use.
type Networks interface {
	// Setup attaches the sandbox podID (idempotently) and returns its
	// network namespace and IP.
	Setup(ctx context.Context, podID string, ports []network.PortMapping) (netns string, ip netip.Addr, err error)
	// Teardown detaches it and releases its IP; a missing one is not an
	// error.
	Teardown(ctx context.Context, podID string) error
	// List returns every recorded attachment.
	List() ([]network.Attachment, error)
	// Lookup returns the recorded attachment of podID.
	Lookup(podID string) (network.Attachment, bool, error)
}

var (
	_ Containers = (*containerd.Runtime)(nil)
	_ Networks   = (*network.Network)(nil)
)
