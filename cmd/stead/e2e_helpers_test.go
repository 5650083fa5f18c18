package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/api"
)

// The end-to-end tests of this file's siblings run the real binary with its
// agent: containerd, CNI, probes and DNS, on pods of the image built from
// testdata/e2eapp. These helpers start and stop such clusters and follow
// their state through blocking queries of the API.

// e2eImage is the tag of the image built from testdata/e2eapp.
const e2eImage = "stead.local/e2e/app:1"

// e2eNamespace holds every object of the tests.
const e2eNamespace = "default"

// skipUnlessPods skips t with -short and unless this machine can run pods:
// root, containerd, runc and the CNI plugins.
func skipUnlessPods(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: runs stead with containerd")
	}
	containerdtest.Skip(t)
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("needs CNI plugin %s: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skipf("needs iptables: %v", err)
	}
}

// e2eLog collects a process's output, written from two streams while the
// test reads it.
type e2eLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *e2eLog) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *e2eLog) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// e2eProc is a stead process a test started.
type e2eProc struct {
	name   string
	cmd    *exec.Cmd
	log    *e2eLog
	exited chan struct{} // closed once the process has exited
}

// startProc runs the binary with args.
func startProc(t testing.TB, bin, name string, args ...string) *e2eProc {
	t.Helper()
	p := &e2eProc{name: name, log: &e2eLog{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return p
}

// waitOutput waits until the process prints marker, and fails the test if
// it exits or prints failure first.
func (p *e2eProc) waitOutput(t testing.TB, marker, failure string, within time.Duration) {
	t.Helper()
	p.waitOutputSince(t, 0, marker, failure, within)
}

// waitOutputSince is waitOutput for what the process prints from byte
// offset since of its output on.
func (p *e2eProc) waitOutputSince(t testing.TB, since int, marker, failure string, within time.Duration) {
	t.Helper()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		out := p.log.String()[since:]
		switch {
		case strings.Contains(out, marker):
			return
		case failure != "" && strings.Contains(out, failure):
			t.Fatalf("%s failed:\n%s", p.name, out)
		}
		select {
		case <-p.exited:
			t.Fatalf("%s exited (%v):\n%s", p.name, p.cmd.ProcessState, p.log)
		case <-deadline.C:
			t.Fatalf("%s did not print %q within %v:\n%s", p.name, marker, within, out)
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM and waits for the exit; after within it kills the
// process and reports that it had to.
func (p *e2eProc) stop(t testing.TB, within time.Duration) {
	t.Helper()
	if p.done() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(within):
		p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("%s (pid %d) ignored SIGTERM for %v; killed it", p.name, p.cmd.Process.Pid, within)
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *e2eProc) kill9() {
	p.cmd.Process.Kill()
	<-p.exited
}

// done reports whether the process has exited.
func (p *e2eProc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// e2eCluster is one node's worth of Stead started by a test: a server and
// an agent, as one `stead dev` process or as two, on ports, a pod network
// and a data directory of their own, so that they share nothing with other
// instances on the machine.
type e2eCluster struct {
	bin     string
	dir     string // everything the processes write
	addr    string // the API
	raft    string // the server's Raft address
	agent   string // the agent's API
	dns     string // cluster DNS for the host
	cidr    netip.Prefix
	bridge  string
	network string
	netns   string
	c       *api.Client

	server *e2eProc // the server, or the dev process
	node   *e2eProc // a separate agent process; nil with dev
}

// newE2ECluster chooses the addresses, names and directories of a cluster
// and writes the test image where its agent imports images at start.
func newE2ECluster(t testing.TB) *e2eCluster {
	t.Helper()
	bin := steadBinary(t)
	// The containerd socket path must stay short: no t.TempDir here.
	dir, err := os.MkdirTemp("", "se2e-")
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	rand.Read(b[:])
	suffix := fmt.Sprintf("%02x%02x", b[0], b[1])
	e := &e2eCluster{
		bin: bin, dir: dir,
		addr: freePort(t), agent: freePort(t), dns: freePort(t),
		cidr:    netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 236+int(b[2])%4, b[0])),
		bridge:  "se2e" + suffix,
		network: "stead-e2e-" + suffix,
		netns:   filepath.Join(dir, "netns"),
	}
	if e.c, err = api.NewClient(e.addr); err != nil {
		t.Fatal(err)
	}
	images := filepath.Join(e.agentDir(), "images")
	if err := os.MkdirAll(images, 0o755); err != nil {
		t.Fatal(err)
	}
	app := containerdtest.BuildProgram(t, "testdata/e2eapp")
	if out, err := exec.Command(bin, "image", "build", "--binary", app, "--tag", e2eImage,
		"-o", filepath.Join(images, "e2eapp.tar")).CombinedOutput(); err != nil {
		t.Fatalf("stead image build: %v\n%s", err, out)
	}
	return e
}

func (e *e2eCluster) agentDir() string { return filepath.Join(e.dir, "agent") }

// agentFlags are the flags that keep the agent apart from any other.
func (e *e2eCluster) agentFlags() []string {
	return []string{
		"--agent-addr", e.agent, "--dns-addr", e.dns, "--cluster-cidr", e.cidr.String(),
		"--bridge", e.bridge, "--cni-network", e.network, "--netns-dir", e.netns,
		"--containerd-socket", containerd.DaemonOptions{Dir: filepath.Join(e.agentDir(), "containerd")}.Paths().Socket,
	}
}

// startE2EDev starts `stead dev` with its agent and waits until the node
// runs pods. The cluster is taken down when the test ends.
func startE2EDev(t testing.TB) *e2eCluster {
	t.Helper()
	skipUnlessPods(t)
	e := newE2ECluster(t)
	t.Cleanup(func() { e.teardown(t) })
	e.raft = freePort(t)
	args := append([]string{"dev", "--data-dir", e.dir, "--http-addr", e.addr, "--raft-addr", e.raft}, e.agentFlags()...)
	e.server = startProc(t, e.bin, "stead dev", args...)
	e.server.waitOutput(t, "runs pods (subnet", "no agent, pods will not run", 90*time.Second)
	return e
}

// startE2EServerAgent starts `stead server` and `stead agent` as two
// processes and waits until the node runs pods. The cluster is taken down
// when the test ends.
func startE2EServerAgent(t testing.TB) *e2eCluster {
	t.Helper()
	skipUnlessPods(t)
	e := newE2ECluster(t)
	t.Cleanup(func() { e.teardown(t) })
	e.raft = freePort(t)
	e.startServer(t)
	// Without the watchdog, which outlives the agent by design and fences
	// the node once the lease lapses: these tests stop the server on
	// purpose, and fencing has tests of its own.
	args := append([]string{"agent", "--servers", e.addr, "--node-name", "e2e-node", "--data-dir", e.agentDir(),
		"--log-level", "debug", "--watchdog=false"}, e.agentFlags()...)
	e.node = startProc(t, e.bin, "stead agent", args...)
	e.node.waitOutput(t, "stead agent: node e2e-node", "", 90*time.Second)
	return e
}

// startServer starts (or starts again, on the same data directory) the
// server of a two-process cluster and waits until it answers.
func (e *e2eCluster) startServer(t testing.TB) {
	t.Helper()
	e.server = startProc(t, e.bin, "stead server", "server", "--bootstrap", "--node-id", "e2e",
		"--data-dir", filepath.Join(e.dir, "server"), "--http-addr", e.addr, "--raft-addr", e.raft,
		"--cluster-cidr", e.cidr.String())
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := e.c.Status(ctx)
		cancel()
		if err == nil && st.Leader != "" {
			return
		}
		select {
		case <-e.server.exited:
			t.Fatalf("stead server exited:\n%s", e.server.log)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("stead server has no leader after 60s (%v):\n%s", err, e.server.log)
		}
	}
}

// teardown stops the pods through the cluster, then the processes, then
// checks that no container, containerd or mount is left behind and removes
// the pod network's bridge, rule and directories.
func (e *e2eCluster) teardown(t testing.TB) {
	if e.server != nil && !e.server.done() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for _, name := range e.listNames(ctx, t, "statefulsets") {
			_, err := e.c.Delete(ctx, e2eResource(t, "statefulsets"), e2eNamespace, name, api.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Errorf("teardown: delete statefulset %s: %v", name, err)
			}
		}
		cancel()
		if left := e.waitNoPods(t, 60*time.Second); len(left) > 0 {
			t.Errorf("teardown: pods %v still there after 60s", left)
		}
	}
	if e.node != nil {
		e.node.stop(t, 30*time.Second)
	}
	if e.server != nil {
		e.server.stop(t, 30*time.Second)
	}
	// Whatever still runs with the data directory on its command line
	// (containerd, a shim, a watchdog) was left behind.
	ctdDir := filepath.Join(e.agentDir(), "containerd")
	if slices.ContainsFunc(processesUnder(e.dir), func(p leftProcess) bool { return p.shim() }) {
		t.Errorf("teardown: containers are left; removing them through a containerd of their own")
		e.removeContainers(t, ctdDir)
	}
	for _, p := range processesUnder(e.dir) {
		t.Errorf("teardown: %q (pid %d) is left; killing it", p.args, p.pid)
		if p.shim() {
			// Its children are the containers' processes.
			children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid, p.pid))
			for _, c := range strings.Fields(string(children)) {
				if cpid, err := strconv.Atoi(c); err == nil {
					syscall.Kill(cpid, syscall.SIGKILL)
				}
			}
		}
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if n, err := network.New(network.Options{Subnet: e.cidr, DataDir: filepath.Join(e.dir, "network-teardown"),
		NetNSDir: e.netns, Bridge: e.bridge, NetworkName: e.network, ClusterCIDR: e.cidr}); err == nil {
		if err := n.DeleteBridge(); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
	for _, mp := range containerdtest.MountsUnder(e.dir) {
		t.Errorf("teardown: %s is still mounted; unmounting it", mp)
		unix.Unmount(mp, unix.MNT_DETACH)
	}
	if t.Failed() {
		for _, p := range []*e2eProc{e.server, e.node} {
			if p != nil {
				t.Logf("%s:\n%s", p.name, tail(p.log.String(), 200))
			}
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("teardown: %v", err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// leftProcess is a process found with a test's directory on its command
// line.
type leftProcess struct {
	pid  int
	args []string
}

// shim reports whether the process is a containerd shim.
func (p leftProcess) shim() bool {
	return strings.HasPrefix(filepath.Base(p.args[0]), "containerd-shim")
}

// processesUnder lists the processes, other than this one, with an
// argument in dir.
func processesUnder(dir string) []leftProcess {
	ents, _ := os.ReadDir("/proc")
	var out []leftProcess
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		if slices.ContainsFunc(args, func(a string) bool { return a == dir || strings.HasPrefix(a, dir+"/") }) {
			out = append(out, leftProcess{pid: pid, args: args})
		}
	}
	return out
}

// removeContainers starts a containerd on the agent's containerd directory
// and deletes every container, for a teardown whose pods did not go
// through the cluster.
func (e *e2eCluster) removeContainers(t testing.TB, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := containerd.StartDaemon(ctx, containerd.DaemonOptions{Dir: dir})
	if err != nil {
		t.Errorf("teardown: %v", err)
		return
	}
	defer d.Stop(10 * time.Second)
	rt, err := containerd.Connect(ctx, containerd.Options{Socket: d.Socket, Namespace: containerd.DefaultNamespace, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Errorf("teardown: %v", err)
		return
	}
	defer rt.Close()
	cs, err := rt.List(ctx)
	if err != nil {
		t.Errorf("teardown: %v", err)
		return
	}
	for _, c := range cs {
		if err := rt.Delete(ctx, c.ID); err != nil {
			t.Errorf("teardown: delete container %s: %v", c.ID, err)
		}
	}
}

// listNames lists the names of a resource's objects in the test namespace.
func (e *e2eCluster) listNames(ctx context.Context, t testing.TB, resource string) []string {
	l, _, err := e.c.List(ctx, e2eResource(t, resource), e2eNamespace, api.ListOptions{})
	if err != nil {
		t.Errorf("list %s: %v", resource, err)
		return nil
	}
	var names []string
	for _, raw := range l.Items {
		var m struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
		}
		if json.Unmarshal(raw, &m) == nil {
			names = append(names, m.Metadata.Name)
		}
	}
	return names
}

// waitNoPods waits, with blocking queries, until no pod is left and
// returns the names of those still there when within passes.
func (e *e2eCluster) waitNoPods(t testing.TB, within time.Duration) []string {
	deadline := time.Now().Add(within)
	var index uint64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l, idx, err := e.c.List(ctx, e2eResource(t, "pods"), e2eNamespace, api.ListOptions{Index: index, Wait: time.Second})
		cancel()
		var left []string
		if err == nil {
			index = idx
			for _, raw := range l.Items {
				var p corev1.Pod
				if json.Unmarshal(raw, &p) == nil {
					left = append(left, p.Name)
				}
			}
			if len(left) == 0 {
				return nil
			}
		} else {
			left = []string{err.Error()}
		}
		if time.Now().After(deadline) {
			return left
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond) // the API did not answer: do not spin
		}
	}
}

// e2eResource looks up an API resource by name.
func e2eResource(t testing.TB, name string) api.Resource {
	t.Helper()
	r, err := api.LookupResource(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// run runs the CLI against the cluster, bounded by within, and returns its
// combined output and exit error.
func (e *e2eCluster) run(t testing.TB, within time.Duration, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.bin, append([]string{"--server", e.addr}, args...)...).CombinedOutput()
	return string(out), err
}

// must runs the CLI and fails the test unless it exits 0.
func (e *e2eCluster) must(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.run(t, 30*time.Second, args...)
	if err != nil {
		t.Fatalf("stead %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// e2eSet describes a StatefulSet of the test image.
type e2eSet struct {
	Name     string
	Replicas int32
	// Parallel picks podManagementPolicy Parallel instead of OrderedReady.
	Parallel bool
	// OnDelete picks the OnDelete update strategy instead of RollingUpdate
	// with Partition.
	OnDelete  bool
	Partition int32
	// Version is the value of the VERSION variable: changing it makes a
	// new revision.
	Version string
	// NotReady starts the server without its ready file: never Ready.
	NotReady bool
	// Image replaces the test image.
	Image string
	// Service is the governing service's name; the set's name when empty.
	Service string
	// ProbeDelay is the readiness probe's initialDelaySeconds.
	ProbeDelay int32
}

// object returns the set: readiness probe on /ready every second, failing
// at the first failure, two seconds of grace to stop, minReadySeconds 0.
func (s e2eSet) object() *appsv1.StatefulSet {
	labels := map[string]string{"app": s.Name}
	env := []corev1.EnvVar{{Name: "VERSION", Value: s.Version}}
	if s.NotReady {
		env = append(env, corev1.EnvVar{Name: "NOT_READY", Value: "1"})
	}
	image := s.Image
	if image == "" {
		image = e2eImage
	}
	service := s.Service
	if service == "" {
		service = s.Name
	}
	grace := int64(2)
	set := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: s.Name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &s.Replicas,
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			ServiceName: service,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name:  "app",
						Image: image,
						Env:   env,
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}},
							InitialDelaySeconds: s.ProbeDelay,
							PeriodSeconds:       1,
							FailureThreshold:    1,
							SuccessThreshold:    1,
							// A loaded machine must not turn a slow answer
							// into a readiness flap.
							TimeoutSeconds: 3,
						},
					}},
				},
			},
		},
	}
	if s.Parallel {
		set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	}
	if s.OnDelete {
		set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	} else {
		set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
			Type:          appsv1.RollingUpdateStatefulSetStrategyType,
			RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &s.Partition},
		}
	}
	return set
}

