// Command benchdns measures Stead's DNS server with dnsperf against a bare
// miekg/dns server that answers the same names from a map (the ceiling for
// a Go server), both measured in the same run: queries per second with the
// server pinned to one core and dnsperf to another, latency at a fixed
// rate, and queries per second while the records change. It prints
// bench.Result lines on standard output.
//
//	benchdns [-dnsperf dnsperf -duration 10s -rounds 2 -rate 20000 -churn 100]
//
// The `serve` subcommand is the server under test (see serve.go).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/miekg/dns"

	"github.com/stead-io/stead/bench"
)

const benchName = "dns"

// The goals.
const (
	minRatio      = 0.85 // of the bare server's queries per second
	maxP99Micros  = 500  // at the fixed rate
	minChurnRatio = 0.90 // of Stead's own queries per second without churn
)

type options struct {
	dnsperf     string
	dir         string
	duration    time.Duration
	rounds      int
	names       int
	rate        int
	churn       int
	serverCPU   string
	clientCPU   string
	clients     int
	outstanding int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		if err := runServe(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benchdns serve:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.dnsperf, "dnsperf", "dnsperf", "the dnsperf binary")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a new temporary one)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one dnsperf run")
	flag.IntVar(&o.rounds, "rounds", 2, "runs of each throughput measurement; Stead's and the baseline's alternate")
	flag.IntVar(&o.names, "names", 100, "names served and queried")
	flag.IntVar(&o.rate, "rate", 20000, "queries per second of the latency measurement")
	flag.IntVar(&o.churn, "churn", 100, "record changes per second of the churn measurement")
	flag.StringVar(&o.serverCPU, "server-cpu", "0", "CPU the server is pinned to")
	flag.StringVar(&o.clientCPU, "client-cpu", "1", "CPU dnsperf is pinned to")
	flag.IntVar(&o.clients, "clients", 4, "dnsperf clients (sockets)")
	flag.IntVar(&o.outstanding, "outstanding", 200, "dnsperf queries outstanding at once")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchdns:", err)
		os.Exit(1)
	}
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchdns: "+format+"\n", args...)
}

