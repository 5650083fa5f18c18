package main

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

const sampleOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 15353 -d q.txt -l 2 -Q 1000 -v
> NOERROR web-0.web.default.svc.cluster.local A 0.000798
> NOERROR web-1.web.default.svc.cluster.local A 0.000090
> NOERROR web-2.web.default.svc.cluster.local A 0.000105
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         2000
  Queries completed:    1990 (99.50%)
  Queries lost:         10 (0.50%)

  Response codes:       NOERROR 1990 (100.00%)
  Average packet size:  request 53, response 104
  Run time (s):         2.000165
  Queries per second:   999.917507

  Average Latency (s):  0.000399 (min 0.000055, max 0.020077)
  Latency StdDev (s):   0.001727
`

func TestParseDNSPerf(t *testing.T) {
	r, err := parseDNSPerf([]byte(sampleOutput))
	if err != nil {
		t.Fatal(err)
	}
	if r.qps != 999.917507 || r.lostPercent != 0.5 || r.completed != 1990 {
		t.Errorf("qps %v, lost %v %%, completed %d; want 999.917507, 0.5 %%, 1990", r.qps, r.lostPercent, r.completed)
	}
	want := []time.Duration{798 * time.Microsecond, 90 * time.Microsecond, 105 * time.Microsecond}
	if len(r.latencies) != len(want) {
		t.Fatalf("latencies %v, want %v", r.latencies, want)
	}
	for i := range want {
		if d := r.latencies[i] - want[i]; d < -time.Microsecond || d > time.Microsecond {
			t.Errorf("latency %d = %v, want %v", i, r.latencies[i], want[i])
		}
	}
	if got := r.percentile(50); got.Round(time.Microsecond) != 105*time.Microsecond {
		t.Errorf("p50 = %v, want 105µs", got)
	}
}

func TestParseDNSPerfRefuses(t *testing.T) {
	tests := map[string]string{
		"no statistics": "DNS Performance Testing Tool\n[Status] failed\n",
		"errors answered": "  Response codes:       NOERROR 10 (50.00%), SERVFAIL 10 (50.00%)\n" +
			"  Queries per second:   999.9\n",
	}
	for name, out := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parseDNSPerf([]byte(out)); err == nil {
				t.Error("no error")
			}
		})
	}
}

// TestServersAnswerAlike checks that Stead's zone and the bare map answer
// every queried name with the same address, in the first version of the
// records and after changes, and that each change moves exactly the pod it
// names.
func TestServersAnswerAlike(t *testing.T) {
	recs := records{n: 100}
	vs := recs.prepare()
	first := vs.bareMap(0)
	for _, v := range []int{0, 1, 42, 99} {
		zone, bare := vs.steadZone(v), vs.bareMap(v)
		for i := range recs.n {
			name := queryName(i)
			res := zone.Lookup(name, dns.TypeA)
			if res.Rcode != dns.RcodeSuccess || len(res.Answer) != 1 {
				t.Fatalf("version %d: Stead answers %s with rcode %d and %d records", v, name, res.Rcode, len(res.Answer))
			}
			got := res.Answer[0].(*dns.A).A.String()
			if want := bare[name].A.String(); got != want {
				t.Errorf("version %d: %s is %s in Stead's zone and %s in the bare map", v, name, got, want)
			}
			moved := bare[name].A.String() != first[name].A.String()
			if wantMoved := v > 0 && i == v%recs.n; moved != wantMoved {
				t.Errorf("version %d: %s moved = %v, want %v", v, name, moved, wantMoved)
			}
		}
	}
}

// BenchmarkRebuild is the cost of one record change in each server: a
// new zone or map built from the whole record set.
func BenchmarkRebuild(b *testing.B) {
	vs := records{n: 100}.prepare()
	b.Run("stead", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			vs.steadZone(i)
		}
	})
	b.Run("bare", func(b *testing.B) {
		b.ReportAllocs()
		for i := range b.N {
			vs.bareMap(i)
		}
	})
}
