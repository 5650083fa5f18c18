package scheduler

import (
	"fmt"
	"testing"

	"github.com/stead-io/stead/api"
	corev1 "k8s.io/api/core/v1"
)

// BenchmarkPlace places 40 sets of 50 replicas on 5,000 nodes that already
// run 60 such sets: one controller pass of benchplace's 5,000-agent run.
func BenchmarkPlace(b *testing.B) {
	in := placeWorkload(5000, 60, 40, 50)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		res := Place(in)
		if len(res.Assignments) != 40*50 {
			b.Fatalf("placed %d pods, want %d", len(res.Assignments), 40*50)
		}
	}
}

// placeWorkload is nodes nodes with bound sets of replicas pods placed by
// Place, and pending sets of replicas pods waiting.
func placeWorkload(nodes, bound, pending, replicas int) PlaceInput {
	var in PlaceInput
	for i := range nodes {
		in.Nodes = append(in.Nodes, plNode(fmt.Sprintf("node-%05d", i)))
	}
	sets := func(from, n int) []*corev1.Pod {
		var pods []*corev1.Pod
		for s := from; s < from+n; s++ {
			for r := range replicas {
				pods = append(pods, plPod(api.ReplicaName(fmt.Sprintf("set-%03d", s), r), plReq("100m", "64Mi")))
			}
		}
		return pods
	}
	first := sets(0, bound)
	byName := map[string]*corev1.Pod{}
	for _, p := range first {
		byName[p.Name] = p
	}
	for _, a := range Place(PlaceInput{Pending: first, Nodes: in.Nodes}).Assignments {
		plOn(a.Node)(byName[a.Pod.Name])
	}
	in.Pods = first
	in.Pending = sets(bound, pending)
	return in
}
