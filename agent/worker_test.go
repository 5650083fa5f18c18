package agent

import (
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stead-io/stead/agent/network"
)

const (
	sb7 = "default_web-0_uidweb0_7"
	c70 = sb7 + "_nginx_0"
	c71 = sb7 + "_nginx_1"
	c72 = sb7 + "_nginx_2"
	c73 = sb7 + "_nginx_3"
	c74 = sb7 + "_nginx_4"
)

func wantCalls(t *testing.T, h *harness, want ...string) {
	t.Helper()
	got := h.containers.Calls()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("calls:\n got  %q\n want %q", got, want)
	}
}

func condition(st corev1.PodStatus, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func TestWorkerStartsAPod(t *testing.T) {
	h := newHarness(t)
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
	}
	w := h.worker(pod)
	next, done := h.sync(w)
	if done || next != time.Hour {
		t.Fatalf("sync: next %v done %v, want the resync period", next, done)
	}
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)

	spec := h.containers.containers[c70].spec
	if spec.Hostname != "web-0" || spec.NetNSPath != "/run/netns/"+sb7 {
		t.Errorf("hostname %q netns %q", spec.Hostname, spec.NetNSPath)
	}
	if want := []string{"POD_NAME=web-0", "POD_IP=10.244.0.2"}; !reflect.DeepEqual(spec.Env, want) {
		t.Errorf("env %q, want %q", spec.Env, want)
	}
	wantLabels := map[string]string{labelPod: "default/web-0", labelPodUID: "uid-web-0", labelGeneration: "7", labelSandbox: sb7,
		labelContainer: "nginx", labelAttempt: "0", labelCrashStreak: "0"}
	if !reflect.DeepEqual(spec.Labels, wantLabels) {
		t.Errorf("labels %v, want %v", spec.Labels, wantLabels)
	}
	var dests []string
	for _, m := range spec.Mounts {
		dests = append(dests, m.Destination)
	}
	if want := []string{"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}; !reflect.DeepEqual(dests, want) {
		t.Errorf("mounts %q, want %q", dests, want)
	}
	hosts, _ := os.ReadFile(h.env.paths.sandbox(sb7) + "/hosts")
	if !strings.Contains(string(hosts), "10.244.0.2\tweb-0.nginx.default.svc.cluster.local\tweb-0\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
	resolv, _ := os.ReadFile(h.env.paths.sandbox(sb7) + "/resolv.conf")
	if string(resolv) != "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.244.0.1\noptions ndots:5\n" {
		t.Errorf("resolv.conf:\n%s", resolv)
	}

	st := h.last()
	if st.Phase != corev1.PodRunning || st.PodIP != "10.244.0.2" || st.HostIP != "192.168.1.10" {
		t.Errorf("phase %s podIP %s hostIP %s", st.Phase, st.PodIP, st.HostIP)
	}
	for _, c := range []corev1.PodConditionType{podReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		if condition(st, c) != corev1.ConditionTrue {
			t.Errorf("condition %s = %s, want True", c, condition(st, c))
		}
	}
	cs := st.ContainerStatuses[0]
	if cs.State.Running == nil || !cs.Ready || !*cs.Started || cs.ContainerID != "containerd://"+c70 ||
		cs.ImageID != "docker.io/library/web@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("container status %+v", cs)
	}
	if st.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("qos %s", st.QOSClass)
	}

	// Nothing changed: a second sync does nothing.
	h.feed(w)
	h.sync(w)
	wantCalls(t, h)
}