// headlessService returns the headless service name selecting set's pods,
// with the port named http.
func headlessService(name, set string) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": set},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// apply writes objs as one manifest and applies it with `stead apply -f`.
func (e *e2eCluster) apply(t testing.TB, objs ...any) string {
	t.Helper()
	var docs [][]byte
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	f, err := os.CreateTemp(e.dir, "manifest-*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Join(docs, []byte("---\n")))
	f.Close()
	return e.must(t, "apply", "-f", f.Name())
}

// deleteSetOnCleanup deletes set name when the test ends and waits until its
// pods are gone, so that the next test starts from an empty node.
func (e *e2eCluster) deleteSetOnCleanup(t testing.TB, name string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := e.c.Delete(ctx, e2eResource(t, "statefulsets"), e2eNamespace, name, api.DeleteOptions{})
		cancel()
		if err != nil {
			t.Errorf("cleanup: delete statefulset %s: %v", name, err)
			return
		}
		e.follow(t, name, 60*time.Second, "the pods of "+name+" gone", func(v setView) bool { return len(v.Pods) == 0 })
	})
}

// podView is what the tests follow of one pod.
type podView struct {
	Name, UID, Revision, IP string
	Phase                   corev1.PodPhase
	// Ready is phase Running and condition Ready True.
	Ready       bool
	Terminating bool
	// Waiting is the reason the container waits, such as ErrImagePull.
	Waiting string
	// Created is the creation timestamp; ReadySince the Ready condition's
	// last transition, when Ready.
	Created, ReadySince time.Time
}