func run(o options) error {
	if _, err := exec.LookPath(o.dnsperf); err != nil {
		return fmt.Errorf("dnsperf not found (Debian package dnsperf; bench/run.sh installs it): %w", err)
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "benchdns-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	queries := filepath.Join(o.dir, "queries.txt")
	var data []byte
	for i := range o.names {
		data = fmt.Appendf(data, "%s A\n", queryName(i))
	}
	if err := os.WriteFile(queries, data, 0o644); err != nil {
		return err
	}
	b := &bencher{o: o, queries: queries}

	// Throughput, Stead's and the baseline's runs alternating.
	var steadQPS, bareQPS, steadChurnQPS, bareChurnQPS perfRuns
	for r := range o.rounds {
		for _, m := range []struct {
			impl  string
			churn int
			into  *perfRuns
		}{
			{"bare", 0, &bareQPS}, {"stead", 0, &steadQPS},
			{"bare", o.churn, &bareChurnQPS}, {"stead", o.churn, &steadChurnQPS},
		} {
			progress("round %d/%d: %s server, %d changes/s, as fast as it answers", r+1, o.rounds, m.impl, m.churn)
			res, err := b.perf(m.impl, m.churn, 0)
			if err != nil {
				return err
			}
			progress("  %.0f queries/s, %.2f %% lost, %.1f µs of server CPU per query", res.qps, res.lostPercent, bench.Micros(res.cpuPerQuery))
			m.into.add(res)
		}
	}
	// Latency at a fixed rate.
	lat := map[string]*perfRuns{"bare": {}, "stead": {}}
	for r := range o.rounds {
		for _, impl := range []string{"bare", "stead"} {
			progress("round %d/%d: %s server at %d queries/s", r+1, o.rounds, impl, o.rate)
			res, err := b.perf(impl, 0, o.rate)
			if err != nil {
				return err
			}
			progress("  p50 %s, p99 %s, %.2f %% lost", res.percentile(50), res.percentile(99), res.lostPercent)
			lat[impl].add(res)
		}
	}
	steadLat, bareLat := lat["stead"].lowestP99(), lat["bare"].lowestP99()

	em := bench.NewEmitter(os.Stdout)
	const bareName = "bare miekg/dns from a map"
	runs := fmt.Sprintf("best of %d alternating runs of %s", o.rounds, o.duration)
	tput := "queries per second, server on 1 core"
	rows := []bench.Result{
		bench.NewResult(benchName, tput, "throughput", steadQPS.best(), "queries/s").
			Against(bareName, bareQPS.best()).Want(bench.AtLeastRatio(minRatio)).
			WithNote("%d names; %s: Stead %s, baseline %s; lost: Stead %s, baseline %s",
				o.names, runs, steadQPS.all(), bareQPS.all(), steadQPS.lost(), bareQPS.lost()),
	}
	rows = append(rows,
		bench.NewResult(benchName, tput, "CPU time per query", bench.Micros(steadQPS.lowestCPU()), "µs").
			Against(bareName, bench.Micros(bareQPS.lowestCPU())).
			WithNote("the server's user and system time while dnsperf ran, over the queries answered; the lowest of %d runs: Stead %s, baseline %s",
				o.rounds, steadQPS.cpus(), bareQPS.cpus()))
	fixed := fmt.Sprintf("latency at %d queries/s", o.rate)
	rows = append(rows,
		bench.NewResult(benchName, fixed, "p50 latency", bench.Micros(steadLat.percentile(50)), "µs").
			Against(bareName, bench.Micros(bareLat.percentile(50))),
		bench.NewResult(benchName, fixed, "p99 latency", bench.Micros(steadLat.percentile(99)), "µs").
			Against(bareName, bench.Micros(bareLat.percentile(99))).Want(bench.AtMost(maxP99Micros, "µs")).
			WithNote("as dnsperf -v measures each query; the run with the lowest p99 of %d: Stead %s, baseline %s",
				o.rounds, lat["stead"].p99s(), lat["bare"].p99s()),
	)
	churn := fmt.Sprintf("queries per second while records change %d times a second", o.churn)
	rows = append(rows,
		bench.NewResult(benchName, churn, "throughput", steadChurnQPS.best(), "queries/s").
			Against("Stead without changes", steadQPS.best()).Want(bench.AtLeastRatio(minChurnRatio)).
			WithNote("each change rebuilds the zone and swaps it in; %s: %s; server CPU per query %s (without changes %s)",
				runs, steadChurnQPS.all(), steadChurnQPS.cpus(), steadQPS.cpus()),
		bench.NewResult(benchName, churn+" (baseline)", "throughput", bareChurnQPS.best(), "queries/s").
			Against("bare without changes", bareQPS.best()).
			WithNote("the bare server rebuilds its map and swaps it in; %s: %s", runs, bareChurnQPS.all()),
	)
	for _, r := range rows {
		if err := em.Emit(r); err != nil {
			return err
		}
	}
	return nil
}

// bencher runs one server and dnsperf against it.
type bencher struct {
	o       options
	queries string
	n       int
}

// perf starts a server of impl changing its records churn times a second,
// runs dnsperf against it (at rate queries per second, or as fast as it
// answers when rate is 0) and stops it.
func (b *bencher) perf(impl string, churn, rate int) (perfResult, error) {
	self, err := os.Executable()
	if err != nil {
		return perfResult{}, err
	}
	b.n++
	addr, err := bench.FreeAddr()
	if err != nil {
		return perfResult{}, err
	}
	srv, err := bench.Start(impl+" dns", filepath.Join(b.o.dir, fmt.Sprintf("server-%d-%s.log", b.n, impl)),
		"taskset", "-c", b.o.serverCPU, self, "serve", "-impl", impl, "-addr", addr,
		"-names", strconv.Itoa(b.o.names), "-churn", strconv.Itoa(churn))
	if err != nil {
		return perfResult{}, err
	}
	defer srv.Stop(5 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	q := new(dns.Msg).SetQuestion(queryName(0), dns.TypeA)
	err = bench.WaitFor(ctx, 20*time.Millisecond, impl+" dns server", func() (bool, error) {
		select {
		case <-srv.Done():
			return false, fmt.Errorf("exited: see %s", srv.LogPath)
		default:
		}
		r, _, err := c.Exchange(q, addr)
		return err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) == 1, err
	})
	if err != nil {
		return perfResult{}, err
	}
	cpu0, err := bench.CPUTime(srv.PID())
	if err != nil {
		return perfResult{}, err
	}
	host, port, _ := splitHostPort(addr)
	args := []string{"-c", b.o.clientCPU, b.o.dnsperf, "-s", host, "-p", port, "-d", b.queries,
		"-l", strconv.Itoa(int(b.o.duration.Seconds())), "-c", strconv.Itoa(b.o.clients), "-q", strconv.Itoa(b.o.outstanding)}
	if rate > 0 {
		args = append(args, "-Q", strconv.Itoa(rate), "-v")
	}
	cmd := exec.Command("taskset", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return perfResult{}, fmt.Errorf("dnsperf against the %s server: %w", impl, err)
	}
	cpu1, err := bench.CPUTime(srv.PID())
	if err != nil {
		return perfResult{}, err
	}
	os.WriteFile(filepath.Join(b.o.dir, fmt.Sprintf("dnsperf-%d-%s.txt", b.n, impl)), out, 0o644)
	res, err := parseDNSPerf(out)
	if err == nil && res.completed > 0 {
		res.cpuPerQuery = (cpu1 - cpu0) / time.Duration(res.completed)
	}
	return res, err
}
