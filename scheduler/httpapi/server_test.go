package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

const webYAML = `apiVersion: v1
kind: Service
metadata:
  name: nginx
  labels:
    app: nginx
spec:
  ports:
  - port: 80
    name: web
  clusterIP: None
  selector:
    app: nginx
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: nginx
  serviceName: "nginx"
  replicas: 3
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: registry.k8s.io/nginx-slim:0.24
        ports:
        - containerPort: 80
          name: web
        volumeMounts:
        - name: www
          mountPath: /usr/share/nginx/html
  volumeClaimTemplates:
  - metadata:
      name: www
    spec:
      accessModes: [ "ReadWriteOnce" ]
      resources:
        requests:
          storage: 1Gi
`

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// testServer is one Stead server: a single-voter Raft store on disk behind
// the HTTP API on a real listener.
type testServer struct {
	store  *raftstore.Store
	api    *Server
	http   *httptest.Server
	client *api.Client
	// conns counts the connections the API accepted.
	conns atomic.Int64
}

func startServer(t *testing.T, id string, bootstrap bool) *testServer {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	raftAddr := freeAddr(t)
	store, err := raftstore.Open(raftstore.Config{
		ID: id, DataDir: t.TempDir(), BindAddr: raftAddr, AdvertiseAddr: raftAddr, Bootstrap: bootstrap, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{store: store}
	ts.api = New(Config{ID: id, Version: "test", Store: store, Logger: log})
	ts.http = httptest.NewUnstartedServer(ts.api)
	ts.http.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			ts.conns.Add(1)
		}
	}
	ts.http.Start()
	ts.client, err = api.NewClient(ts.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ts.http.Close()
		store.Close()
	})
	if bootstrap {
		waitFor(t, "leader elected", store.IsLeader)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ts.api.Register(ctx, id, raftAddr, ts.http.Listener.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	return ts
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitFor polls cond until it holds or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func res(t *testing.T, name string) api.Resource {
	t.Helper()
	r, err := api.LookupResource(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func actions(r *api.ApplyResult) string {
	var parts []string
	for _, it := range r.Items {
		parts = append(parts, fmt.Sprintf("%s/%s/%s=%s", it.Resource, it.Namespace, it.Name, it.Action))
	}
	return strings.Join(parts, " ")
}

func TestApplyCreatesThenUnchangedThenConfigured(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()

	got, err := ts.client.Apply(ctx, []byte(webYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "services/default/nginx=created statefulsets/default/web=created"; actions(got) != want {
		t.Fatalf("first apply: %s, want %s", actions(got), want)
	}
	var set appsv1.StatefulSet
	if _, err := ts.client.Get(ctx, res(t, "sts"), "default", "web", &set); err != nil {
		t.Fatal(err)
	}
	if set.Generation != 1 || set.UID == "" || set.CreationTimestamp.IsZero() || set.Kind != "StatefulSet" || set.APIVersion != "apps/v1" {
		t.Fatalf("stored set: generation %d uid %q created %v type %s/%s", set.Generation, set.UID, set.CreationTimestamp, set.APIVersion, set.Kind)
	}
	if set.Spec.PodManagementPolicy != appsv1.OrderedReadyPodManagement || *set.Spec.RevisionHistoryLimit != 10 {
		t.Fatalf("defaults not applied: %+v", set.Spec)
	}
	var ns corev1.Namespace
	if _, err := ts.client.Get(ctx, res(t, "ns"), "", "default", &ns); err != nil {
		t.Fatalf("namespace not created on first use: %v", err)
	}

	before := ts.store.View().Index()
	got, err = ts.client.Apply(ctx, []byte(webYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "services/default/nginx=unchanged statefulsets/default/web=unchanged"; actions(got) != want {
		t.Fatalf("second apply: %s, want %s", actions(got), want)
	}
	if after := ts.store.View().Index(); after != before {
		t.Fatalf("unchanged apply moved the index from %d to %d", before, after)
	}

	changed := strings.Replace(webYAML, "replicas: 3", "replicas: 5", 1)
	got, err = ts.client.Apply(ctx, []byte(changed), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "services/default/nginx=unchanged statefulsets/default/web=configured"; actions(got) != want {
		t.Fatalf("third apply: %s, want %s", actions(got), want)
	}
	var set2 appsv1.StatefulSet
	if _, err := ts.client.Get(ctx, res(t, "sts"), "default", "web", &set2); err != nil {
		t.Fatal(err)
	}
	if set2.Generation != 2 || *set2.Spec.Replicas != 5 || set2.UID != set.UID || !set2.CreationTimestamp.Equal(&set.CreationTimestamp) {
		t.Fatalf("after change: generation %d replicas %d uid %s", set2.Generation, *set2.Spec.Replicas, set2.UID)
	}
}

func TestApplyInvalidChangesNothing(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		manifest string
		code     int32
		contains string
	}{
		{"selector mismatch in a second document", strings.Replace(webYAML, "      labels:\n        app: nginx\n    spec:", "      labels:\n        app: other\n    spec:", 1) + "", 422, "spec.template.metadata.labels"},
		{"immutable serviceName", strings.Replace(webYAML, `serviceName: "nginx"`, `serviceName: "other"`, 1), 422, "Forbidden: updates to statefulset spec for fields other than"},
		{"unknown field", strings.Replace(webYAML, "serviceName:", "serviceNam:", 1), 0, "serviceNam"},
		{"unknown kind", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n", 0, "Deployment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := ts.store.View()
			_, err := ts.client.Apply(ctx, []byte(tt.manifest), "")
			var se *apierrors.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("apply: %v, want a status error", err)
			}
			if tt.code != 0 && se.ErrStatus.Code != tt.code {
				t.Errorf("code %d, want %d (%s)", se.ErrStatus.Code, tt.code, se.ErrStatus.Message)
			}
			if se.ErrStatus.Code < 400 || se.ErrStatus.Code >= 500 {
				t.Errorf("code %d is not a client error", se.ErrStatus.Code)
			}
			if !strings.Contains(se.ErrStatus.Message, tt.contains) {
				t.Errorf("message %q does not name %q", se.ErrStatus.Message, tt.contains)
			}
			after := ts.store.View()
			if after.Index() != before.Index() || after.Hash() != before.Hash() {
				t.Errorf("state changed: index %d -> %d", before.Index(), after.Index())
			}
		})
	}
}

func TestGetListAndSelectors(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.client.Apply(ctx, []byte(strings.ReplaceAll(webYAML, "nginx", "db")), "other"); err != nil {
		t.Fatal(err)
	}
	names := func(l *api.List) string {
		var out []string
		for _, raw := range l.Items {
			var m metav1.PartialObjectMetadata
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m.Namespace+"/"+m.Name)
		}
		return strings.Join(out, ",")
	}
	tests := []struct {
		name, res, ns, selector, want string
	}{
		{"one namespace", "svc", "default", "", "default/nginx"},
		{"all namespaces", "svc", "", "", "default/nginx,other/db"},
		{"label selector", "svc", "", "app=db", "other/db"},
		{"set-based selector", "svc", "", "app in (nginx,x)", "default/nginx"},
		{"no match", "sts", "default", "app=none", ""},
		{"namespaces", "ns", "", "", "/default,/other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, idx, err := ts.client.List(ctx, res(t, tt.res), tt.ns, api.ListOptions{LabelSelector: tt.selector})
			if err != nil {
				t.Fatal(err)
			}
			if got := names(l); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if l.Kind != "List" || l.APIVersion != "v1" || idx == 0 {
				t.Errorf("list shape %s/%s index %d", l.APIVersion, l.Kind, idx)
			}
		})
	}
	var set appsv1.StatefulSet
	_, err := ts.client.Get(ctx, res(t, "sts"), "default", "nope", &set)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `statefulsets.apps "nope" not found`) {
		t.Errorf("get missing: %v", err)
	}
	if _, _, err := ts.client.List(ctx, api.Resource{Name: "deployments", Namespaced: true}, "default", api.ListOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("unknown resource: %v", err)
	}
}

func TestBlockingQuery(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	_, idx, err := ts.client.List(ctx, res(t, "sts"), "", api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("times out unchanged", func(t *testing.T) {
		start := time.Now()
		l, got, err := ts.client.List(ctx, res(t, "sts"), "", api.ListOptions{Index: idx, Wait: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if got != idx || len(l.Items) != 0 {
			t.Errorf("index %d items %d, want %d and 0", got, len(l.Items), idx)
		}
		if waited := time.Since(start); waited < 300*time.Millisecond {
			t.Errorf("returned after %v, before the wait ended", waited)
		}
	})

	t.Run("wakes on a write", func(t *testing.T) {
		type answer struct {
			l   *api.List
			idx uint64
			err error
		}
		done := make(chan answer, 1)
		go func() {
			l, got, err := ts.client.List(ctx, res(t, "sts"), "", api.ListOptions{Index: idx, Wait: time.Minute})
			done <- answer{l, got, err}
		}()
		select {
		case a := <-done:
			t.Fatalf("blocking query returned before any write: %+v", a)
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
			t.Fatal(err)
		}
		select {
		case a := <-done:
			if a.err != nil {
				t.Fatal(a.err)
			}
			if a.idx <= idx || len(a.l.Items) != 1 {
				t.Errorf("woke with index %d (was %d) and %d sets", a.idx, idx, len(a.l.Items))
			}
		case <-time.After(20 * time.Second):
			t.Fatal("blocking query did not wake on a write")
		}
	})
}

func TestScaleAndStatusSubresources(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	sts := res(t, "sts")
	var sc autoscalingv1.Scale
	if _, err := ts.client.Do(ctx, http.MethodGet, api.Path(sts, "default", "web", "scale"), nil, nil, &sc); err != nil {
		t.Fatal(err)
	}
	if sc.Spec.Replicas != 3 || sc.Status.Selector != "app=nginx" || sc.Kind != "Scale" {
		t.Fatalf("scale: %+v", sc)
	}
	body, _ := json.Marshal(autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: 1}})
	if _, err := ts.client.Do(ctx, http.MethodPut, api.Path(sts, "default", "web", "scale"), nil, body, &sc); err != nil {
		t.Fatal(err)
	}
	var set appsv1.StatefulSet
	ts.client.Get(ctx, sts, "default", "web", &set)
	if *set.Spec.Replicas != 1 || set.Generation != 2 {
		t.Fatalf("after scale: replicas %d generation %d", *set.Spec.Replicas, set.Generation)
	}
	body, _ = json.Marshal(autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: -1}})
	if _, err := ts.client.Do(ctx, http.MethodPut, api.Path(sts, "default", "web", "scale"), nil, body, nil); !apierrors.IsBadRequest(err) {
		t.Fatalf("negative scale: %v", err)
	}

	// SEMANTICS A.9: conditions written through the status subresource are visible.
	set.Status.Conditions = []appsv1.StatefulSetCondition{{Type: "Tested", Status: corev1.ConditionTrue, Reason: "E2E"}}
	body, _ = json.Marshal(set)
	if _, err := ts.client.Do(ctx, http.MethodPut, api.Path(sts, "default", "web", "status"), nil, body, nil); err != nil {
		t.Fatal(err)
	}
	var again appsv1.StatefulSet
	ts.client.Get(ctx, sts, "default", "web", &again)
	if len(again.Status.Conditions) != 1 || again.Status.Conditions[0].Reason != "E2E" || *again.Spec.Replicas != 1 {
		t.Fatalf("status after write: %+v", again.Status)
	}
}

// putPod stores a pod as the controller would create it.
func putPod(t *testing.T, ts *testServer, set *appsv1.StatefulSet, name, node string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: set.Namespace, UID: types.UID(newRequestID()), Labels: map[string]string{"app": "nginx"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, appsv1.SchemeGroupVersion.WithKind("StatefulSet"))}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "nginx", Image: "x"}}},
	}
	op, err := scheduler.PutOp(raftstore.Pods, pod, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.store.Apply(context.Background(), raftstore.Txn{RequestID: newRequestID(), Ops: []raftstore.Op{op}}); err != nil {
		t.Fatal(err)
	}
}

