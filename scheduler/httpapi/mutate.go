package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// put creates or replaces one object. StatefulSets and Services go through
// the same validation as apply; other objects (nodes registered by agents,
// pods, events) are stored as sent, guarded by their resourceVersion when
// the body carries one.
func (s *Server) put(w http.ResponseWriter, r *http.Request, body []byte) error {
	res, err := resource(r)
	if err != nil {
		return err
	}
	ns, err := scope(r, res, true)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	kind := raftstore.Kind(res.Name)
	if res.Name == "statefulsets" || res.Name == "services" {
		return s.putManifest(w, r, body, res, ns, name)
	}
	obj, err := raftstore.NewObject(kind)
	if err != nil {
		return apierrors.NewMethodNotSupported(groupResource(res), "put")
	}
	if err := json.Unmarshal(body, obj); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decode %s %q: %v", res.Kind, name, err))
	}
	if obj.GetName() == "" {
		obj.SetName(name)
	}
	if obj.GetName() != name || (res.Namespaced && obj.GetNamespace() != "" && obj.GetNamespace() != ns) {
		return apierrors.NewBadRequest(fmt.Sprintf("the name and namespace in the body (%s/%s) do not match the URL (%s/%s)", obj.GetNamespace(), obj.GetName(), ns, name))
	}
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return apierrors.NewBadRequest(fmt.Sprintf("metadata.name: Invalid value: %q: %s", name, errs[0]))
	}
	obj.SetNamespace(ns)
	// A body without a resourceVersion replaces whatever is stored, so the
	// server retries when another write slips in between; one with a
	// resourceVersion is a compare-and-swap the client asked for.
	wantVersion := scheduler.Version(obj)
	var idx uint64
	attempt := 0
	err = retryConflicts(func() (commitErr error) {
		obj := obj.DeepCopyObject().(raftstore.Object)
		v := s.cfg.Store.View()
		var ops []raftstore.Op
		cur, exists := v.Get(kind, ns, name)
		if node, ok := obj.(*corev1.Node); ok {
			var existing *corev1.Node
			if exists {
				existing = cur.(*corev1.Node)
			}
			release, err := s.registerNode(v, node, existing)
			if err != nil {
				return err
			}
			// A new subnet is held until the write is known to have
			// committed or not; one that may still commit keeps it.
			defer func() {
				if !errors.Is(commitErr, raftstore.ErrOutcomeUnknown) {
					release()
				}
			}()
		}
		var op raftstore.Op
		var err error
		if exists {
			if wantVersion != 0 && wantVersion != scheduler.Version(cur) {
				return apierrors.NewConflict(groupResource(res), name, errors.New("the object has been modified; read it again and retry"))
			}
			obj.SetUID(cur.GetUID())
			obj.SetCreationTimestamp(cur.GetCreationTimestamp())
			// A claim being deleted stays deleted: only its finalizers
			// can still go.
			if kind == raftstore.PersistentVolumeClaims && cur.GetDeletionTimestamp() != nil {
				obj.SetDeletionTimestamp(cur.GetDeletionTimestamp())
			}
			op, err = scheduler.PutOp(kind, obj, scheduler.Version(cur))
		} else {
			if wantVersion != 0 {
				return apierrors.NewNotFound(groupResource(res), name)
			}
			s.stampNew(obj)
			op, err = scheduler.PutOp(kind, obj, 0)
		}
		if err != nil {
			return err
		}
		if res.Namespaced {
			nsOp, err := s.ensureNamespace(ns)
			if err != nil {
				return err
			}
			ops = append(ops, nsOp)
		}
		idx, err = s.commit(r, append(ops, op), attempt)
		attempt++
		return err
	})
	if err != nil {
		return err
	}
	writeStored(w, r, idx, func() any {
		stored, _ := s.cfg.Store.View().Get(kind, ns, name)
		return stored
	})
	return nil
}

