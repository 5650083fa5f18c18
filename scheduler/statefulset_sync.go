package scheduler

import (
	"fmt"
	"strconv"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The walk of one sync over the set's ordinals: creation, failure handling,
// scale-down, rolling update and set deletion (SEMANTICS.md F, H, K).

// syncPods is updateStatefulSet of the Kubernetes controller: the replica
// pass, the claim fix-up pass for condemned pods, the scale-down pass and the
// update pass, each stopping the sync when OrderedReady must wait.
func (s *setSync) syncPods() {
	// F.48: walk in-range ordinals upwards. OrderedReady stops at the first
	// ordinal that blocks; Parallel processes them all.
	for _, sl := range s.slots {
		if s.processReplica(sl) && s.monotonic {
			return
		}
	}

	// E.42: claims of condemned pods get their retention owner references
	// before any condemned pod is deleted, so a crash between the two can
	// never delete a pod whose claims lack the reference.
	for _, p := range s.condemned {
		s.fixClaimRefs(p)
	}

	// F.51–F.53: scale down from the highest ordinal. Under OrderedReady
	// every in-range pod is Running, Ready and Available at this point (the
	// replica pass would have stopped otherwise); scaling takes precedence
	// over updates and condemned pods are never resurrected.
	first := s.firstUnavailable()
	for _, p := range s.condemned {
		if s.processCondemned(p, first) && s.monotonic {
			return
		}
	}

	// H.68: OnDelete never deletes pods for an update.
	if s.set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return
	}
	if ru := s.set.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
		s.rollWithMaxUnavailable()
		return
	}
	s.roll()
}

// processReplica applies F.48 to one in-range ordinal. It reports whether
// an OrderedReady walk must stop here.
func (s *setSync) processReplica(sl *slot) bool {
	pod := sl.pod

	// F.48a: a Failed or Succeeded pod is deleted, in both policies, and
	// recreated on a later sync once its object is gone (B.12). The phase
	// comes from how the containers exited, not from why, so an evicted or
	// rebooted pod counts.
	if pod != nil && (pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded) {
		if !isTerminating(pod) {
			s.event(corev1.EventTypeWarning, "RecreatingFailedPod",
				fmt.Sprintf("StatefulSet %s/%s is recreating failed Pod %s", s.set.Namespace, s.set.Name, pod.Name))
			s.deletePod(pod, ReasonFailed)
			s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for failed pod %s to be deleted and recreated", pod.Name))
		} else {
			s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for failed pod %s to terminate", pod.Name))
		}
		return true
	}

	// F.48b: create a missing pod, its claims first (D.31). Under
	// OrderedReady at most one pod is created per sync.
	if pod == nil {
		return s.createReplica(sl)
	}

	// F.48c, D.34: a Pending pod gets back any claim that went missing.
	if pod.Status.Phase == corev1.PodPending && s.createMissingClaims(pod, sl.ord) {
		return true
	}

	// F.48d, K.86: wait for a terminating pod to be gone before going on.
	if isTerminating(pod) && s.monotonic {
		s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for %s to terminate", pod.Name))
		return true
	}

	// F.48e, F.49: every predecessor of a pod must be Running and Ready.
	if !isRunningAndReady(pod) && s.monotonic {
		// P1, Stead's addition: unstick a rollout blocked here (replaceStuck).
		if s.replaceStuck(sl) {
			return true
		}
		s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for %s to be Running and Ready", pod.Name))
		return true
	}

	// F.48f, G.58: ... and Available (Ready for minReadySeconds).
	if !isAvailable(pod, s.minReady, s.now) && s.monotonic {
		s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for %s to be Available (Ready for %ds)", pod.Name, s.minReady))
		return true
	}

	// F.48g, B.14, E: re-assert identity labels and claim owner references.
	s.fixIdentity(pod, sl.ord)
	s.fixClaimRefs(pod)
	return false
}

