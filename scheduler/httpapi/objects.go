package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// resource finds the resource named in the URL path by its plural name.
func resource(r *http.Request) (api.Resource, error) {
	name := r.PathValue("res")
	for _, res := range api.Resources {
		if res.Name == name {
			return res, nil
		}
	}
	_, err := api.LookupResource(name)
	return api.Resource{}, apierrors.NewNotFound(schema.GroupResource{Resource: name}, err.Error())
}

// groupResource names a resource in error messages as Kubernetes does:
// "statefulsets.apps".
func groupResource(res api.Resource) schema.GroupResource {
	gv, _ := schema.ParseGroupVersion(res.APIVersion)
	return schema.GroupResource{Group: gv.Group, Resource: res.Name}
}

// scope returns the namespace of a request, checking that a namespaced
// resource is not read through a cluster-scoped path and vice versa.
func scope(r *http.Request, res api.Resource, needName bool) (string, error) {
	ns := r.PathValue("ns")
	if !res.Namespaced && ns != "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("%s are not namespaced; use /v1/%s", res.Name, res.Name))
	}
	if res.Namespaced && needName && ns == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("%s are namespaced; use /v1/namespaces/NAMESPACE/%s/NAME", res.Name, res.Name))
	}
	return ns, nil
}

// view returns the state to answer a read from. With ?index=N it first
// waits, for at most ?wait, until the change the query concerns passes N:
// a blocking query, so watchers need no polling loop. key names that
// change (the kind the query reads, or the pods of one node), so that a
// watcher wakes for what can change its answer and not for every commit;
// nil waits for any commit.
func (s *Server) view(r *http.Request, key *raftstore.ChangeKey) (*raftstore.View, error) {
	q := r.URL.Query()
	if q.Get("index") == "" {
		return s.cfg.Store.View(), nil
	}
	index, err := strconv.ParseUint(q.Get("index"), 10, 64)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("index %q is not a whole number", q.Get("index")))
	}
	wait := maxWait
	if w := q.Get("wait"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d < 0 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("wait %q is not a duration such as 30s", w))
		}
		wait = min(d, maxWait)
	}
	v := s.cfg.Store.View()
	changed := v.Index()
	if key != nil {
		changed = v.Changed(*key)
	}
	if index == 0 || changed > index {
		return v, nil
	}
	ctx, cancel := contextWithTimeout(r, wait)
	defer cancel()
	// A timeout is not an error: the caller gets the unchanged state and
	// asks again.
	if key != nil {
		s.cfg.Store.WaitForChange(ctx, *key, index)
	} else {
		s.cfg.Store.WaitForIndex(ctx, index)
	}
	return s.cfg.Store.View(), nil
}

// kindChanges is the change key of blocking reads of one kind.
func kindChanges(kind raftstore.Kind) *raftstore.ChangeKey {
	k := raftstore.KindChanges(kind)
	return &k
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	res, err := resource(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	ns, err := scope(r, res, false)
	if err != nil {
		s.fail(w, err)
		return
	}
	sel := labels.Everything()
	if q := r.URL.Query().Get("labelSelector"); q != "" {
		if sel, err = labels.Parse(q); err != nil {
			s.fail(w, apierrors.NewBadRequest(fmt.Sprintf("labelSelector: %v", err)))
			return
		}
	}
	fields := fields.Everything()
	if q := r.URL.Query().Get("fieldSelector"); q != "" {
		if fields, err = fieldSelector(q); err != nil {
			s.fail(w, err)
			return
		}
	}
	kind := raftstore.Kind(res.Name)
	// An agent's watch of the pods bound to its node reads and waits on
	// that node's pods alone.
	node, byNode := fields.RequiresExactMatch("spec.nodeName")
	byNode = byNode && kind == raftstore.Pods
	key, items := kindChanges(kind), func(v *raftstore.View) []raftstore.Object { return v.List(kind, ns) }
	if byNode {
		k := raftstore.PodChangesOn(node)
		key, items = &k, func(v *raftstore.View) []raftstore.Object { return v.PodsOn(node) }
	}
	v, err := s.view(r, key)
	if err != nil {
		s.fail(w, err)
		return
	}
	var out [][]byte
	for _, o := range items(v) {
		if ns != "" && o.GetNamespace() != ns {
			continue
		}
		if !sel.Matches(labels.Set(o.GetLabels())) || !fields.Matches(objectFields(o)) {
			continue
		}
		data, err := s.encoded.encode(kind, o)
		if err != nil {
			s.fail(w, err)
			return
		}
		out = append(out, data)
	}
	writeList(w, v.Index(), out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	res, err := resource(r)
	if err != nil {
		s.fail(w, err)
		return
	}
	ns, err := scope(r, res, true)
	if err != nil {
		s.fail(w, err)
		return
	}
	v, err := s.view(r, kindChanges(raftstore.Kind(res.Name)))
	if err != nil {
		s.fail(w, err)
		return
	}
	name := r.PathValue("name")
	o, ok := v.Get(raftstore.Kind(res.Name), ns, name)
	if !ok {
		s.fail(w, apierrors.NewNotFound(groupResource(res), name))
		return
	}
	writeJSON(w, http.StatusOK, v.Index(), o)
}

// selectableFields are the fields a fieldSelector may name, as in
// Kubernetes: agents list the pods bound to their node with
// fieldSelector=spec.nodeName=NODE.
var selectableFields = []string{"metadata.name", "metadata.namespace", "spec.nodeName", "status.phase"}

// fieldSelector parses a fieldSelector, refusing fields it cannot match.
func fieldSelector(q string) (fields.Selector, error) {
	sel, err := fields.ParseSelector(q)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector: %v", err))
	}
	for _, req := range sel.Requirements() {
		if !slices.Contains(selectableFields, req.Field) {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("fieldSelector: field %q is not supported; use one of %s", req.Field, strings.Join(selectableFields, ", ")))
		}
	}
	return sel, nil
}

// objectFields returns the selectable fields of o.
func objectFields(o raftstore.Object) fields.Set {
	set := fields.Set{"metadata.name": o.GetName(), "metadata.namespace": o.GetNamespace()}
	if pod, ok := o.(*corev1.Pod); ok {
		set["spec.nodeName"] = pod.Spec.NodeName
		set["status.phase"] = string(pod.Status.Phase)
	}
	return set
}
