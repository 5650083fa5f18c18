package scheduler

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// claimPods decides which pods of the namespace belong to the set, as the
// Kubernetes PodControllerRefManager does with a StatefulSet's filter
// (M.96–M.99): owned pods that still match are kept, owned pods that stopped
// matching are released, matching orphans are adopted, and pods controlled
// by anything else are ignored. A pod matches when the selector selects its
// labels and its name is "<set>-<ordinal>" (B.11).
func (s *setSync) claimPods() {
	// M.97, M.100: pods controlled by someone else are not looked at.
	owned, orphans := s.nsPods.controlled[s.set.UID], s.nsPods.orphans
	for _, pod := range slices.Concat(owned, orphans) {
		ref := metav1.GetControllerOfNoCopy(pod)
		match := isMember(s.set, pod.Name) && s.selector.Matches(labels.Set(pod.Labels))
		switch {
		case ref != nil && match:
			s.pods = append(s.pods, pod)
		case ref != nil:
			// M.98: ours but no longer matching: release, unless the set is
			// being deleted.
			if !s.deleting {
				u := s.podForUpdate(pod)
				u.OwnerReferences = removeOwnerUID(u.OwnerReferences, s.set.UID)
			}
		case !match || s.deleting || isTerminating(pod):
			// An orphan we may not adopt: not ours by selector or name, the
			// set is going away, or the pod itself is.
		default:
			// M.97: adopt the orphan; it takes part in this sync. A plain
			// (non-controller) reference to the set becomes the controller
			// reference.
			u := s.podForUpdate(pod)
			u.OwnerReferences = append(removeOwnerUID(u.OwnerReferences, s.set.UID), *metav1.NewControllerRef(s.set, setKind))
			s.pods = append(s.pods, u)
		}
	}
	sortPodsByOrdinal(s.pods)
}

// isMember reports whether a pod name is "<set>-<ordinal>" with the
// canonical decimal ordinal, so that no two names map to one ordinal.
func isMember(set *appsv1.StatefulSet, name string) bool {
	parent, ord, ok := api.ParseOrdinal(name)
	return ok && parent == set.Name && ord <= math.MaxInt32 && api.ReplicaName(set.Name, ord) == name
}

// podOrdinal returns the ordinal in a member pod's name, -1 for others.
func podOrdinal(pod *corev1.Pod) int {
	_, ord, ok := api.ParseOrdinal(pod.Name)
	if !ok {
		return -1
	}
	return ord
}

func sortPodsByOrdinal(pods []*corev1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool { return podOrdinal(pods[i]) < podOrdinal(pods[j]) })
}

// podForUpdate returns the copy of pod this sync changes, making it on first
// use: every change to one pod lands in a single UpdatePods entry.
func (s *setSync) podForUpdate(pod *corev1.Pod) *corev1.Pod {
	if u, ok := s.podUpdates[pod.Name]; ok {
		return u
	}
	u := pod.DeepCopy()
	s.podUpdates[pod.Name] = u
	return u
}

// removeOwnerUID returns refs without the references to uid.
func removeOwnerUID(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	out := make([]metav1.OwnerReference, 0, len(refs))
	for _, r := range refs {
		if r.UID != uid {
			out = append(out, r)
		}
	}
	return out
}

// fixIdentity puts back the identity labels of a pod if a user stripped or
// changed them (B.14, identityMatches/updateIdentity). Hostname and
// subdomain are set once at creation and never changed (B.13).
func (s *setSync) fixIdentity(pod *corev1.Pod, ord int) {
	name, index := pod.Name, strconv.Itoa(ord)
	if pod.Labels[api.LabelPodName] == name && pod.Labels[api.LabelPodIndex] == index {
		return
	}
	u := s.podForUpdate(pod)
	if u.Labels == nil {
		u.Labels = map[string]string{}
	}
	u.Labels[api.LabelPodName] = name
	u.Labels[api.LabelPodIndex] = index
	s.event(corev1.EventTypeNormal, "SuccessfulUpdate",
		"update Pod "+pod.Name+" in StatefulSet "+s.set.Name+" successful")
}

// newPod builds the pod for ordinal ord from a revision's template
// (newVersionedStatefulSetPod): template labels, annotations, finalizers and
// spec; identity labels and revision label (B.14–B.15); a controller
// reference to the set; hostname and subdomain (B.13); one volume per claim
// template, replacing a template volume of the same name (D.30); phase
// Pending.
func newPod(set *appsv1.StatefulSet, tmpl *corev1.PodTemplateSpec, ord int, revision string) *corev1.Pod {
	name := api.ReplicaName(set.Name, ord)
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       set.Namespace,
			Labels:          copyMap(tmpl.Labels),
			Annotations:     copyMapOrNil(tmpl.Annotations),
			Finalizers:      append([]string(nil), tmpl.Finalizers...),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, setKind)},
		},
		Spec:   *tmpl.Spec.DeepCopy(),
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	pod.Labels[api.LabelPodName] = name
	pod.Labels[api.LabelPodIndex] = strconv.Itoa(ord)
	pod.Labels[api.LabelRevisionHash] = revision
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = set.Spec.ServiceName

	claimed := map[string]bool{}
	var volumes []corev1.Volume
	for _, t := range set.Spec.VolumeClaimTemplates {
		claimed[t.Name] = true
		volumes = append(volumes, corev1.Volume{
			Name: t.Name,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: api.VolumeName(t.Name, set.Name, ord),
			}},
		})
	}
	for _, v := range pod.Spec.Volumes {
		if !claimed[v.Name] {
			volumes = append(volumes, v)
		}
	}
	pod.Spec.Volumes = volumes
	return pod
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+3)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func copyMapOrNil(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	return copyMap(m)
}

// podRevision is the revision a pod was built from (B.15).
func podRevision(pod *corev1.Pod) string {
	return pod.Labels[api.LabelRevisionHash]
}

// isTerminating reports whether the pod is being deleted.
func isTerminating(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp != nil
}

// readyCondition returns the pod's Ready condition, nil if it has none.
func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// isRunningAndReady is G.57: phase Running and condition Ready=True.
func isRunningAndReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	c := readyCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// isAvailable is G.58 (podutil.IsPodAvailable): Ready, and with
// minReadySeconds > 0 Ready since strictly more than minReadySeconds before
// now. A Ready condition without a transition time never becomes Available.
func isAvailable(pod *corev1.Pod, minReady int32, now time.Time) bool {
	if !isRunningAndReady(pod) {
		return false
	}
	if minReady <= 0 {
		return true
	}
	since, ok := readySince(pod)
	return ok && since.Add(time.Duration(minReady)*time.Second).Before(now)
}

// readySince is the last transition time of the pod's Ready condition.
func readySince(pod *corev1.Pod) (time.Time, bool) {
	c := readyCondition(pod)
	if c == nil || c.LastTransitionTime.IsZero() {
		return time.Time{}, false
	}
	return c.LastTransitionTime.Time, true
}

// isUnavailable is the negation of healthy-and-Available: not Running and
// Ready, terminating, or not yet Ready for minReadySeconds.
func isUnavailable(pod *corev1.Pod, minReady int32, now time.Time) bool {
	return isTerminating(pod) || !isAvailable(pod, minReady, now)
}
