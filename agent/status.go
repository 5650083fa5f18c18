package agent

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent/containerd"
)

// Container waiting and termination reasons, as the kubelet reports them.
const (
	reasonContainerCreating   = "ContainerCreating"
	reasonPodInitializing     = "PodInitializing"
	reasonErrImagePull        = "ErrImagePull"
	reasonImagePullBackOff    = "ImagePullBackOff"
	reasonErrImageNeverPull   = "ErrImageNeverPull"
	reasonInvalidImageName    = "InvalidImageName"
	reasonCreateContainer     = "CreateContainerError"
	reasonCreateConfig        = "CreateContainerConfigError"
	reasonNodeLeaseExpired    = "NodeLeaseExpired"
	reasonCreateSandbox       = "CreatePodSandboxError"
	reasonCrashLoopBackOff    = "CrashLoopBackOff"
	reasonStartError          = "StartError"
	reasonCompleted           = "Completed"
	reasonError               = "Error"
	reasonStatusUnknown       = "ContainerStatusUnknown"
	reasonContainersNotReady  = "ContainersNotReady"
	reasonContainersNotInit   = "ContainersNotInitialized"
	reasonPodCompleted        = "PodCompleted"
	reasonReadinessGatesNotOK = "ReadinessGatesNotReady"
)

// podReadyToStartContainers is the condition the kubelet sets once the
// pod's sandbox and network are up.
const podReadyToStartContainers corev1.PodConditionType = "PodReadyToStartContainers"

// attemptView is one run of a container as observed in the runtime.
type attemptView struct {
	ID      string
	Attempt int
	// Streak is the number of quick crashes in a row before this attempt
	// (its label), which set its restart back-off.
	Streak                int
	State                 containerd.State
	StartedAt, FinishedAt time.Time
	ExitCode              int32
	// Reason and Message override the reason derived from the exit code
	// (StartError when the task could not start).
	Reason, Message string
}

// ended reports whether the attempt is over: it exited, or never could
// start.
func (a *attemptView) ended() bool {
	return a.State == containerd.StateExited || a.Reason == reasonStartError
}

// waitingView says why a container does not run now.
type waitingView struct{ Reason, Message string }

// containerView is what the agent knows about one container of the spec.
type containerView struct {
	Name    string
	Image   string
	ImageID string
	// Cur is the latest attempt, nil when none was created; Prev the one
	// before it (its end is the container's lastState).
	Cur, Prev *attemptView
	// Waiting is set when the container is not running and will not run
	// until something changes: an image to pull, a back-off, an error.
	Waiting *waitingView
	// Started: its startup probe passed (or it has none) in this run.
	Started bool
	// Ready: it is started and its readiness probe passes (or it has none).
	Ready bool
}

// podView is everything a pod's status is computed from.
type podView struct {
	Pod *corev1.Pod
	// Old is the status last computed for the pod, whose transition times
	// and start time carry over; nil means the pod's own status.
	Old    *corev1.PodStatus
	HostIP string
	PodIP  string
	// SandboxReady: the network and volumes are set up.
	SandboxReady bool
	Init         []containerView
	Containers   []containerView
	Now          time.Time
}

// computeStatus returns the pod's status as the kubelet would report it,
// keeping the transition times of conditions that did not change and the
// start time from the pod's current status.
func computeStatus(v podView) corev1.PodStatus {
	pod := v.Pod
	old := pod.Status
	if v.Old != nil {
		old = *v.Old
	}
	now := apiTime(v.Now)
	st := corev1.PodStatus{
		HostIP:   v.HostIP,
		QOSClass: qosClass(pod),
		// StartTime is when the agent first took the pod on.
		StartTime: old.StartTime,
	}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if v.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: v.HostIP}}
	}
	if v.PodIP != "" {
		st.PodIP = v.PodIP
		st.PodIPs = []corev1.PodIP{{IP: v.PodIP}}
	}
	initDone := true
	var pendingInit []string
	initFailed := false
	for i := range v.Init {
		cs := containerStatus(&v.Init[i], true, false)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		initDone = false
		pendingInit = append(pendingInit, cs.Name)
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			initFailed = true
		}
		if cs.LastTerminationState.Terminated != nil && cs.State.Waiting != nil {
			initFailed = true
		}
	}
	var unready []string
	for i := range v.Containers {
		cs := containerStatus(&v.Containers[i], false, !initDone)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	st.Phase = podPhase(pod, st, initDone, initFailed)

	var conds []corev1.PodCondition
	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason, Message: msg}
		if ok {
			c = corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
		}
		conds = append(conds, c)
	}
	cond(podReadyToStartContainers, v.SandboxReady, "", "")
	cond(corev1.PodInitialized, initDone, reasonContainersNotInit, fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(pendingInit, " ")))
	terminal := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	notReadyReason, notReadyMsg := reasonContainersNotReady, fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	if terminal {
		notReadyReason, notReadyMsg = reasonPodCompleted, ""
	}
	containersReady := len(unready) == 0 && !terminal
	ready, gateReason, gateMsg := containersReady, "", ""
	if containersReady {
		for _, g := range pod.Spec.ReadinessGates {
			if c := findCondition(old.Conditions, g.ConditionType); c == nil || c.Status != corev1.ConditionTrue {
				ready, gateReason = false, reasonReadinessGatesNotOK
				gateMsg = fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType)
				if c != nil {
					gateMsg = fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %s", g.ConditionType, c.Status)
				}
				break
			}
		}
	}
	if gateReason != "" {
		cond(corev1.PodReady, false, gateReason, gateMsg)
	} else {
		cond(corev1.PodReady, ready, notReadyReason, notReadyMsg)
	}
	cond(corev1.ContainersReady, containersReady, notReadyReason, notReadyMsg)
	cond(corev1.PodScheduled, true, "", "")
	// Conditions others own (readiness gates) are kept as they are.
	for _, c := range old.Conditions {
		if findCondition(conds, c.Type) == nil {
			conds = append(conds, c)
		}
	}
	for i := range conds {
		c := &conds[i]
		if prev := findCondition(old.Conditions, c.Type); prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
			c.LastProbeTime = prev.LastProbeTime
		} else if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now
		}
	}
	st.Conditions = conds
	return st
}

