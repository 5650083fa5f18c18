package scheduler

import (
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

// Version returns the resourceVersion of a stored object as a number: the
// log index of its last change, 0 for an object not stored yet.
func Version(o metav1.Object) uint64 {
	v, _ := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
	return v
}

// PutOp returns a put of obj guarded by the version the change was computed
// from: current 0 means the object must not exist yet, otherwise it must
// still be at that version. Every decision is committed this way, so a
// decision made from a state that has since changed is refused instead of
// applied.
func PutOp(kind raftstore.Kind, obj raftstore.Object, current uint64) (raftstore.Op, error) {
	op, err := raftstore.PutOp(kind, obj)
	if err != nil {
		return raftstore.Op{}, err
	}
	if current == 0 {
		op.IfAbsent = true
	} else {
		op.IfVersion = current
	}
	return op, nil
}

// DeleteOp returns a delete of obj guarded by its current version.
func DeleteOp(kind raftstore.Kind, obj raftstore.Object) raftstore.Op {
	op := raftstore.DeleteOp(kind, obj.GetNamespace(), obj.GetName())
	op.IfVersion = Version(obj)
	return op
}

// DeletePodOp returns the op that deletes a pod gracefully (SEMANTICS K.86):
// a pod not yet on a node, or a forced delete, is removed at once; any other
// pod is marked Terminating with its grace period and keeps its ordinal
// until its node confirms that its containers are dead and removes it.
// grace overrides the pod's terminationGracePeriodSeconds. It returns nil
// when the pod is already terminating with no longer grace than asked.
func DeletePodOp(pod *corev1.Pod, grace *int64, force bool, now time.Time) (*raftstore.Op, error) {
	if force || pod.Spec.NodeName == "" {
		op := DeleteOp(raftstore.Pods, pod)
		return &op, nil
	}
	if pod.DeletionTimestamp != nil {
		// Already terminating: a second delete may only shorten the grace.
		if grace == nil || (pod.DeletionGracePeriodSeconds != nil && *grace >= *pod.DeletionGracePeriodSeconds) {
			return nil, nil
		}
	}
	g := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	if grace != nil {
		g = *grace
	}
	pod = pod.DeepCopy()
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	pod.DeletionTimestamp = &ts
	pod.DeletionGracePeriodSeconds = &g
	op, err := PutOp(raftstore.Pods, pod, Version(pod))
	return &op, err
}
