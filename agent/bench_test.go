package agent_test

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
)

// benchPods is how many pods BenchmarkPodStart starts, one after another.
const benchPods = 50

// BenchmarkPodStart measures how long a pod takes from its assignment
// (committed to the store) to the status Running the agent reports for it
// (committed too), for benchPods pods in a row on one node, and compares it
// with `ctr run -d` of the same image on the same containerd (no network,
// no status): the agent's overhead over the bare runtime. It reports p50
// and p99 of both and their ratio. Run it once:
//
//	go test -run '^$' -bench BenchmarkPodStart -benchtime 1x ./agent/
func BenchmarkPodStart(b *testing.B) {
	e := newEnv(b)
	e.startAgent(b, e.agentConfig(b, "bench"))

	var agentTimes []time.Duration
	for i := range benchPods {
		name := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		e.assign(b, "bench", e.testPod(name, []string{"hang"}))
		e.waitRunning(b, name)
		agentTimes = append(agentTimes, time.Since(start))
	}

	var ctrTimes []time.Duration
	for i := range benchPods {
		id := fmt.Sprintf("ctr-bench-%d", i)
		start := time.Now()
		out, err := exec.Command("ctr", "--address", e.daemon.Socket, "--namespace", e.daemon.Namespace,
			"run", "-d", e.image, id, "/podtest", "hang").CombinedOutput()
		if err != nil {
			b.Fatalf("ctr run: %v: %s", err, out)
		}
		ctrTimes = append(ctrTimes, time.Since(start))
	}
	b.StopTimer()

	ap50, ap99 := percentile(agentTimes, 50), percentile(agentTimes, 99)
	cp50, cp99 := percentile(ctrTimes, 50), percentile(ctrTimes, 99)
	b.ReportMetric(ms(ap50), "agent-p50-ms")
	b.ReportMetric(ms(ap99), "agent-p99-ms")
	b.ReportMetric(ms(cp50), "ctr-p50-ms")
	b.ReportMetric(ms(cp99), "ctr-p99-ms")
	b.ReportMetric(ms(ap50)/ms(cp50), "p50-ratio")
	b.Logf("%d pods in a row: agent (assignment → Running reported) p50 %v p99 %v; ctr run -d p50 %v p99 %v; p50 ratio %.2f",
		benchPods, ap50.Round(time.Millisecond), ap99.Round(time.Millisecond), cp50.Round(time.Millisecond), cp99.Round(time.Millisecond), ms(ap50)/ms(cp50))

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

func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[max(0, min(i, len(s))-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
