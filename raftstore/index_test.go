package raftstore_test

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

func boundPod(ns, name, node string) *corev1.Pod {
	p := pod(ns, name)
	p.Spec.NodeName = node
	return p
}

func del(kind raftstore.Kind, ns, name string) raftstore.Op {
	return raftstore.Op{Type: raftstore.OpDelete, Kind: kind, Namespace: ns, Name: name}
}

// TestChangeIndexes follows the change indexes a blocking query waits on
// through binds, moves, unrelated changes and deletes.
func TestChangeIndexes(t *testing.T) {
	l := newFSMLog(t)
	type want struct {
		pods, nodes, n1, n2, unbound uint64
	}
	check := func(step string, w want) {
		t.Helper()
		v := l.fsm.View()
		got := want{v.Changed(raftstore.KindChanges(raftstore.Pods)), v.Changed(raftstore.KindChanges(raftstore.Nodes)),
			v.Changed(raftstore.PodChangesOn("n1")), v.Changed(raftstore.PodChangesOn("n2")), v.Changed(raftstore.PodChangesOn(""))}
		if got != w {
			t.Errorf("after %s: pods, nodes, n1, n2, unbound changed at %+v, want %+v", step, got, w)
		}
	}
	apply := func(ops ...raftstore.Op) {
		t.Helper()
		if r := l.apply(raftstore.Txn{Ops: ops}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	check("nothing", want{})
	apply(put(t, namespace("default")), put(t, pod("default", "a"))) // 1
	check("a created unbound", want{pods: 1, unbound: 1})
	apply(put(t, boundPod("default", "a", "n1"))) // 2
	check("a bound to n1", want{pods: 2, n1: 2, unbound: 2})
	apply(put(t, boundPod("default", "b", "n2"))) // 3
	check("b created on n2", want{pods: 3, n1: 2, n2: 3, unbound: 2})
	apply(put(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})) // 4
	check("node n1 stored", want{pods: 3, nodes: 4, n1: 2, n2: 3, unbound: 2})
	apply(put(t, boundPod("default", "a", "n2"))) // 5
	check("a moved to n2", want{pods: 5, nodes: 4, n1: 5, n2: 5, unbound: 2})
	apply(del(raftstore.Pods, "default", "b")) // 6
	check("b deleted", want{pods: 6, nodes: 4, n1: 5, n2: 6, unbound: 2})
	// A refused transaction changes no index.
	if r := l.apply(raftstore.Txn{Ops: []raftstore.Op{put(t, boundPod("default", "c", "n1")), del(raftstore.Pods, "default", "gone")}}); r.Err == nil {
		t.Fatal("deleting a pod that does not exist was accepted")
	}
	check("a refused transaction", want{pods: 6, nodes: 4, n1: 5, n2: 6, unbound: 2})

	// A restored state knows nothing of what changed before its index.
	b := raftstore.NewFSM()
	if err := restore(b, snapshotBytes(t, l.fsm)); err != nil {
		t.Fatal(err)
	}
	v := b.View()
	for _, k := range []raftstore.ChangeKey{raftstore.KindChanges(raftstore.Pods), raftstore.KindChanges(raftstore.Services), raftstore.PodChangesOn("n1"), raftstore.PodChangesOn("n9")} {
		got := v.Changed(k)
		if got != 7 {
			t.Errorf("restored at 7: a change index is %d, want 7", got)
		}
	}
	checkPodsOn(t, "restored", v)
}

// checkPodsOn fails t unless PodsOn of every node agrees with a scan of
// all pods.
func checkPodsOn(t testing.TB, what string, v *raftstore.View) {
	t.Helper()
	scan := map[string][]string{}
	for _, o := range v.List(raftstore.Pods, "") {
		node := o.(*corev1.Pod).Spec.NodeName
		scan[node] = append(scan[node], o.GetNamespace()+"/"+o.GetName())
	}
	for _, node := range []string{"", "n1", "n2", "n3"} {
		var got []string
		for _, o := range v.PodsOn(node) {
			if n := o.(*corev1.Pod).Spec.NodeName; n != node {
				t.Errorf("%s: PodsOn(%q) returned %s/%s bound to %q", what, node, o.GetNamespace(), o.GetName(), n)
			}
			got = append(got, o.GetNamespace()+"/"+o.GetName())
		}
		if !slices.Equal(got, scan[node]) {
			t.Errorf("%s: PodsOn(%q) = %v, a scan finds %v", what, node, got, scan[node])
		}
	}
}

// TestWaitForChange: a waiter on one node's pods sleeps through commits to
// other nodes' pods and wakes at the first commit to its own; a restore
// wakes every waiter.
func TestWaitForChange(t *testing.T) {
	l := newFSMLog(t)
	apply := func(ops ...raftstore.Op) uint64 {
		t.Helper()
		if r := l.apply(raftstore.Txn{Ops: ops}); r.Err != nil {
			t.Fatal(r.Err)
		}
		return l.fsm.View().Index()
	}
	apply(put(t, namespace("default")), put(t, boundPod("default", "a", "n1")))
	after := l.fsm.View().Index()
	type answer struct {
		idx uint64
		err error
	}
	wait := func(k raftstore.ChangeKey) chan answer {
		done := make(chan answer, 1)
		go func() {
			idx, err := l.fsm.WaitForChange(context.Background(), k, after)
			done <- answer{idx, err}
		}()
		return done
	}
	n1, services := wait(raftstore.PodChangesOn("n1")), wait(raftstore.KindChanges(raftstore.Services))
	apply(put(t, boundPod("default", "b", "n2")))
	apply(put(t, boundPod("default", "c", "n2")))
	want := apply(put(t, boundPod("default", "d", "n1")))
	select {
	case a := <-n1:
		if a.err != nil || a.idx != want {
			t.Errorf("n1's waiter woke at %d (%v), want %d: the first change to n1's pods", a.idx, a.err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("n1's waiter did not wake")
	}
	select {
	case a := <-services:
		t.Fatalf("the services waiter woke at %d (%v) though no service changed", a.idx, a.err)
	default:
	}
	// A restore replaces everything: the services waiter wakes.
	if err := restore(l.fsm, snapshotBytes(t, l.fsm)); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-services:
		if a.err != nil || a.idx <= after {
			t.Errorf("after a restore the services waiter answered %d (%v), want past %d", a.idx, a.err, after)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a restore did not wake the services waiter")
	}
}

// TestWaitForChanges: a wait on several kinds sleeps through the others
// and wakes at the first change to any of its own.
func TestWaitForChanges(t *testing.T) {
	l := newFSMLog(t)
	if r := l.apply(raftstore.Txn{Ops: []raftstore.Op{put(t, namespace("default"))}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	after := l.fsm.View().Index()
	done := make(chan uint64, 1)
	go func() {
		idx, _ := l.fsm.WaitForChanges(context.Background(), []raftstore.ChangeKey{raftstore.KindChanges(raftstore.Services), raftstore.KindChanges(raftstore.Nodes)}, after)
		done <- idx
	}()
	l.apply(raftstore.Txn{Ops: []raftstore.Op{put(t, boundPod("default", "a", "n1"))}})
	l.apply(raftstore.Txn{Ops: []raftstore.Op{put(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})}})
	want := l.fsm.View().Index()
	select {
	case got := <-done:
		if got != want {
			t.Errorf("woke at %d, want %d: the node's commit, not the pod's", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a node change did not wake a wait on services and nodes")
	}
	// A context that ends stops the wait.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.fsm.WaitForChanges(ctx, []raftstore.ChangeKey{raftstore.KindChanges(raftstore.Services)}, want); err == nil {
		t.Error("a cancelled wait returned no error")
	}
}
