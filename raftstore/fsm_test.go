package raftstore_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

func TestFSMApply(t *testing.T) {
	// Every case starts from this state, applied at index 1.
	base := func(t *testing.T) []raftstore.Op {
		return []raftstore.Op{
			put(t, namespace("default")),
			put(t, pod("default", "web-0")),
			put(t, pod("default", "web-1")),
		}
	}
	withObject := func(op raftstore.Op, raw string) raftstore.Op {
		op.Object = json.RawMessage(raw)
		return op
	}
	cases := []struct {
		name string
		ops  func(t *testing.T) []raftstore.Op // applied at index 2
		// wantErr is the sentinel of the expected *TxnError, nil for success.
		wantErr error
		// wantFailedOp names the op that failed: "kind ns/name".
		wantFailedOp string
		want         []string
	}{
		{
			name: "put creates with the log index as resourceVersion",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{put(t, pod("default", "web-2"))}
			},
			want: []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1", "pods default/web-2 rv=2"},
		},
		{
			name: "put replaces",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{put(t, pod("default", "web-1", "a", "b"))}
			},
			want: []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=2"},
		},
		{
			name: "put if absent of an existing object",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{putIfAbsent(t, pod("default", "web-1"))}
			},
			wantErr:      raftstore.ErrAlreadyExists,
			wantFailedOp: "pods default/web-1",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "put if version matches",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{putIfVersion(t, pod("default", "web-0"), 1)}
			},
			want: []string{"namespaces /default rv=1", "pods default/web-0 rv=2", "pods default/web-1 rv=1"},
		},
		{
			name: "put if version is stale",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{putIfVersion(t, pod("default", "web-0"), 7)}
			},
			wantErr:      raftstore.ErrConflict,
			wantFailedOp: "pods default/web-0",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "put if version of a missing object",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{putIfVersion(t, pod("default", "web-5"), 1)}
			},
			wantErr:      raftstore.ErrNotFound,
			wantFailedOp: "pods default/web-5",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "delete",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{raftstore.DeleteOp(raftstore.Pods, "default", "web-0")}
			},
			want: []string{"namespaces /default rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "delete of a missing object",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{raftstore.DeleteOp(raftstore.Pods, "other", "web-0")}
			},
			wantErr:      raftstore.ErrNotFound,
			wantFailedOp: "pods other/web-0",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "delete if version is stale",
			ops: func(t *testing.T) []raftstore.Op {
				op := raftstore.DeleteOp(raftstore.Pods, "default", "web-1")
				op.IfVersion = 2
				return []raftstore.Op{op}
			},
			wantErr:      raftstore.ErrConflict,
			wantFailedOp: "pods default/web-1",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "ensure creates a missing object and keeps an existing one",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{ensure(t, namespace("default")), ensure(t, namespace("db"))}
			},
			want: []string{"namespaces /db rv=2", "namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "a failed op undoes the ops before it",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{
					ensure(t, namespace("db")),
					put(t, pod("db", "pg-0")),
					raftstore.DeleteOp(raftstore.Pods, "default", "web-0"),
					putIfAbsent(t, pod("default", "web-1")),
					put(t, pod("db", "pg-1")),
				}
			},
			wantErr:      raftstore.ErrAlreadyExists,
			wantFailedOp: "pods default/web-1",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "ops see the ops before them",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{
					raftstore.DeleteOp(raftstore.Pods, "default", "web-0"),
					putIfAbsent(t, pod("default", "web-0", "new", "yes")),
					put(t, pod("default", "web-9")),
					raftstore.DeleteOp(raftstore.Pods, "default", "web-9"),
				}
			},
			want: []string{"namespaces /default rv=1", "pods default/web-0 rv=2", "pods default/web-1 rv=1"},
		},
		{
			name: "namespaces order before names, a before a-b",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{put(t, pod("a-b", "x")), put(t, pod("a", "z")), put(t, pod("a", "y"))}
			},
			want: []string{"namespaces /default rv=1", "pods a/y rv=2", "pods a/z rv=2", "pods a-b/x rv=2", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "unknown kind",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{raftstore.DeleteOp("widgets", "default", "w")}
			},
			wantErr:      raftstore.ErrInvalid,
			wantFailedOp: "widgets default/w",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "namespace on a cluster-scoped kind",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{raftstore.DeleteOp(raftstore.Nodes, "default", "n1")}
			},
			wantErr:      raftstore.ErrInvalid,
			wantFailedOp: "nodes default/n1",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "object named differently from its op",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{withObject(put(t, pod("default", "web-2")), `{"metadata":{"namespace":"default","name":"web-3"}}`)}
			},
			wantErr:      raftstore.ErrInvalid,
			wantFailedOp: "pods default/web-2",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
		{
			name: "object of another type",
			ops: func(t *testing.T) []raftstore.Op {
				return []raftstore.Op{withObject(put(t, pod("default", "web-2")), `{"apiVersion":"v1","kind":"Service","metadata":{"namespace":"default","name":"web-2"}}`)}
			},
			wantErr:      raftstore.ErrInvalid,
			wantFailedOp: "pods default/web-2",
			want:         []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newFSMLog(t)
			if res := l.apply(raftstore.Txn{RequestID: "base", Ops: base(t)}); res.Err != nil || res.Index != 1 {
				t.Fatalf("base: %+v", res)
			}
			before := l.fsm.View()
			res := l.apply(raftstore.Txn{RequestID: "r", Ops: tc.ops(t)})
			if res.Index != 2 {
				t.Errorf("result index %d, want 2", res.Index)
			}
			if !errors.Is(res.Err, tc.wantErr) || (tc.wantErr == nil) != (res.Err == nil) {
				t.Fatalf("result error %v, want %v", res.Err, tc.wantErr)
			}
			after := l.fsm.View()
			if got := dump(after); !slices.Equal(got, tc.want) {
				t.Errorf("state\n got %q\nwant %q", got, tc.want)
			}
			if after.Index() != 2 {
				t.Errorf("view index %d, want 2", after.Index())
			}
			if tc.wantErr != nil {
				var terr *raftstore.TxnError
				if !errors.As(res.Err, &terr) {
					t.Fatalf("error %T, want *TxnError", res.Err)
				}
				got := string(terr.Kind) + " " + terr.Namespace + "/" + terr.Name
				if got != tc.wantFailedOp {
					t.Errorf("failed op %q, want %q", got, tc.wantFailedOp)
				}
				if before.Hash() != after.Hash() {
					t.Errorf("a failed transaction changed the state hash")
				}
			}
			// The view taken before is unchanged by what came after.
			if got := dump(before); !slices.Equal(got, []string{"namespaces /default rv=1", "pods default/web-0 rv=1", "pods default/web-1 rv=1"}) {
				t.Errorf("earlier view changed: %q", got)
			}
		})
	}
}

