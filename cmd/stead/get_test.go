package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/stead-io/stead/api"
)

// fakeAPI serves canned objects in the shape of Stead's HTTP API: lists
// as `kind: List` with the state index in a header, gets of one object,
// and NotFound as a Kubernetes Status.
type fakeAPI struct {
	t     *testing.T
	index uint64
	// objs holds the objects of each resource, by plural name, in the
	// order lists return them.
	objs map[string][]metav1.Object
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	ns := ""
	if parts[0] == "namespaces" && len(parts) >= 3 {
		ns, parts = parts[1], parts[2:]
	}
	res, err := api.LookupResource(parts[0])
	if err != nil {
		f.t.Errorf("request for unknown resource %s", r.URL.Path)
		http.NotFound(w, r)
		return
	}
	name := ""
	if len(parts) > 1 {
		name = parts[1]
	}
	sel, err := labels.Parse(r.URL.Query().Get("labelSelector"))
	if err != nil {
		f.t.Errorf("bad selector in %s: %v", r.URL, err)
	}
	items := []json.RawMessage{}
	for _, o := range f.objs[res.Name] {
		if (ns != "" && o.GetNamespace() != ns) || (name != "" && o.GetName() != name) || !sel.Matches(labels.Set(o.GetLabels())) {
			continue
		}
		items = append(items, encodeWithType(f.t, res, o))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(f.index, 10))
	if name == "" {
		l := api.List{Items: items}
		l.APIVersion, l.Kind = "v1", "List"
		_ = json.NewEncoder(w).Encode(l)
		return
	}
	if len(items) == 0 {
		st := apierrors.NewNotFound(groupResource(res), name).ErrStatus
		st.APIVersion, st.Kind = "v1", "Status"
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(st)
		return
	}
	_, _ = w.Write(items[0])
}

// cluster returns the objects of a small cluster: set web with pods web-0
// and web-1 and headless service nginx in default, and pod db-0 in tenant-a.
func testCluster() map[string][]metav1.Object {
	web := newSet("web", 2, 2, 5*time.Minute, corev1.Container{Name: "nginx", Image: "nginx:1.27"})
	web.Labels = map[string]string{"app": "web"}
	pod := func(name, ns string) *corev1.Pod {
		p := runningPod(name, 5*time.Minute)
		p.Namespace = ns
		p.Labels = map[string]string{"app": strings.SplitN(name, "-", 2)[0]}
		return p
	}
	return map[string][]metav1.Object{
		"statefulsets": {web},
		"pods":         {pod("web-0", "default"), pod("web-1", "default"), pod("db-0", "tenant-a")},
		"services": {&corev1.Service{
			ObjectMeta: objectMeta("nginx", 5*time.Minute),
			Spec:       corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}},
		}},
	}
}