// TestWorkerCrashLoop follows the kubelet's back-off: the first restart at
// once, then 10 s, 20 s, ... after each exit, and a fresh streak after a
// long run.
func TestWorkerCrashLoop(t *testing.T) {
	h := newHarness(t)
	w := h.worker(webPod("web-0", 7))
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)

	h.clock.Advance(5 * time.Second)
	h.containers.exit(c70, 1)
	next, _ := h.sync(w)
	wantCalls(t, h, "create "+c71, "start "+c71)
	cs := h.last().ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.State.Running == nil || cs.LastTerminationState.Terminated == nil ||
		cs.LastTerminationState.Terminated.ExitCode != 1 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Fatalf("after the first crash: %+v", cs)
	}
	if next != time.Hour {
		t.Errorf("next %v", next)
	}

	h.clock.Advance(time.Second)
	h.containers.exit(c71, 2)
	next, _ = h.sync(w)
	wantCalls(t, h)
	cs = h.last().ContainerStatuses[0]
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" ||
		cs.State.Waiting.Message != "back-off 10s restarting failed container=nginx pod=web-0_default(uid-web-0)" ||
		cs.LastTerminationState.Terminated.ExitCode != 2 || cs.RestartCount != 1 {
		t.Fatalf("in back-off: %+v", cs)
	}
	if h.last().Phase != corev1.PodRunning || condition(h.last(), corev1.PodReady) != corev1.ConditionFalse {
		t.Errorf("phase %s ready %s, want Running and not ready", h.last().Phase, condition(h.last(), corev1.PodReady))
	}
	if next != 10*time.Second {
		t.Fatalf("back-off wake in %v, want 10s", next)
	}

	h.clock.Advance(10 * time.Second)
	h.sync(w)
	wantCalls(t, h, "create "+c72, "start "+c72, "delete "+c70)
	if cs := h.last().ContainerStatuses[0]; cs.RestartCount != 2 {
		t.Fatalf("restartCount %d", cs.RestartCount)
	}

	h.clock.Advance(time.Second)
	h.containers.exit(c72, 1)
	if next, _ = h.sync(w); next != 20*time.Second {
		t.Fatalf("third back-off %v, want 20s", next)
	}
	h.clock.Advance(20 * time.Second)
	h.sync(w)
	wantCalls(t, h, "create "+c73, "start "+c73, "delete "+c71)

	// A run of more than ten minutes starts a new streak: at once.
	h.clock.Advance(11 * time.Minute)
	h.containers.exit(c73, 1)
	h.sync(w)
	wantCalls(t, h, "create "+c74, "start "+c74, "delete "+c72)
}

func TestBackoffDelays(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Max: 5 * time.Minute}
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, b.Delay(n))
	}
	want := []time.Duration{0, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 300 * time.Second, 300 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	if b.Step(1) != 10*time.Second || b.Step(2) != 20*time.Second {
		t.Errorf("steps %v %v", b.Step(1), b.Step(2))
	}
	t0 := time.Unix(1000, 0)
	cur := &attemptView{FinishedAt: t0.Add(9 * time.Minute)}
	prev := &attemptView{FinishedAt: t0}
	if got := crashStreak(cur, prev, 4, b); got != 5 {
		t.Errorf("streak after a quick crash = %d, want 5", got)
	}
	cur.FinishedAt = t0.Add(11 * time.Minute)
	if got := crashStreak(cur, prev, 4, b); got != 1 {
		t.Errorf("streak after a long run = %d, want 1", got)
	}
	if got := crashStreak(cur, nil, 0, b); got != 1 {
		t.Errorf("first crash streak = %d, want 1", got)
	}
}

func execProbe(period, failures int32, cmd string) *corev1.Probe {
	return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
		PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: 1, TimeoutSeconds: 1}
}