func TestFSMFillsTypeMeta(t *testing.T) {
	l := newFSMLog(t)
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = "default", "nginx"
	res := l.apply(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{
		put(t, statefulSet("default", "web", 3)),
		put(t, svc),
		put(t, namespace("default")),
	}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	v := l.fsm.View()
	for _, tc := range []struct {
		kind              raftstore.Kind
		ns, name          string
		apiVersion, kind2 string
	}{
		{raftstore.StatefulSets, "default", "web", "apps/v1", "StatefulSet"},
		{raftstore.Services, "default", "nginx", "v1", "Service"},
		{raftstore.Namespaces, "", "default", "v1", "Namespace"},
	} {
		obj, ok := v.Get(tc.kind, tc.ns, tc.name)
		if !ok {
			t.Fatalf("%s %s/%s missing", tc.kind, tc.ns, tc.name)
		}
		apiVersion, kind := obj.GetObjectKind().GroupVersionKind().ToAPIVersionAndKind()
		if apiVersion != tc.apiVersion || kind != tc.kind2 {
			t.Errorf("%s: TypeMeta %s %s, want %s %s", tc.kind, apiVersion, kind, tc.apiVersion, tc.kind2)
		}
	}
	sts, ok := raftstore.GetOf[*appsv1.StatefulSet](v, raftstore.StatefulSets, "default", "web")
	if !ok || *sts.Spec.Replicas != 3 || sts.ResourceVersion != "1" {
		t.Errorf("GetOf: %v %+v", ok, sts)
	}
}

func TestFSMDedup(t *testing.T) {
	l := newFSMLog(t)
	create := raftstore.Txn{RequestID: "create-web-0", Ops: []raftstore.Op{putIfAbsent(t, pod("default", "web-0", "v", "1"))}}
	if res := l.apply(create); res.Err != nil || res.Index != 1 {
		t.Fatalf("first apply: %+v", res)
	}
	// A retry, even with other content, answers as the first time and
	// changes nothing but the applied index.
	retry := create
	retry.Ops = []raftstore.Op{putIfAbsent(t, pod("default", "web-0", "v", "2")), put(t, pod("default", "web-1"))}
	if res := l.apply(retry); res.Err != nil || res.Index != 1 {
		t.Fatalf("retry: %+v, want index 1 and no error", res)
	}
	v := l.fsm.View()
	if got, want := dump(v), []string{"pods default/web-0 rv=1"}; !slices.Equal(got, want) {
		t.Errorf("state after retry %q, want %q", got, want)
	}
	if p, _ := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, "default", "web-0"); p.Labels["v"] != "1" {
		t.Errorf("retry changed the object: labels %v", p.Labels)
	}
	if v.Index() != 2 {
		t.Errorf("index %d, want 2", v.Index())
	}

	// A failure is remembered too, even once the same ops would succeed.
	stale := raftstore.Txn{RequestID: "update-web-0", Ops: []raftstore.Op{putIfVersion(t, pod("default", "web-0", "v", "3"), 4)}}
	first := l.apply(stale) // index 3; web-0 is at rv 1
	if !errors.Is(first.Err, raftstore.ErrConflict) || first.Index != 3 {
		t.Fatalf("stale update: %+v, want conflict at 3", first)
	}
	l.apply(raftstore.Txn{RequestID: "bump", Ops: []raftstore.Op{put(t, pod("default", "web-0", "v", "4"))}}) // rv 4
	again := l.apply(stale)                                                                                   // index 5: applying it now would succeed
	if !errors.Is(again.Err, raftstore.ErrConflict) || again.Index != 3 {
		t.Errorf("retried failure: %+v, want the first result (conflict at 3)", again)
	}
	if again.Err.Error() != first.Err.Error() {
		t.Errorf("retried failure says %q, first said %q", again.Err, first.Err)
	}
	p, _ := raftstore.GetOf[*corev1.Pod](l.fsm.View(), raftstore.Pods, "default", "web-0")
	if p.Labels["v"] != "4" || p.ResourceVersion != "4" {
		t.Errorf("web-0 has labels %v at rv %s, want v=4 at rv 4", p.Labels, p.ResourceVersion)
	}
}

func TestFSMCorruptCommandPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"unknown type", []byte{99, '{', '}'}},
		{"bad json", []byte{1, '{'}},
		{"object of the wrong shape", append([]byte{1}, `{"requestID":"r","ops":[{"type":"put","kind":"pods","namespace":"d","name":"p","object":{"spec":7}}]}`...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := raftstore.NewFSM()
			defer func() {
				r := recover()
				if r == nil {
					t.Fatal("Apply did not panic")
				}
				if !strings.Contains(r.(string), "corrupt log entry 5") {
					t.Errorf("panic %q does not name the entry", r)
				}
				if f.View().Index() != 0 || f.View().Len() != 0 {
					t.Errorf("state changed: index %d, %d objects", f.View().Index(), f.View().Len())
				}
			}()
			f.Apply(&raft.Log{Index: 5, Type: raft.LogCommand, Data: tc.data})
		})
	}
}

func TestFSMIgnoresNonCommands(t *testing.T) {
	f := raftstore.NewFSM()
	if got := f.Apply(&raft.Log{Index: 3, Type: raft.LogConfiguration, Data: []byte{0}}); got != nil {
		t.Errorf("Apply of a configuration entry returned %v", got)
	}
	if f.View().Index() != 0 {
		t.Errorf("index %d, want 0", f.View().Index())
	}
}

func TestFSMStampsGeneration(t *testing.T) {
	l := newFSMLog(t)
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = "default", "web-0"
	pod.Annotations = map[string]string{"keep": "me", api.AnnotationGeneration: "1"}
	plain := put(t, pod)
	stamped := put(t, pod)
	stamped.StampGeneration = true
	for i, op := range []raftstore.Op{plain, stamped, plain, stamped} {
		if res := l.apply(raftstore.Txn{RequestID: fmt.Sprint("r", i), Ops: []raftstore.Op{op}}); res.Err != nil {
			t.Fatal(res.Err)
		}
		got, _ := raftstore.GetOf[*corev1.Pod](l.fsm.View(), raftstore.Pods, "default", "web-0")
		want := "1" // as sent
		if op.StampGeneration {
			want = fmt.Sprint(i + 1) // the log index
		}
		if got.Annotations[api.AnnotationGeneration] != want || got.Annotations["keep"] != "me" {
			t.Errorf("entry %d: annotations %v, want generation %s", i+1, got.Annotations, want)
		}
	}
	del := raftstore.DeleteOp(raftstore.Pods, "default", "web-0")
	del.StampGeneration = true
	if err := raftstore.ValidateTxn(raftstore.Txn{RequestID: "d", Ops: []raftstore.Op{del}}); !errors.Is(err, raftstore.ErrInvalid) {
		t.Errorf("delete with a generation stamp: %v, want ErrInvalid", err)
	}
}