func TestDelete(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	sts, pods := res(t, "sts"), res(t, "pods")
	setup := func() *appsv1.StatefulSet {
		if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
			t.Fatal(err)
		}
		var set appsv1.StatefulSet
		ts.client.Get(ctx, sts, "default", "web", &set)
		return &set
	}
	pod := func(name string) *corev1.Pod {
		p, _ := raftstore.GetOf[*corev1.Pod](ts.store.View(), raftstore.Pods, "default", name)
		return p
	}

	set := setup()
	putPod(t, ts, set, "web-0", "node-a") // running on a node: becomes Terminating
	putPod(t, ts, set, "web-1", "")       // never placed: goes at once
	if _, err := ts.client.Delete(ctx, pods, "default", "web-1", api.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if pod("web-1") != nil {
		t.Error("unplaced pod web-1 not removed at once")
	}
	if _, err := ts.client.Delete(ctx, pods, "default", "web-0", api.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := pod("web-0"); p == nil || p.DeletionTimestamp == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("web-0 not Terminating with 30 s grace: %+v", p)
	}
	// A second delete may shorten the grace, and a forced one frees the ordinal at once.
	five, zero := int64(5), int64(0)
	if _, err := ts.client.Delete(ctx, pods, "default", "web-0", api.DeleteOptions{GracePeriodSeconds: &five}); err != nil {
		t.Fatal(err)
	}
	if p := pod("web-0"); *p.DeletionGracePeriodSeconds != 5 {
		t.Errorf("grace after a shorter delete: %d", *p.DeletionGracePeriodSeconds)
	}
	if _, err := ts.client.Delete(ctx, pods, "default", "web-0", api.DeleteOptions{GracePeriodSeconds: &zero, Force: true}); err != nil {
		t.Fatal(err)
	}
	if pod("web-0") != nil {
		t.Error("force-deleted pod still stored")
	}

	// A delete or a status report naming an earlier incarnation changes nothing.
	putPod(t, ts, set, "web-2", "node-a")
	p2 := pod("web-2")
	if _, err := ts.client.Delete(ctx, pods, "default", "web-2", api.DeleteOptions{Force: true, UID: "an-earlier-uid"}); !apierrors.IsNotFound(err) {
		t.Errorf("delete of an earlier incarnation: %v, want NotFound", err)
	}
	stale := p2.DeepCopy()
	stale.UID = "an-earlier-uid"
	stale.Status.Phase = corev1.PodFailed
	body, _ := json.Marshal(stale)
	if _, err := ts.client.Do(ctx, http.MethodPut, api.Path(pods, "default", "web-2", "status"), nil, body, nil); !apierrors.IsConflict(err) {
		t.Errorf("status of an earlier incarnation: %v, want a conflict", err)
	}
	if p := pod("web-2"); p == nil || p.Status.Phase == corev1.PodFailed {
		t.Errorf("web-2 after stale writes: %+v", p)
	}
	if _, err := ts.client.Delete(ctx, pods, "default", "web-2", api.DeleteOptions{Force: true, UID: string(p2.UID)}); err != nil {
		t.Errorf("delete naming the current incarnation: %v", err)
	}

	// Cascading delete marks the set; the controller deletes its pods and then the set.
	putPod(t, ts, set, "web-0", "node-a")
	if _, err := ts.client.Delete(ctx, sts, "default", "web", api.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var marked appsv1.StatefulSet
	if _, err := ts.client.Get(ctx, sts, "default", "web", &marked); err != nil || marked.DeletionTimestamp == nil {
		t.Fatalf("set after cascading delete: %v %+v", err, marked.ObjectMeta)
	}
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); !apierrors.IsConflict(err) {
		t.Errorf("apply of a set being deleted: %v, want a conflict", err)
	}
	if _, err := ts.client.Delete(ctx, sts, "default", "web", api.DeleteOptions{Cascade: "orphan"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := ts.store.View().Get(raftstore.StatefulSets, "default", "web"); ok {
		t.Error("set still stored after orphaning delete")
	}
	if p := pod("web-0"); p == nil || p.DeletionTimestamp != nil || len(p.OwnerReferences) != 0 {
		t.Fatalf("orphaned web-0: %+v", p)
	}
	if _, err := ts.client.Delete(ctx, sts, "default", "web", api.DeleteOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("delete of a deleted set: %v", err)
	}
}

func TestOversizedBody(t *testing.T) {
	ts := startServer(t, "s1", true)
	big := bytes.Repeat([]byte("# padding\n"), api.MaxBodyBytes/10+10)
	_, err := ts.client.Apply(context.Background(), big, "")
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized apply: %v, want 413", err)
	}
}

// TestFollowerForwardsWrites runs three servers, each with its own Raft
// store on disk and its API on a real listener, and writes through a
// follower.
func TestFollowerForwardsWrites(t *testing.T) {
	s1 := startServer(t, "s1", true)
	s2 := startServer(t, "s2", false)
	s3 := startServer(t, "s3", false)
	ctx := context.Background()
	for _, s := range []*testServer{s2, s3} {
		body, _ := json.Marshal(JoinRequest{ID: s.api.cfg.ID, RaftAddr: string(s.store.Addr()), HTTPAddr: s.http.Listener.Addr().String(), LogVersion: raftstore.LogVersion})
		// Join through s3's or s2's own API: a follower forwards the join too.
		if _, err := s.client.Do(ctx, http.MethodPost, "/v1/join", nil, body, nil); err == nil {
			t.Fatalf("%s joined itself while not in a cluster", s.api.cfg.ID)
		}
		if _, err := s1.client.Do(ctx, http.MethodPost, "/v1/join", nil, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "followers know the leader", func() bool {
		id2, _ := s2.store.LeaderID()
		id3, _ := s3.store.LeaderID()
		return id2 == "s1" && id3 == "s1"
	})
	got, err := s3.client.Apply(ctx, []byte(webYAML), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "services/default/nginx=created statefulsets/default/web=created"; actions(got) != want {
		t.Fatalf("apply via follower: %s", actions(got))
	}
	waitFor(t, "the write reaches every server", func() bool {
		for _, s := range []*testServer{s1, s2, s3} {
			if _, ok := s.store.View().Get(raftstore.StatefulSets, "default", "web"); !ok {
				return false
			}
		}
		return true
	})
	st, err := s2.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != "s1" || len(st.Servers) != 3 || st.LeaderAddr != s1.http.Listener.Addr().String() {
		t.Fatalf("status from s2: %+v", st)
	}

	// The leader's minimal answer to a write comes back through the
	// follower, with the index of the commit.
	resp, data := putEvent(t, s3, "via-follower", api.PreferMinimal)
	if resp.StatusCode != http.StatusNoContent || len(data) != 0 || resp.Header.Get("Preference-Applied") != api.PreferMinimal {
		t.Fatalf("minimal answer through s3: %s, Preference-Applied %q, body %q", resp.Status, resp.Header.Get("Preference-Applied"), data)
	}
	ev, ok := s1.store.View().Get(raftstore.Events, "default", "via-follower")
	if !ok || resp.Header.Get(api.HeaderIndex) != ev.GetResourceVersion() {
		t.Fatalf("minimal answer through s3 has index %q; the leader stored the event: %v", resp.Header.Get(api.HeaderIndex), ok)
	}

	// Heartbeats that arrive at a follower together are forwarded on
	// connections it keeps: rounds of them open no more connections to
	// the leader than one round needs.
	const nodes, rounds = 32, 4
	for i := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}}
		if _, err := s1.client.Put(ctx, res(t, "nodes"), "", node.Name, node, nil); err != nil {
			t.Fatal(err)
		}
	}
	before := s1.conns.Load()
	for round := range rounds {
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s2.client.Do(ctx, http.MethodPost, fmt.Sprintf("/v1/nodes/n%d/heartbeat", i), nil, nil, nil); err != nil {
					t.Errorf("round %d: heartbeat of n%d through s2: %v", round, i, err)
				}
			}()
		}
		wg.Wait()
	}
	if opened := s1.conns.Load() - before; opened > nodes {
		t.Errorf("%d rounds of %d heartbeats forwarded at once opened %d connections to the leader, want at most %d", rounds, nodes, opened, nodes)
	}
}

