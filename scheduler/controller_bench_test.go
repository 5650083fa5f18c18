package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/bench"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// BenchmarkSyncOnce is one controller pass over 5,000 nodes and 100 sets
// of 50 replicas (the placement benchmark's), every pod created and bound,
// with nothing left to do: what every pass costs at this scale before it
// changes anything. The controller logs nothing: 5,000 pods created would
// flood the benchmark's output.
func BenchmarkSyncOnce(b *testing.B) {
	store := raftstoretest.NewStore(b)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: hclog.NewNullLogger(), Clock: clock})
	const nodes, sets, replicas = 5000, 100, 50
	var ops []raftstore.Op
	flush := func() {
		if len(ops) > 0 {
			raftstoretest.Apply(b, store, ops...)
			ops = ops[:0]
		}
	}
	for i := range nodes {
		op, err := PutOp(raftstore.Nodes, plNode(fmt.Sprintf("node-%05d", i)), 0)
		if err != nil {
			b.Fatal(err)
		}
		if ops = append(ops, op); len(ops) == 500 {
			flush()
		}
	}
	flush()
	for i := range sets {
		objs, err := api.DecodeManifests(bench.PlacementSet(fmt.Sprintf("set-%03d", i), replicas))
		if err != nil {
			b.Fatal(err)
		}
		set := objs[0].(*appsv1.StatefulSet)
		stampNew(set, clock.now)
		op, err := PutOp(raftstore.StatefulSets, set, 0)
		if err != nil {
			b.Fatal(err)
		}
		ops = append(ops, op)
	}
	flush()
	ctx := context.Background()
	for range 5 {
		if _, err := c.SyncOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	bound := 0
	for _, p := range raftstore.ListOf[*corev1.Pod](store.View(), raftstore.Pods, "bench") {
		if p.Spec.NodeName != "" {
			bound++
		}
	}
	if bound != sets*replicas {
		b.Fatalf("%d pods bound after five passes, want %d", bound, sets*replicas)
	}
	index := store.View().Index()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.SyncOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := store.View().Index(); got != index {
		b.Fatalf("an idle pass committed: index %d, was %d", got, index)
	}
}