func newPodView(p *corev1.Pod) podView {
	v := podView{
		Name: p.Name, UID: string(p.UID), Revision: p.Labels[api.LabelRevisionHash], IP: p.Status.PodIP,
		Phase: p.Status.Phase, Terminating: p.DeletionTimestamp != nil, Created: p.CreationTimestamp.Time,
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.Phase == corev1.PodRunning {
			v.Ready, v.ReadySince = true, c.LastTransitionTime.Time
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil {
			v.Waiting = cs.State.Waiting.Reason
		}
	}
	return v
}

// String is the pod in a few characters: name, revision hash, uid prefix,
// state.
func (v podView) String() string {
	state := string(v.Phase)
	switch {
	case v.Terminating:
		state = "Terminating"
	case v.Ready:
		state = "Ready"
	case v.Waiting != "":
		state = v.Waiting
	}
	rev := v.Revision
	if i := strings.LastIndex(rev, "-"); i >= 0 {
		rev = rev[i+1:]
	}
	uid := v.UID
	if len(uid) > 4 {
		uid = uid[:4]
	}
	return fmt.Sprintf("%s(%s,%s,%s)", v.Name, rev, uid, state)
}

// setView is one look at a set and its pods. The pods are read after the
// set, so whatever the controller committed with the set's status (pods it
// created or deleted in the same step) is among them.
type setView struct {
	// Index is the state index the pods were read at.
	Index uint64
	// Set is nil once the set is gone.
	Set  *appsv1.StatefulSet
	Pods map[string]podView
}

// pod returns the pod of ordinal ord and whether it exists.
func (v setView) pod(set string, ord int) (podView, bool) {
	p, ok := v.Pods[api.ReplicaName(set, ord)]
	return p, ok
}

func (v setView) String() string { return fmt.Sprintf("@%d %s", v.Index, v.state()) }

// state is the view without its index: what the tests look at.
func (v setView) state() string {
	var names []string
	for n := range v.Pods {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		_, a, _ := api.ParseOrdinal(names[i])
		_, b, _ := api.ParseOrdinal(names[j])
		return a < b
	})
	var parts []string
	for _, n := range names {
		parts = append(parts, v.Pods[n].String())
	}
	s := "[" + strings.Join(parts, " ") + "]"
	if st := v.Set; st != nil {
		s += fmt.Sprintf(" gen %d/%d ready %d updated %d current %s update %s", st.Status.ObservedGeneration, st.Generation,
			st.Status.ReadyReplicas, st.Status.UpdatedReplicas, st.Status.CurrentRevision, st.Status.UpdateRevision)
	}
	return s
}

