package agent_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/agent"
	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// testEnv is a one-machine cluster for the agent's integration tests: a
// private containerd, a single-server Raft store on disk behind the real
// HTTP API, and a cluster range of the test's own (10.250.x.0/22, unused
// by any interface), so tests of other packages never share state.
type testEnv struct {
	t       testing.TB
	daemon  *containerdtest.Daemon
	rt      *containerd.Runtime
	store   *raftstore.Store
	client  *api.Client
	server  string
	cluster netip.Prefix
	// image is the podtest program's image.
	image string
	// stopServer takes the server's API away.
	stopServer func()
	log        hclog.Logger
}

var (
	pods, _   = api.LookupResource("pods")
	nodes, _  = api.LookupResource("nodes")
	events, _ = api.LookupResource("events")
)

// newEnv starts the cluster; it skips the test when the machine cannot run
// containers and pod networks.
func newEnv(t testing.TB) *testEnv { return newEnvWith(t, nil) }

// newEnvWith starts the cluster; with ca, its server serves mutual TLS
// with a server certificate of ca, and e.client presents a client one.
func newEnvWith(t testing.TB, ca *tlstest.CA) *testEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test")
	}
	containerdtest.Skip(t)
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("needs CNI plugin %s: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables for the CNI plugins")
	}
	e := &testEnv{t: t, log: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: testWriter{t: t}})}
	e.daemon = containerdtest.Start(t)
	e.rt = e.daemon.Connect(t)
	e.image = containerdtest.ProgramImage(t, e.rt, "testdata/podtest", "stead-test/podtest:1", "hang")
	e.cluster = freeCluster(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftAddr := ln.Addr().String()
	ln.Close()
	store, err := raftstore.Open(raftstore.Config{ID: "s1", DataDir: t.TempDir(), BindAddr: raftAddr, AdvertiseAddr: raftAddr, Bootstrap: true, Logger: e.log.Named("raft")})
	if err != nil {
		t.Fatal(err)
	}
	e.store = store
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{ID: "s1", Version: "test", Store: store, Logger: e.log, ClusterCIDR: e.cluster}))
	var clientOpts api.ClientOptions
	if ca != nil {
		srv.TLS = ca.TLS(api.CertServer, "s1").ServerConfig()
		srv.StartTLS()
		clientOpts.TLS = ca.TLS(api.CertClient, "test").ClientConfig()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		store.Close()
	})
	e.server = srv.URL
	e.stopServer = func() {
		// Blocking queries in flight end with their connections.
		srv.CloseClientConnections()
		srv.Close()
	}
	e.client, err = api.NewClientWithOptions(srv.URL, clientOpts)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a leader", func() (bool, string) { return store.IsLeader(), "" })
	return e
}

// freeCluster picks 10.250.x.0/22 that no address of the machine is in.
func freeCluster(t testing.TB) netip.Prefix {
	addrs, _ := net.InterfaceAddrs()
	var b [1]byte
	rand.Read(b[:])
	for i := 0; i < 64; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 250, (b[0] + byte(i*4)) &^ 3, 0}), 22)
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatal("no free 10.250.x.0/22")
	return netip.Prefix{}
}

type testWriter struct{ t testing.TB }

var logMu sync.Mutex