func TestGet(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		ns      string
		opts    getOptions
		stdout  string
		stderr  string
		wantErr string
	}{
		{
			name: "list pods",
			args: []string{"pods"},
			stdout: "" +
				"NAME    READY   STATUS    RESTARTS   AGE\n" +
				"web-0   1/1     Running   0          5m\n" +
				"web-1   1/1     Running   0          5m\n",
		},
		{
			name: "all shows pods, services and sets with their kinds",
			args: []string{"all"},
			stdout: "" +
				"NAME        READY   STATUS    RESTARTS   AGE\n" +
				"pod/web-0   1/1     Running   0          5m\n" +
				"pod/web-1   1/1     Running   0          5m\n" +
				"\n" +
				"NAME            TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE\n" +
				"service/nginx   ClusterIP   None         <none>        80/TCP    5m\n" +
				"\n" +
				"NAME                   READY   AGE\n" +
				"statefulset.apps/web   2/2     5m\n",
		},
		{
			name: "names in TYPE/NAME form",
			args: []string{"po/web-1", "sts/web"},
			stdout: "" +
				"NAME        READY   STATUS    RESTARTS   AGE\n" +
				"pod/web-1   1/1     Running   0          5m\n" +
				"\n" +
				"NAME                   READY   AGE\n" +
				"statefulset.apps/web   2/2     5m\n",
		},
		{
			name:   "all namespaces as names",
			args:   []string{"pods"},
			opts:   getOptions{allNamespaces: true, output: outputName},
			stdout: "pod/web-0\npod/web-1\npod/db-0\n",
		},
		{
			name:   "label selector",
			args:   []string{"pods"},
			opts:   getOptions{allNamespaces: true, selector: "app=db", output: outputName},
			stdout: "pod/db-0\n",
		},
		{
			name:   "empty list says so on stderr",
			args:   []string{"pods"},
			ns:     "empty",
			stderr: "No resources found in empty namespace.\n",
		},
		{
			name:    "a missing object is an error in Kubernetes' words",
			args:    []string{"sts", "nope"},
			wantErr: `statefulsets.apps "nope" not found`,
		},
		{
			name: "found objects are printed before the error about a missing one",
			args: []string{"pods", "web-0", "web-9"},
			stdout: "" +
				"NAME    READY   STATUS    RESTARTS   AGE\n" +
				"web-0   1/1     Running   0          5m\n",
			wantErr: `pods "web-9" not found`,
		},
		{
			name:    "unknown type",
			args:    []string{"deployments"},
			wantErr: `the server doesn't have a resource type "deployments"`,
		},
		{
			name:    "names and selectors do not mix",
			args:    []string{"pods", "web-0"},
			opts:    getOptions{selector: "app=web"},
			wantErr: "name cannot be provided when a selector is specified",
		},
		{
			name:    "names across all namespaces",
			args:    []string{"pods", "web-0"},
			opts:    getOptions{allNamespaces: true},
			wantErr: "a resource cannot be retrieved by name across all namespaces",
		},
		{
			name:    "unknown output",
			args:    []string{"pods"},
			opts:    getOptions{output: "xml"},
			wantErr: `output format "xml"`,
		},
	}
	srv := httptest.NewServer(&fakeAPI{t: t, index: 7, objs: testCluster()})
	defer srv.Close()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := api.NewClient(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			ns := tt.ns
			if ns == "" {
				ns = "default"
			}
			r := getRun{opts: tt.opts, client: c, ns: ns, out: &out, errOut: &errOut, now: func() time.Time { return testNow }}
			err = r.run(context.Background(), tt.args)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("get %v: %v", tt.args, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("get %v = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			if out.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), tt.stdout)
			}
			if errOut.String() != tt.stderr {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.stderr)
			}
		})
	}
}

func TestGetJSON(t *testing.T) {
	srv := httptest.NewServer(&fakeAPI{t: t, index: 7, objs: testCluster()})
	defer srv.Close()
	c, err := api.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	get := func(args ...string) []byte {
		t.Helper()
		var out bytes.Buffer
		r := getRun{opts: getOptions{output: outputJSON}, client: c, ns: "default", out: &out, errOut: &out, now: func() time.Time { return testNow }}
		if err := r.run(context.Background(), args); err != nil {
			t.Fatal(err)
		}
		return out.Bytes()
	}

	var s appsv1.StatefulSet
	if err := json.Unmarshal(get("sts", "web"), &s); err != nil {
		t.Fatal(err)
	}
	if s.Kind != "StatefulSet" || s.Name != "web" || s.Status.ReadyReplicas != 2 {
		t.Errorf("get sts web -o json = %s %s ready %d, want the StatefulSet web with 2 ready", s.Kind, s.Name, s.Status.ReadyReplicas)
	}

	var l struct {
		Kind  string       `json:"kind"`
		Items []corev1.Pod `json:"items"`
	}
	if err := json.Unmarshal(get("pods"), &l); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range l.Items {
		names = append(names, p.Name)
	}
	if l.Kind != "List" || strings.Join(names, ",") != "web-0,web-1" {
		t.Errorf("get pods -o json = %s of %v, want a List of web-0,web-1", l.Kind, names)
	}
}

