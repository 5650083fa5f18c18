package raftstore_test

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the random tests (0: pick one from the clock)")

func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	return seed
}

// txnGen makes random transactions over a small key space, so that
// puts, deletes and preconditions often hit the same objects.
type txnGen struct {
	t    testing.TB
	r    *rand.Rand
	ids  []string
	base time.Time
}

func newTxnGen(t testing.TB, seed uint64) *txnGen {
	return &txnGen{t: t, r: rand.New(rand.NewPCG(seed, seed^0x5eed)), base: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (g *txnGen) pick(s ...string) string { return s[g.r.IntN(len(s))] }

func (g *txnGen) labels() map[string]string {
	m := map[string]string{}
	for range g.r.IntN(5) {
		m[g.pick("app", "tier", "zone", "stead.io/x", "k"+fmt.Sprint(g.r.IntN(20)))] = g.pick("web", "db", "a", "")
	}
	return m
}

func (g *txnGen) meta(ns, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace:         ns,
		Name:              name,
		Labels:            g.labels(),
		Annotations:       g.labels(),
		CreationTimestamp: metav1.NewTime(g.base.Add(time.Duration(g.r.IntN(1e6)) * time.Second)),
	}
}

func (g *txnGen) object(kind raftstore.Kind, ns, name string) raftstore.Object {
	m := g.meta(ns, name)
	switch kind {
	case raftstore.Pods:
		return &corev1.Pod{
			ObjectMeta: m,
			Spec: corev1.PodSpec{
				NodeName:   g.pick("", "n1", "n2"),
				Containers: []corev1.Container{{Name: "c", Image: g.pick("nginx", "pg:16")}},
			},
			Status: corev1.PodStatus{
				Phase: corev1.PodPhase(g.pick("Pending", "Running")),
				Conditions: []corev1.PodCondition{{
					Type: corev1.PodReady, Status: corev1.ConditionStatus(g.pick("True", "False")),
					LastTransitionTime: metav1.NewTime(g.base.Add(time.Duration(g.r.IntN(1000)) * time.Second)),
				}},
			},
		}
	case raftstore.Services:
		return &corev1.Service{ObjectMeta: m, Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: g.labels()}}
	case raftstore.StatefulSets:
		n := int32(g.r.IntN(5))
		return &appsv1.StatefulSet{ObjectMeta: m, Spec: appsv1.StatefulSetSpec{Replicas: &n, ServiceName: name}}
	case raftstore.PersistentVolumeClaims:
		return &corev1.PersistentVolumeClaim{ObjectMeta: m, Spec: corev1.PersistentVolumeClaimSpec{
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(g.pick("1Gi", "500Mi", "0.5Gi", "1000M")),
			}},
		}}
	case raftstore.Nodes:
		return &corev1.Node{ObjectMeta: m, Status: corev1.NodeStatus{Capacity: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(g.pick("2", "500m", "1.5")),
		}}}
	case raftstore.Servers:
		return &api.Server{ObjectMeta: m, Spec: api.ServerSpec{RaftAddr: "10.0.0.1:7001", HTTPAddr: g.pick("10.0.0.1:8080", "")}}
	case raftstore.Namespaces:
		return &corev1.Namespace{ObjectMeta: m}
	}
	g.t.Fatalf("no generator for %s", kind)
	return nil
}

// txn returns a random transaction against the state v; about one in
// eight reuses an earlier request ID.
func (g *txnGen) txn(v *raftstore.View) raftstore.Txn {
	var txn raftstore.Txn
	if len(g.ids) > 0 && g.r.IntN(8) == 0 {
		txn.RequestID = g.ids[g.r.IntN(len(g.ids))]
	} else {
		txn.RequestID = fmt.Sprintf("req-%d", len(g.ids))
		g.ids = append(g.ids, txn.RequestID)
	}
	kinds := []raftstore.Kind{raftstore.Pods, raftstore.Services, raftstore.StatefulSets,
		raftstore.PersistentVolumeClaims, raftstore.Nodes, raftstore.Servers, raftstore.Namespaces}
	for range 1 + g.r.IntN(4) {
		kind := kinds[g.r.IntN(len(kinds))]
		ns := ""
		if kind.Namespaced() {
			ns = g.pick("default", "a", "a-b")
		}
		name := g.pick("web-0", "web-1", "web-10", "x")
		current, exists := v.Get(kind, ns, name)
		version := func() uint64 {
			if exists && g.r.IntN(4) != 0 {
				var rv uint64
				fmt.Sscan(current.GetResourceVersion(), &rv)
				return rv
			}
			return 1 + g.r.Uint64N(1000)
		}
		var op raftstore.Op
		var err error
		switch n := g.r.IntN(20); {
		case n < 10:
			op, err = raftstore.PutOp(kind, g.object(kind, ns, name))
			switch g.r.IntN(5) {
			case 0:
				op.IfAbsent = true
			case 1, 2:
				op.IfVersion = version()
			}
		case n < 15:
			op = raftstore.DeleteOp(kind, ns, name)
			if g.r.IntN(2) == 0 {
				op.IfVersion = version()
			}
		default:
			op, err = raftstore.EnsureOp(kind, g.object(kind, ns, name))
		}
		if err != nil {
			g.t.Fatal(err)
		}
		txn.Ops = append(txn.Ops, op)
	}
	return txn
}

