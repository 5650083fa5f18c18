package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/bench"
)

// footprintPods is how many pods the busy agent of BenchmarkFootprint runs.
const footprintPods = 30

// BenchmarkFootprint measures the resident memory of `stead server` and
// `stead agent` run as two processes (`make bench`): both idle, then the
// agent running 30 pods. The agent's containerd and the pods' shims are
// measured apart, since they are not the agent's own. For reference, not
// measured here: a k3s agent uses about 275 MB and a k3s server about
// 1.6 GB.
func BenchmarkFootprint(b *testing.B) {
	e := startE2EServerAgent(b)
	var rows []bench.Result
	for b.Loop() {
		settle := func() { <-time.After(5 * time.Second) } // let start-up garbage be collected
		settle()
		idle := e.footprint(b)
		set := e2eSet{Name: "bench-footprint", Replicas: footprintPods, Parallel: true}
		took := timeRollout(b, e, set, false)
		settle()
		busy := e.footprint(b)
		b.Logf("idle: %+v; with %d pods (Ready after %v): %+v", idle, footprintPods, took.Round(time.Millisecond), busy)
		deleteAndWait(b, e, set)

		mib := func(kib int64) float64 { return float64(kib) / 1024 }
		rows = []bench.Result{
			bench.NewResult("footprint", "idle server", "RSS", mib(idle.server), "MiB").WithNote("reference point, not measured here: a k3s server uses about 1.6 GB"),
			bench.NewResult("footprint", "idle agent", "RSS", mib(idle.agent), "MiB").WithNote("reference point, not measured here: a k3s agent uses about 275 MB"),
			bench.NewResult("footprint", fmt.Sprintf("agent running %d pods", footprintPods), "RSS", mib(busy.agent), "MiB"),
			bench.NewResult("footprint", fmt.Sprintf("agent running %d pods", footprintPods), "its containerd's RSS", mib(busy.containerd), "MiB").
				WithNote("idle: %.0f MiB", mib(idle.containerd)),
			bench.NewResult("footprint", fmt.Sprintf("agent running %d pods", footprintPods), "the shims' RSS (all)", mib(busy.shims), "MiB").
				WithNote("%d shims", busy.nShims),
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

// footprint is the resident memory, in KiB, of a cluster's processes.
type footprint struct {
	server, agent, containerd, shims int64
	nShims                           int
}

// footprint reads the resident memory of the server and agent processes,
// the agent's containerd and every shim it started.
func (e *e2eCluster) footprint(b *testing.B) footprint {
	b.Helper()
	var f footprint
	var err error
	if f.server, err = rssKiB(e.server.cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}
	if f.agent, err = rssKiB(e.node.cmd.Process.Pid); err != nil {
		b.Fatal(err)
	}
	for _, p := range processesUnder(e.dir) {
		if p.pid == e.server.cmd.Process.Pid || p.pid == e.node.cmd.Process.Pid {
			continue
		}
		rss, err := rssKiB(p.pid)
		if err != nil {
			continue // gone meanwhile
		}
		switch {
		case p.shim():
			f.shims += rss
			f.nShims++
		case filepath.Base(p.args[0]) == "containerd":
			f.containerd += rss
		}
	}
	return f
}

// rssKiB reads VmRSS of a process from /proc.
func rssKiB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				break
			}
			return strconv.ParseInt(fields[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}