func findCondition(conds []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// containerStatus reports one container. Regular containers wait with
// PodInitializing while init containers have not all succeeded.
func containerStatus(c *containerView, init, initializing bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.ImageID}
	started := false
	cs.Started = &started
	cur := c.Cur
	if cur == nil {
		reason := reasonContainerCreating
		if initializing {
			reason = reasonPodInitializing
		}
		w := &corev1.ContainerStateWaiting{Reason: reason}
		if c.Waiting != nil {
			w = &corev1.ContainerStateWaiting{Reason: c.Waiting.Reason, Message: c.Waiting.Message}
		}
		cs.State.Waiting = w
		return cs
	}
	cs.ContainerID = "containerd://" + cur.ID
	cs.RestartCount = int32(cur.Attempt)
	if c.Prev != nil && c.Prev.ended() {
		cs.LastTerminationState.Terminated = terminated(c.Prev)
	}
	switch {
	case cur.State == containerd.StateRunning:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: apiTime(cur.StartedAt)}
		started = c.Started
		cs.Ready = c.Started && c.Ready
	case cur.ended() && c.Waiting != nil:
		// It will run again: waiting, with the run that ended as its last
		// state.
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.Waiting.Reason, Message: c.Waiting.Message}
		cs.LastTerminationState.Terminated = terminated(cur)
	case cur.ended():
		cs.State.Terminated = terminated(cur)
		// A completed init container counts as ready.
		cs.Ready = init && cur.ExitCode == 0 && cur.Reason == ""
	case cur.State == containerd.StateCreated:
		w := &corev1.ContainerStateWaiting{Reason: reasonContainerCreating}
		if c.Waiting != nil {
			w = &corev1.ContainerStateWaiting{Reason: c.Waiting.Reason, Message: c.Waiting.Message}
		}
		cs.State.Waiting = w
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reasonStatusUnknown, Message: "the container runtime cannot tell the container's state"}
	}
	return cs
}

// terminated describes an attempt that ended.
func terminated(a *attemptView) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    a.ExitCode,
		Reason:      a.Reason,
		Message:     a.Message,
		StartedAt:   apiTime(a.StartedAt),
		FinishedAt:  apiTime(a.FinishedAt),
		ContainerID: "containerd://" + a.ID,
	}
	if t.Reason == "" {
		t.Reason = reasonError
		if a.ExitCode == 0 {
			t.Reason = reasonCompleted
		}
	}
	return t
}

// podPhase follows the kubelet's getPhase.
func podPhase(pod *corev1.Pod, st corev1.PodStatus, initDone, initFailed bool) corev1.PodPhase {
	policy := pod.Spec.RestartPolicy
	if policy == "" {
		policy = corev1.RestartPolicyAlways
	}
	if initFailed && policy == corev1.RestartPolicyNever {
		return corev1.PodFailed
	}
	if !initDone {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range st.ContainerStatuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		if policy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if policy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// qosClass is the pod's quality of service class, as Kubernetes computes it.
func qosClass(pod *corev1.Pod) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	zeroQuantity := true
	guaranteed := true
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		for name, q := range c.Resources.Requests {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory || q.IsZero() {
				continue
			}
			zeroQuantity = false
			if cur, ok := requests[name]; ok {
				q.Add(cur)
			}
			requests[name] = q
		}
		got := 0
		for name, q := range c.Resources.Limits {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory || q.IsZero() {
				continue
			}
			zeroQuantity = false
			got++
			if cur, ok := limits[name]; ok {
				q.Add(cur)
			}
			limits[name] = q
		}
		if got != 2 {
			guaranteed = false
		}
	}
	if zeroQuantity {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	if guaranteed && len(limits) == 2 {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// statusEqual compares two statuses semantically (quantities by value,
// times as the API keeps them), ignoring the order of conditions.
func statusEqual(a, b corev1.PodStatus) bool {
	sortConds := func(s corev1.PodStatus) corev1.PodStatus {
		s = *s.DeepCopy()
		sort.Slice(s.Conditions, func(i, j int) bool { return s.Conditions[i].Type < s.Conditions[j].Type })
		return s
	}
	return equality.Semantic.DeepEqual(sortConds(a), sortConds(b))
}

// apiTime is t as the API keeps it: UTC, whole seconds.
func apiTime(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(t.UTC().Truncate(time.Second))
}
