package scheduler

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Input is everything Reconcile knows about one StatefulSet: the set as
// stored and the objects of its namespace. Reconcile never modifies any of
// them; objects it wants changed come back in the Plan as copies.
type Input struct {
	// Set is the StatefulSet as stored, with the API defaults applied
	// (missing defaults are tolerated and read as Kubernetes defaults them).
	Set *appsv1.StatefulSet
	// Pods are the pods of the set's namespace: pods the set owns, orphans it
	// may adopt (M.96–97) and pods it ignores. Objects of other namespaces
	// are ignored. A pod whose object is gone is simply absent; a pod with
	// DeletionTimestamp set is Terminating and still holds its ordinal.
	Pods []*corev1.Pod
	// Claims are the PersistentVolumeClaims of the set's namespace.
	Claims []*corev1.PersistentVolumeClaim
	// Revisions are the ControllerRevisions of the set's namespace.
	Revisions []*appsv1.ControllerRevision
	// Now is the time of the decision. Availability (Ready for at least
	// minReadySeconds since the Ready condition's lastTransitionTime) is
	// measured against it.
	Now time.Time
}

// Plan is what one sync of a StatefulSet decided. Its buckets are meant to
// be committed together, in the order of the fields: revisions before the
// pods that name them, claims before the pods that mount them, claim owner
// changes (retention policy) before the pod deletions they prepare for.
type Plan struct {
	// CreateRevisions are new ControllerRevisions (I.73–74).
	CreateRevisions []*appsv1.ControllerRevision
	// UpdateRevisions are existing revisions changed in place: adopted
	// orphans (I.77) and a rolled-back revision renumbered to max+1 (I.74).
	UpdateRevisions []*appsv1.ControllerRevision
	// CreateClaims are volume claims to create, each before the pod that
	// mounts it (D.29, D.31, D.34), owner references already set per the
	// retention policy (E).
	CreateClaims []*corev1.PersistentVolumeClaim
	// UpdateClaims are existing claims whose owner references change to
	// follow the retention policy (E.37–45).
	UpdateClaims []*corev1.PersistentVolumeClaim
	// UpdatePods are existing pods to update: identity labels put back
	// (B.14), adoption (owner reference added, M.97) and release (owner
	// reference removed, M.98). At most one entry per pod, by ordinal.
	UpdatePods []*corev1.Pod
	// CreatePods are complete pod objects to create, by ordinal: identity
	// labels, controller-revision-hash, controller owner reference to the
	// set, spec from the template of the revision the ordinal calls for
	// (H.62), hostname and subdomain, claim volumes, phase Pending.
	CreatePods []*corev1.Pod
	// DeletePods are pods to delete gracefully (the caller sets
	// deletionTimestamp and the grace period), in the order decided.
	DeletePods []PodDeletion
	// DeleteClaims names claims whose owners are gone under a Delete
	// retention policy and that no pod mounts any more (E.38–40, E.46):
	// what the Kubernetes garbage collector would delete now.
	DeleteClaims []string
	// DeleteRevisions names revisions to delete: history beyond
	// revisionHistoryLimit (I.76), or all of the set's revisions once a
	// deleted set has no pods left.
	DeleteRevisions []string
	// Status is the set's status after this sync (J), conditions kept as
	// stored.
	Status appsv1.StatefulSetStatus
	// StatusChanged reports whether Status differs from the stored status
	// in a field the controller maintains (J.85); only then is it written.
	StatusChanged bool
	// Blocked says why this sync stopped short of the desired state, by
	// ordinal: the pod the controller waits for and what it waits for.
	// `stead rollout status` and `stead describe` show it.
	Blocked []Blocked
	// Events are the events Kubernetes would record on the set for the
	// actions above, worded as Kubernetes words them.
	Events []Event
	// RequeueAfter, when not zero, asks for another sync after that long
	// even if nothing changes, so that pods becoming Available after
	// minReadySeconds are noticed (F.56).
	RequeueAfter time.Duration
	// DeletionComplete is true when the set is being deleted (cascading)
	// and none of its pods remain: once this plan is applied the set object
	// itself may be removed.
	DeletionComplete bool
}

// PodDeletion is one pod to delete and why.
type PodDeletion struct {
	// Name is the pod's name.
	Name string
	// Reason is why the controller deletes it.
	Reason DeletionReason
}

// DeletionReason says why the controller deletes a pod.
type DeletionReason string

