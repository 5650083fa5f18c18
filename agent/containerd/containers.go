package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mount is a bind mount into a container: the pod's /etc/hosts,
// /etc/resolv.conf and /etc/hostname, emptyDir and hostPath volumes and
// Stead's volumes are all bind mounts of host paths.
type Mount struct {
	// Source is the host path.
	Source string
	// Destination is the absolute path inside the container.
	Destination string
	// ReadOnly mounts it read-only.
	ReadOnly bool
}

// ContainerSpec is what the agent asks for; the runtime turns it into an
// OCI spec on top of the image's config.
type ContainerSpec struct {
	// ID names the container in containerd (unique in the namespace).
	ID string
	// Image is the image reference ("web:1" or a full name).
	Image string
	// Command replaces the image's ENTRYPOINT and Args its CMD, as in
	// Kubernetes: with Command set, the image's ENTRYPOINT and CMD are both
	// ignored; with only Args set, ENTRYPOINT runs with Args.
	Command, Args []string
	// Env entries ("K=V") are added to (and override) the image's.
	Env []string
	// WorkingDir overrides the image's; empty keeps it.
	WorkingDir string
	// Hostname of the container's UTS namespace. Empty with host network
	// shares the node's UTS namespace (and so its hostname).
	Hostname string
	// NetNSPath is the network namespace to join; empty means the node's
	// network (hostNetwork).
	NetNSPath string
	// Mounts are bind-mounted in order.
	Mounts []Mount
	// CPUQuota and CPUPeriod (microseconds) set the CFS quota (the CPU
	// limit); zero quota means no limit. Zero period means 100ms.
	CPUQuota  int64
	CPUPeriod uint64
	// CPUShares is the relative weight (from the CPU request); zero keeps
	// the default.
	CPUShares uint64
	// MemoryLimit in bytes; zero means no limit.
	MemoryLimit int64
	// RunAsUser and RunAsGroup override the image's user; nil keeps it.
	RunAsUser, RunAsGroup *int64
	// ReadOnlyRootfs mounts the root filesystem read-only.
	ReadOnlyRootfs bool
	// Privileged gives all capabilities and devices; off unless asked.
	Privileged bool
	// Labels are stored on the container and come back from List: pod
	// identity, generation, restart count. Keys must not start with
	// "runtime.stead.io/".
	Labels map[string]string
	// LogPath is the absolute path of the file receiving stdout and stderr
	// (appended to); empty discards output.
	LogPath string
}

// State is a container's lifecycle state.
type State string

// States reported by Inspect.
const (
	// StateCreated: the container exists and has never run (or its task was
	// removed).
	StateCreated State = "created"
	// StateRunning: its task runs.
	StateRunning State = "running"
	// StateExited: its task ended; ExitCode and FinishedAt say how and when.
	StateExited State = "exited"
	// StateUnknown: containerd cannot tell (the shim is gone or paused).
	StateUnknown State = "unknown"
)

// Status is what Inspect reports.
type Status struct {
	State State
	// Pid of the task's init process on the host (0 unless running).
	Pid uint32
	// ExitCode of an exited task; 128+n when killed by signal n.
	ExitCode uint32
	// StartedAt is when the current task was started (zero if never).
	StartedAt time.Time
	// FinishedAt is when it exited (zero unless exited).
	FinishedAt time.Time
}

// Container is one entry of List.
type Container struct {
	ID    string
	Image string
	// Labels are the caller's labels given to Create.
	Labels  map[string]string
	LogPath string
	Status  Status
}

// Exit is one exit of a container's main process, from Exits.
type Exit struct {
	ID       string
	Pid      uint32
	ExitCode uint32
	ExitedAt time.Time
}

