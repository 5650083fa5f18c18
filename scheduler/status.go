package scheduler

import (
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// availabilityEpsilon is added to the time until a pod becomes Available
// when asking for a re-sync: availability needs strictly more than
// minReadySeconds of readiness.
const availabilityEpsilon = time.Millisecond

// finishStatus computes the set's status (J.79–J.84) as it stands once the
// plan is applied: pods the plan creates count (Pending, at their revision),
// pods it deletes count as terminating. Status and the actions it reflects
// are committed together, so the status never lags the pods (Kubernetes
// counts its own creations the same way). It then completes a finished
// rolling update (H.70) and asks for a re-sync while pods wait out
// minReadySeconds (F.56).
func (s *setSync) finishStatus() {
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: s.set.Generation,
		CurrentRevision:    s.current.Name,
		UpdateRevision:     s.update.Name,
		CollisionCount:     new(int32),
	}
	*st.CollisionCount = s.collisionCount
	// A.9, J.84: the controller does not manage conditions; keep what
	// users wrote through the status subresource.
	for _, c := range s.set.Status.Conditions {
		st.Conditions = append(st.Conditions, *c.DeepCopy())
	}
	count := func(p *corev1.Pod, terminating bool) {
		// J.80: every pod object counts, terminating ones too.
		st.Replicas++
		// J.81–J.82: Ready and Available pods, terminating or not.
		if isRunningAndReady(p) {
			st.ReadyReplicas++
			if isAvailable(p, s.minReady, s.now) {
				st.AvailableReplicas++
			}
		}
		// J.83: only pods that are not terminating count towards revisions.
		if !terminating {
			if podRevision(p) == s.current.Name {
				st.CurrentReplicas++
			}
			if podRevision(p) == s.update.Name {
				st.UpdatedReplicas++
			}
		}
	}
	for _, p := range s.pods {
		count(p, s.terminating(p))
	}
	for _, p := range s.plan.CreatePods {
		count(p, false)
	}
	completeRollingUpdate(s.set, &st)

	s.plan.Status = st
	s.plan.StatusChanged = statusChanged(&s.set.Status, &st)
	s.plan.RequeueAfter = s.requeueAfter(&st)
}

// completeRollingUpdate is H.70: once as many pods as spec.replicas exist,
// all Ready and all at the update revision, the update revision becomes the
// current one. Only for RollingUpdate, as in Kubernetes (P6).
func completeRollingUpdate(set *appsv1.StatefulSet, st *appsv1.StatefulSetStatus) {
	want := int32(specReplicas(set))
	if isRollingUpdate(set) && st.UpdatedReplicas == want && st.ReadyReplicas == want && st.Replicas == want {
		st.CurrentReplicas = st.UpdatedReplicas
		st.CurrentRevision = st.UpdateRevision
	}
}

// statusChanged is inconsistentStatus (J.85): whether a field the
// controller maintains differs from the stored status.
func statusChanged(old, st *appsv1.StatefulSetStatus) bool {
	oldCollisions, newCollisions := int32(0), int32(0)
	if old.CollisionCount != nil {
		oldCollisions = *old.CollisionCount
	}
	if st.CollisionCount != nil {
		newCollisions = *st.CollisionCount
	}
	return st.ObservedGeneration != old.ObservedGeneration ||
		st.Replicas != old.Replicas ||
		st.ReadyReplicas != old.ReadyReplicas ||
		st.AvailableReplicas != old.AvailableReplicas ||
		st.CurrentReplicas != old.CurrentReplicas ||
		st.UpdatedReplicas != old.UpdatedReplicas ||
		st.CurrentRevision != old.CurrentRevision ||
		st.UpdateRevision != old.UpdateRevision ||
		oldCollisions != newCollisions
}

// requeueAfter is F.56: with minReadySeconds and fewer Available pods than
// wanted, re-sync when the first Ready pod becomes Available, and at the
// latest after minReadySeconds.
func (s *setSync) requeueAfter(st *appsv1.StatefulSetStatus) time.Duration {
	if s.minReady <= 0 || s.deleting || st.AvailableReplicas == int32(s.replicas) {
		return 0
	}
	full := time.Duration(s.minReady) * time.Second
	wait := full
	for _, p := range s.pods {
		if !isRunningAndReady(p) || isAvailable(p, s.minReady, s.now) {
			continue
		}
		since, ok := readySince(p)
		if !ok {
			continue
		}
		if d := since.Add(full).Sub(s.now) + availabilityEpsilon; d > 0 && d < wait {
			wait = d
		}
	}
	return wait
}

// ErrRolloutStatusUnsupported is returned by RolloutStatus for sets whose
// update strategy is not RollingUpdate.
var ErrRolloutStatusUnsupported = errors.New("rollout status is only available for RollingUpdate strategy type")

// RolloutStatus says how a set's rollout stands, with the words and rules
// of kubectl's StatefulSetStatusViewer (H.71): wait until the controller
// observed the latest spec, then until spec.replicas pods are Ready, then,
// with a rollingUpdate partition, until the pods from the partition up are
// updated; without one, until the update revision is current. Messages carry
// no trailing newline. done reports whether the rollout is complete; for the
// OnDelete strategy it returns done=true and ErrRolloutStatusUnsupported.
func RolloutStatus(set *appsv1.StatefulSet) (msg string, done bool, err error) {
	if !isRollingUpdate(set) {
		return "", true, ErrRolloutStatusUnsupported
	}
	if set.Status.ObservedGeneration == 0 || set.Generation > set.Status.ObservedGeneration {
		return "Waiting for statefulset spec update to be observed...", false, nil
	}
	if r := set.Spec.Replicas; r != nil && set.Status.ReadyReplicas < *r {
		return fmt.Sprintf("Waiting for %d pods to be ready...", *r-set.Status.ReadyReplicas), false, nil
	}
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if r := set.Spec.Replicas; r != nil && ru.Partition != nil {
			if want := *r - *ru.Partition; set.Status.UpdatedReplicas < want {
				return fmt.Sprintf("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...",
					set.Status.UpdatedReplicas, want), false, nil
			}
		}
		return fmt.Sprintf("partitioned roll out complete: %d new pods have been updated...", set.Status.UpdatedReplicas), true, nil
	}
	if set.Status.UpdateRevision != set.Status.CurrentRevision {
		return fmt.Sprintf("waiting for statefulset rolling update to complete %d pods at revision %s...",
			set.Status.UpdatedReplicas, set.Status.UpdateRevision), false, nil
	}
	return fmt.Sprintf("statefulset rolling update complete %d pods at revision %s...",
		set.Status.CurrentReplicas, set.Status.CurrentRevision), true, nil
}