func (w testWriter) Write(p []byte) (int, error) {
	logMu.Lock()
	defer logMu.Unlock()
	defer func() { recover() }() // a log line after the test ended
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testAgent is an agent running in the test.
type testAgent struct {
	*agent.Agent
	cfg    agent.Config
	cancel context.CancelFunc
	done   chan error
}

// agentConfig returns the configuration of a test node: its own bridge,
// CNI network, namespace directory and data directory, fast back-offs.
func (e *testEnv) agentConfig(t testing.TB, name string) agent.Config {
	var b [2]byte
	rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	return agent.Config{
		NodeName:            name,
		Servers:             []string{e.server},
		DataDir:             t.TempDir(),
		ContainerdSocket:    e.daemon.Socket,
		ContainerdNamespace: e.daemon.Namespace,
		AgentAddr:           "127.0.0.1:0",
		DNSAddr:             "127.0.0.1:0",
		ClusterCIDR:         e.cluster,
		NetNSDir:            t.TempDir(),
		Bridge:              "sta" + suffix,
		NetworkName:         "stead-at-" + suffix,
		Logger:              e.log.Named(name),
		Version:             "test",
		RestartBackoff:      2 * time.Second,
		MaxRestartBackoff:   8 * time.Second,
		Heartbeat:           500 * time.Millisecond,
		Resync:              5 * time.Second,
	}
}

// startAgent runs an agent until the test ends; its pods' networks and
// mounts are removed then (the containers with the daemon).
func (e *testEnv) startAgent(t testing.TB, cfg agent.Config) *testAgent {
	t.Helper()
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-ta.done:
		t.Fatalf("agent %s stopped: %v", cfg.NodeName, err)
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("agent %s not ready after 60s", cfg.NodeName)
	}
	t.Cleanup(func() { e.cleanupNode(t, ta) })
	return ta
}

// stop ends the agent as kill -9 would leave things: nothing is stopped or
// cleaned up (the pods keep running).
func (a *testAgent) stop(t testing.TB) {
	t.Helper()
	a.cancel()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("agent %s: %v", a.cfg.NodeName, err)
		}
		a.done <- err
	case <-time.After(30 * time.Second):
		t.Fatalf("agent %s did not stop", a.cfg.NodeName)
	}
}

