package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
)

// fakeClock is a clock tests advance by hand.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{c.now.Add(d), ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

// fakeContainers is an in-memory container runtime that logs every change
// it is asked for, in order.
type fakeContainers struct {
	clock *fakeClock

	mu         sync.Mutex
	containers map[string]*fakeContainer
	images     map[string]bool
	calls      []string
	// startErr fails the start of containers whose command's first word
	// is the key.
	startErr map[string]error
	// pullErr fails pulls.
	pullErr error
	// exec answers Exec: the exit code for a command, by its first word.
	exec func(id string, cmd []string) (int, string)
	// stopCode is the exit code a stopped container gets.
	stopCode uint32
	pid      uint32
}

type fakeContainer struct {
	spec   containerd.ContainerSpec
	status containerd.Status
}

func newFakeContainers(clock *fakeClock) *fakeContainers {
	return &fakeContainers{
		clock:      clock,
		containers: map[string]*fakeContainer{},
		images:     map[string]bool{"docker.io/library/web:1": true},
		startErr:   map[string]error{},
		stopCode:   143,
		pid:        100,
		exec:       func(string, []string) (int, string) { return 0, "" },
	}
}

func (f *fakeContainers) log(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the calls made since the last Calls.
func (f *fakeContainers) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

func (f *fakeContainers) Create(_ context.Context, spec containerd.ContainerSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[spec.ID]; ok {
		return containerd.ErrAlreadyExists
	}
	name, _ := containerd.NormalizeImage(spec.Image)
	if !f.images[name] {
		return containerd.ErrImageNotFound
	}
	f.log("create %s", spec.ID)
	f.containers[spec.ID] = &fakeContainer{spec: spec, status: containerd.Status{State: containerd.StateCreated}}
	return nil
}

func (f *fakeContainers) Start(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return containerd.ErrNotFound
	}
	if len(c.spec.Command) > 0 {
		if err := f.startErr[c.spec.Command[0]]; err != nil {
			f.log("start %s: failed", id)
			return err
		}
	}
	f.log("start %s", id)
	f.pid++
	c.status = containerd.Status{State: containerd.StateRunning, Pid: f.pid, StartedAt: f.clock.Now()}
	return nil
}

func (f *fakeContainers) Stop(_ context.Context, id string, grace time.Duration, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return containerd.ErrNotFound
	}
	if c.status.State != containerd.StateRunning {
		return nil
	}
	f.log("stop %s grace=%s", id, grace)
	c.status.State, c.status.ExitCode, c.status.FinishedAt, c.status.Pid = containerd.StateExited, f.stopCode, f.clock.Now(), 0
	return nil
}

// reboot leaves the containers as a machine reboot does: no task.
func (f *fakeContainers) reboot() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		c.status = containerd.Status{State: containerd.StateCreated}
	}
}

// exit ends a running container's process with code.
func (f *fakeContainers) exit(id string, code uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	c.status.State, c.status.ExitCode, c.status.FinishedAt, c.status.Pid = containerd.StateExited, code, f.clock.Now(), 0
}

func (f *fakeContainers) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.containers[id]; ok {
		f.log("delete %s", id)
		delete(f.containers, id)
	}
	return nil
}

func (f *fakeContainers) Inspect(_ context.Context, id string) (containerd.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	if !ok {
		return containerd.Status{}, containerd.ErrNotFound
	}
	return c.status, nil
}