func TestNodeRegistrationKeepsServerOwnedSpec(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	nodes := res(t, "nodes")
	register := func(name string) *corev1.Node {
		t.Helper()
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
		var out corev1.Node
		if _, err := ts.client.Put(ctx, nodes, "", name, n, &out); err != nil {
			t.Fatal(err)
		}
		return &out
	}
	a, b := register("node-a"), register("node-b")
	if a.Spec.PodCIDR != "10.244.0.0/24" || b.Spec.PodCIDR != "10.244.1.0/24" {
		t.Fatalf("pod subnets %q and %q, want 10.244.0.0/24 and 10.244.1.0/24", a.Spec.PodCIDR, b.Spec.PodCIDR)
	}
	ready := func(n *corev1.Node) corev1.ConditionStatus {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status
			}
		}
		return ""
	}
	if ready(a) != corev1.ConditionTrue {
		t.Errorf("registered node not Ready: %+v", a.Status.Conditions)
	}
	// The server owns the spec: a cordon survives the agent registering again.
	cordoned := a.DeepCopy()
	cordoned.Spec.Unschedulable = true
	op, err := scheduler.PutOp(raftstore.Nodes, cordoned, scheduler.Version(a))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.store.Apply(ctx, raftstore.Txn{RequestID: newRequestID(), Ops: []raftstore.Op{op}}); err != nil {
		t.Fatal(err)
	}
	again := register("node-a")
	if !again.Spec.Unschedulable || again.Spec.PodCIDR != "10.244.0.0/24" || again.UID != a.UID {
		t.Errorf("re-registered node-a: unschedulable %v podCIDR %q uid %s", again.Spec.Unschedulable, again.Spec.PodCIDR, again.UID)
	}
}