// createReplica creates the pod (and its claims) for an empty slot. It
// reports whether an OrderedReady walk must stop.
func (s *setSync) createReplica(sl *slot) bool {
	// B.12, M.99: the name is held by a pod the set does not own (released,
	// or another controller's); creating would fail until it is gone.
	if s.podNameTaken(sl.name) {
		s.event(corev1.EventTypeWarning, "FailedCreate",
			fmt.Sprintf("create Pod %s in StatefulSet %s failed error: pods %q already exists", sl.name, s.set.Name, sl.name))
		s.block(sl.ord, sl.name, fmt.Sprintf("pod %s exists but does not belong to statefulset %s", sl.name, s.set.Name))
		return true
	}
	rev, tmpl := s.revisionFor(sl.ord)
	pod := newPod(s.set, tmpl, sl.ord, rev.Name)

	// E.43: with whenScaled=Delete, a claim still owned by an earlier pod
	// of this name is about to be garbage collected; a new pod must not
	// mount it. Wait for the claim to be gone.
	if claim := s.staleClaim(pod, sl.ord); claim != "" {
		s.block(sl.ord, sl.name, fmt.Sprintf("waiting for claim %s of a previous %s to be deleted", claim, sl.name))
		return true
	}
	// D.33: never create a pod on a claim that is being deleted.
	if claim := s.deletingClaim(sl.ord); claim != "" {
		s.event(corev1.EventTypeWarning, "FailedCreate",
			fmt.Sprintf("create Pod %s in StatefulSet %s failed error: pvc %s is being deleted", sl.name, s.set.Name, claim))
		s.block(sl.ord, sl.name, fmt.Sprintf("waiting for claim %s to finish deleting before creating %s", claim, sl.name))
		return true
	}
	s.createClaims(pod, sl.ord)
	s.plan.CreatePods = append(s.plan.CreatePods, pod)
	s.event(corev1.EventTypeNormal, "SuccessfulCreate",
		fmt.Sprintf("create Pod %s in StatefulSet %s successful", pod.Name, s.set.Name))
	if s.monotonic {
		s.block(sl.ord, sl.name, fmt.Sprintf("waiting for %s to be Running and Ready", sl.name))
		return true
	}
	return false
}

// replaceStuck applies Stead's rule for pain point P1 to the first pod of an
// OrderedReady walk that is not Running and Ready. It reports whether it
// deleted the pod.
func (s *setSync) replaceStuck(sl *slot) bool {
	pod := sl.pod
	if !s.replaceStuckEnabled() || isTerminating(pod) {
		return false
	}
	want, _ := s.revisionFor(sl.ord)
	// P1: the walk is stuck on this pod, which is not Ready; it is at a
	// revision other than the update revision, and its position calls for
	// the update revision. A rolling update would replace it anyway once it
	// became Ready, which it may never do (a bad image or command is exactly
	// why the template changed again). Replace it now, so that fixing or
	// rolling back the template unsticks the rollout without anyone
	// deleting the pod by hand.
	if want.Name != s.update.Name || podRevision(pod) == s.update.Name {
		return false
	}
	s.event(corev1.EventTypeWarning, "ReplacingStuckPod",
		fmt.Sprintf("StatefulSet %s/%s is replacing Pod %s, not Ready at revision %s, with revision %s",
			s.set.Namespace, s.set.Name, pod.Name, podRevision(pod), s.update.Name))
	s.deletePod(pod, ReasonStuckRollout)
	s.block(sl.ord, pod.Name, fmt.Sprintf("waiting for %s, stuck at revision %s, to be replaced at revision %s",
		pod.Name, podRevision(pod), s.update.Name))
	return true
}

// replaceStuckEnabled reports whether the P1 rule applies to this set: an
// OrderedReady rolling update whose set does not opt out by annotation.
func (s *setSync) replaceStuckEnabled() bool {
	if !s.monotonic || !isRollingUpdate(s.set) {
		return false
	}
	if v, ok := s.set.Annotations[api.AnnotationReplaceStuckPods]; ok {
		if on, err := strconv.ParseBool(v); err == nil && !on {
			return false
		}
	}
	return true
}

// processCondemned applies F.51/F.53 to one pod outside the range. It
// reports whether an OrderedReady walk must stop.
func (s *setSync) processCondemned(pod *corev1.Pod, firstUnavailable *corev1.Pod) bool {
	ord := podOrdinal(pod)
	if isTerminating(pod) {
		// F.51: the next deletion waits until the previous pod is gone.
		if s.monotonic {
			s.block(ord, pod.Name, s.scaleDownWait(pod))
			return true
		}
		return false
	}
	// F.51: an unhealthy condemned pod may be deleted only if it is the
	// first unavailable pod of the whole set; otherwise wait for that one.
	if s.monotonic && pod != firstUnavailable {
		if !isRunningAndReady(pod) {
			s.block(podOrdinal(firstUnavailable), firstUnavailable.Name,
				fmt.Sprintf("waiting for %s to be Running and Ready before scaling down", firstUnavailable.Name))
			return true
		}
		if !isAvailable(pod, s.minReady, s.now) {
			s.block(podOrdinal(firstUnavailable), firstUnavailable.Name,
				fmt.Sprintf("waiting for %s to be Available before scaling down", firstUnavailable.Name))
			return true
		}
	}
	s.deletePod(pod, ReasonScaleDown)
	if s.monotonic {
		s.block(ord, pod.Name, s.scaleDownWait(pod))
	}
	return true
}

// scaleDownWait says what an OrderedReady scale-down waits for once pod is
// terminating.
func (s *setSync) scaleDownWait(pod *corev1.Pod) string {
	if last := s.condemned[len(s.condemned)-1]; last != pod {
		return fmt.Sprintf("waiting for %s to terminate before scaling down further", pod.Name)
	}
	return fmt.Sprintf("waiting for %s to terminate", pod.Name)
}

