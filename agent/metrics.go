package agent

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/volumes"
)

// agentMetrics are the Prometheus metrics the agent serves on GET
// /metrics: how long containerd operations and volume attach and mount
// take, the node's pods by phase, its lease and its cluster DNS. A nil
// *agentMetrics observes nothing, so that parts built without an agent
// (tests) need none.
type agentMetrics struct {
	registry *prometheus.Registry
	// runtime times the calls the agent makes to containerd, by
	// operation and result.
	runtime *prometheus.HistogramVec
	// attach times volumes.Manager.Attach by driver and result; mount
	// times a pod's claim mount as a whole (claim read, create, attach,
	// record) by result.
	attachTime, mountTime *prometheus.HistogramVec
}

// Results of an observed operation.
const (
	resultOK    = "ok"
	resultError = "error"
	// resultStale is an attach the volume's fence refused: a newer
	// generation of the ordinal holds it.
	resultStale = "stale"
)

// newAgentMetrics makes the agent's metrics and registers them with the
// collectors of a's state (pods by phase, lease) and of the process.
func newAgentMetrics(a *Agent) *agentMetrics {
	m := &agentMetrics{
		registry: prometheus.NewRegistry(),
		runtime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stead_agent_containerd_duration_seconds",
			Help:    "Time of the agent's containerd calls, by operation (pull, import, create, start, stop, delete, exec, inspect, list, image_status, list_images) and result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"operation", "result"}),
		attachTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stead_agent_volume_attach_duration_seconds",
			Help:    "Time to attach a claim's volume on this node (fence check included), by driver (local, shared, image) and result (ok, stale, error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"driver", "result"}),
		mountTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stead_agent_volume_mount_duration_seconds",
			Help:    "Time to make a pod's claim volume ready on this node: read the claim, create, attach and record its holder, by result (ok, stale, error).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 18),
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.runtime, m.attachTime, m.mountTime, &stateCollector{a: a},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, volumes.ErrStaleGeneration):
		return resultStale
	}
	return resultError
}

func (m *agentMetrics) observeRuntime(op string, start time.Time, err error) {
	m.runtime.WithLabelValues(op, resultOf(err)).Observe(time.Since(start).Seconds())
}

// volumeAttacher is the part of volumes.Manager that attach times.
type volumeAttacher interface {
	Attach(ctx context.Context, v volumes.Volume, gen uint64) (string, error)
}

// attach attaches v at gen through mgr and times it.
func (m *agentMetrics) attach(ctx context.Context, mgr volumeAttacher, v volumes.Volume, gen uint64) (string, error) {
	start := time.Now()
	hostPath, err := mgr.Attach(ctx, v, gen)
	if m != nil {
		m.attachTime.WithLabelValues(string(v.Class.Driver), resultOf(err)).Observe(time.Since(start).Seconds())
	}
	return hostPath, err
}

// volumes returns vm with its mounts timed.
func (m *agentMetrics) volumes(vm VolumeMounter) VolumeMounter {
	return meteredVolumes{VolumeMounter: vm, m: m}
}

// meteredVolumes times a VolumeMounter's mounts.
type meteredVolumes struct {
	VolumeMounter
	m *agentMetrics
}

// Mount implements VolumeMounter.
func (v meteredVolumes) Mount(ctx context.Context, pod *corev1.Pod, claim string) (string, error) {
	start := time.Now()
	hostPath, err := v.VolumeMounter.Mount(ctx, pod, claim)
	var me *MountError
	result := resultOf(err)
	if errors.As(err, &me) && me.Reason == ReasonStaleVolumeGeneration {
		result = resultStale
	}
	v.m.mountTime.WithLabelValues(result).Observe(time.Since(start).Seconds())
	return hostPath, err
}

// containers returns c with its calls timed.
func (m *agentMetrics) containers(c Containers) Containers {
	return meteredContainers{c: c, m: m}
}

// meteredContainers times the calls of a Containers. Exits, a stream, and
// RotateLogs, which does not reach containerd, are passed through.
type meteredContainers struct {
	c Containers
	m *agentMetrics
}

var _ Containers = meteredContainers{}

func (mc meteredContainers) Create(ctx context.Context, spec containerd.ContainerSpec) error {
	start := time.Now()
	err := mc.c.Create(ctx, spec)
	mc.m.observeRuntime("create", start, err)
	return err
}

func (mc meteredContainers) Start(ctx context.Context, id string) error {
	start := time.Now()
	err := mc.c.Start(ctx, id)
	mc.m.observeRuntime("start", start, err)
	return err
}

func (mc meteredContainers) Stop(ctx context.Context, id string, grace time.Duration, sig syscall.Signal) error {
	start := time.Now()
	err := mc.c.Stop(ctx, id, grace, sig)
	mc.m.observeRuntime("stop", start, err)
	return err
}

func (mc meteredContainers) Delete(ctx context.Context, id string) error {
	start := time.Now()
	err := mc.c.Delete(ctx, id)
	mc.m.observeRuntime("delete", start, err)
	return err
}

func (mc meteredContainers) Inspect(ctx context.Context, id string) (containerd.Status, error) {
	start := time.Now()
	st, err := mc.c.Inspect(ctx, id)
	mc.m.observeRuntime("inspect", start, err)
	return st, err
}

