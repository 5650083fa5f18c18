package raftstore_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

// fsmLog drives an FSM directly with consecutive log indexes, keeping
// the entries so they can be replayed.
type fsmLog struct {
	t       testing.TB
	fsm     *raftstore.FSM
	entries []*raft.Log
}

func newFSMLog(t testing.TB) *fsmLog {
	return &fsmLog{t: t, fsm: raftstore.NewFSM()}
}

// apply appends txn to the log and applies it.
func (l *fsmLog) apply(txn raftstore.Txn) raftstore.Result {
	l.t.Helper()
	data, err := raftstore.EncodeTxn(txn)
	return l.applyData(data, err).(raftstore.Result)
}

// applyEntry appends one entry carrying txns, as the leader commits
// writes that arrive together, applies it and returns each one's result.
func (l *fsmLog) applyEntry(txns ...raftstore.Txn) []raftstore.Result {
	l.t.Helper()
	data, err := raftstore.EncodeTxns(txns)
	return l.applyData(data, err).([]raftstore.Result)
}

// applyData appends the command entry data, unless err says it could not
// be encoded, and applies it.
func (l *fsmLog) applyData(data []byte, err error) any {
	l.t.Helper()
	if err != nil {
		l.t.Fatal(err)
	}
	e := &raft.Log{Index: uint64(len(l.entries) + 1), Term: 1, Type: raft.LogCommand, Data: data}
	l.entries = append(l.entries, e)
	return l.fsm.Apply(e)
}

func put(t testing.TB, obj raftstore.Object) raftstore.Op {
	t.Helper()
	kind, err := raftstore.KindOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	op, err := raftstore.PutOp(kind, obj)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func putIfAbsent(t testing.TB, obj raftstore.Object) raftstore.Op {
	op := put(t, obj)
	op.IfAbsent = true
	return op
}

func putIfVersion(t testing.TB, obj raftstore.Object, v uint64) raftstore.Op {
	op := put(t, obj)
	op.IfVersion = v
	return op
}

func ensure(t testing.TB, obj raftstore.Object) raftstore.Op {
	t.Helper()
	kind, err := raftstore.KindOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	op, err := raftstore.EnsureOp(kind, obj)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

func pod(ns, name string, labels ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for i := 0; i+1 < len(labels); i += 2 {
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[labels[i]] = labels[i+1]
	}
	return p
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func statefulSet(ns, name string, replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       appsv1.StatefulSetSpec{Replicas: &replicas, ServiceName: name},
	}
}

// dump lists every object of a view as "kind ns/name rv=N", in kind
// order (raftstore.Kinds) and then key order.
func dump(v *raftstore.View) []string {
	var out []string
	for _, k := range raftstore.Kinds {
		for _, obj := range v.List(k, "") {
			out = append(out, fmt.Sprintf("%s %s/%s rv=%s", k, obj.GetNamespace(), obj.GetName(), obj.GetResourceVersion()))
		}
	}
	return out
}

// encodeAll returns the JSON of every object of a view, in dump order.
func encodeAll(t testing.TB, v *raftstore.View) []string {
	t.Helper()
	var out []string
	for _, k := range raftstore.Kinds {
		for _, obj := range v.List(k, "") {
			data, err := json.Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(k)+" "+string(data))
		}
	}
	return out
}

// sameState fails t unless a and b hold the same index and objects.
func sameState(t testing.TB, what string, a, b *raftstore.View) {
	t.Helper()
	if a.Index() != b.Index() {
		t.Errorf("%s: index %d, want %d", what, b.Index(), a.Index())
	}
	if a.Hash() != b.Hash() {
		t.Errorf("%s: hash %x, want %x", what, b.Hash(), a.Hash())
	}
	ea, eb := encodeAll(t, a), encodeAll(t, b)
	if len(ea) != len(eb) {
		t.Fatalf("%s: %d objects, want %d:\n got %v\nwant %v", what, len(eb), len(ea), dump(b), dump(a))
	}
	for i := range ea {
		if ea[i] != eb[i] {
			t.Errorf("%s: object %d:\n got %s\nwant %s", what, i, eb[i], ea[i])
		}
	}
}

// bufSink is a raft.SnapshotSink in memory.
type bufSink struct {
	bytes.Buffer
	closed, cancelled bool
}

func (s *bufSink) ID() string    { return "test" }
func (s *bufSink) Cancel() error { s.cancelled = true; return nil }
func (s *bufSink) Close() error  { s.closed = true; return nil }

// persist snapshots f and returns the persisted bytes.
func persist(t testing.TB, snap raft.FSMSnapshot) []byte {
	t.Helper()
	var sink bufSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.cancelled {
		t.Fatalf("persist: sink closed=%v cancelled=%v, want closed", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func snapshotBytes(t testing.TB, f *raftstore.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return persist(t, snap)
}

func restore(f *raftstore.FSM, data []byte) error {
	return f.Restore(nopCloser{bytes.NewReader(data)})
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// boltLogs returns a raft-boltdb log store in a file of the test's, closed
// when the test ends.
func boltLogs(t *testing.T, name string) *raftboltdb.BoltStore {
	t.Helper()
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(t.TempDir(), name+"-logs.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	return logs
}

// storedLogs is a log store that records what is stored through it: the
// lowest index, and the type byte of each command entry, in order.
type storedLogs struct {
	raft.LogStore
	mu      sync.Mutex
	lowest  uint64
	formats []byte
}

func (l *storedLogs) StoreLog(e *raft.Log) error { return l.StoreLogs([]*raft.Log{e}) }

func (l *storedLogs) StoreLogs(logs []*raft.Log) error {
	l.mu.Lock()
	for _, e := range logs {
		if l.lowest == 0 || e.Index < l.lowest {
			l.lowest = e.Index
		}
		if e.Type == raft.LogCommand && len(e.Data) > 0 {
			l.formats = append(l.formats, e.Data[0])
		}
	}
	l.mu.Unlock()
	return l.LogStore.StoreLogs(logs)
}

// first returns the lowest index stored, 0 for none.
func (l *storedLogs) first() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lowest
}

// since returns the type bytes of the command entries stored from the
// n-th on.
func (l *storedLogs) since(n int) []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.formats[n:])
}

// count returns how many command entries were stored.
func (l *storedLogs) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.formats)
}
