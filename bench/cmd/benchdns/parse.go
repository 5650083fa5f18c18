package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/stead-io/stead/bench"
)

// perfResult is what one dnsperf run measured.
type perfResult struct {
	qps float64
	// lostPercent is the share of queries sent that got no answer.
	lostPercent float64
	// completed is the number of queries answered.
	completed int
	// cpuPerQuery is the server's CPU time (user and system) while dnsperf
	// ran, over the queries answered. Unlike queries per second it hardly
	// depends on what else the machine runs.
	cpuPerQuery time.Duration
	// rcodes is dnsperf's "Response codes" line.
	rcodes string
	// latencies are the per-query latencies dnsperf -v printed.
	latencies []time.Duration
}

func (r perfResult) percentile(p float64) time.Duration {
	return bench.Percentile(r.latencies, p)
}

// parseDNSPerf reads dnsperf's report: the statistics block, and with -v
// a line per answered query ("> NOERROR name A 0.000123"), whose last field
// is the latency in seconds.
func parseDNSPerf(out []byte) (perfResult, error) {
	var r perfResult
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "> ") {
			f := strings.Fields(line)
			secs, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil && len(f) >= 3 {
				r.latencies = append(r.latencies, time.Duration(secs*float64(time.Second)))
			}
			continue
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		switch key {
		case "Queries per second":
			v, err := strconv.ParseFloat(val, 64)
			if err != nil {
				return r, fmt.Errorf("dnsperf: queries per second %q: %w", val, err)
			}
			r.qps, found = v, true
		case "Queries completed":
			// "1990 (99.50%)"
			n, _, _ := strings.Cut(val, " ")
			r.completed, _ = strconv.Atoi(n)
		case "Queries lost":
			// "10 (0.00%)"
			if i, j := strings.Index(val, "("), strings.Index(val, "%)"); i >= 0 && j > i {
				r.lostPercent, _ = strconv.ParseFloat(val[i+1:j], 64)
			}
		case "Response codes":
			r.rcodes = val
		}
	}
	if !found {
		return r, fmt.Errorf("dnsperf printed no queries per second:\n%s", out)
	}
	if !strings.HasPrefix(r.rcodes, "NOERROR") || strings.Contains(r.rcodes, ",") {
		return r, fmt.Errorf("dnsperf saw answers other than NOERROR: %s", r.rcodes)
	}
	return r, nil
}

// perfRuns are the runs of one measurement.
type perfRuns []perfResult

func (p *perfRuns) add(r perfResult) { *p = append(*p, r) }

// best returns the highest queries per second of the runs. Other work on
// the machine only ever takes throughput away, so the best run is the
// closest to what the server can do.
func (p perfRuns) best() float64 {
	best := 0.0
	for _, r := range p {
		best = max(best, r.qps)
	}
	return best
}

// all returns each run's queries per second, as text.
func (p perfRuns) all() string {
	var parts []string
	for _, r := range p {
		parts = append(parts, fmt.Sprintf("%.0f", r.qps))
	}
	return strings.Join(parts, ", ")
}

// lowestP99 returns the run with the lowest 99th percentile latency: other
// work on the machine only ever adds latency.
func (p perfRuns) lowestP99() perfResult {
	var best perfResult
	for i, r := range p {
		if i == 0 || r.percentile(99) < best.percentile(99) {
			best = r
		}
	}
	return best
}

// p99s returns each run's 99th percentile latency, as text.
func (p perfRuns) p99s() string {
	var parts []string
	for _, r := range p {
		parts = append(parts, r.percentile(99).String())
	}
	return strings.Join(parts, ", ")
}

// lowestCPU returns the lowest CPU time per query of the runs.
func (p perfRuns) lowestCPU() time.Duration {
	var best time.Duration
	for i, r := range p {
		if i == 0 || r.cpuPerQuery < best {
			best = r.cpuPerQuery
		}
	}
	return best
}

// cpus returns each run's CPU time per query, as text.
func (p perfRuns) cpus() string {
	var parts []string
	for _, r := range p {
		parts = append(parts, fmt.Sprintf("%.1f µs", bench.Micros(r.cpuPerQuery)))
	}
	return strings.Join(parts, ", ")
}

// lost returns the share of queries lost in each run, as text.
func (p perfRuns) lost() string {
	var parts []string
	for _, r := range p {
		parts = append(parts, fmt.Sprintf("%.2f %%", r.lostPercent))
	}
	return strings.Join(parts, ", ")
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }
