package agent

import (
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent/containerd"
)

func TestComputeStatus(t *testing.T) {
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	running := func(id string, n int) *attemptView {
		return &attemptView{ID: id, Attempt: n, State: containerd.StateRunning, StartedAt: now.Add(-time.Minute)}
	}
	exited := func(id string, n int, code int32) *attemptView {
		return &attemptView{ID: id, Attempt: n, State: containerd.StateExited, ExitCode: code,
			StartedAt: now.Add(-time.Minute), FinishedAt: now.Add(-time.Second)}
	}
	type want struct {
		phase             corev1.PodPhase
		ready, containers corev1.ConditionStatus
		readyReason       string
		// states is each container's state: its waiting reason, "running"
		// or "terminated:<reason>".
		states []string
	}
	cases := []struct {
		name   string
		policy corev1.RestartPolicy
		gates  []corev1.PodReadinessGate
		old    []corev1.PodCondition
		views  []containerView
		want   want
	}{
		{
			name:  "not created yet",
			views: []containerView{{Name: "a"}},
			want:  want{corev1.PodPending, "False", "False", "ContainersNotReady", []string{"ContainerCreating"}},
		},
		{
			name:  "pulling",
			views: []containerView{{Name: "a", Waiting: &waitingView{Reason: "ErrImagePull", Message: "no"}}},
			want:  want{corev1.PodPending, "False", "False", "ContainersNotReady", []string{"ErrImagePull"}},
		},
		{
			name:  "running and ready",
			views: []containerView{{Name: "a", Cur: running("a0", 0), Started: true, Ready: true}},
			want:  want{corev1.PodRunning, "True", "True", "", []string{"running"}},
		},
		{
			name:  "one running, one never ran: pending",
			views: []containerView{{Name: "a", Cur: running("a0", 0), Started: true, Ready: true}, {Name: "b", Waiting: &waitingView{Reason: "ImagePullBackOff"}}},
			want:  want{corev1.PodPending, "False", "False", "ContainersNotReady", []string{"running", "ImagePullBackOff"}},
		},
		{
			name:  "crash loop is Running",
			views: []containerView{{Name: "a", Cur: exited("a3", 3, 1), Prev: exited("a2", 2, 1), Waiting: &waitingView{Reason: "CrashLoopBackOff"}}},
			want:  want{corev1.PodRunning, "False", "False", "ContainersNotReady", []string{"CrashLoopBackOff"}},
		},
		{
			name:   "never: one failed",
			policy: corev1.RestartPolicyNever,
			views:  []containerView{{Name: "a", Cur: exited("a0", 0, 0)}, {Name: "b", Cur: exited("b0", 0, 2)}},
			want:   want{corev1.PodFailed, "False", "False", "PodCompleted", []string{"terminated:Completed", "terminated:Error"}},
		},
		{
			name:   "on failure: all succeeded",
			policy: corev1.RestartPolicyOnFailure,
			views:  []containerView{{Name: "a", Cur: exited("a1", 1, 0), Prev: exited("a0", 0, 1)}},
			want:   want{corev1.PodSucceeded, "False", "False", "PodCompleted", []string{"terminated:Completed"}},
		},
		{
			name:  "readiness gate not set",
			gates: []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}},
			views: []containerView{{Name: "a", Cur: running("a0", 0), Started: true, Ready: true}},
			want:  want{corev1.PodRunning, "False", "True", "ReadinessGatesNotReady", []string{"running"}},
		},
		{
			name:  "readiness gate true",
			gates: []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}},
			old:   []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}},
			views: []containerView{{Name: "a", Cur: running("a0", 0), Started: true, Ready: true}},
			want:  want{corev1.PodRunning, "True", "True", "", []string{"running"}},
		},
		{
			name:  "started but not ready",
			views: []containerView{{Name: "a", Cur: running("a0", 0), Started: true}},
			want:  want{corev1.PodRunning, "False", "False", "ContainersNotReady", []string{"running"}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := webPod("web-0", 1)
			pod.Spec.RestartPolicy = tc.policy
			pod.Spec.ReadinessGates = tc.gates
			pod.Status.Conditions = tc.old
			st := computeStatus(podView{Pod: pod, HostIP: "192.168.1.10", PodIP: "10.244.0.9", SandboxReady: true, Containers: tc.views, Now: now})
			ready := findCondition(st.Conditions, corev1.PodReady)
			got := want{st.Phase, ready.Status, condition(st, corev1.ContainersReady), ready.Reason, nil}
			for _, cs := range st.ContainerStatuses {
				switch {
				case cs.State.Running != nil:
					got.states = append(got.states, "running")
				case cs.State.Terminated != nil:
					got.states = append(got.states, "terminated:"+cs.State.Terminated.Reason)
				case cs.State.Waiting != nil:
					got.states = append(got.states, cs.State.Waiting.Reason)
				}
			}
			if got.phase != tc.want.phase || got.ready != tc.want.ready || got.containers != tc.want.containers ||
				got.readyReason != tc.want.readyReason || len(got.states) != len(tc.want.states) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i := range got.states {
				if got.states[i] != tc.want.states[i] {
					t.Fatalf("states %q, want %q", got.states, tc.want.states)
				}
			}
		})
	}
}