func TestWorkerReadiness(t *testing.T) {
	h := newHarness(t)
	ready := false
	h.containers.exec = func(_ string, cmd []string) (int, string) {
		if ready {
			return 0, ""
		}
		return 1, "not ready yet"
	}
	pod := webPod("web-0", 7)
	p := execProbe(2, 2, "check")
	p.InitialDelaySeconds = 3
	pod.Spec.Containers[0].ReadinessProbe = p
	w := h.worker(pod)
	next, _ := h.sync(w)
	if next != 3*time.Second {
		t.Fatalf("first readiness probe in %v, want the initial delay 3s", next)
	}
	if condition(h.last(), corev1.PodReady) != corev1.ConditionFalse || h.last().ContainerStatuses[0].Ready {
		t.Fatal("ready before the readiness probe ran")
	}
	h.clock.Advance(3 * time.Second)
	if next, _ = h.sync(w); next != 2*time.Second {
		t.Fatalf("next probe in %v, want the period 2s", next)
	}
	if condition(h.last(), corev1.PodReady) != corev1.ConditionFalse {
		t.Fatal("ready after a failed probe")
	}
	ready = true
	h.clock.Advance(2 * time.Second)
	h.sync(w)
	st := h.last()
	if condition(st, corev1.PodReady) != corev1.ConditionTrue || !st.ContainerStatuses[0].Ready {
		t.Fatalf("not ready after a passing probe: %+v", st.Conditions)
	}
	readySince := findCondition(st.Conditions, corev1.PodReady).LastTransitionTime
	h.feed(w)

	// One failure is below the threshold of 2.
	ready = false
	h.clock.Advance(2 * time.Second)
	h.sync(w)
	if condition(h.last(), corev1.PodReady) != corev1.ConditionTrue {
		t.Fatal("unready after one failure")
	}
	if got := findCondition(h.last().Conditions, corev1.PodReady).LastTransitionTime; !got.Equal(&readySince) {
		t.Errorf("Ready transition time moved from %v to %v while unchanged", readySince, got)
	}
	h.clock.Advance(2 * time.Second)
	h.sync(w)
	st = h.last()
	if c := findCondition(st.Conditions, corev1.PodReady); c.Status != corev1.ConditionFalse || c.Reason != "ContainersNotReady" ||
		c.Message != "containers with unready status: [nginx]" {
		t.Fatalf("after two failures: %+v", c)
	}
	if h.events[len(h.events)-1] != "Unhealthy: Readiness probe failed: not ready yet" {
		t.Errorf("last event %q", h.events[len(h.events)-1])
	}
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)
}

func TestWorkerLivenessRestarts(t *testing.T) {
	h := newHarness(t)
	alive := true
	h.containers.exec = func(string, []string) (int, string) {
		if alive {
			return 0, ""
		}
		return 1, "dead"
	}
	h.containers.stopCode = 137
	pod := webPod("web-0", 7)
	grace := int64(5)
	pod.Spec.TerminationGracePeriodSeconds = &grace
	pod.Spec.Containers[0].LivenessProbe = execProbe(1, 2, "alive")
	w := h.worker(pod)
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)
	alive = false
	h.clock.Advance(time.Second)
	h.sync(w)
	wantCalls(t, h)
	h.clock.Advance(time.Second)
	next, _ := h.sync(w)
	wantCalls(t, h, "stop "+c70+" grace=5s")
	if next != 0 {
		t.Fatalf("restart wanted at once, next in %v", next)
	}
	alive = true
	h.sync(w)
	wantCalls(t, h, "create "+c71, "start "+c71)
	cs := h.last().ContainerStatuses[0]
	if cs.RestartCount != 1 || cs.LastTerminationState.Terminated.ExitCode != 137 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Errorf("after the liveness restart: %+v", cs)
	}
	found := false
	for _, e := range h.events {
		found = found || e == "Killing: Container nginx failed liveness probe, will be restarted"
	}
	if !found {
		t.Errorf("no Killing event in %q", h.events)
	}
}

