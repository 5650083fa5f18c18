package agent_test

import (
	"context"
	"flag"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/bench"
)

// benchPods is how many pods BenchmarkPodStart starts, one after another.
const benchPods = 50

var benchResults = flag.String("bench.results", "", "append the pod start benchmark's rows (bench.Result JSON lines) to this file")

// BenchmarkPodStart measures how long a pod takes from its assignment
// (committed to the store) to the status Running the agent reports for it
// (committed too), for benchPods pods in a row on one node, and compares it
// with `ctr run -d` of the same image on the same containerd (no network,
// no status), each pod followed by one ctr container: the agent's overhead
// over the bare runtime. It reports p50 and p99 of both and their ratio,
// and with -bench.results appends them as rows of bench/RESULTS.md (make
// bench runs it so). Run it once:
//
//	go test -run '^$' -bench BenchmarkPodStart -benchtime 1x ./agent/
func BenchmarkPodStart(b *testing.B) {
	e := newEnv(b)
	e.startAgent(b, e.agentConfig(b, "bench"))

	// The agent's pods and ctr's containers take turns, so that both see
	// the machine as busy as the other, and as many containers running.
	var agentTimes, ctrTimes []time.Duration
	for i := range benchPods {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		e.assign(b, "bench", e.testPod(name, []string{"hang"}))
		e.waitRunning(b, name)
		agentTimes = append(agentTimes, time.Since(start))

		id := fmt.Sprintf("ctr-bench-%d", i)
		start = time.Now()
		out, err := exec.Command("ctr", "--address", e.daemon.Socket, "--namespace", e.daemon.Namespace,
			"run", "-d", e.image, id, "/podtest", "hang").CombinedOutput()
		if err != nil {
			b.Fatalf("ctr run: %v: %s", err, out)
		}
		ctrTimes = append(ctrTimes, time.Since(start))
	}
	b.StopTimer()

	ap50, ap99 := bench.Percentile(agentTimes, 50), bench.Percentile(agentTimes, 99)
	cp50, cp99 := bench.Percentile(ctrTimes, 50), bench.Percentile(ctrTimes, 99)
	b.Logf("%d pods in a row: agent (assignment → Running reported) p50 %v p99 %v; ctr run -d p50 %v p99 %v; p50 ratio %.2f",
		benchPods, ap50.Round(time.Millisecond), ap99.Round(time.Millisecond), cp50.Round(time.Millisecond), cp99.Round(time.Millisecond), ms(ap50)/ms(cp50))
	name := fmt.Sprintf("%d pods one after another on one node", benchPods)
	const ctrName = "ctr run -d of the same image on the same containerd"
	rows := []bench.Result{
		bench.NewResult("podstart", name, "p50", ms(ap50), "ms").Against(ctrName, ms(cp50)).
			Want(bench.Target{OfRatio: true, AtMost: true, Bound: 1.3}).
			WithNote("the agent's time runs from the pod's assignment committed to its status Running committed; " +
				"it adds the pod's network (CNI bridge), the store and the status report to what ctr does"),
		bench.NewResult("podstart", name, "p99", ms(ap99), "ms").Against(ctrName, ms(cp99)),
	}
	for _, r := range rows {
		b.ReportMetric(r.Value, r.MetricName())
	}
	if *benchResults != "" {
		if err := bench.AppendResults(*benchResults, rows); err != nil {
			b.Fatal(err)
		}
	}

	for i := range benchPods {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		e.client.Delete(ctx, pods, "default", fmt.Sprintf("bench-%d", i), api.DeleteOptions{})
		cancel()
		exec.Command("ctr", "--address", e.daemon.Socket, "--namespace", e.daemon.Namespace, "task", "kill", "-s", "SIGKILL", fmt.Sprintf("ctr-bench-%d", i)).Run()
	}
	waitFor(b, 2*time.Minute, "every bench pod gone", func() (bool, string) {
		for i := range benchPods {
			if e.pod("default", fmt.Sprintf("bench-%d", i)) != nil {
				return false, fmt.Sprintf("bench-%d remains", i)
			}
		}
		return true, ""
	})
}

// waitRunning waits until the store holds status Running for the pod,
// woken by every commit rather than by polling.
func (e *testEnv) waitRunning(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		v := e.store.View()
		if p := e.pod("default", name); p != nil && p.Status.Phase == corev1.PodRunning {
			return
		}
		if _, err := e.store.WaitForIndex(ctx, v.Index()); err != nil {
			t.Fatalf("%s not Running: %v", name, err)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