// The reasons a pod is deleted.
const (
	// ReasonScaleDown: the pod's ordinal is outside the set's range (F.51, F.53, M.101).
	ReasonScaleDown DeletionReason = "scale down"
	// ReasonFailed: the pod's phase is Failed or Succeeded; it is recreated
	// once the object is gone (F.48a).
	ReasonFailed DeletionReason = "failed"
	// ReasonUpdate: the pod is at an outdated revision in a rolling update (H.63, H.69).
	ReasonUpdate DeletionReason = "update"
	// ReasonStuckRollout: the pod never became Ready at an outdated revision
	// and blocks an OrderedReady rollout (Stead's answer to P1).
	ReasonStuckRollout DeletionReason = "stuck rollout"
	// ReasonSetDeleted: the set is being deleted with cascading deletion (K.88).
	ReasonSetDeleted DeletionReason = "set deleted"
)

// Blocked is one reason the controller stopped making progress in a sync.
type Blocked struct {
	// Ordinal is the ordinal concerned, or -1 when the reason is not about
	// one ordinal.
	Ordinal int
	// Pod is the pod the controller waits for (may be empty).
	Pod string
	// Reason is a sentence for people: "waiting for web-1 to be Running and Ready".
	Reason string
}

// Event is an event to record on the set.
type Event struct {
	// Type is corev1.EventTypeNormal or corev1.EventTypeWarning.
	Type string
	// Reason is the machine-readable reason: SuccessfulCreate,
	// SuccessfulDelete, SuccessfulUpdate, RecreatingFailedPod, FailedCreate,
	// ConflictingController, ReplacingStuckPod.
	Reason string
	// Message is the human-readable message.
	Message string
}

var (
	setKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")
	podKind = corev1.SchemeGroupVersion.WithKind("Pod")
)

// slot is one ordinal in the set's range and the pod object holding it, if any.
type slot struct {
	ord  int
	name string
	// pod is the pod object, nil if none exists: it must be created.
	pod *corev1.Pod
}

// setSync holds one sync of one set: the inputs sorted into the shapes the
// rules need, and the plan being built. Its methods are split by concern
// across statefulset*.go, revision.go and status.go.
type setSync struct {
	set      *appsv1.StatefulSet
	now      time.Time
	selector labels.Selector

	start, replicas int
	minReady        int32
	monotonic       bool
	deleting        bool
	orphaning       bool

	// nsPods are all pods of the namespace, nsClaims all claims by name,
	// nsRevisions all revisions by name.
	nsPods      []*corev1.Pod
	nsClaims    map[string]*corev1.PersistentVolumeClaim
	nsRevisions map[string]*appsv1.ControllerRevision

	// pods are the pods the set owns after adoption and release, by ordinal.
	pods []*corev1.Pod
	// slots are the in-range ordinals, index ord-start; condemned the owned
	// pods outside the range, highest ordinal first.
	slots     []*slot
	condemned []*corev1.Pod

	current, update           *appsv1.ControllerRevision
	currentTmpl, updateTmpl   *corev1.PodTemplateSpec
	collisionCount            int32
	ownedRevisions            []*appsv1.ControllerRevision
	revisionUpdates           map[string]*appsv1.ControllerRevision
	podUpdates                map[string]*corev1.Pod
	claimUpdates              map[string]*corev1.PersistentVolumeClaim
	claimCreates              map[string]*corev1.PersistentVolumeClaim
	deleted                   map[string]bool
	updateDeletedCurrentCount int32

	plan Plan
}

// Reconcile computes one sync of the StatefulSet in.Set, as the Kubernetes
// StatefulSet controller would (SEMANTICS.md A–M): adopt and release pods,
// pick the current and update revisions, create missing pods in ordinal
// order, delete pods outside the range, roll pods to the update revision and
// compute the status. It is pure: it reads only in, and returns the plan.
//
// Under OrderedReady a sync walks the ordinals upwards and stops at the first
// one that is not Running, Ready and Available; scale-down and updates happen
// only when every pod in range is healthy. Under Parallel nothing waits for
// readiness. In both, a second pod for an ordinal is never created while the
// old object exists.
//
// Stead adds one rule to Kubernetes' (pain point P1): when an OrderedReady
// rolling update is stuck on a pod that is not Ready and is at a revision
// other than the update revision its position calls for, the pod is deleted
// so that it is recreated at the update revision. Users fix a broken rollout
// by fixing or rolling back the template; nobody has to delete the pod by
// hand. The annotation api.AnnotationReplaceStuckPods="false" on the set
// turns this off.
func Reconcile(in Input) Plan {
	if in.Set == nil {
		return Plan{}
	}
	s := newSetSync(in)
	if s == nil {
		return Plan{Blocked: []Blocked{{Ordinal: -1, Reason: invalidSelectorReason(in.Set)}}}
	}
	s.run()
	return s.plan
}