func TestWorkerStartupProbeGates(t *testing.T) {
	h := newHarness(t)
	started := false
	probed := map[string]int{}
	h.containers.exec = func(_ string, cmd []string) (int, string) {
		probed[cmd[0]]++
		if cmd[0] == "startup" && !started {
			return 1, "starting"
		}
		return 0, ""
	}
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].StartupProbe = execProbe(1, 10, "startup")
	pod.Spec.Containers[0].LivenessProbe = execProbe(1, 1, "liveness")
	pod.Spec.Containers[0].ReadinessProbe = execProbe(1, 1, "readiness")
	w := h.worker(pod)
	h.sync(w)
	for i := 0; i < 3; i++ {
		h.clock.Advance(time.Second)
		h.sync(w)
	}
	cs := h.last().ContainerStatuses[0]
	if *cs.Started || cs.Ready || probed["liveness"] != 0 || probed["readiness"] != 0 || probed["startup"] != 4 {
		t.Fatalf("before startup passed: started %v ready %v probes %v", *cs.Started, cs.Ready, probed)
	}
	started = true
	h.clock.Advance(time.Second)
	h.sync(w)
	cs = h.last().ContainerStatuses[0]
	if !*cs.Started || !cs.Ready || probed["liveness"] != 1 || probed["readiness"] != 1 {
		t.Fatalf("after startup passed: started %v ready %v probes %v", *cs.Started, cs.Ready, probed)
	}
	// The startup probe does not run again.
	h.clock.Advance(time.Second)
	h.sync(w)
	if probed["startup"] != 5 {
		t.Errorf("startup probes %d, want 5", probed["startup"])
	}
}

func TestWorkerDeletesGracefully(t *testing.T) {
	h := newHarness(t)
	pod := webPod("web-0", 7)
	w := h.worker(pod)
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)

	deleting := pod.DeepCopy()
	deleting.ResourceVersion = "2"
	now := metav1.NewTime(h.clock.Now())
	grace := int64(7)
	deleting.DeletionTimestamp, deleting.DeletionGracePeriodSeconds = &now, &grace
	w.setDesired(deleting)
	_, done := h.sync(w)
	wantCalls(t, h, "stop "+c70+" grace=7s", "delete "+c70, "teardown "+sb7)
	if !done || !reflect.DeepEqual(h.confirmed, []string{"web-0"}) {
		t.Fatalf("done %v confirmed %v", done, h.confirmed)
	}
	if _, err := os.Stat(h.env.paths.sandbox(sb7)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sandbox dir left: %v", err)
	}
	// The record is gone from the server; the confirmation is not repeated.
	h.sync(w)
	wantCalls(t, h)
	if len(h.confirmed) != 1 {
		t.Errorf("confirmed again: %v", h.confirmed)
	}
}

// TestWorkerNewIncarnation: a newer assignment of the same pod name runs
// only after everything of the older one stopped (RELIABILITY R7); an
// older one never runs again (fencing).
func TestWorkerNewIncarnation(t *testing.T) {
	h := newHarness(t)
	w := h.worker(webPod("web-0", 7))
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)

	newer := webPod("web-0", 9)
	newer.UID = "uid-new"
	w.setDesired(newer)
	h.sync(w)
	sb9 := "default_web-0_uidnew_9"
	wantCalls(t, h, "stop "+c70+" grace=30s", "delete "+c70, "teardown "+sb7, "setup "+sb9, "create "+sb9+"_nginx_0", "start "+sb9+"_nginx_0")

	// The old assignment comes back (a stale list): refused, and what runs
	// of the newer one is stopped.
	w.setDesired(webPod("web-0", 7))
	_, done := h.sync(w)
	wantCalls(t, h, "stop "+sb9+"_nginx_0 grace=30s", "delete "+sb9+"_nginx_0", "teardown "+sb9)
	if !done {
		t.Error("a fenced worker is not done")
	}
	// Even a new worker (an agent restart) refuses it: the record is on disk.
	h2 := h.worker(webPod("web-0", 7))
	h2.env.fences = newFences(h.env.paths.generations())
	h.sync(h2)
	wantCalls(t, h)
}

