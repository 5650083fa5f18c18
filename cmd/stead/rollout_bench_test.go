package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/bench"
)

var (
	benchResults      = flag.String("bench.results", "", "append the rollout benchmark's rows (bench.Result JSON lines) to this file")
	benchSingleTrials = flag.Int("bench.single-trials", 10, "single-pod sets the rollout benchmark times for its baseline")
)

// rolloutReplicas is the size of the sets the rollout benchmark creates.
const rolloutReplicas = 32

// BenchmarkRollout measures StatefulSet rollouts through `stead dev` on
// this machine (`make bench`): the baseline is the create→Ready time of a
// single pod (the mean of several one-replica sets); against it, the
// total time of an OrderedReady set of 32 replicas, which creates each pod
// once the one before is Ready, compared with 32 times the baseline; and
// the total time of a Parallel set of 32. Each time runs from the apply's
// commit until the last pod is Ready. Every pod has an HTTP readiness
// probe every second, first a second after its container started: a
// first probe at once would find the server listening or not by chance,
// and make a pod Ready at once or a second later.
func BenchmarkRollout(b *testing.B) {
	e := startE2EDev(b)
	var rows []bench.Result
	for b.Loop() {
		var single []time.Duration
		for i := range *benchSingleTrials {
			single = append(single, timeRollout(b, e, e2eSet{Name: fmt.Sprintf("bench-one-%d", i), Replicas: 1, ProbeDelay: 1}, true))
		}
		// The mean, since 32 pods in a row take 32 times the mean.
		var total time.Duration
		for _, d := range single {
			total += d
		}
		base := total / time.Duration(len(single))
		ordered := timeRollout(b, e, e2eSet{Name: "bench-ordered", Replicas: rolloutReplicas, ProbeDelay: 1}, true)
		parallel := timeRollout(b, e, e2eSet{Name: "bench-parallel", Replicas: rolloutReplicas, Parallel: true, ProbeDelay: 1}, true)
		b.Logf("single pod create→Ready %v (mean of %v); %d replicas OrderedReady %v, Parallel %v", base, single, rolloutReplicas, ordered, parallel)

		sum := time.Duration(rolloutReplicas) * base
		rows = []bench.Result{
			bench.NewResult("rollout", "single pod", "create → Ready", base.Seconds(), "s").
				WithNote("mean of %d one-replica sets: %v", len(single), single),
			bench.NewResult("rollout", fmt.Sprintf("OrderedReady, %d replicas", rolloutReplicas), "create → all Ready", ordered.Seconds(), "s").
				Against(fmt.Sprintf("%d × a single pod's create → Ready", rolloutReplicas), sum.Seconds()).
				Want(bench.Target{OfRatio: true, AtMost: true, Bound: 1.10}).
				WithNote("the controller's share is what exceeds %d × %v = %v", rolloutReplicas, base.Round(time.Millisecond), sum.Round(time.Millisecond)),
			bench.NewResult("rollout", fmt.Sprintf("Parallel, %d replicas", rolloutReplicas), "create → all Ready", parallel.Seconds(), "s").
				Against(fmt.Sprintf("%d × a single pod's create → Ready", rolloutReplicas), sum.Seconds()),
		}
	}
	for _, r := range rows {
		b.ReportMetric(r.Value, r.MetricName())
	}
	if *benchResults != "" {
		if err := bench.AppendResults(*benchResults, rows); err != nil {
			b.Fatal(err)
		}
	}
}

// timeRollout applies set and returns the time from the apply's answer
// until every replica is Ready; with cleanup, it then deletes the set and
// waits for its pods to go.
func timeRollout(b *testing.B, e *e2eCluster, set e2eSet, cleanup bool) time.Duration {
	b.Helper()
	manifest, err := yaml.Marshal(set.object())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := e.c.Apply(ctx, manifest, e2eNamespace)
	if err != nil {
		b.Fatalf("apply %s: %v", set.Name, err)
	}
	start := time.Now()
	index := res.Index
	pods := e2eResource(b, "pods")
	for {
		l, idx, err := e.c.List(ctx, pods, e2eNamespace, api.ListOptions{LabelSelector: "app=" + set.Name, Index: index, Wait: 5 * time.Second})
		if err != nil {
			b.Fatalf("set %s: %v", set.Name, err)
		}
		if readyPods(l) == int(set.Replicas) {
			break
		}
		index = idx
	}
	took := time.Since(start)
	if cleanup {
		deleteAndWait(b, e, set)
	}
	return took
}

// deleteAndWait deletes set and waits until no pod is left.
func deleteAndWait(b *testing.B, e *e2eCluster, set e2eSet) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.c.Delete(ctx, e2eResource(b, "statefulsets"), e2eNamespace, set.Name, api.DeleteOptions{}); err != nil {
		b.Fatalf("delete %s: %v", set.Name, err)
	}
	if left := e.waitNoPods(b, 3*time.Minute); len(left) > 0 {
		b.Fatalf("pods of %s still there: %v", set.Name, left)
	}
}

// readyPods counts the pods of a list that are Running and Ready.
func readyPods(l *api.List) int {
	n := 0
	for _, raw := range l.Items {
		var p corev1.Pod
		if json.Unmarshal(raw, &p) != nil || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}