func invalidSelectorReason(set *appsv1.StatefulSet) string {
	if set.Spec.Selector == nil {
		return fmt.Sprintf("statefulset %s has no selector", set.Name)
	}
	_, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	return fmt.Sprintf("statefulset %s has an invalid selector: %v", set.Name, err)
}

func newSetSync(in Input) *setSync {
	set := in.Set
	if set.Spec.Selector == nil {
		return nil
	}
	selector, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil {
		return nil
	}
	s := &setSync{
		set:             set,
		now:             in.Now,
		selector:        selector,
		start:           startOrdinal(set),
		replicas:        specReplicas(set),
		minReady:        set.Spec.MinReadySeconds,
		monotonic:       set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement,
		deleting:        set.DeletionTimestamp != nil,
		orphaning:       hasString(set.Finalizers, metav1.FinalizerOrphanDependents),
		nsClaims:        map[string]*corev1.PersistentVolumeClaim{},
		nsRevisions:     map[string]*appsv1.ControllerRevision{},
		revisionUpdates: map[string]*appsv1.ControllerRevision{},
		podUpdates:      map[string]*corev1.Pod{},
		claimUpdates:    map[string]*corev1.PersistentVolumeClaim{},
		claimCreates:    map[string]*corev1.PersistentVolumeClaim{},
		deleted:         map[string]bool{},
	}
	for _, p := range in.Pods {
		if p != nil && p.Namespace == set.Namespace {
			s.nsPods = append(s.nsPods, p)
		}
	}
	sort.SliceStable(s.nsPods, func(i, j int) bool { return s.nsPods[i].Name < s.nsPods[j].Name })
	for _, c := range in.Claims {
		if c != nil && c.Namespace == set.Namespace {
			s.nsClaims[c.Name] = c
		}
	}
	for _, r := range in.Revisions {
		if r != nil && r.Namespace == set.Namespace {
			s.nsRevisions[r.Name] = r
		}
	}
	return s
}

// run performs the sync in the order of the Kubernetes controller: claim
// revisions and pods, choose revisions, sort pods into range and condemned,
// then either tear the set down (deleted set) or walk it, and finally compute
// status, history truncation and claim garbage.
func (s *setSync) run() {
	s.claimRevisions()
	s.claimPods()
	if err := s.chooseRevisions(); err != nil {
		s.block(-1, "", err.Error())
		s.plan.Events = append(s.plan.Events, Event{Type: corev1.EventTypeWarning, Reason: "FailedRevision", Message: err.Error()})
		return
	}
	s.partitionPods()

	if s.deleting {
		s.deleteSet()
	} else {
		s.syncPods()
	}

	s.finishStatus()
	if !s.plan.DeletionComplete {
		s.truncateHistory()
	}
	s.collectClaims()
	s.flush()
}

// partitionPods sorts the owned pods into the in-range slots (F.47) and the
// condemned pods outside the range, highest ordinal first.
func (s *setSync) partitionPods() {
	s.slots = make([]*slot, s.replicas)
	for i := range s.slots {
		ord := s.start + i
		s.slots[i] = &slot{ord: ord, name: api.ReplicaName(s.set.Name, ord)}
	}
	for _, p := range s.pods {
		ord := podOrdinal(p)
		if ord >= s.start && ord < s.start+s.replicas {
			s.slots[ord-s.start].pod = p
		} else {
			s.condemned = append(s.condemned, p)
		}
	}
	sort.SliceStable(s.condemned, func(i, j int) bool {
		return podOrdinal(s.condemned[i]) > podOrdinal(s.condemned[j])
	})
}

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
			s.block(ord, pod.Name, fmt.Sprintf("waiting for %s to terminate before scaling down further", pod.Name))
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
		s.block(ord, pod.Name, fmt.Sprintf("waiting for %s to terminate before scaling down further", pod.Name))
	}
	return true
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
			s.deleteForUpdate(sl.pod)
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
			s.deleteForUpdate(sl.pod)
			budget--
		}
	}
}