// cleanupNode stops the agent and removes what its pods left in the
// kernel: networks (CNI DEL releases the iptables rules), the bridge,
// mounts.
func (e *testEnv) cleanupNode(t testing.TB, a *testAgent) {
	a.cancel()
	<-a.done
	a.done <- nil
	subnet, err := netip.ParsePrefix(a.Node().Spec.PodCIDR)
	if err != nil {
		return
	}
	n, err := network.New(network.Options{Subnet: subnet, DataDir: filepath.Join(a.cfg.DataDir, "network"), NetNSDir: a.cfg.NetNSDir,
		Bridge: a.cfg.Bridge, NetworkName: a.cfg.NetworkName, ClusterCIDR: a.cfg.ClusterCIDR})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	as, _ := n.List()
	for _, at := range as {
		if err := n.Teardown(context.Background(), at.PodID); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if err := n.DeleteBridge(); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	for _, dir := range []string{a.cfg.DataDir, a.cfg.NetNSDir} {
		for _, mp := range containerdtest.MountsUnder(dir) {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
}

// podOpts shape testPod.
type podOpts func(*corev1.Pod)

// testPod is a pod of one container "main" running podtest with args.
func (e *testEnv) testPod(name string, args []string, opts ...podOpts) *corev1.Pod {
	grace := int64(3)
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "default", Labels: map[string]string{"app": "test"},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: e.image, Args: args, ImagePullPolicy: corev1.PullIfNotPresent,
			}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// assign stores pod bound to node, its generation stamped with the index
// of the assignment as the placer does, and returns the stored pod.
func (e *testEnv) assign(t testing.TB, node string, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod = pod.DeepCopy()
	pod.Spec.NodeName = node
	if pod.UID == "" {
		pod.UID = types.UID(uuid.NewString())
	}
	pod.CreationTimestamp = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	op, err := raftstore.PutOp(raftstore.Pods, pod)
	if err != nil {
		t.Fatal(err)
	}
	op.StampGeneration = true
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: pod.Namespace}}
	nsOp, err := raftstore.EnsureOp(raftstore.Namespaces, ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.store.Apply(ctx, raftstore.Txn{RequestID: uuid.NewString(), Ops: []raftstore.Op{nsOp, op}}); err != nil {
		t.Fatalf("assign %s: %v", pod.Name, err)
	}
	stored, _ := raftstore.GetOf[*corev1.Pod](e.store.View(), raftstore.Pods, pod.Namespace, pod.Name)
	return stored
}

// pod returns the stored pod, nil when there is none.
func (e *testEnv) pod(ns, name string) *corev1.Pod {
	p, ok := raftstore.GetOf[*corev1.Pod](e.store.View(), raftstore.Pods, ns, name)
	if !ok {
		return nil
	}
	return p
}

// waitPod waits until cond holds for the stored pod and returns it.
func (e *testEnv) waitPod(t testing.TB, name string, timeout time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	waitFor(t, timeout, name+" "+what, func() (bool, string) {
		p = e.pod("default", name)
		if p == nil {
			return cond(nil), "the pod is gone"
		}
		return cond(p), describe(p)
	})
	return p
}

// running waits until the pod runs and is Ready.
func (e *testEnv) running(t testing.TB, name string) *corev1.Pod {
	t.Helper()
	return e.waitPod(t, name, 60*time.Second, "Running and Ready", func(p *corev1.Pod) bool { return p != nil && isReady(p) })
}

func isReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describe is a one-line account of a pod's status for failure messages.
func describe(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "phase=%s ip=%s", p.Status.Phase, p.Status.PodIP)
	for _, c := range p.Status.Conditions {
		fmt.Fprintf(&b, " %s=%s", c.Type, c.Status)
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		fmt.Fprintf(&b, " [%s restarts=%d ready=%v", cs.Name, cs.RestartCount, cs.Ready)
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, " waiting %s: %s", cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			b.WriteString(" running")
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, " terminated %s (%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		}
		if lt := cs.LastTerminationState.Terminated; lt != nil {
			fmt.Fprintf(&b, " last %s (%d)", lt.Reason, lt.ExitCode)
		}
		b.WriteString("]")
	}
	return b.String()
}

// deletePod deletes the pod gracefully through the API and waits until
// the agent confirmed it and the record is gone.
func (e *testEnv) deletePod(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.Delete(ctx, pods, "default", name, api.DeleteOptions{}); err != nil {
		t.Fatalf("delete %s: %v", name, err)
	}
	e.waitPod(t, name, 60*time.Second, "gone", func(p *corev1.Pod) bool { return p == nil })
}

// agentClient talks to the agent's API.
func (a *testAgent) client(t testing.TB) *api.AgentClient {
	c, err := api.NewAgentClient(a.APIAddr())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// exec runs a command in a pod's container and returns its exit code and
// output.
func (a *testAgent) exec(t testing.TB, pod string, cmd ...string) (int, string) {
	t.Helper()
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code, err := a.client(t).Exec(ctx, "default", pod, api.ExecOptions{Command: cmd, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatalf("exec %v in %s: %v", cmd, pod, err)
	}
	return code, out.String()
}

// logs reads a container's log.
func (a *testAgent) logs(t testing.TB, pod string, opts api.LogOptions) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := a.client(t).Logs(ctx, "default", pod, opts)
	if err != nil {
		t.Fatalf("logs of %s: %v", pod, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("logs of %s: %v", pod, err)
	}
	return string(b)
}

// get fetches url and returns the body; a non-200 answer is an error.
func get(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), err
}

// waitGet waits until url answers 200 and returns the body.
func waitGet(t testing.TB, url string) string {
	t.Helper()
	var body string
	waitFor(t, 20*time.Second, "GET "+url, func() (bool, string) {
		var err error
		body, err = get(url)
		return err == nil, fmt.Sprint(err)
	})
	return body
}

// waitFor polls cond until it holds or timeout passes; then it fails the
// test with cond's last explanation.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// consistently checks that cond holds for all of d.
func consistently(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if ok, why := cond(); !ok {
			t.Fatalf("%s stopped holding: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// containerIDs lists the containers of the daemon's namespace.
func (e *testEnv) containerIDs(t testing.TB) []string {
	cs, err := e.rt.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cs {
		ids = append(ids, c.ID)
	}
	return ids
}

// ctr runs containerd's ctr against the test daemon.
func (e *testEnv) ctr(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ctr", append([]string{"--address", e.daemon.Socket, "--namespace", e.daemon.Namespace}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %v: %v: %s", args, err, out)
	}
	return string(out)
}
