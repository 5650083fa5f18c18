package scheduler

import (
	"fmt"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// retentionPolicy is the set's persistentVolumeClaimRetentionPolicy with
// every value other than Delete read as Retain (A.1; Kubernetes treats
// unknown values as Retain too).
type retentionPolicy struct {
	deleteWhenDeleted, deleteWhenScaled bool
}

func policyOf(set *appsv1.StatefulSet) retentionPolicy {
	p := set.Spec.PersistentVolumeClaimRetentionPolicy
	if p == nil {
		return retentionPolicy{}
	}
	return retentionPolicy{
		deleteWhenDeleted: p.WhenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
		deleteWhenScaled:  p.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
}

func (p retentionPolicy) retainAll() bool { return !p.deleteWhenDeleted && !p.deleteWhenScaled }

// owner names an object that may own a claim: the set, or one of its pods
// (whose UID is empty for a pod not created yet).
type owner struct {
	name string
	uid  types.UID
	gvk  schema.GroupVersionKind
}

func setOwner(set *appsv1.StatefulSet) owner { return owner{set.Name, set.UID, setKind} }
func podOwner(pod *corev1.Pod) owner         { return owner{pod.Name, pod.UID, podKind} }

// matches reports whether ref names o by kind and name, whatever its UID.
func (o owner) matches(ref *metav1.OwnerReference) bool {
	return ref.APIVersion == o.gvk.GroupVersion().String() && ref.Kind == o.gvk.Kind && ref.Name == o.name
}

// newClaim builds the claim of template t for ordinal ord (D.29): its name,
// the set's namespace, the template's labels overlaid with the selector's
// matchLabels, and the template's spec.
func newClaim(set *appsv1.StatefulSet, t *corev1.PersistentVolumeClaim, ord int) *corev1.PersistentVolumeClaim {
	c := t.DeepCopy()
	c.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"}
	c.ObjectMeta = metav1.ObjectMeta{
		Name:        api.VolumeName(t.Name, set.Name, ord),
		Namespace:   set.Namespace,
		Labels:      copyMap(t.Labels),
		Annotations: copyMapOrNil(t.Annotations),
	}
	if set.Spec.Selector != nil {
		for k, v := range set.Spec.Selector.MatchLabels {
			c.Labels[k] = v
		}
	}
	c.Status = corev1.PersistentVolumeClaimStatus{}
	return c
}

// claimView returns the claim named name as this sync sees it: created or
// updated by this sync, or as stored; nil if there is none.
func (s *setSync) claimView(name string) *corev1.PersistentVolumeClaim {
	if c, ok := s.claimCreates[name]; ok {
		return c
	}
	if c, ok := s.claimUpdates[name]; ok {
		return c
	}
	return s.nsClaims[name]
}

func (s *setSync) claimNames(ord int) []string {
	names := make([]string, 0, len(s.set.Spec.VolumeClaimTemplates))
	for _, t := range s.set.Spec.VolumeClaimTemplates {
		names = append(names, api.VolumeName(t.Name, s.set.Name, ord))
	}
	return names
}

// staleClaim returns the name of a claim of ordinal ord still owned by an
// earlier pod of the same name (E.43), "" if there is none. Only
// whenScaled=Delete makes claims stale; retained claims are meant to be
// reused.
func (s *setSync) staleClaim(pod *corev1.Pod, ord int) string {
	if !policyOf(s.set).deleteWhenScaled {
		return ""
	}
	for _, name := range s.claimNames(ord) {
		if c := s.claimView(name); c != nil && hasStaleOwnerRef(c, podOwner(pod)) {
			return name
		}
	}
	return ""
}

// deletingClaim returns the name of a claim of ordinal ord that is being
// deleted (D.33), "" if there is none.
func (s *setSync) deletingClaim(ord int) string {
	for _, name := range s.claimNames(ord) {
		if c := s.nsClaims[name]; c != nil && c.DeletionTimestamp != nil {
			return name
		}
	}
	return ""
}

// createClaims creates the missing claims of a pod about to be created or
// Pending (D.31, D.34), owner references set per the retention policy, and
// brings the owner references of its existing claims in line (E.45).
func (s *setSync) createClaims(pod *corev1.Pod, ord int) {
	for i := range s.set.Spec.VolumeClaimTemplates {
		t := &s.set.Spec.VolumeClaimTemplates[i]
		name := api.VolumeName(t.Name, s.set.Name, ord)
		if existing := s.claimView(name); existing != nil {
			s.fixClaimRef(existing, pod, ord)
			continue
		}
		c := newClaim(s.set, t, ord)
		updateClaimOwnerRefs(c, s.set, pod, s.inRange(ord))
		s.claimCreates[name] = c
		s.plan.CreateClaims = append(s.plan.CreateClaims, c)
		s.event(corev1.EventTypeNormal, "SuccessfulCreate",
			fmt.Sprintf("create Claim %s Pod %s in StatefulSet %s success", name, pod.Name, s.set.Name))
	}
}

// createMissingClaims is D.34 for a Pending pod: claims that went missing
// are created again, unless one is being deleted, which blocks the pod's
// ordinal (D.33). It reports whether it blocked.
func (s *setSync) createMissingClaims(pod *corev1.Pod, ord int) bool {
	if claim := s.deletingClaim(ord); claim != "" {
		s.block(ord, pod.Name, fmt.Sprintf("waiting for claim %s to finish deleting", claim))
		return true
	}
	s.createClaims(pod, ord)
	return false
}

func (s *setSync) inRange(ord int) bool {
	return ord >= s.start && ord < s.start+s.replicas
}

// fixClaimRefs brings the owner references of all claims of pod in line with
// the retention policy (ClaimsMatchRetentionPolicy and
// UpdatePodClaimForRetentionPolicy). Missing claims are left for the
// creation paths.
func (s *setSync) fixClaimRefs(pod *corev1.Pod) {
	ord := podOrdinal(pod)
	for _, name := range s.claimNames(ord) {
		if c := s.claimView(name); c != nil {
			s.fixClaimRef(c, pod, ord)
		}
	}
}

// fixClaimRef updates one claim's owner references for pod if they do not
// follow the policy (E.37–E.40). A claim controlled by something else keeps
// that controller, loses the set's and pod's references, and the set gets a
// ConflictingController warning (E.44).
func (s *setSync) fixClaimRef(c *corev1.PersistentVolumeClaim, pod *corev1.Pod, ord int) {
	inRange := s.inRange(ord)
	if isClaimOwnerUpToDate(c, s.set, pod, inRange) {
		return
	}
	if hasUnexpectedController(c, s.set, pod) {
		s.event(corev1.EventTypeWarning, "ConflictingController",
			fmt.Sprintf("PersistentVolumeClaim %s has a conflicting OwnerReference that acts as a managing controller, the retention policy is ignored for this claim", c.Name))
	}
	u := s.claimForUpdate(c)
	updateClaimOwnerRefs(u, s.set, pod, inRange)
}

// claimForUpdate returns the copy of claim this sync changes.
func (s *setSync) claimForUpdate(c *corev1.PersistentVolumeClaim) *corev1.PersistentVolumeClaim {
	if created, ok := s.claimCreates[c.Name]; ok {
		return created
	}
	if u, ok := s.claimUpdates[c.Name]; ok {
		return u
	}
	u := c.DeepCopy()
	s.claimUpdates[c.Name] = u
	return u
}

// isClaimOwnerUpToDate mirrors the Kubernetes function of that name. Claims
// with stale references (an owner of the same name with another UID) are
// left alone; so are claims of another controller once our references are
// gone. Otherwise the references must be:
//
//	Retain/Retain: none                              (E.37)
//	whenDeleted Delete: the set                      (E.38)
//	whenScaled Delete: the pod, once scaled down     (E.39)
//	Delete/Delete: the set in range, the pod outside (E.40)
func isClaimOwnerUpToDate(c *corev1.PersistentVolumeClaim, set *appsv1.StatefulSet, pod *corev1.Pod, inRange bool) bool {
	so, po := setOwner(set), podOwner(pod)
	if hasStaleOwnerRef(c, so) || hasStaleOwnerRef(c, po) {
		return true
	}
	if hasUnexpectedController(c, set, pod) {
		return !hasOwnerRef(c, set.UID) && !hasOwnerRef(c, pod.UID)
	}
	if hasNonControllerOwner(c, set, pod) {
		return false
	}
	p := policyOf(set)
	wantSet := p.deleteWhenDeleted && (inRange || !p.deleteWhenScaled)
	wantPod := p.deleteWhenScaled && !inRange
	return hasOwnerRef(c, set.UID) == wantSet && hasOwnerRef(c, pod.UID) == wantPod
}

// updateClaimOwnerRefs rewrites c's references to the set and pod per the
// policy (updateClaimOwnerRefForSetAndPod).
func updateClaimOwnerRefs(c *corev1.PersistentVolumeClaim, set *appsv1.StatefulSet, pod *corev1.Pod, inRange bool) {
	so, po := setOwner(set), podOwner(pod)
	unexpected := hasUnexpectedController(c, set, pod)
	refs := make([]metav1.OwnerReference, 0, len(c.OwnerReferences)+1)
	for _, r := range c.OwnerReferences {
		if !so.matches(&r) && !po.matches(&r) {
			refs = append(refs, r)
		}
	}
	if !unexpected {
		p := policyOf(set)
		if p.deleteWhenDeleted && (inRange || !p.deleteWhenScaled) {
			refs = addControllerRef(refs, so)
		}
		if p.deleteWhenScaled && !inRange {
			refs = addControllerRef(refs, po)
		}
	}
	if len(refs) == 0 {
		refs = nil
	}
	c.OwnerReferences = refs
}

// hasUnexpectedController reports whether, under a Delete policy, the claim
// has a controller other than the set and pod, or references to a set or pod
// of the same name with another UID (wrongly orphaned objects).
func hasUnexpectedController(c *corev1.PersistentVolumeClaim, set *appsv1.StatefulSet, pod *corev1.Pod) bool {
	if policyOf(set).retainAll() {
		return false
	}
	so, po := setOwner(set), podOwner(pod)
	for i := range c.OwnerReferences {
		r := &c.OwnerReferences[i]
		switch {
		case so.matches(r):
			if r.UID != set.UID {
				return true
			}
		case po.matches(r):
			if r.UID != pod.UID {
				return true
			}
		case r.Controller != nil && *r.Controller:
			return true
		}
	}
	return false
}

// hasNonControllerOwner reports whether the set or pod owns the claim
// without being its controller.
func hasNonControllerOwner(c *corev1.PersistentVolumeClaim, set *appsv1.StatefulSet, pod *corev1.Pod) bool {
	for _, r := range c.OwnerReferences {
		if r.UID == set.UID || r.UID == pod.UID {
			if r.Controller == nil || !*r.Controller {
				return true
			}
		}
	}
	return false
}

func hasOwnerRef(c *corev1.PersistentVolumeClaim, uid types.UID) bool {
	for _, r := range c.OwnerReferences {
		if r.UID == uid {
			return true
		}
	}
	return false
}

// hasStaleOwnerRef reports whether the first reference to o's kind and name
// carries another UID.
func hasStaleOwnerRef(c *corev1.PersistentVolumeClaim, o owner) bool {
	for i := range c.OwnerReferences {
		if o.matches(&c.OwnerReferences[i]) {
			return c.OwnerReferences[i].UID != o.uid
		}
	}
	return false
}

func addControllerRef(refs []metav1.OwnerReference, o owner) []metav1.OwnerReference {
	for _, r := range refs {
		if r.UID == o.uid {
			return refs
		}
	}
	yes := true
	return append(refs, metav1.OwnerReference{
		APIVersion:         o.gvk.GroupVersion().String(),
		Kind:               o.gvk.Kind,
		Name:               o.name,
		UID:                o.uid,
		Controller:         &yes,
		BlockOwnerDeletion: &yes,
	})
}

// collectClaims lists the claims the Kubernetes garbage collector would
// delete now for this set (E.38–E.40, E.46): every owner reference of the
// claim points at an owner that is gone under a Delete policy — the set,
// being deleted with whenDeleted=Delete, or a pod of the set that no longer
// exists with whenScaled=Delete — and no pod mounts the claim any more (the
// claim protection of Kubernetes). Claims with any other owner, or with a
// stale reference to an earlier set of the same name, are left alone.
func (s *setSync) collectClaims() {
	p := policyOf(s.set)
	if !p.deleteWhenDeleted && !p.deleteWhenScaled {
		return
	}
	podUIDs := map[types.UID]bool{}
	mounted := map[string]bool{}
	for _, pod := range s.nsPods.all {
		podUIDs[pod.UID] = true
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				mounted[v.PersistentVolumeClaim.ClaimName] = true
			}
		}
	}
	so := setOwner(s.set)
	for _, name := range sortedKeys(s.nsClaims) {
		c := s.claimView(name)
		if c.DeletionTimestamp != nil || mounted[name] || len(c.OwnerReferences) == 0 {
			continue
		}
		gone := true
		for i := range c.OwnerReferences {
			r := &c.OwnerReferences[i]
			switch {
			case so.matches(r) && r.UID == s.set.UID:
				gone = gone && s.deleting && !s.orphaning && p.deleteWhenDeleted
			case r.APIVersion == "v1" && r.Kind == "Pod" && isMember(s.set, r.Name):
				gone = gone && !podUIDs[r.UID] && p.deleteWhenScaled
			default:
				gone = false
			}
		}
		if gone {
			s.plan.DeleteClaims = append(s.plan.DeleteClaims, name)
		}
	}
}