// putManifest stores one StatefulSet or Service sent as JSON or YAML, with
// the validation and defaults of apply.
func (s *Server) putManifest(w http.ResponseWriter, r *http.Request, body []byte, res api.Resource, ns, name string) error {
	objs, err := api.DecodeManifestsWith(body, api.DecodeOptions{Namespace: ns})
	if err != nil {
		return toAPIError(err)
	}
	if len(objs) != 1 || objs[0].GetName() != name || objs[0].GetObjectKind().GroupVersionKind().Kind != res.Kind {
		return apierrors.NewBadRequest(fmt.Sprintf("the body must hold exactly one %s named %q", res.Kind, name))
	}
	var idx uint64
	err = retryConflicts(func() error {
		op, _, err := s.prepare(s.cfg.Store.View(), objs[0])
		if err != nil || op == nil {
			return err
		}
		nsOp, err := s.ensureNamespace(ns)
		if err != nil {
			return err
		}
		idx, err = s.commit(r, []raftstore.Op{nsOp, *op}, int(idx))
		return err
	})
	if err != nil {
		return err
	}
	writeStored(w, r, idx, func() any {
		stored, _ := s.cfg.Store.View().Get(raftstore.Kind(res.Name), ns, name)
		return stored
	})
	return nil
}

// delete removes one object. A StatefulSet takes its pods and revisions
// with it unless ?cascade=orphan; a pod on a node becomes Terminating and
// stays until its node confirms the containers are dead, unless ?force.
func (s *Server) delete(w http.ResponseWriter, r *http.Request, _ []byte) error {
	res, err := resource(r)
	if err != nil {
		return err
	}
	ns, err := scope(r, res, true)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	q := r.URL.Query()
	cascade := q.Get("cascade")
	if cascade == "" {
		cascade = "background"
	}
	if cascade != "background" && cascade != "orphan" && cascade != "foreground" {
		return apierrors.NewBadRequest(fmt.Sprintf("cascade %q is not one of background, foreground, orphan", cascade))
	}
	var grace *int64
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil || n < 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("gracePeriodSeconds %q is not a whole number of seconds ≥ 0", g))
		}
		grace = &n
	}
	force := q.Get("force") == "true"
	kind := raftstore.Kind(res.Name)
	var idx uint64
	attempt := 0
	err = retryConflicts(func() error {
		v := s.cfg.Store.View()
		cur, ok := v.Get(kind, ns, name)
		// ?uid= names the incarnation meant: an agent confirming that a
		// pod stopped must never remove a newer pod of the same name.
		if !ok || (q.Get("uid") != "" && string(cur.GetUID()) != q.Get("uid")) {
			return apierrors.NewNotFound(groupResource(res), name)
		}
		if err := s.checkOwner(r, cur); err != nil {
			return err
		}
		var ops []raftstore.Op
		switch kind {
		case raftstore.StatefulSets:
			ops, err = s.deleteStatefulSetOps(v, cur.(*appsv1.StatefulSet), cascade == "orphan")
		case raftstore.Pods:
			var op *raftstore.Op
			if op, err = scheduler.DeletePodOp(cur.(*corev1.Pod), grace, force, s.cfg.Now()); op != nil {
				ops = []raftstore.Op{*op}
			}
		case raftstore.PersistentVolumeClaims:
			// Terminating until no pod mounts it and its data is deleted
			// (scheduler.FinalizeClaims).
			var op *raftstore.Op
			if op, err = scheduler.DeleteClaimOp(cur.(*corev1.PersistentVolumeClaim), s.cfg.Now()); op != nil {
				ops = []raftstore.Op{*op}
			}
		case raftstore.Namespaces:
			if n := countInNamespace(v, name); n > 0 {
				return apierrors.NewConflict(groupResource(res), name, fmt.Errorf("it still holds %d objects; delete them first", n))
			}
			ops = []raftstore.Op{scheduler.DeleteOp(kind, cur)}
		default:
			ops = []raftstore.Op{scheduler.DeleteOp(kind, cur)}
		}
		if err != nil || len(ops) == 0 {
			idx = v.Index()
			return err
		}
		idx, err = s.commit(r, ops, attempt)
		attempt++
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, idx, metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{Name: name, Kind: res.Name}})
	return nil
}