func (f *fakeContainers) list(match func(map[string]string) bool) []containerd.Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []containerd.Container
	for id, c := range f.containers {
		if match(c.spec.Labels) {
			out = append(out, containerd.Container{ID: id, Image: c.spec.Image, Labels: c.spec.Labels, LogPath: c.spec.LogPath, Status: c.status})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeContainers) List(context.Context) ([]containerd.Container, error) {
	return f.list(func(map[string]string) bool { return true }), nil
}

func (f *fakeContainers) ListLabeled(_ context.Context, key, value string) ([]containerd.Container, error) {
	return f.list(func(l map[string]string) bool { return l[key] == value }), nil
}

func (f *fakeContainers) Exec(_ context.Context, id string, opts containerd.ExecOptions) (int, error) {
	f.mu.Lock()
	c, ok := f.containers[id]
	running := ok && c.status.State == containerd.StateRunning
	f.mu.Unlock()
	if !running {
		return -1, fmt.Errorf("exec in container %s: it does not run", id)
	}
	code, out := f.exec(id, opts.Cmd)
	if opts.Stdout != nil {
		io.WriteString(opts.Stdout, out)
	}
	return code, nil
}

func (f *fakeContainers) Exits(ctx context.Context) (<-chan containerd.Exit, <-chan error) {
	ch := make(chan containerd.Exit)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, make(chan error)
}

func (f *fakeContainers) HasImage(_ context.Context, ref string) (bool, error) {
	name, err := containerd.NormalizeImage(ref)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[name], nil
}

func (f *fakeContainers) Pull(_ context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.log("pull %s", ref)
	if f.pullErr != nil {
		return &containerd.PullError{Ref: ref, Err: f.pullErr}
	}
	name, _ := containerd.NormalizeImage(ref)
	f.images[name] = true
	return nil
}

func (f *fakeContainers) ImageDigest(_ context.Context, ref string) (string, error) {
	return "sha256:" + strings.Repeat("ab", 32), nil
}

func (f *fakeContainers) ImportArchive(context.Context, io.Reader) ([]string, error) {
	return nil, errors.New("not in the fake")
}

func (f *fakeContainers) ListImages(context.Context) ([]string, error) { return nil, nil }

func (f *fakeContainers) RotateLogs(context.Context, int64, int) ([]string, error) { return nil, nil }

// fakeNetworks hands out IPs from 10.244.0.2 and logs setups and teardowns
// into the containers' call log, so the order of both is visible.
type fakeNetworks struct {
	calls *fakeContainers
	mu    sync.Mutex
	next  byte
	atts  map[string]network.Attachment
}

func newFakeNetworks(calls *fakeContainers) *fakeNetworks {
	return &fakeNetworks{calls: calls, next: 2, atts: map[string]network.Attachment{}}
}

func (n *fakeNetworks) Setup(_ context.Context, id string, ports []network.PortMapping) (string, netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if a, ok := n.atts[id]; ok {
		return a.NetNS, a.IP, nil
	}
	a := network.Attachment{PodID: id, NetNS: "/run/netns/" + id, IP: netip.AddrFrom4([4]byte{10, 244, 0, n.next}), Ports: ports}
	n.next++
	n.atts[id] = a
	n.calls.mu.Lock()
	n.calls.log("setup %s", id)
	n.calls.mu.Unlock()
	return a.NetNS, a.IP, nil
}

func (n *fakeNetworks) Teardown(_ context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.atts[id]; ok {
		delete(n.atts, id)
		n.calls.mu.Lock()
		n.calls.log("teardown %s", id)
		n.calls.mu.Unlock()
	}
	return nil
}

func (n *fakeNetworks) List() ([]network.Attachment, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []network.Attachment
	for _, a := range n.atts {
		out = append(out, a)
	}
	return out, nil
}

func (n *fakeNetworks) Lookup(id string) (network.Attachment, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	a, ok := n.atts[id]
	return a, ok, nil
}

// harness is a pod worker on fakes.
type harness struct {
	t          *testing.T
	clock      *fakeClock
	containers *fakeContainers
	networks   *fakeNetworks
	env        *podEnv
	// statuses are the statuses reported, in order.
	statuses  []corev1.PodStatus
	confirmed []string
	events    []string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, clock: newFakeClock()}
	h.containers = newFakeContainers(h.clock)
	h.networks = newFakeNetworks(h.containers)
	dir := t.TempDir()
	h.env = &podEnv{
		log:        hclog.NewNullLogger(),
		clock:      h.clock,
		containers: h.containers,
		networks:   h.networks,
		volumes:    DirVolumes{Root: dir + "/volumes"},
		paths:      paths{dir},
		node: nodeFacts{Name: "node-a", IP: "192.168.1.10", DNS: "10.244.0.1", Domain: "cluster.local",
			CPU: resource.MustParse("2"), Memory: resource.MustParse("4Gi")},
		fences:  newFences(dir + "/generations"),
		restart: Backoff{Base: DefaultBackoff, Max: DefaultMaxBackoff},
		pull:    Backoff{Base: DefaultBackoff, Max: DefaultMaxBackoff},
		// Long, so that the wake-ups syncs ask for are their deadlines.
		resync:       time.Hour,
		minGrace:     2 * time.Second,
		hostFiles:    func() ([]byte, []byte) { return []byte("127.0.0.1 localhost\n"), []byte("nameserver 192.168.1.1\n") },
		hostPortFree: func(network.PortMapping) error { return nil },
		report:       func(_ *corev1.Pod, st corev1.PodStatus) { h.statuses = append(h.statuses, st) },
		confirm: func(_ context.Context, pod *corev1.Pod) error {
			h.confirmed = append(h.confirmed, pod.Name)
			return nil
		},
		owned: func(podKey, []string) {},
		event: func(_ *corev1.Pod, typ, reason, msg string) { h.events = append(h.events, reason+": "+msg) },
		boot:  "boot-1",
	}
	return h
}

// worker returns a worker for pod, already assigned it.
func (h *harness) worker(pod *corev1.Pod) *podWorker {
	w := newPodWorker(keyOf(pod), h.env)
	w.setDesired(pod)
	return w
}

// sync runs one sync and returns when it wants to run again, relative to
// the fake clock's now.
func (h *harness) sync(w *podWorker) (time.Duration, bool) {
	h.t.Helper()
	next, done := w.sync(context.Background())
	if next.IsZero() {
		return 0, done
	}
	return next.Sub(h.clock.Now()), done
}

// last is the last status reported.
func (h *harness) last() corev1.PodStatus {
	h.t.Helper()
	if len(h.statuses) == 0 {
		h.t.Fatal("no status reported")
	}
	return h.statuses[len(h.statuses)-1]
}

// feed gives the worker's desired pod the last reported status, as the
// next assignment list would.
func (h *harness) feed(w *podWorker) {
	pod := w.getDesired().DeepCopy()
	pod.Status = h.last()
	pod.ResourceVersion += "+"
	w.setDesired(pod)
}

func webPod(name string, gen int) *corev1.Pod {
	grace := int64(30)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default", UID: types.UID("uid-" + name), ResourceVersion: "1",
			Labels:      map[string]string{"app": "nginx", "apps.kubernetes.io/pod-index": "0"},
			Annotations: map[string]string{"stead.io/generation": fmt.Sprint(gen)},
		},
		Spec: corev1.PodSpec{
			NodeName: "node-a", Hostname: name, Subdomain: "nginx",
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "nginx", Image: "web:1", ImagePullPolicy: corev1.PullIfNotPresent}},
		},
	}
}
