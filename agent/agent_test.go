package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/image"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

func fieldEnv(name, path string) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
}

func execProbe(cmd ...string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: cmd}}, PeriodSeconds: 1, FailureThreshold: 1, TimeoutSeconds: 2}
}

func url(p *corev1.Pod, path string) string {
	return "http://" + net.JoinHostPort(p.Status.PodIP, "8080") + path
}

func containerStatus(p *corev1.Pod) corev1.ContainerStatus {
	if len(p.Status.ContainerStatuses) == 0 {
		return corev1.ContainerStatus{}
	}
	return p.Status.ContainerStatuses[0]
}

func waitingReason(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	if w := containerStatus(p).State.Waiting; w != nil {
		return w.Reason
	}
	return ""
}

// TestAgent runs one node agent against a real containerd, CNI and a real
// server, and checks what pods get and what happens to them; the cases
// run in parallel on the same node, each with its own pods, so every case
// also checks that the agent keeps the others' pods running. At the end,
// once every pod is deleted, nothing may be left behind.
func TestAgent(t *testing.T) {
	e := newEnv(t)
	node := e.startAgent(t, e.agentConfig(t, "node-a"))
	subnet := netip.MustParsePrefix(node.Node().Spec.PodCIDR)
	gateway := subnet.Addr().Next()
	nodeIP := node.Node().Status.Addresses[0].Address
	// Pods' traffic is masqueraded only when it leaves the cluster range.
	if out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output(); err != nil ||
		!strings.Contains(string(out), "-s "+subnet.String()+" ! -d "+e.cluster.String()) {
		t.Errorf("no masquerade rule for %s leaving %s: %v\n%s", subnet, e.cluster, err, out)
	}

	t.Run("cases", func(t *testing.T) {
		t.Run("identity", func(t *testing.T) {
			t.Parallel()
			pod := e.testPod("ident-3", []string{"serve", ":8080"}, func(p *corev1.Pod) {
				p.Labels[api.LabelPodIndex] = "3"
				p.Spec.Hostname, p.Spec.Subdomain = "ident-3", "idsvc"
				p.Spec.Containers[0].Env = []corev1.EnvVar{
					fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"),
					fieldEnv("POD_INDEX", "metadata.labels['apps.kubernetes.io/pod-index']"),
					fieldEnv("POD_IP", "status.podIP"), fieldEnv("NODE", "spec.nodeName"),
					{Name: "PEER", Value: "$(POD_NAME).idsvc"},
				}
			})
			e.assign(t, "node-a", pod)
			p := e.running(t, "ident-3")
			if !subnet.Contains(netip.MustParseAddr(p.Status.PodIP)) || p.Status.HostIP != nodeIP {
				t.Fatalf("podIP %s (subnet %s) hostIP %s (node %s)", p.Status.PodIP, subnet, p.Status.HostIP, nodeIP)
			}
			checks := map[string]string{
				"/hostname": "ident-3", "/env/POD_NAME": "ident-3", "/env/POD_NAMESPACE": "default", "/env/POD_INDEX": "3",
				"/env/POD_IP": p.Status.PodIP, "/env/NODE": "node-a", "/env/PEER": "ident-3.idsvc",
				"/file/etc/resolv.conf": "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver " + gateway.String() + "\noptions ndots:5\n",
				"/file/etc/hostname":    "ident-3\n",
			}
			for path, want := range checks {
				if got := waitGet(t, url(p, path)); got != want {
					t.Errorf("%s = %q, want %q", path, got, want)
				}
			}
			hosts := waitGet(t, url(p, "/file/etc/hosts"))
			for _, want := range []string{"127.0.0.1\tlocalhost\n", p.Status.PodIP + "\tident-3.idsvc.default.svc.cluster.local\tident-3\n"} {
				if !strings.Contains(hosts, want) {
					t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
				}
			}
			// The pod resolves its own name through the node's DNS once a
			// headless service selects it.
			svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"idsvc","namespace":"default"},
				"spec":{"clusterIP":"None","selector":{"app":"test"},"ports":[{"name":"web","port":8080}]}}`
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := e.client.Do(ctx, "PUT", "/v1/namespaces/default/services/idsvc", nil, []byte(svc), nil); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 20*time.Second, "ident-3.idsvc to resolve in the pod", func() (bool, string) {
				code, out := node.exec(t, "ident-3", "/podtest", "resolve", "ident-3.idsvc")
				return code == 0 && strings.TrimSpace(out) == p.Status.PodIP, out
			})
			e.deletePod(t, "ident-3")
		})

		t.Run("connectivity", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("conn-0", []string{"serve", ":8080"}))
			e.assign(t, "node-a", e.testPod("conn-1", []string{"serve", ":8080"}))
			a, b := e.running(t, "conn-0"), e.running(t, "conn-1")
			if a.Status.PodIP == b.Status.PodIP {
				t.Fatalf("both pods have IP %s", a.Status.PodIP)
			}
			// Both listen on port 8080, each in its own network.
			if got := waitGet(t, url(a, "/hostname")); got != "conn-0" {
				t.Errorf("host to conn-0: %q", got)
			}
			if got := waitGet(t, url(b, "/hostname")); got != "conn-1" {
				t.Errorf("host to conn-1: %q", got)
			}
			if got := waitGet(t, url(a, "/get?url="+url(b, "/hostname"))); got != "conn-1" {
				t.Errorf("conn-0 to conn-1: %q", got)
			}
			if got := waitGet(t, url(b, "/get?url="+url(a, "/hostname"))); got != "conn-0" {
				t.Errorf("conn-1 to conn-0: %q", got)
			}
			e.deletePod(t, "conn-0")
			e.deletePod(t, "conn-1")
		})

		t.Run("host network", func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			e.assign(t, "node-a", e.testPod("hostnet-0", []string{"serve", addr}, func(p *corev1.Pod) { p.Spec.HostNetwork = true }))
			p := e.running(t, "hostnet-0")
			if p.Status.PodIP != nodeIP {
				t.Errorf("podIP %s, want the node's %s", p.Status.PodIP, nodeIP)
			}
			host, _ := os.Hostname()
			if got := waitGet(t, "http://"+addr+"/hostname"); got != host {
				t.Errorf("hostname in a host-network pod = %q, want the node's %q", got, host)
			}
			e.deletePod(t, "hostnet-0")
		})

		t.Run("readiness", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("ready-0", []string{"hang"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].ReadinessProbe = execProbe("/podtest", "test", "/tmp/ready")
			}))
			e.waitPod(t, "ready-0", 60*time.Second, "running, not ready", func(p *corev1.Pod) bool {
				return p.Status.Phase == corev1.PodRunning && !isReady(p) && containerStatus(p).State.Running != nil
			})
			node.exec(t, "ready-0", "/podtest", "touch", "/tmp/ready")
			e.waitPod(t, "ready-0", 20*time.Second, "ready", isReady)
			node.exec(t, "ready-0", "/podtest", "rm", "/tmp/ready")
			p := e.waitPod(t, "ready-0", 20*time.Second, "unready", func(p *corev1.Pod) bool { return !isReady(p) })
			if containerStatus(p).RestartCount != 0 || containerStatus(p).State.Running == nil {
				t.Errorf("a readiness failure restarted the container: %s", describe(p))
			}
			e.deletePod(t, "ready-0")
		})

		t.Run("liveness restarts with back-off", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("live-0", []string{"hang"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].LivenessProbe = execProbe("/podtest", "test", "/tmp/alive")
			}))
			sawBackOff := false
			p := e.waitPod(t, "live-0", 60*time.Second, "restarted twice", func(p *corev1.Pod) bool {
				sawBackOff = sawBackOff || waitingReason(p) == "CrashLoopBackOff"
				return containerStatus(p).RestartCount >= 2
			})
			last := containerStatus(p).LastTerminationState.Terminated
			// hang has no handler for SIGTERM; Go, as the container's
			// init process, exits 2 on it (the kernel ignores the default
			// action for an init).
			if last == nil || last.ExitCode != 2 || last.Reason != "Error" || last.FinishedAt.IsZero() {
				t.Errorf("lastState %+v; previous log: %q", last, node.logs(t, "live-0", api.LogOptions{Tail: -1, Previous: true}))
			}
			p = e.waitPod(t, "live-0", 30*time.Second, "in CrashLoopBackOff", func(p *corev1.Pod) bool {
				sawBackOff = sawBackOff || waitingReason(p) == "CrashLoopBackOff"
				return sawBackOff
			})
			if p.Status.Phase != corev1.PodRunning {
				t.Errorf("a crash-looping pod is %s, want Running", p.Status.Phase)
			}
			e.deletePod(t, "live-0")
		})

		t.Run("startup probe", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("start-0", []string{"hang"}, func(p *corev1.Pod) {
				sp := execProbe("/podtest", "test", "/tmp/started")
				sp.FailureThreshold = 60
				p.Spec.Containers[0].StartupProbe = sp
				p.Spec.Containers[0].LivenessProbe = execProbe("/podtest", "test", "/tmp/started")
			}))
			p := e.waitPod(t, "start-0", 60*time.Second, "running, not started", func(p *corev1.Pod) bool {
				cs := containerStatus(p)
				return cs.State.Running != nil && cs.Started != nil && !*cs.Started
			})
			if isReady(p) {
				t.Fatal("ready before its startup probe passed")
			}
			node.exec(t, "start-0", "/podtest", "touch", "/tmp/started")
			p = e.waitPod(t, "start-0", 20*time.Second, "started and ready", func(p *corev1.Pod) bool {
				cs := containerStatus(p)
				return isReady(p) && cs.Started != nil && *cs.Started
			})
			if containerStatus(p).RestartCount != 0 {
				t.Errorf("the liveness probe ran before startup: %s", describe(p))
			}
			e.deletePod(t, "start-0")
		})

		t.Run("graceful stop", func(t *testing.T) {
			t.Parallel()
			grace := int64(3)
			e.assign(t, "node-a", e.testPod("stubborn-0", []string{"ignore-term"}, func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &grace }))
			e.assign(t, "node-a", e.testPod("polite-0", []string{"serve", ":8080"}, func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = &grace }))
			e.running(t, "stubborn-0")
			e.running(t, "polite-0")
			waitFor(t, 10*time.Second, "stubborn-0 to ignore SIGTERM", func() (bool, string) {
				out := node.logs(t, "stubborn-0", api.LogOptions{Tail: -1})
				return strings.Contains(out, "ignoring SIGTERM"), out
			})
			start := time.Now()
			e.deletePod(t, "stubborn-0")
			stubborn := time.Since(start)
			start = time.Now()
			e.deletePod(t, "polite-0")
			polite := time.Since(start)
			// SIGTERM ignored: SIGKILL after the grace period.
			if stubborn < 3*time.Second || stubborn > 10*time.Second {
				t.Errorf("a process ignoring SIGTERM stopped after %v, want the 3s grace period", stubborn)
			}
			if polite > 2500*time.Millisecond {
				t.Errorf("a process exiting on SIGTERM took %v to stop", polite)
			}
		})

		t.Run("logs and exec", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("logs-0", []string{"tick"}))
			e.assign(t, "node-a", e.testPod("crash-0", []string{"exit", "7"}))
			e.running(t, "logs-0")
			if code, out := node.exec(t, "logs-0", "/podtest", "echo", "hello", "exec"); code != 0 || out != "hello exec\n" {
				t.Errorf("exec echo: %d %q", code, out)
			}
			if code, out := node.exec(t, "logs-0", "/podtest", "exit", "3"); code != 3 || out != "exiting with 3\n" {
				t.Errorf("exec exit 3: %d %q", code, out)
			}
			var out strings.Builder
			code, err := node.client(t).Exec(context.Background(), "default", "logs-0", api.ExecOptions{
				Command: []string{"/podtest", "cat"}, Stdin: strings.NewReader("through stdin\n"), Stdout: &out})
			if err != nil || code != 0 || out.String() != "through stdin\n" {
				t.Errorf("exec with stdin: %d %v %q", code, err, out.String())
			}
			// A terminal, resized by the client.
			sizes := make(chan [2]uint16, 1)
			sizes <- [2]uint16{100, 40}
			out.Reset()
			code, err = node.client(t).Exec(context.Background(), "default", "logs-0", api.ExecOptions{
				Command: []string{"/podtest", "ttysize"}, TTY: true, Resize: sizes, Stdout: &out})
			if err != nil || code != 0 || out.String() != "100 40\r\n" {
				t.Errorf("exec with a terminal: %d %v %q", code, err, out.String())
			}
			if _, err := node.client(t).Exec(context.Background(), "default", "logs-0", api.ExecOptions{Command: []string{"/no/such"}}); err == nil {
				t.Error("exec of a missing binary succeeded")
			}
			waitFor(t, 10*time.Second, "ticks", func() (bool, string) {
				l := node.logs(t, "logs-0", api.LogOptions{Tail: -1})
				return strings.Contains(l, "tick 5\n"), l
			})
			if got := node.logs(t, "logs-0", api.LogOptions{Tail: 2}); strings.Count(got, "\n") != 2 || !strings.HasPrefix(got, "tick ") {
				t.Errorf("tail 2: %q", got)
			}
			// Follow: new lines arrive while the stream is open.
			ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
			r, err := node.client(t).Logs(ctx, "default", "logs-0", api.LogOptions{Follow: true, Tail: 0})
			if err != nil {
				t.Fatal(err)
			}
			var followed bytes.Buffer
			followed.ReadFrom(r)
			cancel()
			r.Close()
			if n := strings.Count(followed.String(), "tick "); n < 5 {
				t.Errorf("followed %d lines in 1.5s: %q", n, followed.String())
			}
			p := e.waitPod(t, "crash-0", 60*time.Second, "restarted", func(p *corev1.Pod) bool { return containerStatus(p).RestartCount >= 1 })
			if lt := containerStatus(p).LastTerminationState.Terminated; lt == nil || lt.ExitCode != 7 {
				t.Errorf("crash-0 lastState %+v", lt)
			}
			if got := node.logs(t, "crash-0", api.LogOptions{Tail: -1, Previous: true}); got != "exiting with 7\n" {
				t.Errorf("previous log %q", got)
			}
			e.deletePod(t, "logs-0")
			e.deletePod(t, "crash-0")
		})

		t.Run("volumes", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("vol-0", []string{"serve", ":8080"}, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{
					{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-vol-0"}}},
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "mem", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
				}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
					{Name: "data", MountPath: "/data"},
					{Name: "data", MountPath: "/sub", SubPath: "nested/dir"},
					{Name: "scratch", MountPath: "/scratch"},
					{Name: "mem", MountPath: "/mem"},
				}
			}))
			e.running(t, "vol-0")
			for _, f := range []string{"/data/top", "/sub/inner", "/scratch/s", "/mem/m"} {
				if code, out := node.exec(t, "vol-0", "/podtest", "touch", f); code != 0 {
					t.Errorf("touch %s: %s", f, out)
				}
			}
			claimDir := filepath.Join(node.cfg.DataDir, "volumes", "default", "data-vol-0")
			for _, f := range []string{"top", "nested/dir/inner"} {
				if _, err := os.Stat(filepath.Join(claimDir, f)); err != nil {
					t.Errorf("claim volume: %v", err)
				}
			}
			e.deletePod(t, "vol-0")
			// The claim's data stays for the next pod of the ordinal.
			if _, err := os.Stat(filepath.Join(claimDir, "nested/dir/inner")); err != nil {
				t.Errorf("claim data gone after the pod: %v", err)
			}
		})

		t.Run("bad input", func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			taken := ln.Addr().(*net.TCPAddr).Port
			claimDir := filepath.Join(node.cfg.DataDir, "volumes", "default", "evil-claim")
			os.MkdirAll(claimDir, 0o755)
			os.Symlink("/etc", filepath.Join(claimDir, "escape"))

			e.assign(t, "node-a", e.testPod("pull-0", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "127.0.0.1:1/none:1" }))
			e.assign(t, "node-a", e.testPod("nocmd-0", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Command = []string{"/no/such/binary"} }))
			e.assign(t, "node-a", e.testPod("port-0", []string{"serve", ":8080"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(taken), Protocol: corev1.ProtocolTCP}}
			}))
			e.assign(t, "node-a", e.testPod("escape-0", []string{"serve", ":8080"}, func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "evil-claim"}}}}
				p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "v", MountPath: "/v", SubPath: "escape/ssl"}}
			}))

			// ErrImagePull lasts one sync, which a reporter behind may
			// never write; the event of the failed pull stays.
			seen := map[string]string{}
			e.waitPod(t, "pull-0", 30*time.Second, "ErrImagePull then ImagePullBackOff", func(p *corev1.Pod) bool {
				if w := containerStatus(p).State.Waiting; w != nil {
					seen[w.Reason] = w.Message
				}
				if seen["ErrImagePull"] == "" {
					if msg := e.eventMessage(t, "pull-0", "Failed"); strings.HasPrefix(msg, "Failed to pull image") {
						seen["ErrImagePull"] = msg
					}
				}
				return seen["ErrImagePull"] != "" && seen["ImagePullBackOff"] != ""
			})
			if !strings.Contains(seen["ErrImagePull"], `Failed to pull image "127.0.0.1:1/none:1"`) ||
				seen["ImagePullBackOff"] != `Back-off pulling image "127.0.0.1:1/none:1"` {
				t.Errorf("pull messages %q", seen)
			}
			p := e.waitPod(t, "nocmd-0", 30*time.Second, "StartError", func(p *corev1.Pod) bool {
				cs := containerStatus(p)
				for _, st := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
					if st.Terminated != nil && st.Terminated.Reason == "StartError" {
						return true
					}
				}
				return false
			})
			cs := containerStatus(p)
			term := cs.LastTerminationState.Terminated
			if term == nil {
				term = cs.State.Terminated
			}
			if term.ExitCode != 128 || !strings.Contains(term.Message, "/no/such/binary") {
				t.Errorf("nocmd-0: %s: %q", describe(p), term.Message)
			}
			p = e.waitPod(t, "port-0", 30*time.Second, "CreatePodSandboxError", func(p *corev1.Pod) bool { return waitingReason(p) == "CreatePodSandboxError" })
			if msg := containerStatus(p).State.Waiting.Message; !strings.Contains(msg, fmt.Sprintf("hostPort %d/tcp is already in use", taken)) {
				t.Errorf("port-0 message %q", msg)
			}
			p = e.waitPod(t, "escape-0", 30*time.Second, "CreateContainerConfigError", func(p *corev1.Pod) bool { return waitingReason(p) == "CreateContainerConfigError" })
			if msg := containerStatus(p).State.Waiting.Message; !strings.Contains(msg, "escape/ssl") {
				t.Errorf("escape-0 message %q", msg)
			}
			for _, name := range []string{"pull-0", "nocmd-0", "port-0", "escape-0"} {
				if p := e.pod("default", name); p.Status.Phase == corev1.PodRunning && isReady(p) {
					t.Errorf("%s is ready", name)
				}
				e.deletePod(t, name)
			}
		})

		t.Run("resources", func(t *testing.T) {
			t.Parallel()
			e.assign(t, "node-a", e.testPod("res-0", []string{"serve", ":8080"}, func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MEM", ValueFrom: &corev1.EnvVarSource{ResourceFieldRef: &corev1.ResourceFieldSelector{Resource: "limits.memory", Divisor: resource.MustParse("1Mi")}}}}
			}))
			p := e.running(t, "res-0")
			if p.Status.QOSClass != corev1.PodQOSGuaranteed && p.Status.QOSClass != corev1.PodQOSBurstable {
				t.Errorf("qos %s", p.Status.QOSClass)
			}
			if got := waitGet(t, url(p, "/env/MEM")); got != "64" {
				t.Errorf("MEM = %q", got)
			}
			// The limits are the container's cgroup's.
			pid := e.pidOf(t, "default/res-0")
			if got := cgroupValue(t, pid, "memory", "memory.limit_in_bytes", "memory.max"); got != strconv.Itoa(64<<20) {
				t.Errorf("memory limit %q, want %d", got, 64<<20)
			}
			if got := cgroupValue(t, pid, "cpu", "cpu.cfs_quota_us", "cpu.max"); got != "25000" && got != "25000 100000" {
				t.Errorf("cpu quota %q, want 25000 per 100000", got)
			}
			e.deletePod(t, "res-0")
		})

		t.Run("image import", func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if _, err := image.BuildFromBinary(&buf, image.BuildOptions{Binary: containerdtest.BuildProgram(t, "testdata/podtest"), Tag: "stead-test/imported:2", Cmd: []string{"serve", ":8080"}}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got, err := node.client(t).ImportImage(ctx, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if got.Node != "node-a" || !slices.Equal(got.Images, []string{"docker.io/stead-test/imported:2"}) {
				t.Errorf("imported %+v", got)
			}
			list, err := node.client(t).ListImages(ctx)
			if err != nil || !slices.Contains(list.Images, "docker.io/stead-test/imported:2") {
				t.Errorf("images %+v %v", list, err)
			}
			e.assign(t, "node-a", e.testPod("img-0", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Image = "stead-test/imported:2" }))
			p := e.running(t, "img-0")
			if id := containerStatus(p).ImageID; !strings.HasPrefix(id, "docker.io/stead-test/imported@sha256:") {
				t.Errorf("imageID %q", id)
			}
			if _, err := node.client(t).ImportImage(ctx, strings.NewReader("not an archive")); err == nil {
				t.Error("importing garbage succeeded")
			}
			e.deletePod(t, "img-0")
		})
	})

	// Every pod was deleted: nothing of them is left.
	waitFor(t, 30*time.Second, "every container removed", func() (bool, string) {
		ids := e.containerIDs(t)
		return len(ids) == 0, fmt.Sprint(ids)
	})
	// The images' layers stay; no container's writable layer does.
	if out := e.ctr(t, "snapshots", "--snapshotter", "overlayfs", "ls"); strings.Contains(out, "Active") {
		t.Errorf("container snapshots left:\n%s", out)
	}
	if ents, _ := os.ReadDir(node.cfg.NetNSDir); len(ents) != 0 {
		t.Errorf("network namespaces left: %v", ents)
	}
	ipam, _ := os.ReadDir(filepath.Join(node.cfg.DataDir, "network", "ipam", node.cfg.NetworkName))
	for _, f := range ipam {
		if netip.MustParsePrefix("0.0.0.0/0").Contains(parseAddr(f.Name())) {
			t.Errorf("IP %s still allocated", f.Name())
		}
	}
	for _, dir := range []string{"pods", "logs"} {
		if ents, _ := os.ReadDir(filepath.Join(node.cfg.DataDir, dir)); len(ents) != 0 {
			t.Errorf("%s left: %v", dir, ents)
		}
	}
	if mps := containerdtest.MountsUnder(node.cfg.DataDir); len(mps) != 0 {
		t.Errorf("mounts left: %v", mps)
	}
	// The agent wrote events about what it did.
	list, _, err := e.client.List(context.Background(), events, "default", api.ListOptions{})
	if err != nil || len(list.Items) == 0 {
		t.Errorf("no events: %v", err)
	}
}

func parseAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}

// TestAgentRestartAdoptsPods stops the agent as kill -9 would, changes the
// cluster while it is down, and starts a new agent on the same data
// directory: it adopts the running pod without restarting it or turning it
// unready, removes the pod that was deleted meanwhile, and imports the
// archives it finds.
func TestAgentRestartAdoptsPods(t *testing.T) {
	e := newEnv(t)
	cfg := e.agentConfig(t, "node-b")
	first := e.startAgent(t, cfg)
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(8080)}}, PeriodSeconds: 1}
	withProbe := func(p *corev1.Pod) { p.Spec.Containers[0].ReadinessProbe = probe }
	e.assign(t, "node-b", e.testPod("keep-0", []string{"serve", ":8080"}, withProbe))
	e.assign(t, "node-b", e.testPod("gone-0", []string{"serve", ":8080"}))
	keep := e.running(t, "keep-0")
	gone := e.running(t, "gone-0")
	before := containerStatus(keep)
	pidBefore := e.pidOf(t, "default/keep-0")
	readySince := readyTransition(keep)

	first.stop(t)
	// While the agent is down: gone-0 is force-deleted, an archive dropped.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.client.Delete(ctx, pods, "default", "gone-0", api.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := image.BuildFile(filepath.Join(cfg.DataDir, "images", "extra.tar"), image.BuildOptions{
		Binary: containerdtest.BuildProgram(t, "testdata/podtest"), Tag: "stead-test/dropped:1"}); err != nil {
		t.Fatal(err)
	}
	if got := waitGet(t, url(keep, "/hostname")); got != "keep-0" {
		t.Fatalf("keep-0 while the agent is down: %q", got)
	}

	second := e.startAgent(t, cfg)
	waitFor(t, 30*time.Second, "gone-0's containers and network removed", func() (bool, string) {
		ids := e.containerIDs(t)
		for _, id := range ids {
			if strings.Contains(id, "gone-0") {
				return false, fmt.Sprint(ids)
			}
		}
		_, err := get(url(gone, "/hostname"))
		return err != nil, "gone-0 still answers"
	})
	// For several probe periods of the new agent, keep-0 stays as it was.
	consistently(t, 3*time.Second, "keep-0 ready since before the restart", func() (bool, string) {
		p := e.pod("default", "keep-0")
		since := readyTransition(p)
		return isReady(p) && since.Equal(&readySince), fmt.Sprintf("%s; ready since %v, was %v", describe(p), since, readySince)
	})
	after := e.pod("default", "keep-0")
	if pid := e.pidOf(t, "default/keep-0"); pid != pidBefore {
		t.Errorf("keep-0's process changed from pid %d to %d", pidBefore, pid)
	}
	cs := containerStatus(after)
	if cs.ContainerID != before.ContainerID || cs.RestartCount != 0 || !isReady(after) || after.Status.PodIP != keep.Status.PodIP {
		t.Errorf("keep-0 after the restart: %s (before: %s)", describe(after), describe(keep))
	}
	if got := readyTransition(after); !got.Equal(&readySince) {
		t.Errorf("keep-0's Ready condition moved from %v to %v: it flapped", readySince, got)
	}
	// A new pod gets a new IP: the allocations survived the restart.
	e.assign(t, "node-b", e.testPod("new-0", []string{"serve", ":8080"}))
	fresh := e.running(t, "new-0")
	if fresh.Status.PodIP == keep.Status.PodIP {
		t.Errorf("new-0 got keep-0's IP %s", fresh.Status.PodIP)
	}
	list, err := second.client(t).ListImages(context.Background())
	if err != nil || !slices.Contains(list.Images, "docker.io/stead-test/dropped:1") {
		t.Errorf("archive in images/ not imported: %+v %v", list, err)
	}

	// Cluster DNS keeps answering from its last zone when no server does;
	// the pods keep running.
	svc := `{"apiVersion":"v1","kind":"Service","metadata":{"name":"keepsvc","namespace":"default"},
		"spec":{"clusterIP":"None","selector":{"app":"test"},"ports":[{"name":"web","port":8080}]}}`
	if _, err := e.client.Do(context.Background(), "PUT", "/v1/namespaces/default/services/keepsvc", nil, []byte(svc), nil); err != nil {
		t.Fatal(err)
	}
	want := []string{keep.Status.PodIP, fresh.Status.PodIP}
	slices.Sort(want)
	lookup := func() ([]string, error) {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, second.DNSAddrs()[1].String())
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(ctx, "keepsvc.default.svc.cluster.local")
		slices.Sort(addrs)
		return addrs, err
	}
	waitFor(t, 20*time.Second, "keepsvc in DNS", func() (bool, string) {
		addrs, err := lookup()
		return slices.Equal(addrs, want), fmt.Sprint(addrs, err)
	})
	e.stopServer()
	consistently(t, 3*time.Second, "DNS answers without servers", func() (bool, string) {
		addrs, err := lookup()
		return slices.Equal(addrs, want), fmt.Sprint(addrs, err)
	})
	if got := waitGet(t, url(keep, "/hostname")); got != "keep-0" {
		t.Errorf("keep-0 without servers: %q", got)
	}
}

func readyTransition(p *corev1.Pod) metav1.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime
		}
	}
	return metav1.Time{}
}

// pidOf is the host pid of the running container of a pod.
func (e *testEnv) pidOf(t *testing.T, pod string) uint32 {
	t.Helper()
	cs, err := e.rt.ListLabeled(context.Background(), "stead.io/pod", pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.Status.Pid != 0 {
			return c.Status.Pid
		}
	}
	t.Fatalf("no running container of %s", pod)
	return 0
}

// cgroupValue reads a cgroup file of process pid: v1's file of the
// controller, or v2's file.
func cgroupValue(t *testing.T, pid uint32, controller, v1, v2 string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		path := ""
		switch {
		case parts[0] == "0" && parts[1] == "":
			path = filepath.Join("/sys/fs/cgroup", parts[2], v2)
		case slices.Contains(strings.Split(parts[1], ","), controller):
			path = filepath.Join("/sys/fs/cgroup", controller, parts[2], v1)
		default:
			continue
		}
		if v, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(v))
		}
	}
	t.Fatalf("no %s cgroup for pid %d:\n%s", controller, pid, b)
	return ""
}

// eventMessage is the message of the pod's latest event with reason.
func (e *testEnv) eventMessage(t testing.TB, pod, reason string) string {
	for _, ev := range raftstore.ListOf[*corev1.Event](e.store.View(), raftstore.Events, "default") {
		if ev.InvolvedObject.Name == pod && ev.Reason == reason {
			return ev.Message
		}
	}
	return ""
}
