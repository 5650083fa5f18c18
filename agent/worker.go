package agent

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/agent/probe"
)

// nodeFacts are the node-level values a pod's containers see.
type nodeFacts struct {
	// Name of the node.
	Name string
	// IP is the node's InternalIP: status.hostIP, and the pod IP of pods
	// on the host network.
	IP string
	// DNS is the cluster DNS server pods' resolv.conf names.
	DNS string
	// Domain is the cluster domain.
	Domain string
	// CPU and Memory are the node's allocatable amounts.
	CPU, Memory resource.Quantity
}

// podEnv is what every pod worker shares: the node's runtime, network and
// storage, its data directory, its clock, and the way to the servers.
type podEnv struct {
	log        hclog.Logger
	clock      Clock
	containers Containers
	networks   Networks
	volumes    VolumeMounter
	paths      paths
	node       nodeFacts
	fences     *fences
	// restart is the crash back-off, pull the image pull back-off.
	restart, pull Backoff
	// resync bounds how long a worker goes without looking at its pod.
	resync time.Duration
	// minGrace is the least time a container gets between its stop signal
	// and SIGKILL (the kubelet's 2 s).
	minGrace time.Duration
	// hostFiles returns the node's /etc/hosts and /etc/resolv.conf.
	hostFiles func() (hosts, resolv []byte)
	// hostPortFree checks that a host port is not taken on the node.
	hostPortFree func(p network.PortMapping) error
	// report hands a pod's computed status to the status reporter.
	report func(pod *corev1.Pod, st corev1.PodStatus)
	// confirm removes the record of a pod whose deletion the node
	// completed (the node's confirmation, SEMANTICS K.86).
	confirm func(ctx context.Context, pod *corev1.Pod) error
	// owned tells the agent which container IDs belong to a pod, to route
	// their exits to its worker.
	owned func(k podKey, ids []string)
	// event records a Kubernetes event about a pod.
	event func(pod *corev1.Pod, eventType, reason, message string)
	// boot identifies the machine's boot: a sandbox made in another one
	// lost its processes and network namespace.
	boot string
	// leaseValid reports whether the node's lease with the servers still
	// runs. Once it has run out the servers may give the node's pods to
	// other nodes, and the watchdog kills them here: no container may be
	// started or restarted until a heartbeat renews it (RELIABILITY R7).
	leaseValid func() bool
}

// podWorker does everything about one pod name on this node, one step at a
// time: it compares the pod assigned to the node (if any) with the
// containers and sandboxes of that name, and acts to make them agree. Its
// sync runs when the assignment changes, a container exits, a probe or a
// back-off is due, and at least every resync period.
type podWorker struct {
	key podKey
	env *podEnv
	log hclog.Logger

	mu sync.Mutex
	// desired is the pod assigned to this node under this name, nil when
	// none is.
	desired *corev1.Pod
	wake    chan struct{}

	// The rest belongs to the goroutine running sync.

	// sandboxes are this pod name's sandboxes on disk, with their records.
	sandboxes map[string]*corev1.Pod
	// probes are the probe trackers of running containers, by container ID.
	probes map[string]*containerProbes
	// waiting says why a container of the running sandbox cannot run now,
	// by container name; recomputed by every sync.
	waiting map[string]*waitingView
	// retries holds the back-off of failing image pulls (by image) and
	// container creations (by container name).
	retries map[string]*retryState
	// pulled are the images pulled by the current sync (pull policy
	// Always pulls once per start, not twice).
	pulled map[string]bool
	// imageIDs caches image digests.
	imageIDs map[string]string
	// lastStatus is the status computed by the last sync, for the pod
	// lastStatusUID.
	lastStatus    *corev1.PodStatus
	lastStatusUID types.UID
	// confirmed is the UID of the pod whose deletion this worker confirmed.
	confirmed types.UID
	// failures counts syncs in a row that failed, for their back-off.
	failures int
}

// containerProbes are the probes of one run of a container.
type containerProbes struct {
	startup, liveness, readiness *probe.Tracker
}

// retryState is the back-off of an operation that keeps failing.
type retryState struct {
	failures int
	retryAt  time.Time
	message  string
}

func newPodWorker(k podKey, env *podEnv) *podWorker {
	return &podWorker{
		key:       k,
		env:       env,
		log:       env.log.With("pod", k.String()),
		wake:      make(chan struct{}, 1),
		sandboxes: map[string]*corev1.Pod{},
		probes:    map[string]*containerProbes{},
		waiting:   map[string]*waitingView{},
		retries:   map[string]*retryState{},
		imageIDs:  map[string]string{},
		pulled:    map[string]bool{},
	}
}

// setDesired records the pod assigned under this name (nil: none) and
// wakes the worker when it changed.
func (w *podWorker) setDesired(pod *corev1.Pod) {
	w.mu.Lock()
	changed := (w.desired == nil) != (pod == nil) ||
		(pod != nil && (w.desired.UID != pod.UID || w.desired.ResourceVersion != pod.ResourceVersion))
	w.desired = pod
	w.mu.Unlock()
	if changed {
		w.poke()
	}
}

func (w *podWorker) getDesired() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.desired
}

// poke asks for a sync soon.
func (w *podWorker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// loop runs syncs until ctx ends or nothing is left for this pod name;
// retire decides, under the agent's lock, whether the worker may end.
func (w *podWorker) loop(ctx context.Context, retire func(*podWorker) bool) {
	for {
		next, done := w.sync(ctx)
		if ctx.Err() != nil {
			return
		}
		if done && retire(w) {
			return
		}
		now := w.env.clock.Now()
		if next.IsZero() || next.After(now.Add(w.env.resync)) {
			next = now.Add(w.env.resync)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-w.env.clock.After(next.Sub(now)):
		}
	}
}

// errorRetry is when a sync that failed is tried again: 1 s doubling to
// the resync period.
func (w *podWorker) errorRetry(now time.Time) time.Time {
	w.failures++
	d := time.Second << min(w.failures-1, 5)
	return now.Add(min(d, w.env.resync))
}