func TestWorkerImagePullBackOff(t *testing.T) {
	h := newHarness(t)
	h.containers.pullErr = errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].Image = "127.0.0.1:1/none:1"
	w := h.worker(pod)
	next, _ := h.sync(w)
	// No network (nor IP) for a pod whose image is not there.
	wantCalls(t, h, "pull 127.0.0.1:1/none:1")
	if ip := h.last().PodIP; ip != "" {
		t.Errorf("podIP %s while the image is missing", ip)
	}
	waiting := func() *corev1.ContainerStateWaiting { return h.last().ContainerStatuses[0].State.Waiting }
	if wt := waiting(); wt.Reason != "ErrImagePull" || !strings.HasPrefix(wt.Message, `Failed to pull image "127.0.0.1:1/none:1": pull image 127.0.0.1:1/none:1: dial tcp`) {
		t.Fatalf("first: %+v", wt)
	}
	if h.last().Phase != corev1.PodPending {
		t.Errorf("phase %s", h.last().Phase)
	}
	h.clock.Advance(next)
	next, _ = h.sync(w)
	wantCalls(t, h)
	if wt := waiting(); wt.Reason != "ImagePullBackOff" || wt.Message != `Back-off pulling image "127.0.0.1:1/none:1"` {
		t.Fatalf("second: %+v", wt)
	}
	if next != 9*time.Second {
		t.Fatalf("retry in %v, want 10s after the failure", next)
	}
	h.clock.Advance(next)
	h.sync(w)
	wantCalls(t, h, "pull 127.0.0.1:1/none:1")
	h.clock.Advance(time.Second)
	if next, _ = h.sync(w); next != 19*time.Second {
		t.Fatalf("second retry in %v, want 20s after the failure", next)
	}
	// The registry comes back.
	h.containers.pullErr = nil
	h.clock.Advance(next)
	h.sync(w)
	wantCalls(t, h, "pull 127.0.0.1:1/none:1", "setup "+sb7, "create "+c70, "start "+c70)
}

func TestWorkerInitContainers(t *testing.T) {
	h := newHarness(t)
	pod := webPod("web-0", 7)
	pod.Spec.InitContainers = []corev1.Container{{Name: "first", Image: "web:1"}, {Name: "second", Image: "web:1"}}
	w := h.worker(pod)
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+sb7+"_first_0", "start "+sb7+"_first_0")
	st := h.last()
	if st.Phase != corev1.PodPending || condition(st, corev1.PodInitialized) != corev1.ConditionFalse ||
		st.ContainerStatuses[0].State.Waiting.Reason != "PodInitializing" {
		t.Fatalf("while the first runs: %s %+v", st.Phase, st.ContainerStatuses[0].State)
	}
	if c := findCondition(st.Conditions, corev1.PodInitialized); c.Message != "containers with incomplete status: [first second]" {
		t.Errorf("Initialized message %q", c.Message)
	}
	h.containers.exit(sb7+"_first_0", 0)
	h.sync(w)
	wantCalls(t, h, "create "+sb7+"_second_0", "start "+sb7+"_second_0")
	h.containers.exit(sb7+"_second_0", 3)
	h.sync(w)
	wantCalls(t, h, "create "+sb7+"_second_1", "start "+sb7+"_second_1")
	h.containers.exit(sb7+"_second_1", 0)
	h.sync(w)
	wantCalls(t, h, "create "+c70, "start "+c70)
	st = h.last()
	if st.Phase != corev1.PodRunning || condition(st, corev1.PodInitialized) != corev1.ConditionTrue {
		t.Fatalf("after init: %s", st.Phase)
	}
	ic := st.InitContainerStatuses[1]
	if ic.RestartCount != 1 || ic.State.Terminated == nil || ic.State.Terminated.Reason != "Completed" || !ic.Ready {
		t.Errorf("second init container: %+v", ic)
	}
	// Init containers never run again once the pod's containers exist.
	h.containers.exit(c70, 1)
	h.sync(w)
	wantCalls(t, h, "create "+c71, "start "+c71)
}

