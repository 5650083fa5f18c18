package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// casRetries bounds how often a read-modify-write is retried when another
// write changed the object in between.
const casRetries = 8

func contextWithTimeout(r *http.Request, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), d)
}

// retryConflicts runs a read-modify-write until it commits without a
// conflicting write in between, at most casRetries times.
func retryConflicts(f func() error) error {
	var err error
	for range casRetries {
		if err = f(); !errors.Is(err, raftstore.ErrConflict) {
			return err
		}
	}
	return err
}

// ensureNamespace returns an op that creates namespace ns unless it exists.
func (s *Server) ensureNamespace(ns string) (raftstore.Op, error) {
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	obj.APIVersion, obj.Kind = "v1", "Namespace"
	s.stampNew(obj)
	return raftstore.EnsureOp(raftstore.Namespaces, obj)
}

// stampNew gives a new object the fields the server owns.
func (s *Server) stampNew(o metav1.Object) {
	o.SetUID(types.UID(uuid.NewString()))
	o.SetCreationTimestamp(metav1.NewTime(s.cfg.Now().UTC().Truncate(time.Second)))
	o.SetResourceVersion("")
	o.SetGeneration(1)
	o.SetDeletionTimestamp(nil)
	o.SetManagedFields(nil)
}

// keepServerFields copies onto an updated object the metadata that only the
// server sets, and bumps the generation when the spec changed.
func keepServerFields(o, old metav1.Object, specChanged bool) {
	o.SetUID(old.GetUID())
	o.SetCreationTimestamp(old.GetCreationTimestamp())
	o.SetDeletionTimestamp(old.GetDeletionTimestamp())
	o.SetOwnerReferences(old.GetOwnerReferences())
	o.SetResourceVersion("")
	o.SetManagedFields(nil)
	gen := old.GetGeneration()
	if specChanged {
		gen++
	}
	o.SetGeneration(gen)
}

// prepare turns one validated manifest object into the op that stores it,
// and says whether that creates, changes or leaves it as it is.
func (s *Server) prepare(v *raftstore.View, obj api.Object) (*raftstore.Op, api.ApplyAction, error) {
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		return s.prepareStatefulSet(v, o)
	case *corev1.Service:
		return s.prepareService(v, o)
	}
	return nil, "", apierrors.NewBadRequest(fmt.Sprintf("kind %T cannot be applied", obj))
}

func (s *Server) prepareStatefulSet(v *raftstore.View, set *appsv1.StatefulSet) (*raftstore.Op, api.ApplyAction, error) {
	set = set.DeepCopy()
	set.Status = appsv1.StatefulSetStatus{}
	cur, ok := v.Get(raftstore.StatefulSets, set.Namespace, set.Name)
	if !ok {
		s.stampNew(set)
		op, err := scheduler.PutOp(raftstore.StatefulSets, set, 0)
		return &op, api.ApplyCreated, err
	}
	old := cur.(*appsv1.StatefulSet)
	if old.DeletionTimestamp != nil {
		return nil, "", apierrors.NewConflict(groupResource(statefulSets), set.Name, errors.New("it is being deleted; apply again once it is gone"))
	}
	if err := api.ValidateStatefulSetUpdate(old, set); err != nil {
		return nil, "", err
	}
	specChanged := !equality.Semantic.DeepEqual(old.Spec, set.Spec)
	if !specChanged && sameMeta(old, set) {
		return nil, api.ApplyUnchanged, nil
	}
	keepServerFields(set, old, specChanged)
	set.Status = old.Status
	op, err := scheduler.PutOp(raftstore.StatefulSets, set, scheduler.Version(old))
	return &op, api.ApplyConfigured, err
}

func (s *Server) prepareService(v *raftstore.View, svc *corev1.Service) (*raftstore.Op, api.ApplyAction, error) {
	svc = svc.DeepCopy()
	cur, ok := v.Get(raftstore.Services, svc.Namespace, svc.Name)
	if !ok {
		s.stampNew(svc)
		op, err := scheduler.PutOp(raftstore.Services, svc, 0)
		return &op, api.ApplyCreated, err
	}
	old := cur.(*corev1.Service)
	if old.Spec.ClusterIP != svc.Spec.ClusterIP && svc.Spec.ClusterIP != "" {
		return nil, "", apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "clusterIP"), svc.Spec.ClusterIP, "field is immutable; delete and re-create the service to change it")})
	}
	if svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP = old.Spec.ClusterIP
		svc.Spec.ClusterIPs = old.Spec.ClusterIPs
	}
	specChanged := !equality.Semantic.DeepEqual(old.Spec, svc.Spec)
	if !specChanged && sameMeta(old, svc) {
		return nil, api.ApplyUnchanged, nil
	}
	keepServerFields(svc, old, specChanged)
	svc.Status = old.Status
	op, err := scheduler.PutOp(raftstore.Services, svc, scheduler.Version(old))
	return &op, api.ApplyConfigured, err
}

// sameMeta reports whether the user-owned metadata of two objects is equal.
func sameMeta(a, b metav1.Object) bool {
	return equality.Semantic.DeepEqual(a.GetLabels(), b.GetLabels()) &&
		equality.Semantic.DeepEqual(a.GetAnnotations(), b.GetAnnotations())
}

var statefulSets, _ = api.LookupResource("statefulsets")

// apply validates a whole manifest, then commits every object that changes
// in one transaction: all or nothing.
func (s *Server) apply(w http.ResponseWriter, r *http.Request, body []byte) error {
	objs, err := api.DecodeManifestsWith(body, api.DecodeOptions{Namespace: r.URL.Query().Get("namespace")})
	if err != nil {
		return toAPIError(err)
	}
	if len(objs) == 0 {
		return apierrors.NewBadRequest("no objects passed to apply")
	}
	var res api.ApplyResult
	attempt := 0
	err = retryConflicts(func() error {
		v := s.cfg.Store.View()
		res = api.ApplyResult{Index: v.Index()}
		var ops []raftstore.Op
		namespaces := map[string]bool{}
		for _, obj := range objs {
			op, action, err := s.prepare(v, obj)
			if err != nil {
				return err
			}
			gvk := obj.GetObjectKind().GroupVersionKind()
			rs, _ := api.LookupResource(gvk.Kind)
			res.Items = append(res.Items, api.AppliedObject{Resource: rs.Name, Kind: gvk.Kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Action: action})
			if op == nil {
				continue
			}
			if ns := obj.GetNamespace(); !namespaces[ns] {
				namespaces[ns] = true
				nsOp, err := s.ensureNamespace(ns)
				if err != nil {
					return err
				}
				ops = append(ops, nsOp)
			}
			ops = append(ops, *op)
		}
		if len(ops) == 0 {
			return nil
		}
		idx, err := s.commit(r, ops, attempt)
		attempt++
		res.Index = idx
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res.Index, res)
	return nil
}