func sameResult(a, b raftstore.Result) bool {
	if a.Index != b.Index || (a.Err == nil) != (b.Err == nil) {
		return false
	}
	return a.Err == nil || a.Err.Error() == b.Err.Error()
}

// TestSnapshotRoundTripAndReplay checks, over random transactions, that
// restoring a snapshot gives the state it was taken from, and that
// replaying the whole log equals restoring a snapshot taken midway and
// replaying the rest.
func TestSnapshotRoundTripAndReplay(t *testing.T) {
	seed := testSeed(t)
	g := newTxnGen(t, seed)
	const n, mid = 600, 250

	a := newFSMLog(t)
	var results []raftstore.Result
	var midSnap raft.FSMSnapshot
	var midView *raftstore.View
	for i := 1; i <= n; i++ {
		results = append(results, a.apply(g.txn(a.fsm.View())))
		checkPodsOn(t, fmt.Sprintf("after entry %d", i), a.fsm.View())
		if i == mid {
			var err error
			if midSnap, err = a.fsm.Snapshot(); err != nil {
				t.Fatal(err)
			}
			midView = a.fsm.View()
		}
	}
	// Persisted only now, after more applies: it must still hold the
	// state at mid.
	midData := persist(t, midSnap)
	final := a.fsm.View()

	var applied, refused int
	for _, r := range results {
		if r.Err != nil {
			refused++
		} else {
			applied++
		}
	}
	t.Logf("%d transactions: %d applied, %d refused; %d objects at index %d", n, applied, refused, final.Len(), final.Index())
	if applied < n/4 || refused < n/10 || final.Len() < 20 {
		t.Fatalf("the generator does not exercise both outcomes (applied %d, refused %d, %d objects)", applied, refused, final.Len())
	}

	// Restore of a snapshot of the final state.
	fullData := snapshotBytes(t, a.fsm)
	b := raftstore.NewFSM()
	if err := restore(b, fullData); err != nil {
		t.Fatalf("restore: %v", err)
	}
	sameState(t, "restored", final, b.View())
	if again := snapshotBytes(t, b); !bytes.Equal(again, fullData) {
		t.Errorf("a snapshot of the restored state differs from the snapshot it was restored from")
	}

	// Replay of the whole log.
	c := raftstore.NewFSM()
	for i, e := range a.entries {
		if got := c.Apply(e).(raftstore.Result); !sameResult(got, results[i]) {
			t.Fatalf("replay of entry %d: %+v, first time %+v", e.Index, got, results[i])
		}
	}
	sameState(t, "replayed", final, c.View())

	// Replay in batches of random sizes, as Raft hands over entries
	// committed together: the same answers, state and change indexes.
	rng := rand.New(rand.NewPCG(seed, 2))
	e := raftstore.NewFSM()
	for i := 0; i < len(a.entries); {
		size := min(1+rng.IntN(40), len(a.entries)-i)
		got := e.ApplyBatch(a.entries[i : i+size])
		for j, r := range got {
			if !sameResult(r.(raftstore.Result), results[i+j]) {
				t.Fatalf("batch replay of entry %d: %+v, first time %+v", a.entries[i+j].Index, r, results[i+j])
			}
		}
		i += size
	}
	sameState(t, "replayed in batches", final, e.View())
	checkPodsOn(t, "replayed in batches", e.View())
	for _, k := range raftstore.Kinds {
		key := raftstore.KindChanges(k)
		if got, want := e.View().Changed(key), final.Changed(key); got != want {
			t.Errorf("replayed in batches: %s last changed at %d, want %d", k, got, want)
		}
	}
	for _, node := range []string{"", "n1", "n2", "n3"} {
		key := raftstore.PodChangesOn(node)
		if got, want := e.View().Changed(key), final.Changed(key); got != want {
			t.Errorf("replayed in batches: pods on %q last changed at %d, want %d", node, got, want)
		}
	}

	// Restore of the midway snapshot, then replay of the rest.
	d := raftstore.NewFSM()
	if err := restore(d, midData); err != nil {
		t.Fatalf("restore midway: %v", err)
	}
	sameState(t, "restored midway", midView, d.View())
	for i, e := range a.entries[mid:] {
		if got := d.Apply(e).(raftstore.Result); !sameResult(got, results[mid+i]) {
			t.Fatalf("replay after snapshot, entry %d: %+v, first time %+v", e.Index, got, results[mid+i])
		}
	}
	sameState(t, "restored midway and replayed", final, d.View())
	checkPodsOn(t, "restored midway and replayed", d.View())

	// The request table came along: more transactions, repeats
	// included, get the same answers everywhere.
	for i := n + 1; i <= n+100; i++ {
		txn := g.txn(a.fsm.View())
		want := a.apply(txn)
		e := a.entries[len(a.entries)-1]
		for _, f := range []*raftstore.FSM{b, c, d} {
			if got := f.Apply(e).(raftstore.Result); !sameResult(got, want) {
				t.Fatalf("entry %d (%s): %+v, want %+v", e.Index, txn.RequestID, got, want)
			}
		}
	}
	sameState(t, "restored, then applied", a.fsm.View(), b.View())
	sameState(t, "restored midway, then applied", a.fsm.View(), d.View())
}