// Create makes a container (and its writable snapshot) from spec without
// starting it. A snapshot left behind by an interrupted Create is reused.
func (r *Runtime) Create(ctx context.Context, spec ContainerSpec) error {
	if spec.ID == "" {
		return errors.New("create container: empty ID")
	}
	for k := range spec.Labels {
		if strings.HasPrefix(k, labelPrefix) {
			return fmt.Errorf("create container %s: label %q uses the reserved prefix %s", spec.ID, k, labelPrefix)
		}
	}
	if spec.LogPath != "" && !filepath.IsAbs(spec.LogPath) {
		return fmt.Errorf("create container %s: log path %q is not absolute", spec.ID, spec.LogPath)
	}
	defer r.lock(spec.ID)()
	ctx = r.ctx(ctx)

	ctx, done, err := r.client.WithLease(ctx)
	if err != nil {
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	defer done(ctx)

	img, err := r.image(ctx, spec.Image)
	if err != nil {
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	if spec.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(spec.LogPath), 0o755); err != nil {
			return fmt.Errorf("create container %s: %w", spec.ID, err)
		}
	}
	labels := make(map[string]string, len(spec.Labels)+1)
	for k, v := range spec.Labels {
		labels[k] = v
	}
	if spec.LogPath != "" {
		labels[LabelLogPath] = spec.LogPath
	}

	// An earlier Create may have died after making the snapshot.
	sn := r.client.SnapshotService(r.snapshotter)
	if _, err := r.client.LoadContainer(ctx, spec.ID); err == nil {
		return fmt.Errorf("create container %s: %w", spec.ID, ErrAlreadyExists)
	}
	if _, err := sn.Stat(ctx, spec.ID); err == nil {
		if err := sn.Remove(ctx, spec.ID); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("create container %s: remove stale snapshot: %w", spec.ID, err)
		}
	}

	_, err = r.client.NewContainer(ctx, spec.ID,
		containerd.WithImage(img),
		containerd.WithImageStopSignal(img, "SIGTERM"),
		containerd.WithSnapshotter(r.snapshotter),
		containerd.WithNewSnapshot(spec.ID, img),
		containerd.WithRuntime("io.containerd.runc.v2", nil),
		containerd.WithNewSpec(specOpts(img, spec)...),
		containerd.WithAdditionalContainerLabels(labels),
	)
	if errdefs.IsAlreadyExists(err) {
		return fmt.Errorf("create container %s: %w", spec.ID, ErrAlreadyExists)
	}
	if err != nil {
		_ = sn.Remove(ctx, spec.ID)
		return fmt.Errorf("create container %s: %w", spec.ID, err)
	}
	r.log.Debug("created container", "container", spec.ID, "image", img.Name())
	return nil
}

func specOpts(img containerd.Image, spec ContainerSpec) []oci.SpecOpts {
	opts := []oci.SpecOpts{
		// Image ENTRYPOINT with spec.Args, or with the image CMD when Args
		// is empty; env, working directory and user from the image.
		oci.WithImageConfigArgs(img, spec.Args),
	}
	if len(spec.Command) > 0 {
		opts = append(opts, oci.WithProcessArgs(append(append([]string{}, spec.Command...), spec.Args...)...))
	}
	opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if len(s.Process.Args) == 0 {
			return errors.New("no command: the image has no ENTRYPOINT or CMD and the container sets no command")
		}
		return nil
	})
	if len(spec.Env) > 0 {
		opts = append(opts, oci.WithEnv(spec.Env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if spec.NetNSPath != "" {
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetNSPath}))
	} else {
		opts = append(opts, oci.WithHostNamespace(specs.NetworkNamespace))
		if spec.Hostname == "" {
			opts = append(opts, oci.WithHostNamespace(specs.UTSNamespace))
		}
	}
	if spec.Hostname != "" {
		opts = append(opts, oci.WithHostname(spec.Hostname))
	}
	if len(spec.Mounts) > 0 {
		mounts := make([]specs.Mount, 0, len(spec.Mounts))
		for _, m := range spec.Mounts {
			mode := "rw"
			if m.ReadOnly {
				mode = "ro"
			}
			mounts = append(mounts, specs.Mount{
				Destination: m.Destination,
				Type:        "bind",
				Source:      m.Source,
				Options:     []string{"rbind", "rprivate", mode},
			})
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	if spec.CPUQuota > 0 {
		period := spec.CPUPeriod
		if period == 0 {
			period = 100000
		}
		opts = append(opts, oci.WithCPUCFS(spec.CPUQuota, period))
	}
	if spec.CPUShares > 0 {
		opts = append(opts, oci.WithCPUShares(spec.CPUShares))
	}
	if spec.MemoryLimit > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(spec.MemoryLimit)))
	}
	switch {
	case spec.RunAsUser != nil && spec.RunAsGroup != nil:
		opts = append(opts, oci.WithUIDGID(uint32(*spec.RunAsUser), uint32(*spec.RunAsGroup)))
	case spec.RunAsUser != nil:
		opts = append(opts, oci.WithUserID(uint32(*spec.RunAsUser)))
	case spec.RunAsGroup != nil:
		gid := uint32(*spec.RunAsGroup)
		opts = append(opts, func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
			s.Process.User.GID = gid
			return nil
		})
	}
	if spec.ReadOnlyRootfs {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if spec.Privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithAllDevicesAllowed, oci.WithHostDevices)
	}
	return opts
}

