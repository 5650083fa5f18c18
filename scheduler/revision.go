package scheduler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
)

// defaultRevisionHistoryLimit is revisionHistoryLimit when unset (A.1).
const defaultRevisionHistoryLimit = 10

// maxRevisionPrefix is the longest set name a revision name keeps, so that
// the name stays within 253 bytes (history.ControllerRevisionName).
const maxRevisionPrefix = 223

// claimRevisions lists the set's revisions as Kubernetes' ListRevisions
// does — revisions of the namespace whose labels the selector matches and
// that the set controls or nobody does — and adopts the orphans among them
// (I.77) unless the set is being deleted. The result is sorted by revision
// number, oldest first.
func (s *setSync) claimRevisions() {
	for _, name := range sortedKeys(s.nsRevisions) {
		r := s.nsRevisions[name]
		if !s.selector.Matches(labels.Set(r.Labels)) {
			continue
		}
		ref := metav1.GetControllerOfNoCopy(r)
		if ref != nil && ref.UID != s.set.UID {
			continue
		}
		if ref == nil && !s.deleting {
			u := s.revisionForUpdate(r)
			u.OwnerReferences = append(u.OwnerReferences, *metav1.NewControllerRef(s.set, setKind))
			r = u
		}
		s.ownedRevisions = append(s.ownedRevisions, r)
	}
	sortRevisions(s.ownedRevisions)
}

// revisionForUpdate returns the copy of r this sync changes.
func (s *setSync) revisionForUpdate(r *appsv1.ControllerRevision) *appsv1.ControllerRevision {
	if u, ok := s.revisionUpdates[r.Name]; ok {
		return u
	}
	u := r.DeepCopy()
	s.revisionUpdates[r.Name] = u
	return u
}

// chooseRevisions picks the update and current revisions (I.74–I.75), as
// getStatefulSetRevisions does. The candidate is a revision built from the
// set's template. If the newest revision holds the same template, it is the
// update revision. If an older one does, the template was rolled back: that
// revision is reused and renumbered to the next revision number. Otherwise
// the candidate is created, its name made unique by bumping the collision
// count. The current revision is the one status.currentRevision names, or
// the update revision when that is gone (fresh set).
//
// A set being deleted creates and renumbers nothing.
func (s *setSync) chooseRevisions() error {
	revs := s.ownedRevisions
	if s.set.Status.CollisionCount != nil {
		s.collisionCount = *s.set.Status.CollisionCount
	}
	next := int64(1)
	if n := len(revs); n > 0 {
		next = revs[n-1].Revision + 1
	}
	candidate, err := newRevision(s.set, next, s.collisionCount)
	if err != nil {
		return err
	}
	var equal []*appsv1.ControllerRevision
	for _, r := range revs {
		if equalRevision(r, candidate) {
			equal = append(equal, r)
		}
	}
	switch {
	case len(equal) > 0 && equalRevision(revs[len(revs)-1], equal[len(equal)-1]):
		s.update = revs[len(revs)-1]
	case len(equal) > 0 && s.deleting:
		s.update = equal[len(equal)-1]
	case len(equal) > 0:
		// I.74: rollback. The old revision keeps its name and hash and
		// becomes the newest.
		u := s.revisionForUpdate(equal[len(equal)-1])
		u.Revision = next
		s.update = u
	default:
		s.update = s.createRevision(candidate)
	}

	for _, r := range revs {
		if r.Name == s.set.Status.CurrentRevision {
			s.current = r
			break
		}
	}
	if s.current == nil {
		s.current = s.update
	}

	if s.currentTmpl, err = TemplateFromRevision(s.current); err != nil {
		return err
	}
	// Outside a rollout they are one revision. Its template is only read
	// (pods are built from copies), so it is decoded once.
	if s.update == s.current {
		s.updateTmpl = s.currentTmpl
		return nil
	}
	if s.updateTmpl, err = TemplateFromRevision(s.update); err != nil {
		return err
	}
	return nil
}

// createRevision stores the candidate under a name no other revision of the
// namespace uses (CreateControllerRevision): on a name collision with
// different data the collision count goes up and the name is hashed again;
// an existing revision with the same name and data is used as it is.
func (s *setSync) createRevision(candidate *appsv1.ControllerRevision) *appsv1.ControllerRevision {
	for {
		existing, taken := s.nsRevisions[candidate.Name]
		if !taken {
			break
		}
		if bytes.Equal(existing.Data.Raw, candidate.Data.Raw) {
			if u, ok := s.revisionUpdates[existing.Name]; ok {
				return u
			}
			return existing
		}
		s.collisionCount++
		hash := hashRevision(candidate.Data.Raw, s.collisionCount)
		candidate.Name = revisionName(s.set.Name, hash)
		candidate.Labels[api.LabelRevisionTemplateHash] = hash
	}
	if s.deleting {
		return candidate
	}
	s.plan.CreateRevisions = append(s.plan.CreateRevisions, candidate)
	return candidate
}