// deleteStatefulSetOps deletes a set. By default the set is marked as being
// deleted and the controller deletes its pods, then the set itself (no
// ordering promise, as in Kubernetes: SEMANTICS K.88). With orphan, the set
// goes at once and its pods and revisions lose their owner reference and
// keep running, so that a set created again with the same selector adopts
// them (K.89).
func (s *Server) deleteStatefulSetOps(v *raftstore.View, set *appsv1.StatefulSet, orphan bool) ([]raftstore.Op, error) {
	if !orphan {
		if set.DeletionTimestamp != nil {
			return nil, nil
		}
		set = set.DeepCopy()
		now := metav1.NewTime(s.cfg.Now().UTC().Truncate(time.Second))
		set.DeletionTimestamp = &now
		op, err := scheduler.PutOp(raftstore.StatefulSets, set, scheduler.Version(set))
		return []raftstore.Op{op}, err
	}
	ops := []raftstore.Op{scheduler.DeleteOp(raftstore.StatefulSets, set)}
	for _, kind := range []raftstore.Kind{raftstore.Pods, raftstore.ControllerRevisions} {
		for _, o := range v.List(kind, set.Namespace) {
			if !ownedBy(o, set) {
				continue
			}
			orphan := o.DeepCopyObject().(raftstore.Object)
			orphan.SetOwnerReferences(withoutOwner(o.GetOwnerReferences(), set.UID))
			op, err := scheduler.PutOp(kind, orphan, scheduler.Version(o))
			if err != nil {
				return nil, err
			}
			ops = append(ops, op)
		}
	}
	return ops, nil
}

func ownedBy(o metav1.Object, owner metav1.Object) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == owner.GetUID() {
			return true
		}
	}
	return false
}

func withoutOwner(refs []metav1.OwnerReference, uid types.UID) []metav1.OwnerReference {
	var out []metav1.OwnerReference
	for _, ref := range refs {
		if ref.UID != uid {
			out = append(out, ref)
		}
	}
	return out
}

func countInNamespace(v *raftstore.View, ns string) int {
	n := 0
	for _, r := range api.Resources {
		if r.Namespaced {
			n += len(v.List(raftstore.Kind(r.Name), ns))
		}
	}
	return n
}