func (mc meteredContainers) List(ctx context.Context) ([]containerd.Container, error) {
	start := time.Now()
	cs, err := mc.c.List(ctx)
	mc.m.observeRuntime("list", start, err)
	return cs, err
}

func (mc meteredContainers) ListLabeled(ctx context.Context, key, value string) ([]containerd.Container, error) {
	start := time.Now()
	cs, err := mc.c.ListLabeled(ctx, key, value)
	mc.m.observeRuntime("list", start, err)
	return cs, err
}

func (mc meteredContainers) Exec(ctx context.Context, id string, opts containerd.ExecOptions) (int, error) {
	start := time.Now()
	code, err := mc.c.Exec(ctx, id, opts)
	mc.m.observeRuntime("exec", start, err)
	return code, err
}

func (mc meteredContainers) Exits(ctx context.Context) (<-chan containerd.Exit, <-chan error) {
	return mc.c.Exits(ctx)
}

func (mc meteredContainers) HasImage(ctx context.Context, ref string) (bool, error) {
	start := time.Now()
	ok, err := mc.c.HasImage(ctx, ref)
	mc.m.observeRuntime("image_status", start, err)
	return ok, err
}

func (mc meteredContainers) Pull(ctx context.Context, ref string) error {
	start := time.Now()
	err := mc.c.Pull(ctx, ref)
	mc.m.observeRuntime("pull", start, err)
	return err
}

func (mc meteredContainers) ImageDigest(ctx context.Context, ref string) (string, error) {
	start := time.Now()
	d, err := mc.c.ImageDigest(ctx, ref)
	mc.m.observeRuntime("image_status", start, err)
	return d, err
}

func (mc meteredContainers) ImportArchive(ctx context.Context, archive io.Reader) ([]string, error) {
	start := time.Now()
	names, err := mc.c.ImportArchive(ctx, archive)
	mc.m.observeRuntime("import", start, err)
	return names, err
}

func (mc meteredContainers) ListImages(ctx context.Context) ([]string, error) {
	start := time.Now()
	names, err := mc.c.ListImages(ctx)
	mc.m.observeRuntime("list_images", start, err)
	return names, err
}

func (mc meteredContainers) RotateLogs(ctx context.Context, maxBytes int64, keep int) ([]string, error) {
	return mc.c.RotateLogs(ctx, maxBytes, keep)
}

// Version passes containerd's version on, for the node's info.
func (mc meteredContainers) Version(ctx context.Context) (string, error) {
	v, ok := mc.c.(interface {
		Version(context.Context) (string, error)
	})
	if !ok {
		return "", errors.New("the container runtime does not say its version")
	}
	return v.Version(ctx)
}

var (
	agentPodsDesc = prometheus.NewDesc("stead_agent_pods", "Pods on this node by phase, as the agent last computed their status.", []string{"phase"}, nil)
	heartbeatDesc = prometheus.NewDesc("stead_agent_heartbeat_age_seconds",
		"Time since the agent sent the last heartbeat the servers accepted (absent before the first).", nil, nil)
	leaseTTLDesc  = prometheus.NewDesc("stead_agent_lease_ttl_seconds", "The node's lease duration the servers last answered.", nil, nil)
	leaseLeftDesc = prometheus.NewDesc("stead_agent_lease_remaining_seconds",
		"Time left of the lease the agent recorded for the watchdog (DATA_DIR/lease); negative once it ran out, absent when none of this boot is recorded.", nil, nil)
)

// stateCollector computes the agent's state gauges when scraped.
type stateCollector struct{ a *Agent }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{agentPodsDesc, heartbeatDesc, leaseTTLDesc, leaseLeftDesc} {
		ch <- d
	}
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	a := s.a
	phases := map[corev1.PodPhase]int{}
	select {
	case <-a.ready:
		// The reporter is set before the agent is ready.
		phases = a.reporter.phases()
	default:
	}
	for _, ph := range []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown} {
		ch <- prometheus.MustNewConstMetric(agentPodsDesc, prometheus.GaugeValue, float64(phases[ph]), string(ph))
	}
	if sent := a.lastRenewed.Load(); sent != nil {
		ch <- prometheus.MustNewConstMetric(heartbeatDesc, prometheus.GaugeValue, time.Since(*sent).Seconds())
	}
	if ttl := a.leaseTTL.Load(); ttl != nil {
		ch <- prometheus.MustNewConstMetric(leaseTTLDesc, prometheus.GaugeValue, ttl.Seconds())
	}
	lease, err := watchdog.ReadLease(watchdog.PathsIn(a.cfg.DataDir).Lease)
	if boot, berr := watchdog.BootID(); err == nil && berr == nil && lease.Boot == boot {
		ch <- prometheus.MustNewConstMetric(leaseLeftDesc, prometheus.GaugeValue, lease.ExpiresMono.Sub(watchdog.Now()).Seconds())
	}
}

// phases counts the pods the reporter knows by the phase of their latest
// status: the one waiting to be written, else the one written.
func (r *statusReporter) phases() map[corev1.PodPhase]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[corev1.PodPhase]int{}
	for k, w := range r.written {
		st := w.status
		if p := r.pending[k]; p != nil {
			st = p.Status
		}
		phase := st.Phase
		if phase == "" {
			phase = corev1.PodPending
		}
		out[phase]++
	}
	return out
}