func TestParseReadArgs(t *testing.T) {
	tests := []struct {
		args      []string
		want      string // "resource/name" per target, name empty to list
		multiKind bool
		wantErr   string
	}{
		{args: []string{"po"}, want: "pods/"},
		{args: []string{"sts", "web", "db"}, want: "statefulsets/web statefulsets/db"},
		{args: []string{"sts,svc"}, want: "statefulsets/ services/", multiKind: true},
		{args: []string{"svc,sts", "web"}, want: "services/web statefulsets/web", multiKind: true},
		{args: []string{"all"}, want: "pods/ services/ statefulsets/", multiKind: true},
		{args: []string{"pod/web-0", "pod/web-1"}, want: "pods/web-0 pods/web-1"},
		{args: []string{"pod/web-0", "service/nginx"}, want: "pods/web-0 services/nginx", multiKind: true},
		{args: []string{"ns"}, want: "namespaces/"},
		{args: []string{"pods", "pod/web-0"}, wantErr: "no need to specify a resource type as a separate argument"},
		{args: []string{"pod/web-0", "web-1"}, wantErr: "no need to specify a resource type as a separate argument"},
		{args: []string{"widgets"}, wantErr: `doesn't have a resource type "widgets"`},
		{args: nil, wantErr: "you must specify the type of resource to get"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			targets, multi, err := parseReadArgs("get", tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tg := range targets {
				got = append(got, tg.res.Name+"/"+tg.name)
			}
			if strings.Join(got, " ") != tt.want || multi != tt.multiKind {
				t.Errorf("targets = %v multiKind %v, want %s multiKind %v", got, multi, tt.want, tt.multiKind)
			}
		})
	}
}

func TestDiffObjects(t *testing.T) {
	pod := func(name, rv string) object {
		p := runningPod(name, time.Minute)
		p.ResourceVersion = rv
		return toObject(t, p)
	}
	seen := map[string]object{}
	for _, o := range []object{pod("web-0", "1"), pod("web-1", "2"), pod("web-2", "3"), pod("web-3", "4")} {
		seen[o.key()] = o
	}
	current := []object{pod("web-0", "1"), pod("web-4", "9"), pod("web-1", "8")}
	changed, events := diffObjects(seen, current)
	var got []string
	for i, o := range changed {
		got = append(got, events[i]+" "+o.meta.GetName()+"@"+o.meta.GetResourceVersion())
	}
	want := "ADDED web-4@9, MODIFIED web-1@8, DELETED web-2@3, DELETED web-3@4"
	if strings.Join(got, ", ") != want {
		t.Errorf("diff = %s, want %s", strings.Join(got, ", "), want)
	}
}

// watchAPI answers a watch of pods with a scripted sequence of states, one
// per blocking query, and parks the query that follows the last state
// until the client goes away.
type watchAPI struct {
	t      *testing.T
	states []watchState
	// parked is closed when the client waits past the last state.
	parked chan struct{}
	once   sync.Once
}

type watchState struct {
	index uint64
	pods  []*corev1.Pod
}

func (f *watchAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/namespaces/default/pods" {
		f.t.Errorf("unexpected request %s", r.URL)
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	var after uint64
	if s := q.Get("index"); s != "" {
		after, _ = strconv.ParseUint(s, 10, 64)
		if q.Get("wait") != "30s" {
			f.t.Errorf("blocking query waits %q, want 30s", q.Get("wait"))
		}
	}
	for _, st := range f.states {
		if st.index <= after {
			continue
		}
		items := []json.RawMessage{}
		for _, p := range st.pods {
			items = append(items, encodeWithType(f.t, mustResource(f.t, "pods"), p))
		}
		l := api.List{Items: items}
		l.APIVersion, l.Kind = "v1", "List"
		w.Header().Set(api.HeaderIndex, strconv.FormatUint(st.index, 10))
		_ = json.NewEncoder(w).Encode(l)
		return
	}
	f.once.Do(func() { close(f.parked) })
	<-r.Context().Done()
}