func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	t0 := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	pod := webPod("web-0", 1)
	views := []containerView{{Name: "nginx", Cur: &attemptView{ID: "x", State: containerd.StateRunning, StartedAt: t0}, Started: true, Ready: true}}
	first := computeStatus(podView{Pod: pod, SandboxReady: true, Containers: views, Now: t0.Add(500 * time.Millisecond)})
	if got := findCondition(first.Conditions, corev1.PodReady).LastTransitionTime; !got.Equal(&metav1.Time{Time: t0}) {
		t.Errorf("transition time %v, want %v (whole seconds)", got, t0)
	}
	pod.Status = first
	later := computeStatus(podView{Pod: pod, SandboxReady: true, Containers: views, Now: t0.Add(time.Hour)})
	if !statusEqual(first, later) {
		t.Errorf("an unchanged pod's status changed:\n%+v\n%+v", first, later)
	}
	views[0].Ready = false
	unready := computeStatus(podView{Pod: pod, SandboxReady: true, Containers: views, Now: t0.Add(time.Hour)})
	if got := findCondition(unready.Conditions, corev1.PodReady).LastTransitionTime; !got.Equal(&metav1.Time{Time: t0.Add(time.Hour)}) {
		t.Errorf("transition time %v after a change", got)
	}
	if got := findCondition(unready.Conditions, corev1.PodScheduled).LastTransitionTime; !got.Equal(&metav1.Time{Time: t0}) {
		t.Errorf("PodScheduled transition time %v moved", got)
	}
	if !unready.StartTime.Equal(first.StartTime) {
		t.Errorf("start time moved")
	}
}

func TestQOSClass(t *testing.T) {
	q := resource.MustParse
	cases := []struct {
		name string
		res  []corev1.ResourceRequirements
		want corev1.PodQOSClass
	}{
		{"nothing", []corev1.ResourceRequirements{{}}, corev1.PodQOSBestEffort},
		{"limits equal requests", []corev1.ResourceRequirements{{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")}}}, corev1.PodQOSGuaranteed},
		{"limits only", []corev1.ResourceRequirements{{Limits: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")}}}, corev1.PodQOSGuaranteed},
		{"request below limit", []corev1.ResourceRequirements{{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("500m"), corev1.ResourceMemory: q("1Gi")}}}, corev1.PodQOSBurstable},
		{"one container without", []corev1.ResourceRequirements{{Limits: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")}}, {}}, corev1.PodQOSBurstable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pod := webPod("web-0", 1)
			pod.Spec.Containers = nil
			for i, r := range tc.res {
				pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: string(rune('a' + i)), Resources: r})
			}
			if got := qosClass(pod); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestNodeRoutes(t *testing.T) {
	node := func(name, cidr, ip string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: cidr}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
		return n
	}
	nodes := []*corev1.Node{node("a", "10.244.0.0/24", "192.168.1.10"), node("b", "10.244.1.0/24", "192.168.1.11"),
		node("c", "", "192.168.1.12"), node("d", "10.244.3.0/24", "not-an-ip")}
	got := nodeRoutes(nodes, "a")
	if len(got) != 1 || got[mustPrefix("10.244.1.0/24")].String() != "192.168.1.11" {
		t.Errorf("routes %v, want only 10.244.1.0/24 via 192.168.1.11", got)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