func TestWorkerStartError(t *testing.T) {
	h := newHarness(t)
	h.containers.startErr["/no/such/binary"] = errors.New(`exec: "/no/such/binary": stat /no/such/binary: no such file or directory`)
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].Command = []string{"/no/such/binary"}
	w := h.worker(pod)
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70+": failed")
	// The failed start counts as a crash: restarted at once, then backs off.
	h.sync(w)
	wantCalls(t, h, "create "+c71, "start "+c71+": failed")
	next, _ := h.sync(w)
	cs := h.last().ContainerStatuses[0]
	if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" || next != 10*time.Second {
		t.Fatalf("state %+v next %v", cs.State, next)
	}
	last := cs.LastTerminationState.Terminated
	if last == nil || last.Reason != "StartError" || last.ExitCode != 128 || !strings.Contains(last.Message, "no such file or directory") {
		t.Fatalf("lastState %+v", last)
	}
}

func TestWorkerHostPortTaken(t *testing.T) {
	h := newHarness(t)
	checks := 0
	h.env.hostPortFree = func(p network.PortMapping) error {
		checks++
		return errors.New("hostPort 8080/tcp is already in use on this node: listen tcp :8080: bind: address already in use")
	}
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080, Protocol: corev1.ProtocolTCP}}
	w := h.worker(pod)
	next, _ := h.sync(w)
	wantCalls(t, h)
	if next != 10*time.Second {
		t.Errorf("retry in %v, want the back-off's 10s", next)
	}
	// Within the back-off the reason stays and nothing is tried again.
	h.clock.Advance(5 * time.Second)
	h.sync(w)
	if checks != 1 {
		t.Errorf("host port checked %d times within the back-off, want 1", checks)
	}
	st := h.last()
	wt := st.ContainerStatuses[0].State.Waiting
	if wt == nil || wt.Reason != "CreatePodSandboxError" || !strings.Contains(wt.Message, "hostPort 8080/tcp is already in use") {
		t.Fatalf("waiting %+v", wt)
	}
	if st.Phase != corev1.PodPending || condition(st, podReadyToStartContainers) != corev1.ConditionFalse {
		t.Errorf("phase %s sandbox %s", st.Phase, condition(st, podReadyToStartContainers))
	}
}

// TestWorkerAdoptsWithoutFlapping: a worker that finds a running container
// it did not start (a restarted agent) keeps the readiness the pod's
// status reported for it, instead of turning it unready until a probe runs.
func TestWorkerAdoptsWithoutFlapping(t *testing.T) {
	h := newHarness(t)
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].ReadinessProbe = execProbe(10, 3, "ready")
	w := h.worker(pod)
	h.sync(w)
	if condition(h.last(), corev1.PodReady) != corev1.ConditionTrue {
		t.Fatal("not ready after the first probe")
	}
	h.containers.Calls()
	h.feed(w)
	reported := len(h.statuses)

	// A new agent process: a fresh worker on the same runtime. Its first
	// probe fails, which is below the failure threshold: still ready.
	probes := 0
	h.containers.exec = func(string, []string) (int, string) { probes++; return 1, "" }
	w2 := h.worker(w.getDesired())
	w2.sandboxes[sb7] = w.getDesired()
	h.clock.Advance(time.Second)
	h.sync(w2)
	wantCalls(t, h)
	if condition(h.last(), corev1.PodReady) != corev1.ConditionTrue || len(h.statuses) != reported+1 || probes != 1 {
		t.Fatalf("adopted pod: ready %s after %d probes", condition(h.last(), corev1.PodReady), probes)
	}
	if !statusEqual(h.statuses[reported-1], h.last()) {
		t.Errorf("status changed on adoption:\n%+v\n%+v", h.statuses[reported-1], h.last())
	}
}