func TestGetWatch(t *testing.T) {
	pod := func(name, rv string, ready bool) *corev1.Pod {
		p := runningPod(name, 5*time.Minute)
		p.ResourceVersion = rv
		if !ready {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = nil
			p.Status.ContainerStatuses[0] = corev1.ContainerStatus{
				Name:  "nginx",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}},
			}
		}
		return p
	}
	states := []watchState{
		{index: 11, pods: []*corev1.Pod{pod("web-0", "10", false), pod("web-1", "11", true)}},
		// web-0 became ready.
		{index: 12, pods: []*corev1.Pod{pod("web-0", "12", true), pod("web-1", "11", true)}},
		// A change elsewhere in the state: nothing to print.
		{index: 13, pods: []*corev1.Pod{pod("web-0", "12", true), pod("web-1", "11", true)}},
		// web-1 was deleted and web-2 created.
		{index: 14, pods: []*corev1.Pod{pod("web-0", "12", true), pod("web-2", "14", false)}},
	}
	tests := []struct {
		name string
		opts getOptions
		want string
	}{
		{
			name: "rows of changed objects under one header",
			opts: getOptions{watch: true},
			want: "" +
				"NAME    READY   STATUS              RESTARTS   AGE\n" +
				"web-0   0/1     ContainerCreating   0          5m\n" +
				"web-1   1/1     Running             0          5m\n" +
				"web-0   1/1     Running             0          5m\n" +
				"web-2   0/1     ContainerCreating   0          5m\n" +
				"web-1   1/1     Running             0          5m\n",
		},
		{
			name: "watch events",
			opts: getOptions{watch: true, watchEvents: true},
			want: "" +
				"EVENT   NAME    READY   STATUS              RESTARTS   AGE\n" +
				"ADDED   web-0   0/1     ContainerCreating   0          5m\n" +
				"ADDED   web-1   1/1     Running             0          5m\n" +
				"MODIFIED   web-0   1/1     Running             0          5m\n" +
				"ADDED      web-2   0/1     ContainerCreating   0          5m\n" +
				"DELETED    web-1   1/1     Running             0          5m\n",
		},
		{
			name: "watch only skips the listing",
			opts: getOptions{watchOnly: true, output: outputName},
			want: "pod/web-0\npod/web-2\npod/web-1\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &watchAPI{t: t, states: states, parked: make(chan struct{})}
			srv := httptest.NewServer(fake)
			defer srv.Close()
			c, err := api.NewClient(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			r := getRun{opts: tt.opts, client: c, ns: "default", out: &out, errOut: &errOut, now: func() time.Time { return testNow }}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- r.run(ctx, []string{"pods"}) }()

			select {
			case <-fake.parked:
			case err := <-done:
				t.Fatalf("watch ended before following every change: %v\n%s", err, out.String())
			case <-time.After(10 * time.Second):
				t.Fatal("watch did not reach the last state within 10s")
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("interrupted watch returned %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("watch did not stop within 10s of its context ending")
			}
			if out.String() != tt.want {
				t.Errorf("watch printed:\n%s\nwant:\n%s", out.String(), tt.want)
			}
		})
	}
}

func TestGetWatchRejectsSeveralKinds(t *testing.T) {
	r := getRun{opts: getOptions{watch: true}, ns: "default", now: func() time.Time { return testNow }}
	err := r.run(context.Background(), []string{"pods,svc"})
	if err == nil || !strings.Contains(err.Error(), "one resource type at a time") {
		t.Errorf("get pods,svc -w = %v, want an error about one resource type", err)
	}
}