func (s *setSync) deleteForUpdate(pod *corev1.Pod) {
	s.deletePod(pod, ReasonUpdate)
	// The pod is terminating from now on and stops counting as current
	// (J.83); Kubernetes decrements currentReplicas the same way.
	if podRevision(pod) == s.current.Name {
		s.updateDeletedCurrentCount++
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
	for _, p := range s.nsPods {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil || ref.UID != s.set.UID {
			continue
		}
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

func (s *setSync) deletePod(pod *corev1.Pod, reason DeletionReason) {
	s.deleted[pod.Name] = true
	s.plan.DeletePods = append(s.plan.DeletePods, PodDeletion{Name: pod.Name, Reason: reason})
	s.event(corev1.EventTypeNormal, "SuccessfulDelete",
		fmt.Sprintf("delete Pod %s in StatefulSet %s successful", pod.Name, s.set.Name))
}

// podNameTaken reports whether a pod object of that name exists in the
// namespace.
func (s *setSync) podNameTaken(name string) bool {
	i := sort.Search(len(s.nsPods), func(i int) bool { return s.nsPods[i].Name >= name })
	return i < len(s.nsPods) && s.nsPods[i].Name == name
}

// terminating reports whether pod is terminating or was deleted earlier in
// this sync: either way it must not be deleted again, and it is unavailable.
func (s *setSync) terminating(pod *corev1.Pod) bool {
	return isTerminating(pod) || s.deleted[pod.Name]
}

func (s *setSync) block(ord int, pod, reason string) {
	s.plan.Blocked = append(s.plan.Blocked, Blocked{Ordinal: ord, Pod: pod, Reason: reason})
}

func (s *setSync) event(typ, reason, msg string) {
	s.plan.Events = append(s.plan.Events, Event{Type: typ, Reason: reason, Message: msg})
}

// flush moves the accumulated updates into the plan in a stable order.
func (s *setSync) flush() {
	for _, name := range sortedKeys(s.revisionUpdates) {
		s.plan.UpdateRevisions = append(s.plan.UpdateRevisions, s.revisionUpdates[name])
	}
	for _, name := range sortedKeys(s.claimUpdates) {
		s.plan.UpdateClaims = append(s.plan.UpdateClaims, s.claimUpdates[name])
	}
	names := sortedKeys(s.podUpdates)
	sort.SliceStable(names, func(i, j int) bool { return byOrdinal(names[i], names[j]) })
	for _, name := range names {
		s.plan.UpdatePods = append(s.plan.UpdatePods, s.podUpdates[name])
	}
}

// byOrdinal orders pod names by ordinal, then by name.
func byOrdinal(a, b string) bool {
	_, oa, okA := api.ParseOrdinal(a)
	_, ob, okB := api.ParseOrdinal(b)
	if okA && okB && oa != ob {
		return oa < ob
	}
	return a < b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hasString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// startOrdinal is the first ordinal of the range (B.10).
func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil && set.Spec.Ordinals.Start > 0 {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

// specReplicas is spec.replicas, 1 when unset (A.1).
func specReplicas(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	if *set.Spec.Replicas < 0 {
		return 0
	}
	return int(*set.Spec.Replicas)
}

// isRollingUpdate reports whether the set uses the RollingUpdate strategy
// (the default when the type is empty).
func isRollingUpdate(set *appsv1.StatefulSet) bool {
	t := set.Spec.UpdateStrategy.Type
	return t == appsv1.RollingUpdateStatefulSetStrategyType || t == ""
}

// maxUnavailableOf is rollingUpdate.maxUnavailable as a number of pods
// (getStatefulSetMaxUnavailable, H.69): an integer, or a percentage of
// spec.replicas rounded down; never less than 1.
func maxUnavailableOf(set *appsv1.StatefulSet, replicas int) int {
	var v *intstr.IntOrString
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		v = ru.MaxUnavailable
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(intstr.ValueOrDefault(v, intstr.FromInt32(1)), replicas, false)
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// partition is the rolling update partition, an index relative to
// ordinals.start (B.18), 0 when unset.
func partition(set *appsv1.StatefulSet) int {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if !isRollingUpdate(set) || ru == nil || ru.Partition == nil || *ru.Partition < 0 {
		return 0
	}
	return int(*ru.Partition)
}