// Nodes that register at once each get a pod subnet of their own, the
// lowest ones free.
func TestConcurrentNodeRegistrationsGetDistinctSubnets(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	nodes := res(t, "nodes")
	const n = 24
	subnets := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("node-%02d", i)
			var out corev1.Node
			if _, err := ts.client.Put(ctx, nodes, "", name, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, &out); err != nil {
				t.Errorf("register %s: %v", name, err)
			}
			subnets[i] = out.Spec.PodCIDR
		}()
	}
	wg.Wait()
	held := map[string]int{}
	for _, s := range subnets {
		held[s]++
	}
	for i := range n {
		if s := fmt.Sprintf("10.244.%d.0/24", i); held[s] != 1 {
			t.Errorf("subnet %s is held by %d nodes, want 1; the nodes registered at once hold %q", s, held[s], subnets)
		}
	}
}

func TestFieldSelector(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	var set appsv1.StatefulSet
	ts.client.Get(ctx, res(t, "sts"), "default", "web", &set)
	putPod(t, ts, &set, "web-0", "node-a")
	putPod(t, ts, &set, "web-1", "node-b")
	putPod(t, ts, &set, "web-2", "")
	tests := []struct{ selector, want string }{
		{"spec.nodeName=node-a", "web-0"},
		{"spec.nodeName!=node-a", "web-1,web-2"},
		{"spec.nodeName=", "web-2"},
		{"metadata.name=web-1", "web-1"},
		{"spec.nodeName=node-a,metadata.name=web-0", "web-0"},
		{"spec.nodeName=node-a,metadata.name=web-1", ""},
		{"spec.nodeName=node-c", ""},
	}
	for _, tt := range tests {
		l, _, err := ts.client.List(ctx, res(t, "pods"), "", api.ListOptions{FieldSelector: tt.selector})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, raw := range l.Items {
			var m metav1.PartialObjectMetadata
			json.Unmarshal(raw, &m)
			names = append(names, m.Name)
		}
		if got := strings.Join(names, ","); got != tt.want {
			t.Errorf("fieldSelector %q: %q, want %q", tt.selector, got, tt.want)
		}
	}
	if _, _, err := ts.client.List(ctx, res(t, "pods"), "", api.ListOptions{FieldSelector: "spec.hostname=x"}); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "spec.nodeName") {
		t.Errorf("unsupported field: %v", err)
	}
}