// newRevision builds the revision for the set's current template
// (newRevision/history.NewControllerRevision, I.72–I.73): the template as a
// strategic-merge patch that replaces it, labels of the template plus the
// hash, the set's annotations, a controller reference to the set, and the
// given revision number. Its name is "<set>-<hash>".
func newRevision(set *appsv1.StatefulSet, revision int64, collisionCount int32) (*appsv1.ControllerRevision, error) {
	data, err := revisionPatch(&set.Spec.Template)
	if err != nil {
		return nil, fmt.Errorf("statefulset %s: encode template: %w", set.Name, err)
	}
	hash := hashRevision(data, collisionCount)
	r := &appsv1.ControllerRevision{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "ControllerRevision"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            revisionName(set.Name, hash),
			Namespace:       set.Namespace,
			Labels:          copyMap(set.Spec.Template.Labels),
			Annotations:     copyMapOrNil(set.Annotations),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, setKind)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}
	r.Labels[api.LabelRevisionTemplateHash] = hash
	return r, nil
}

// revisionPatch is the revision data Kubernetes stores for a template
// (getPatch): {"spec":{"template":{...,"$patch":"replace"}}}, with the keys
// of every object sorted as encoding/json writes a map.
func revisionPatch(tmpl *corev1.PodTemplateSpec) ([]byte, error) {
	raw, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	var template map[string]interface{}
	if err := json.Unmarshal(raw, &template); err != nil {
		return nil, err
	}
	template["$patch"] = "replace"
	return json.Marshal(map[string]interface{}{
		"spec": map[string]interface{}{"template": template},
	})
}

// hashRevision is history.HashControllerRevision: the 32-bit FNV-1 hash of
// the data followed by the decimal collision count, printed in decimal and
// safe-encoded (rand.SafeEncodeString) so that it spells no words.
func hashRevision(data []byte, collisionCount int32) string {
	h := fnv.New32()
	h.Write(data)
	h.Write([]byte(strconv.FormatInt(int64(collisionCount), 10)))
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// revisionName is history.ControllerRevisionName: "<prefix>-<hash>".
func revisionName(prefix, hash string) string {
	if len(prefix) > maxRevisionPrefix {
		prefix = prefix[:maxRevisionPrefix]
	}
	return prefix + "-" + hash
}

// equalRevision is history.EqualRevision: same data, except that two hash
// labels that both parse as numbers and differ make the revisions differ.
func equalRevision(a, b *appsv1.ControllerRevision) bool {
	if a == nil || b == nil {
		return a == b
	}
	ha, errA := strconv.ParseInt(a.Labels[api.LabelRevisionTemplateHash], 10, 32)
	hb, errB := strconv.ParseInt(b.Labels[api.LabelRevisionTemplateHash], 10, 32)
	if errA == nil && errB == nil && ha != hb {
		return false
	}
	return bytes.Equal(a.Data.Raw, b.Data.Raw)
}

// sortRevisions orders revisions by revision number, then creation time,
// then name (history.SortControllerRevisions).
func sortRevisions(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// TemplateFromRevision returns the pod template a StatefulSet revision
// records. `stead rollout undo --to-revision` applies it to the set (I.78),
// and the controller builds pods from it.
func TemplateFromRevision(r *appsv1.ControllerRevision) (*corev1.PodTemplateSpec, error) {
	var patch struct {
		Spec struct {
			Template *corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(r.Data.Raw, &patch); err != nil {
		return nil, fmt.Errorf("controllerrevision %s: decode template: %w", r.Name, err)
	}
	if patch.Spec.Template == nil {
		return nil, fmt.Errorf("controllerrevision %s: no spec.template in its data", r.Name)
	}
	return patch.Spec.Template, nil
}

// truncateHistory deletes the oldest revisions that no longer matter until
// at most revisionHistoryLimit of them remain (I.76). The current and update
// revisions and every revision a pod of the set is at are live and never
// deleted.
func (s *setSync) truncateHistory() {
	limit := defaultRevisionHistoryLimit
	if l := s.set.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	if limit < 0 {
		return
	}
	live := map[string]bool{s.current.Name: true, s.update.Name: true}
	for _, p := range s.pods {
		live[podRevision(p)] = true
	}
	var history []string
	for _, r := range s.ownedRevisions {
		if !live[r.Name] {
			history = append(history, r.Name)
		}
	}
	if len(history) <= limit {
		return
	}
	s.plan.DeleteRevisions = append(s.plan.DeleteRevisions, history[:len(history)-limit]...)
}
