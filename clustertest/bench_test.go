package clustertest

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/bench"
)

var (
	benchResults    = flag.String("bench.results", "", "append the failover benchmark's rows (bench.Result JSON lines) to this file")
	benchNodeTrials = flag.Int("bench.node-trials", 10, "node losses the failover benchmark measures")
	benchLeadTrials = flag.Int("bench.leader-trials", 20, "leader losses the failover benchmark measures")
)

// BenchmarkFailover measures Stead's automatic failover on a cluster of
// three servers and three agents (`make bench`):
//
//   - node loss: the link of the agent that runs an ordinal goes down (the
//     machine is gone for the cluster; its watchdog stops its pods once
//     its lease lapses); measured is the time until that ordinal is
//     Running and Ready on another node. Then the link comes back and the
//     node is Ready again before the next trial.
//   - leader loss: the leader is killed with SIGKILL; measured is the time
//     until a write through a surviving server commits. Then the old
//     leader restarts and the servers converge before the next trial.
//
// It reports p50, p90 and max of each as benchmark metrics and, with
// -bench.results, as rows of bench/RESULTS.md.
func BenchmarkFailover(b *testing.B) {
	if testing.Short() {
		b.Skip("runs a cluster of processes")
	}
	c := Start(b, bins, Options{Claims: true})
	w := Workload{Name: "jw", Replicas: 3}
	if err := c.Deploy(w, rolloutMax); err != nil {
		b.Fatalf("deploy: %v", err)
	}
	var rows []bench.Result
	for b.Loop() {
		rows = append(rows, nodeLossTrials(b, c, w, *benchNodeTrials)...)
		rows = append(rows, leaderLossTrials(b, c, *benchLeadTrials)...)
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

// nodeLossTrials takes down, n times, the link of the agent running the
// lowest ordinal it runs, and measures how long until that ordinal runs
// elsewhere.
func nodeLossTrials(b *testing.B, c *Cluster, w Workload, n int) []bench.Result {
	b.Helper()
	var took []time.Duration
	var failed, trials []string
	for i := range n {
		victim, ords := busiestAgent(c)
		if victim == "" {
			b.Fatalf("node loss %d: no agent runs an ordinal", i+1)
		}
		ord := slices.Min(ords)
		leaderBefore, _ := c.WaitLeader(30*time.Second, "")
		t0 := time.Now()
		c.LinkDown(victim)
		f, err := waitMoved(c, w, victim, []int{ord}, t0, freeAfter+60*time.Second, false)
		c.LinkUp(victim)
		leaderAfter, _ := c.WaitLeader(30*time.Second, "")
		if err != nil {
			failed = append(failed, fmt.Sprintf("trial %d: %v", i+1, err))
		} else {
			took = append(took, f.running[ord])
			// A new leader gives every node a full lease: a change of
			// leader during the trial delays the failover by design.
			trial := fmt.Sprintf("%.1fs", f.running[ord].Seconds())
			if leaderAfter != leaderBefore {
				trial += fmt.Sprintf(" (leader %s → %s)", leaderBefore, leaderAfter)
			}
			trials = append(trials, trial)
			c.Logf("node loss %d: %s ran ordinal %d; running elsewhere after %v", i+1, victim, ord, f.running[ord].Round(time.Millisecond))
		}
		// The node comes back and takes part again before the next trial.
		if err := c.WaitNodesReady(90*time.Second, victim); err != nil {
			b.Fatalf("node loss %d: %s not Ready again: %v", i+1, victim, err)
		}
		if err := c.WaitLive(w, liveBound); err != nil {
			b.Fatalf("node loss %d: workload not live again: %v", i+1, err)
		}
	}
	name := fmt.Sprintf("node loss → ordinal Running and Ready elsewhere (%d trials)", n)
	note := fmt.Sprintf("the node's link goes down; lease %v, fence margin %v; sampled every 200 ms; trials %s", leaseTTL, margin, strings.Join(trials, ", "))
	return durationRows("failover", name, note, took, failed, bench.AtMost(15, "s"))
}

// leaderLossTrials kills the leader n times and measures how long until a
// write through a surviving server commits.
func leaderLossTrials(b *testing.B, c *Cluster, n int) []bench.Result {
	b.Helper()
	var took []time.Duration
	var failed []string
	for i := range n {
		leader, err := c.WaitLeader(60*time.Second, "")
		if err != nil {
			b.Fatalf("leader loss %d: %v", i+1, err)
		}
		t0 := time.Now()
		c.Kill9(leader)
		d, err := firstWrite(c, leader, i, t0, 60*time.Second)
		if err != nil {
			failed = append(failed, fmt.Sprintf("trial %d: %v", i+1, err))
		} else {
			took = append(took, d)
			c.Logf("leader loss %d: killed %s; first write committed after %v", i+1, leader, d.Round(time.Millisecond))
		}
		c.Restart(leader)
		if _, err := c.WaitFSMConverged(60 * time.Second); err != nil {
			b.Fatalf("leader loss %d: servers did not converge after %s restarted: %v", i+1, leader, err)
		}
	}
	name := fmt.Sprintf("leader loss → first committed write (%d trials)", n)
	note := "SIGKILL of the leader; one writer per surviving server, each trying every 50 ms with a 1 s timeout"
	return durationRows("failover", name, note, took, failed, bench.Target{})
}

// firstWrite writes through every server but dead, every 50 ms, until one
// write commits, and returns how long after t0 it was acknowledged.
func firstWrite(c *Cluster, dead string, trial int, t0 time.Time, within time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	done := make(chan time.Duration, len(c.servers))
	var mu sync.Mutex
	var lastErr error
	for _, s := range c.servers {
		if s == dead {
			continue
		}
		go func() {
			for n := 0; ctx.Err() == nil; n++ {
				name := fmt.Sprintf("failover-%d-%s-%d", trial, s, n)
				svc := &corev1.Service{
					TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
					Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "none", Port: 80}}},
				}
				wctx, wcancel := context.WithTimeout(ctx, time.Second)
				_, err := c.Client(s).Put(wctx, "services", "default", name, svc)
				wcancel()
				if err == nil {
					done <- time.Since(t0)
					return
				}
				mu.Lock()
				lastErr = fmt.Errorf("through %s: %w", s, err)
				mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
	}
	select {
	case d := <-done:
		return d, nil
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		return 0, fmt.Errorf("no write committed within %v of killing %s; the last error: %v", within, dead, lastErr)
	}
}

// durationRows turns the durations of the trials that succeeded into
// p50, p90 and max rows; failed trials are noted, and make the max row
// say so.
func durationRows(benchName, name, note string, took []time.Duration, failed []string, maxTarget bench.Target) []bench.Result {
	if len(failed) > 0 {
		note += fmt.Sprintf("; %d trials failed: %v", len(failed), failed)
	}
	if len(took) == 0 {
		r := bench.NewResult(benchName, name, "max", 0, "s").WithNote("%s", note)
		f := false
		r.Pass = &f
		return []bench.Result{r}
	}
	secs := func(d time.Duration) float64 { return d.Seconds() }
	p50 := bench.NewResult(benchName, name, "p50", secs(bench.Percentile(took, 50)), "s").WithNote("%s", note)
	p90 := bench.NewResult(benchName, name, "p90", secs(bench.Percentile(took, 90)), "s")
	mx := bench.NewResult(benchName, name, "max", secs(slices.Max(took)), "s")
	if maxTarget.Bound > 0 {
		mx = mx.Want(maxTarget)
		if len(failed) > 0 {
			f := false
			mx.Pass = &f
		}
	}
	return []bench.Result{p50, p90, mx}
}