// Start starts the container's task, its output appended to the log file.
// Starting a running container does nothing; starting an exited one
// replaces its old task (a restart in place).
func (r *Runtime) Start(ctx context.Context, id string) error {
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, notFound(err, ErrNotFound))
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if t, err := c.Task(ctx, nil); err == nil {
		st, err := t.Status(ctx)
		if err != nil {
			return fmt.Errorf("start container %s: %w", id, err)
		}
		if st.Status == containerd.Running {
			return nil
		}
		if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("start container %s: remove old task: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("start container %s: %w", id, err)
	}

	ioc := cio.NullIO
	if p := info.Labels[LabelLogPath]; p != "" {
		ioc = cio.LogFile(p)
	}
	t, err := c.NewTask(ctx, ioc)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if err := t.Start(ctx); err != nil {
		_, _ = t.Delete(ctx, containerd.WithProcessKill)
		return fmt.Errorf("start container %s: %w", id, err)
	}
	if _, err := c.SetLabels(ctx, map[string]string{LabelStartedAt: r.now().UTC().Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("start container %s: record start time: %w", id, err)
	}
	r.log.Debug("started container", "container", id, "pid", t.Pid())
	return nil
}

// Stop sends sig to the container's main process (0 means the image's
// StopSignal, else SIGTERM), waits up to grace for it to exit, then kills
// every process of the container with SIGKILL and waits for the exit. The
// exited task stays, so Inspect reports the exit code until Start or Delete.
// Stopping a container that does not run does nothing.
func (r *Runtime) Stop(ctx context.Context, id string, grace time.Duration, sig syscall.Signal) error {
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, notFound(err, ErrNotFound))
	}
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	st, err := t.Status(ctx)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if st.Status != containerd.Running && st.Status != containerd.Paused && st.Status != containerd.Pausing {
		return nil
	}
	if sig == 0 {
		if sig, err = containerd.GetStopSignal(ctx, c, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
	}
	// Wait before signalling, so the exit cannot be missed.
	exited, err := t.Wait(ctx)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	if err := t.Kill(ctx, sig); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: signal %v: %w", id, sig, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-exited:
		return nil
	case <-timer.C:
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: %w", id, ctx.Err())
	}
	r.log.Debug("grace period over; killing", "container", id, "grace", grace)
	if err := t.Kill(ctx, syscall.SIGKILL, containerd.WithKillAll); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("stop container %s: SIGKILL: %w", id, err)
	}
	select {
	case <-exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: waiting for exit after SIGKILL: %w", id, ctx.Err())
	}
}

// Inspect reports the container's state.
func (r *Runtime) Inspect(ctx context.Context, id string) (Status, error) {
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if err != nil {
		return Status{}, fmt.Errorf("inspect container %s: %w", id, notFound(err, ErrNotFound))
	}
	info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
	if err != nil {
		return Status{}, fmt.Errorf("inspect container %s: %w", id, notFound(err, ErrNotFound))
	}
	st, err := r.status(ctx, c, info)
	if err != nil {
		return Status{}, fmt.Errorf("inspect container %s: %w", id, err)
	}
	return st, nil
}

func (r *Runtime) status(ctx context.Context, c containerd.Container, info containers.Container) (Status, error) {
	var st Status
	if v := info.Labels[LabelStartedAt]; v != "" {
		st.StartedAt, _ = time.Parse(time.RFC3339Nano, v)
	}
	t, err := c.Task(ctx, nil)
	if errdefs.IsNotFound(err) {
		st.State = StateCreated
		st.StartedAt = time.Time{}
		return st, nil
	}
	if err != nil {
		return Status{}, err
	}
	ts, err := t.Status(ctx)
	if errdefs.IsNotFound(err) {
		st.State = StateCreated
		st.StartedAt = time.Time{}
		return st, nil
	}
	if err != nil {
		st.State = StateUnknown
		return st, nil
	}
	switch ts.Status {
	case containerd.Running:
		st.State = StateRunning
		st.Pid = t.Pid()
	case containerd.Stopped:
		st.State = StateExited
		st.ExitCode = ts.ExitStatus
		st.FinishedAt = ts.ExitTime
	case containerd.Created:
		// A task created but not started: Start was interrupted.
		st.State = StateCreated
		st.StartedAt = time.Time{}
	default:
		st.State = StateUnknown
		st.Pid = t.Pid()
	}
	return st, nil
}