func TestWorkerPreStopCountsAgainstGrace(t *testing.T) {
	h := newHarness(t)
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/quit", Port: intstr.FromInt(1)}}}
	pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}}
	w := h.worker(pod)
	h.sync(w)
	h.containers.Calls()
	w.setDesired(nil)
	_, done := h.sync(w)
	wantCalls(t, h, "stop "+c70+" grace=30s", "delete "+c70, "teardown "+sb7)
	if !done || len(h.confirmed) != 0 {
		t.Errorf("done %v confirmed %v: a pod that left the assignments needs no confirmation", done, h.confirmed)
	}
	failed := false
	for _, e := range h.events {
		failed = failed || strings.HasPrefix(e, "FailedPreStopHook: ")
	}
	if !failed {
		t.Errorf("no FailedPreStopHook event for a hook nobody answers: %q", h.events)
	}
}

// TestWorkerStaleAssignment: the pod a worker holds may be older than the
// status it last reported (the list was taken before the write); the
// transition times it reports stay those of its own last status.
func TestWorkerStaleAssignment(t *testing.T) {
	h := newHarness(t)
	ready := false
	h.containers.exec = func(string, []string) (int, string) {
		if ready {
			return 0, ""
		}
		return 1, "no"
	}
	pod := webPod("web-0", 7)
	pod.Spec.Containers[0].ReadinessProbe = execProbe(1, 1, "ready")
	w := h.worker(pod)
	h.sync(w)
	h.feed(w) // the server holds "not ready"
	ready = true
	h.clock.Advance(time.Second)
	h.sync(w)
	first := h.last()
	since := findCondition(first.Conditions, corev1.PodReady).LastTransitionTime
	for i := 0; i < 3; i++ {
		h.clock.Advance(time.Second)
		h.sync(w)
	}
	if !statusEqual(first, h.last()) {
		t.Errorf("status changed with a stale assignment:\n%+v\n%+v", first, h.last())
	}
	if got := findCondition(h.last().Conditions, corev1.PodReady).LastTransitionTime; !got.Equal(&since) {
		t.Errorf("Ready transition moved from %v to %v", since, got)
	}
}

// TestWorkerAfterReboot: a sandbox from an earlier boot is torn down and
// the pod started afresh, with a new network.
func TestWorkerAfterReboot(t *testing.T) {
	h := newHarness(t)
	w := h.worker(webPod("web-0", 7))
	h.sync(w)
	wantCalls(t, h, "setup "+sb7, "create "+c70, "start "+c70)
	h.sync(w)
	wantCalls(t, h)

	h.containers.reboot()
	h.env.boot = "boot-2"
	w2 := h.worker(w.getDesired())
	w2.sandboxes[sb7] = w.getDesired()
	h.sync(w2)
	wantCalls(t, h, "delete "+c70, "teardown "+sb7, "setup "+sb7, "create "+c70, "start "+c70)
	if ip := h.last().PodIP; ip != "10.244.0.3" {
		t.Errorf("podIP %s, want a new network's", ip)
	}
	h.sync(w2)
	wantCalls(t, h)
}

// TestWorkerLeaseGateRereadsItsPod: the lease gate opens once a fresh
// assignment list reached the workers. A sync that began before that list
// must not start a container for a pod the list no longer assigns here.
func TestWorkerLeaseGateRereadsItsPod(t *testing.T) {
	for _, tc := range []struct {
		name string
		now  *corev1.Pod // what the fresh list assigns under the name
	}{
		{"pod gone", nil},
		{"pod replaced by a new incarnation", webPod("web-0", 9)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			w := h.worker(webPod("web-0", 7))
			if tc.now != nil {
				tc.now.UID = "uid-web-0-new"
			}
			h.env.leaseValid = func() bool {
				// The fresh list is dispatched before the gate opens.
				w.setDesired(tc.now)
				return true
			}
			h.sync(w)
			for _, call := range h.containers.Calls() {
				if strings.HasPrefix(call, "create ") || strings.HasPrefix(call, "start ") {
					t.Errorf("%s for a pod the fresh assignments took away", call)
				}
			}
		})
	}
}