// getSub serves the scale and status subresources.
func (s *Server) getSub(w http.ResponseWriter, r *http.Request) {
	res, err := resource(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	v, err := s.view(r, kindChanges(raftstore.Kind(res.Name)))
	if err != nil {
		s.fail(w, err)
		return
	}
	ns, name, sub := r.PathValue("ns"), r.PathValue("name"), r.PathValue("sub")
	o, ok := v.Get(raftstore.Kind(res.Name), ns, name)
	if !ok {
		s.fail(w, apierrors.NewNotFound(groupResource(res), name))
		return
	}
	switch {
	case sub == "status":
		writeJSON(w, http.StatusOK, v.Index(), o)
	case sub == "scale" && res.Name == "statefulsets":
		writeJSON(w, http.StatusOK, v.Index(), scaleOf(o.(*appsv1.StatefulSet)))
	default:
		s.fail(w, apierrors.NewNotFound(groupResource(res), name+"/"+sub))
	}
}

// scaleOf returns the scale subresource of a set (SEMANTICS A.8).
func scaleOf(set *appsv1.StatefulSet) *autoscalingv1.Scale {
	sc := &autoscalingv1.Scale{
		TypeMeta:   metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
		ObjectMeta: metav1.ObjectMeta{Name: set.Name, Namespace: set.Namespace, UID: set.UID, ResourceVersion: set.ResourceVersion, CreationTimestamp: set.CreationTimestamp},
		Status:     autoscalingv1.ScaleStatus{Replicas: set.Status.Replicas},
	}
	if set.Spec.Replicas != nil {
		sc.Spec.Replicas = *set.Spec.Replicas
	}
	if set.Spec.Selector != nil {
		sc.Status.Selector = metav1.FormatLabelSelector(set.Spec.Selector)
	}
	return sc
}

// putSub writes the scale subresource of a set, and the status of sets and
// pods (agents report pod status this way).
func (s *Server) putSub(w http.ResponseWriter, r *http.Request, body []byte) error {
	res, err := resource(r)
	if err != nil {
		return err
	}
	ns, name, sub := r.PathValue("ns"), r.PathValue("name"), r.PathValue("sub")
	kind := raftstore.Kind(res.Name)
	var idx uint64
	attempt := 0
	err = retryConflicts(func() error {
		cur, ok := s.cfg.Store.View().Get(kind, ns, name)
		if !ok {
			return apierrors.NewNotFound(groupResource(res), name)
		}
		var next raftstore.Object
		switch {
		case sub == "scale" && kind == raftstore.StatefulSets:
			var sc autoscalingv1.Scale
			if err := json.Unmarshal(body, &sc); err != nil {
				return apierrors.NewBadRequest(fmt.Sprintf("decode Scale: %v", err))
			}
			if sc.Spec.Replicas < 0 {
				return apierrors.NewBadRequest(fmt.Sprintf("spec.replicas: Invalid value: %d: must be greater than or equal to 0", sc.Spec.Replicas))
			}
			set := cur.(*appsv1.StatefulSet).DeepCopy()
			if set.Spec.Replicas != nil && *set.Spec.Replicas == sc.Spec.Replicas {
				idx = scheduler.Version(set)
				return nil
			}
			set.Spec.Replicas = &sc.Spec.Replicas
			set.Generation++
			next = set
		case sub == "status" && kind == raftstore.StatefulSets:
			var in appsv1.StatefulSet
			if err := json.Unmarshal(body, &in); err != nil {
				return apierrors.NewBadRequest(fmt.Sprintf("decode StatefulSet status: %v", err))
			}
			set := cur.(*appsv1.StatefulSet).DeepCopy()
			set.Status = in.Status
			next = set
		case sub == "status" && kind == raftstore.Pods:
			var in corev1.Pod
			if err := json.Unmarshal(body, &in); err != nil {
				return apierrors.NewBadRequest(fmt.Sprintf("decode Pod status: %v", err))
			}
			// A report about an earlier incarnation of the pod is stale.
			if in.UID != "" && in.UID != cur.GetUID() {
				return apierrors.NewConflict(groupResource(res), name, fmt.Errorf("the status is for pod UID %s, but the pod is now UID %s", in.UID, cur.GetUID()))
			}
			if err := s.checkOwner(r, cur); err != nil {
				return err
			}
			pod := cur.(*corev1.Pod).DeepCopy()
			pod.Status = in.Status
			next = pod
		default:
			return apierrors.NewNotFound(groupResource(res), name+"/"+sub)
		}
		op, err := scheduler.PutOp(kind, next, scheduler.Version(cur))
		if err != nil {
			return err
		}
		idx, err = s.commit(r, []raftstore.Op{op}, attempt)
		attempt++
		return err
	})
	if err != nil {
		return err
	}
	writeStored(w, r, idx, func() any {
		o, _ := s.cfg.Store.View().Get(kind, ns, name)
		if sub == "scale" {
			return scaleOf(o.(*appsv1.StatefulSet))
		}
		return o
	})
	return nil
}

// toAPIError maps a manifest error to the Status a client sees: 422 for
// invalid objects, 400 for input that does not decode.
func toAPIError(err error) error {
	if errors.Is(err, api.ErrInvalid) {
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity,
			Reason: metav1.StatusReasonInvalid, Message: err.Error()}}
	}
	return apierrors.NewBadRequest(err.Error())
}