// look waits until the state passes after (at once when after is 0; at
// most wait), then reads set name and its pods.
func (e *e2eCluster) look(t testing.TB, name string, after uint64, wait time.Duration) (setView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
	defer cancel()
	pods := e2eResource(t, "pods")
	opts := api.ListOptions{LabelSelector: "app=" + name}
	if after > 0 {
		waitOpts := opts
		waitOpts.Index, waitOpts.Wait = after, wait
		if _, _, err := e.c.List(ctx, pods, e2eNamespace, waitOpts); err != nil {
			return setView{}, err
		}
	}
	v := setView{Pods: map[string]podView{}}
	var set appsv1.StatefulSet
	if _, err := e.c.Get(ctx, e2eResource(t, "statefulsets"), e2eNamespace, name, &set); err == nil {
		v.Set = &set
	} else if !apierrors.IsNotFound(err) {
		return v, err
	}
	l, idx, err := e.c.List(ctx, pods, e2eNamespace, opts)
	if err != nil {
		return v, err
	}
	v.Index = idx
	for _, raw := range l.Items {
		var p corev1.Pod
		if err := json.Unmarshal(raw, &p); err != nil {
			return v, err
		}
		v.Pods[p.Name] = newPodView(&p)
	}
	return v, nil
}

// follow calls step with every new look at set name (and at least every
// second) until step returns true, and returns that view. Each view that
// differs from the previous is logged, and the test fails with the last
// one if within passes first.
func (e *e2eCluster) follow(t testing.TB, name string, within time.Duration, what string, step func(v setView) bool) setView {
	t.Helper()
	deadline := time.Now().Add(within)
	var index uint64
	var last setView
	var lastErr error
	for {
		v, err := e.look(t, name, index, time.Second)
		if err == nil {
			if v.state() != last.state() {
				t.Logf("%s %s", time.Now().Format("15:04:05.000"), v)
			}
			last, index = v, v.Index
			if step(v) {
				return v
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s; last view %s (last error %v)", within, what, last, lastErr)
		}
		if err != nil {
			time.Sleep(100 * time.Millisecond) // the API did not answer: do not spin
		}
	}
}

// allReady reports whether the view has exactly the pods of ordinals
// 0..n-1, each Ready, not terminating, at revision rev (any when empty).
func allReady(v setView, set string, n int, rev string) bool {
	if len(v.Pods) != n {
		return false
	}
	for i := range n {
		p, ok := v.pod(set, i)
		if !ok || !p.Ready || p.Terminating || (rev != "" && p.Revision != rev) {
			return false
		}
	}
	return true
}

// settled reports whether the set's status describes its spec: the
// generation observed, and the rollout done (current == update revision).
func settled(v setView) bool {
	s := v.Set
	return s != nil && s.Status.ObservedGeneration == s.Generation && s.Status.CurrentRevision == s.Status.UpdateRevision &&
		s.Spec.Replicas != nil && s.Status.ReadyReplicas == *s.Spec.Replicas
}

// createReady applies set and waits until its pods are all Ready and the
// set settled; it returns that view. The set is deleted when the test
// ends.
func (e *e2eCluster) createReady(t testing.TB, s e2eSet, extra ...any) setView {
	t.Helper()
	e.deleteSetOnCleanup(t, s.Name)
	e.apply(t, append([]any{s.object()}, extra...)...)
	return e.follow(t, s.Name, 90*time.Second, fmt.Sprintf("%d pods of %s Ready", s.Replicas, s.Name), func(v setView) bool {
		return allReady(v, s.Name, int(s.Replicas), "") && settled(v)
	})
}

// exec runs the test program in pod with args through `stead exec`.
func (e *e2eCluster) exec(t testing.TB, pod string, args ...string) (string, error) {
	t.Helper()
	return e.run(t, 30*time.Second, append([]string{"exec", pod, "--", "/e2eapp"}, args...)...)
}

// uids returns the pods' uids by name.
func uids(v setView) map[string]string {
	m := map[string]string{}
	for n, p := range v.Pods {
		m[n] = p.UID
	}
	return m
}