// firstUnavailable returns the lowest in-range pod that is not healthy and
// Available, else the lowest such condemned pod, else nil. An empty slot
// counts as unavailable but has no pod, so it can never match a condemned
// pod; it is represented by a placeholder.
func (s *setSync) firstUnavailable() *corev1.Pod {
	for _, sl := range s.slots {
		if sl.pod == nil {
			return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sl.name}}
		}
		if isUnavailable(sl.pod, s.minReady, s.now) {
			return sl.pod
		}
	}
	for i := len(s.condemned) - 1; i >= 0; i-- {
		if isUnavailable(s.condemned[i], s.minReady, s.now) {
			return s.condemned[i]
		}
	}
	return nil
}

// roll is the rolling update without maxUnavailable (H.63–H.64): from the
// highest in-range ordinal down to the partition, delete the first pod not at
// the update revision; stop at any pod that is not Available.
func (s *setSync) roll() {
	for i := len(s.slots) - 1; i >= partition(s.set); i-- {
		sl := s.slots[i]
		if sl.pod != nil && podRevision(sl.pod) != s.update.Name && !s.terminating(sl.pod) {
			s.deletePod(sl.pod, ReasonUpdate)
			s.block(sl.ord, sl.pod.Name, fmt.Sprintf("waiting for %s to be recreated at revision %s", sl.pod.Name, s.update.Name))
			return
		}
		// H.64: an updated pod must be Running, Ready and Available before
		// its predecessor is touched.
		if sl.pod == nil || s.terminating(sl.pod) || isUnavailable(sl.pod, s.minReady, s.now) {
			if s.outdatedBelow(i) {
				s.block(sl.ord, sl.name, fmt.Sprintf("waiting for %s to be Available before updating further", sl.name))
			}
			return
		}
	}
}

// outdatedBelow reports whether a pod below slot i, down to the partition,
// still waits to be updated.
func (s *setSync) outdatedBelow(i int) bool {
	for j := i - 1; j >= partition(s.set); j-- {
		if p := s.slots[j].pod; p != nil && podRevision(p) != s.update.Name && !s.terminating(p) {
			return true
		}
	}
	return false
}

// rollWithMaxUnavailable is the rolling update with maxUnavailable set
// (H.69): count unavailable pods across the whole range, and delete up to
// maxUnavailable minus that many outdated pods, highest ordinal first, down
// to the partition.
func (s *setSync) rollWithMaxUnavailable() {
	maxUnavailable := maxUnavailableOf(s.set, s.replicas)
	unavailable := 0
	var first *slot
	for _, sl := range s.slots {
		if sl.pod == nil || s.terminating(sl.pod) || isUnavailable(sl.pod, s.minReady, s.now) {
			unavailable++
			if first == nil {
				first = sl
			}
		}
	}
	if unavailable > maxUnavailable {
		s.block(first.ord, first.name, fmt.Sprintf("waiting for unavailable pods (%d, maxUnavailable %d), first %s",
			unavailable, maxUnavailable, first.name))
		return
	}
	budget := maxUnavailable - unavailable
	for i := len(s.slots) - 1; i >= partition(s.set) && budget > 0; i-- {
		sl := s.slots[i]
		if sl.pod != nil && podRevision(sl.pod) != s.update.Name && !s.terminating(sl.pod) {
			s.deletePod(sl.pod, ReasonUpdate)
			budget--
		}
	}
}

// deleteSet handles a set that is being deleted (K.88). Kubernetes leaves
// the pods to its garbage collector; Stead has none, so the controller
// deletes every pod the set controls, all at once, in no particular order.
// With the orphan finalizer the pods are left alone: whoever deletes the set
// that way removes their owner references.
func (s *setSync) deleteSet() {
	if s.orphaning {
		return
	}
	remaining := 0
	for _, p := range s.nsPods.controlled[s.set.UID] {
		remaining++
		if !isTerminating(p) {
			s.deletePod(p, ReasonSetDeleted)
		}
	}
	if remaining == 0 {
		s.plan.DeletionComplete = true
		for _, r := range s.ownedRevisions {
			if ref := metav1.GetControllerOfNoCopy(r); ref != nil && ref.UID == s.set.UID {
				s.plan.DeleteRevisions = append(s.plan.DeleteRevisions, r.Name)
			}
		}
	}
}

// revisionFor returns the revision and template ordinal ord is built from
// (H.62, H.65, B.18): below the partition (relative to ordinals.start) of a
// rolling update the current revision, otherwise the update revision.
func (s *setSync) revisionFor(ord int) (*appsv1.ControllerRevision, *corev1.PodTemplateSpec) {
	if isRollingUpdate(s.set) && ord < s.start+partition(s.set) {
		return s.current, s.currentTmpl
	}
	return s.update, s.updateTmpl
}