// TestEntryOfSeveralTransactions: the transactions of one cmdTxns entry
// apply in order at the entry's index, each as if alone, except that one
// may not change an object an earlier one changed; a replay and a
// snapshot give the same state and the same remembered answers.
func TestEntryOfSeveralTransactions(t *testing.T) {
	l := newFSMLog(t)
	if res := l.apply(raftstore.Txn{RequestID: "base", Ops: []raftstore.Op{
		put(t, namespace("default")), put(t, pod("default", "web-0", "v", "1")),
	}}); res.Err != nil || res.Index != 1 {
		t.Fatalf("base: %+v", res)
	}
	txns := []raftstore.Txn{
		{RequestID: "create-web-1", Ops: []raftstore.Op{ensure(t, namespace("default")), putIfAbsent(t, pod("default", "web-1"))}},
		{RequestID: "update-web-0", Ops: []raftstore.Op{putIfVersion(t, pod("default", "web-0", "v", "2"), 1)}},
		{RequestID: "overwrite-web-0", Ops: []raftstore.Op{put(t, pod("default", "web-2")), put(t, pod("default", "web-0", "v", "3"))}},
		{RequestID: "ensure-db", Ops: []raftstore.Op{ensure(t, namespace("db"))}},
		{RequestID: "ensure-db-again", Ops: []raftstore.Op{ensure(t, namespace("db"))}},
		{RequestID: "create-web-1", Ops: []raftstore.Op{putIfAbsent(t, pod("default", "web-1"))}},
		{RequestID: "delete-web-1", Ops: []raftstore.Op{del(raftstore.Pods, "default", "web-1")}},
		{RequestID: "missing", Ops: []raftstore.Op{putIfVersion(t, pod("default", "nope"), 1)}},
		{RequestID: "create-web-3", Ops: []raftstore.Op{putIfAbsent(t, pod("default", "web-3"))}},
	}
	wantErr := map[string]error{
		"overwrite-web-0": raftstore.ErrConflict,
		"delete-web-1":    raftstore.ErrConflict,
		"missing":         raftstore.ErrNotFound,
	}
	results := l.applyEntry(txns...)
	if len(results) != len(txns) {
		t.Fatalf("%d results for %d transactions", len(results), len(txns))
	}
	for i, res := range results {
		id := txns[i].RequestID
		if res.Index != 2 {
			t.Errorf("%s (#%d): index %d, want 2", id, i, res.Index)
		}
		if want := wantErr[id]; !errors.Is(res.Err, want) || (want == nil && res.Err != nil) {
			t.Errorf("%s (#%d): %v, want %v", id, i, res.Err, want)
		}
	}
	want := []string{
		"namespaces /db rv=2", "namespaces /default rv=1",
		"pods default/web-0 rv=2", "pods default/web-1 rv=2", "pods default/web-3 rv=2",
	}
	got := filterKinds(dump(l.fsm.View()), "namespaces", "pods")
	if !slices.Equal(got, want) {
		t.Errorf("state after the entry:\n got %q\nwant %q", got, want)
	}
	if p, ok := l.fsm.View().Get(raftstore.Pods, "default", "web-0"); !ok || p.GetLabels()["v"] != "2" {
		t.Errorf("web-0 = %v, want the update of update-web-0", p)
	}

	// A retry of a refused transaction, in an entry of its own, gets the
	// first answer.
	if res := l.apply(txns[2]); res.Index != 2 || !errors.Is(res.Err, raftstore.ErrConflict) {
		t.Errorf("retry of overwrite-web-0: %+v, want the conflict at index 2", res)
	}

	// Replaying the log, and restoring a snapshot, give the same state
	// and remember the same answers.
	replay := raftstore.NewFSM()
	for _, e := range l.entries {
		replay.Apply(e)
	}
	restored := raftstore.NewFSM()
	snap, err := l.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := restore(restored, persist(t, snap)); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]*raftstore.FSM{"replay": replay, "restore": restored} {
		if got := dump(f.View()); !slices.Equal(got, dump(l.fsm.View())) {
			t.Errorf("%s: state %q, want %q", name, got, dump(l.fsm.View()))
		}
		for i, txn := range txns {
			data, err := raftstore.EncodeTxn(txn)
			if err != nil {
				t.Fatal(err)
			}
			res := f.Apply(&raft.Log{Index: 10 + uint64(i), Term: 1, Type: raft.LogCommand, Data: data}).(raftstore.Result)
			if !sameResult(res, results[i]) {
				t.Errorf("%s: repeat of %s: %+v, want %+v", name, txn.RequestID, res, results[i])
			}
		}
	}
}

// filterKinds keeps the lines of a dump of the given kinds.
func filterKinds(lines []string, kinds ...string) []string {
	var out []string
	for _, l := range lines {
		if k, _, _ := strings.Cut(l, " "); slices.Contains(kinds, k) {
			out = append(out, l)
		}
	}
	return out
}