// Wait blocks until the container's running task exits (or ctx ends) and
// returns its status. It returns at once for a container that does not run.
func (r *Runtime) Wait(ctx context.Context, id string) (Status, error) {
	nctx := r.ctx(ctx)
	c, err := r.client.LoadContainer(nctx, id)
	if err != nil {
		return Status{}, fmt.Errorf("wait for container %s: %w", id, notFound(err, ErrNotFound))
	}
	t, err := c.Task(nctx, nil)
	if err == nil {
		ch, err := t.Wait(nctx)
		if err != nil && !errdefs.IsNotFound(err) {
			return Status{}, fmt.Errorf("wait for container %s: %w", id, err)
		}
		if err == nil {
			select {
			case <-ch:
			case <-ctx.Done():
				return Status{}, fmt.Errorf("wait for container %s: %w", id, ctx.Err())
			}
		}
	} else if !errdefs.IsNotFound(err) {
		return Status{}, fmt.Errorf("wait for container %s: %w", id, err)
	}
	return r.Inspect(ctx, id)
}

// Exits streams the exits of containers' main processes in the namespace
// until ctx ends or the subscription breaks; then the channel closes and, on
// a break, one error is sent on errs. Events may be lost while nobody
// subscribes (e.g. while the agent restarts): callers re-list with List or
// Inspect after (re)subscribing, rather than relying on the stream alone.
func (r *Runtime) Exits(ctx context.Context) (<-chan Exit, <-chan error) {
	out := make(chan Exit)
	errs := make(chan error, 1)
	envs, serrs := r.client.Subscribe(r.ctx(ctx), `topic=="/tasks/exit"`, fmt.Sprintf("namespace==%q", r.ns))
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-serrs:
				if err != nil && ctx.Err() == nil {
					errs <- fmt.Errorf("containerd exit events: %w", err)
				}
				return
			case env := <-envs:
				if env == nil || env.Event == nil {
					continue
				}
				v, err := typeurl.UnmarshalAny(env.Event)
				if err != nil {
					r.log.Warn("undecodable containerd event", "topic", env.Topic, "error", err)
					continue
				}
				e, ok := v.(*apievents.TaskExit)
				if !ok || e.ID != e.ContainerID { // exec processes exit too
					continue
				}
				ex := Exit{ID: e.ContainerID, Pid: e.Pid, ExitCode: e.ExitStatus}
				if e.ExitedAt != nil {
					ex.ExitedAt = e.ExitedAt.AsTime()
				}
				select {
				case out <- ex:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, errs
}

// Delete removes the container's task (killing what still runs), the
// container and its snapshot. Deleting a container that does not exist
// succeeds; a snapshot left by an interrupted Create is removed too. The log
// file is the caller's to remove.
func (r *Runtime) Delete(ctx context.Context, id string) error {
	defer r.lock(id)()
	ctx = r.ctx(ctx)
	c, err := r.client.LoadContainer(ctx, id)
	if errdefs.IsNotFound(err) {
		if err := r.client.SnapshotService(r.snapshotter).Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container %s: remove snapshot: %w", id, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	if t, err := c.Task(ctx, nil); err == nil {
		if _, err := t.Delete(ctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("delete container %s: task: %w", id, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	if err := c.Delete(ctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("delete container %s: %w", id, err)
	}
	r.log.Debug("deleted container", "container", id)
	return nil
}

// List returns every container in the namespace with its labels and
// status, sorted by ID: what a restarted agent adopts.
func (r *Runtime) List(ctx context.Context) ([]Container, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if errdefs.IsNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %s: %w", c.ID(), err)
		}
		st, err := r.status(ctx, c, info)
		if err != nil {
			return nil, fmt.Errorf("list containers: %s: %w", c.ID(), err)
		}
		out = append(out, Container{
			ID:      c.ID(),
			Image:   info.Image,
			Labels:  userLabels(info.Labels),
			LogPath: info.Labels[LabelLogPath],
			Status:  st,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// userLabels drops the labels this package and containerd set.
func userLabels(all map[string]string) map[string]string {
	out := make(map[string]string, len(all))
	for k, v := range all {
		if strings.HasPrefix(k, labelPrefix) || k == containerd.StopSignalLabel {
			continue
		}
		out[k] = v
	}
	return out
}