// TestRestoreRefusesCorruptSnapshot flips every bit of one byte at a time
// and truncates the snapshot at every length: Restore must refuse each
// and leave the state as it was.
func TestRestoreRefusesCorruptSnapshot(t *testing.T) {
	src := newFSMLog(t)
	src.apply(raftstore.Txn{RequestID: "r1", Ops: []raftstore.Op{
		put(t, namespace("default")),
		put(t, pod("default", "web-0", "app", "web")),
		put(t, statefulSet("default", "web", 2)),
	}})
	src.apply(raftstore.Txn{RequestID: "r2", Ops: []raftstore.Op{putIfAbsent(t, pod("default", "web-0"))}})
	data := snapshotBytes(t, src.fsm)

	dst := newFSMLog(t)
	dst.apply(raftstore.Txn{RequestID: "other", Ops: []raftstore.Op{put(t, pod("db", "pg-0"))}})
	before := dst.fsm.View()
	wantDump := dump(before)

	check := func(what string, bad []byte) {
		t.Helper()
		if err := restore(dst.fsm, bad); err == nil {
			t.Fatalf("%s: Restore accepted it", what)
		}
		v := dst.fsm.View()
		if v.Index() != before.Index() || v.Hash() != before.Hash() || !slices.Equal(dump(v), wantDump) {
			t.Fatalf("%s: state changed to %q at %d", what, dump(v), v.Index())
		}
	}
	for i := range data {
		for _, mask := range []byte{0x01, 0x80} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			check(fmt.Sprintf("byte %d ^ %#x", i, mask), bad)
		}
	}
	for i := range len(data) {
		check(fmt.Sprintf("truncated to %d bytes", i), data[:i])
	}
	check("trailing garbage", append(bytes.Clone(data), "{}\n"...))

	// The intact snapshot still restores.
	if err := restore(dst.fsm, data); err != nil {
		t.Fatalf("intact snapshot: %v", err)
	}
	sameState(t, "intact snapshot", src.fsm.View(), dst.fsm.View())
}

func TestSnapshotOfEmptyState(t *testing.T) {
	data := snapshotBytes(t, raftstore.NewFSM())
	f := newFSMLog(t)
	f.apply(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{put(t, pod("d", "p"))}})
	if err := restore(f.fsm, data); err != nil {
		t.Fatal(err)
	}
	if v := f.fsm.View(); v.Len() != 0 || v.Index() != 0 {
		t.Errorf("restored empty snapshot: %d objects at %d", v.Len(), v.Index())
	}
}
