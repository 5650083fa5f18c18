package scheduler

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
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
	// PodIndex, when set, is IndexPods of the namespace's pods and is used
	// instead of Pods. A caller that reconciles many sets of a namespace
	// builds it once, so that each sync looks only at the pods its set
	// controls and the orphans.
	PodIndex *PodIndex
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
	// Status is the set's status once the plan is applied (J): created
	// pods count, deleted pods count as terminating; conditions are kept as
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
	// DeletionComplete is true when the set is being deleted with
	// cascading deletion and none of its pods remain: once this plan (which
	// then deletes the set's revisions and Delete-policy claims) is applied,
	// the set object itself may be removed. It is never set while the set
	// carries the orphan finalizer; orphaning is the caller's to finish.
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
// rules need, and the plan being built. Its methods are split by concern:
// the walk in statefulset_sync.go, pods in statefulset_pods.go, claims in
// statefulset_claims.go, revisions in revision.go, status in status.go.
type setSync struct {
	set      *appsv1.StatefulSet
	now      time.Time
	selector labels.Selector

	start, replicas int
	minReady        int32
	monotonic       bool
	deleting        bool
	orphaning       bool

	// nsPods are the pods of the namespace, nsClaims all claims by name,
	// nsRevisions all revisions by name.
	nsPods      *PodIndex
	nsClaims    map[string]*corev1.PersistentVolumeClaim
	nsRevisions map[string]*appsv1.ControllerRevision

	// pods are the pods the set owns after adoption and release, by ordinal.
	pods []*corev1.Pod
	// slots are the in-range ordinals, index ord-start; condemned the owned
	// pods outside the range, highest ordinal first.
	slots     []*slot
	condemned []*corev1.Pod

	current, update         *appsv1.ControllerRevision
	currentTmpl, updateTmpl *corev1.PodTemplateSpec
	collisionCount          int32
	ownedRevisions          []*appsv1.ControllerRevision
	revisionUpdates         map[string]*appsv1.ControllerRevision
	podUpdates              map[string]*corev1.Pod
	claimUpdates            map[string]*corev1.PersistentVolumeClaim
	claimCreates            map[string]*corev1.PersistentVolumeClaim
	deleted                 map[string]bool

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
	s.nsPods = in.PodIndex
	if s.nsPods == nil {
		s.nsPods = IndexPods(in.Pods, set.Namespace)
	}
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
		s.event(corev1.EventTypeWarning, "FailedRevision", err.Error())
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

func (s *setSync) deletePod(pod *corev1.Pod, reason DeletionReason) {
	s.deleted[pod.Name] = true
	s.plan.DeletePods = append(s.plan.DeletePods, PodDeletion{Name: pod.Name, Reason: reason})
	s.event(corev1.EventTypeNormal, "SuccessfulDelete",
		fmt.Sprintf("delete Pod %s in StatefulSet %s successful", pod.Name, s.set.Name))
}

// podNameTaken reports whether a pod object of that name exists in the
// namespace.
func (s *setSync) podNameTaken(name string) bool {
	all := s.nsPods.all
	i := sort.Search(len(all), func(i int) bool { return all[i].Name >= name })
	return i < len(all) && all[i].Name == name
}

// PodIndex is the pods of one namespace as Reconcile reads them: all of
// them by name, and the same split by controller.
type PodIndex struct {
	// all are the pods by name.
	all []*corev1.Pod
	// controlled are the pods with a controller reference, by its UID,
	// each list by name; orphans those without one, by name.
	controlled map[types.UID][]*corev1.Pod
	orphans    []*corev1.Pod
}

// IndexPods indexes the pods of namespace ns among pods; pods of other
// namespaces are left out.
func IndexPods(pods []*corev1.Pod, ns string) *PodIndex {
	x := &PodIndex{controlled: map[types.UID][]*corev1.Pod{}}
	for _, p := range pods {
		if p != nil && p.Namespace == ns {
			x.all = append(x.all, p)
		}
	}
	byName := func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(x.all, byName) {
		slices.SortStableFunc(x.all, byName)
	}
	for _, p := range x.all {
		if ref := metav1.GetControllerOfNoCopy(p); ref != nil {
			x.controlled[ref.UID] = append(x.controlled[ref.UID], p)
		} else {
			x.orphans = append(x.orphans, p)
		}
	}
	return x
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