// TestBlockingQueryWakesForItsOwnChanges: a watch of one node's pods
// sleeps through changes to other nodes' pods and wakes for its own; a
// watch of a kind sleeps through changes to other kinds. Each sleep is
// seen as a wait that runs to its end (as in TestBlockingQuery).
func TestBlockingQueryWakesForItsOwnChanges(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	pods, svcs := res(t, "pods"), res(t, "services")
	if _, err := ts.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	var set appsv1.StatefulSet
	ts.client.Get(ctx, res(t, "sts"), "default", "web", &set)
	putPod(t, ts, &set, "web-0", "node-a")
	_, idx, err := ts.client.List(ctx, pods, "", api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const wait = 400 * time.Millisecond
	type answer struct {
		names string
		idx   uint64
		err   error
		took  time.Duration
	}
	watch := func(r api.Resource, selector string) chan answer {
		done := make(chan answer, 1)
		go func() {
			start := time.Now()
			l, got, err := ts.client.List(ctx, r, "", api.ListOptions{FieldSelector: selector, Index: idx, Wait: wait})
			a := answer{idx: got, err: err, took: time.Since(start)}
			if err == nil {
				var names []string
				for _, raw := range l.Items {
					var m metav1.PartialObjectMetadata
					json.Unmarshal(raw, &m)
					names = append(names, m.Name)
				}
				a.names = strings.Join(names, ",")
			}
			done <- a
		}()
		return done
	}
	get := func(what string, done chan answer) answer {
		t.Helper()
		select {
		case a := <-done:
			if a.err != nil {
				t.Fatalf("%s: %v", what, a.err)
			}
			return a
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no answer", what)
		}
		return answer{}
	}

	nodeA, services := watch(pods, "spec.nodeName=node-a"), watch(svcs, "")
	putPod(t, ts, &set, "web-1", "node-b") // another node's pod
	if a := get("node-a's pods while node-b's change", nodeA); a.took < wait || a.names != "web-0" {
		t.Errorf("node-a's watch answered %q after %v, want web-0 after the whole wait of %v", a.names, a.took, wait)
	}
	if a := get("services while a pod changes", services); a.took < wait {
		t.Errorf("the services watch answered after %v, before its wait of %v ran out", a.took, wait)
	}

	nodeA = watch(pods, "spec.nodeName=node-a")
	var moved corev1.Pod
	if _, err := ts.client.Get(ctx, pods, "default", "web-1", &moved); err != nil {
		t.Fatal(err)
	}
	moved.Spec.NodeName = "node-a"
	op, err := scheduler.PutOp(raftstore.Pods, &moved, scheduler.Version(&moved))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.store.Apply(ctx, raftstore.Txn{RequestID: newRequestID(), Ops: []raftstore.Op{op}}); err != nil {
		t.Fatal(err)
	}
	a := get("node-a's pods while a pod moves there", nodeA)
	if a.names != "web-0,web-1" || a.idx <= idx {
		t.Errorf("node-a's watch answered %q at index %d, want web-0,web-1 past %d", a.names, a.idx, idx)
	}
	_, idx, _ = ts.client.List(ctx, pods, "", api.ListOptions{})
	nodeB := watch(pods, "spec.nodeName=node-b")
	if _, err := ts.client.Delete(ctx, pods, "default", "web-1", api.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if a := get("node-b's pods while node-a's pod is deleted", nodeB); a.took < wait || a.names != "" {
		t.Errorf("node-b's watch answered %q after %v, want nothing after the whole wait of %v", a.names, a.took, wait)
	}
}

func TestHeartbeat(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	if _, err := ts.client.Put(ctx, res(t, "nodes"), "", "node-a", n, nil); err != nil {
		t.Fatal(err)
	}
	before := ts.store.View().Index()
	var lease api.Lease
	if _, err := ts.client.Do(ctx, http.MethodPost, "/v1/nodes/node-a/heartbeat", nil, nil, &lease); err != nil {
		t.Fatal(err)
	}
	if lease.TTLSeconds != scheduler.DefaultLeaseTTL.Seconds() || lease.HeartbeatSeconds != scheduler.DefaultHeartbeat.Seconds() {
		t.Errorf("lease %+v", lease)
	}
	if after := ts.store.View().Index(); after != before {
		t.Errorf("a heartbeat wrote to Raft: index %d -> %d", before, after)
	}
	if age := ts.api.cfg.Leases.Age("node-a"); age > time.Second {
		t.Errorf("lease not renewed: age %v", age)
	}
	if _, err := ts.client.Do(ctx, http.MethodPost, "/v1/nodes/node-z/heartbeat", nil, nil, nil); !apierrors.IsNotFound(err) {
		t.Errorf("heartbeat of an unknown node: %v", err)
	}
}

func TestNodeActions(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	if _, err := ts.client.Put(ctx, res(t, "nodes"), "", "node-a", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, nil); err != nil {
		t.Fatal(err)
	}
	act := func(action string) *corev1.Node {
		t.Helper()
		var n corev1.Node
		if _, err := ts.client.Do(ctx, http.MethodPost, "/v1/nodes/node-a/"+action, nil, nil, &n); err != nil {
			t.Fatal(err)
		}
		return &n
	}
	if n := act("cordon"); !n.Spec.Unschedulable {
		t.Error("cordon did not make the node unschedulable")
	}
	if n := act("uncordon"); n.Spec.Unschedulable {
		t.Error("uncordon left the node unschedulable")
	}
	n := act("fence")
	if !n.Spec.Unschedulable || len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != scheduler.TaintOutOfService {
		t.Errorf("fenced node: %+v", n.Spec)
	}
	if n := act("fence"); len(n.Spec.Taints) != 1 {
		t.Errorf("fencing twice added the taint twice: %+v", n.Spec.Taints)
	}
	if _, err := ts.client.Do(ctx, http.MethodPost, "/v1/nodes/node-a/heartbeat", nil, nil, nil); !apierrors.IsConflict(err) {
		t.Errorf("heartbeat of a fenced node: %v, want a conflict", err)
	}
	if n := act("unfence"); len(n.Spec.Taints) != 0 || !n.Spec.Unschedulable {
		t.Errorf("unfenced node: %+v (stays cordoned until uncordoned)", n.Spec)
	}
	if _, err := ts.client.Do(ctx, http.MethodPost, "/v1/nodes/node-a/explode", nil, nil, nil); !apierrors.IsNotFound(err) {
		t.Errorf("unknown action: %v", err)
	}
}
