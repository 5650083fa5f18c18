package bench

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of odd count", ms(5, 1, 3), 50, 3 * time.Millisecond},
		{"median of even count takes the lower", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"p99 of 1000 is the 990th", ms(seq(1000)...), 99, 990 * time.Millisecond},
		{"p99 of 10 is the largest", ms(seq(10)...), 99, 10 * time.Millisecond},
		{"p100 is the largest", ms(3, 9, 1), 100, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

// seq returns 1 … n shuffled by a fixed stride, so that sorting matters.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = (i*7919)%n + 1
	}
	return out
}

func TestTargets(t *testing.T) {
	tests := []struct {
		name     string
		result   Result
		target   Target
		wantPass bool
		wantText string
	}{
		{"ratio above", NewResult("b", "n", "m", 80, "/s").Against("bare", 100), AtLeastRatio(0.7), true, "≥ 70 % of baseline"},
		{"ratio exactly at the bound", NewResult("b", "n", "m", 70, "/s").Against("bare", 100), AtLeastRatio(0.7), true, "≥ 70 % of baseline"},
		{"ratio below", NewResult("b", "n", "m", 32, "/s").Against("bare", 100), AtLeastRatio(0.7), false, "≥ 70 % of baseline"},
		{"ratio without a baseline", NewResult("b", "n", "m", 80, "/s"), AtLeastRatio(0.7), false, "≥ 70 % of baseline"},
		{"ratio against a zero baseline", NewResult("b", "n", "m", 80, "/s").Against("bare", 0), AtLeastRatio(0.7), false, "≥ 70 % of baseline"},
		{"value at least", NewResult("b", "n", "m", 3750, "/s"), AtLeast(3750, "/s"), true, "≥ 3750 /s"},
		{"value below", NewResult("b", "n", "m", 109.5, "/s"), AtLeast(3750, "/s"), false, "≥ 3750 /s"},
		{"value at most", NewResult("b", "n", "m", 420, "µs"), AtMost(500, "µs"), true, "≤ 500 µs"},
		{"value above the most", NewResult("b", "n", "m", 9015, "µs"), AtMost(500, "µs"), false, "≤ 500 µs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.result.Want(tt.target)
			if r.Pass == nil || *r.Pass != tt.wantPass {
				t.Errorf("pass = %v, want %v", r.Pass, tt.wantPass)
			}
			if r.Target != tt.wantText {
				t.Errorf("target = %q, want %q", r.Target, tt.wantText)
			}
		})
	}
}

func TestFormatNumber(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 0.3219: "0.322", 1.5: "1.50", 12.34: "12.3", 512.6: "513", 10727.004: "10727", 70: "70",
	} {
		if got := FormatNumber(v); got != want {
			t.Errorf("FormatNumber(%v) = %q, want %q", v, got, want)
		}
	}
}

// TestReportRoundTrip emits rows as a benchmark does and checks the table
// and the Markdown report render exactly those rows.
func TestReportRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	em := NewEmitter(&buf)
	rows := []Result{
		NewResult("raft", "sequential commits (1 client)", "throughput", 512, "commits/s").
			Against("bare hashicorp/raft", 680).Want(AtLeastRatio(0.7)).WithNote("best of 3"),
		NewResult("raft", "sequential commits (1 client)", "p99 latency", 7497, "µs").Against("bare hashicorp/raft", 6059),
		NewResult("placement", "1000 agents", "placements committed per second", 109.5, "/s").Want(AtLeast(3750, "/s")),
	}
	for _, r := range rows {
		if err := em.Emit(r); err != nil {
			t.Fatal(err)
		}
	}
	buf.WriteString("stray output line\n")
	got, err := ReadResults(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rows) {
		t.Fatalf("read %d results, want %d", len(got), len(rows))
	}
	for i := range rows {
		if got[i].Name != rows[i].Name || got[i].Metric != rows[i].Metric || got[i].Value != rows[i].Value {
			t.Errorf("result %d = %+v, want %+v", i, got[i], rows[i])
		}
	}

	var table bytes.Buffer
	if err := WriteTable(&table, got); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(table.String()), "\n")
	wantFields := [][]string{
		{"BENCH", "MEASUREMENT", "METRIC", "STEAD", "BASELINE", "RATIO", "TARGET", "MET"},
		{"raft", "sequential commits (1 client)", "throughput", "512 commits/s", "680 commits/s", "75.3 %", "≥ 70 % of baseline", "yes"},
		{"raft", "sequential commits (1 client)", "p99 latency", "7497 µs", "6059 µs", "124 %", "-", "-"},
		{"placement", "1000 agents", "placements committed per second", "110 /s", "-", "-", "≥ 3750 /s", "no"},
	}
	if len(lines) != len(wantFields)+1 || lines[len(lines)-1] != "1 of 2 targets met" {
		t.Fatalf("table:\n%s", table.String())
	}
	for i, want := range wantFields {
		for _, cell := range want {
			if !strings.Contains(lines[i], cell) {
				t.Errorf("table line %d = %q, missing %q", i, lines[i], cell)
			}
		}
	}

	var md bytes.Buffer
	info := RunInfo{Started: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC), Duration: 90 * time.Second, Mode: "quick",
		Commit: "abc1234", Go: "go1.26", Machine: Machine{Cores: 2, CPU: "AMD EPYC", MemTotal: 24 << 30, Kernel: "6.1"}}
	if err := WriteMarkdown(&md, info, got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- Date: 2026-11-21 10:00 UTC (run took 1m30s)",
		"- Machine: 2 cores (AMD EPYC), 24.0 GiB memory, Linux 6.1",
		"- Targets met: 1 of 2",
		"| raft | sequential commits (1 client) | throughput [1] | 512 commits/s | 680 commits/s | 75.3 % | ≥ 70 % of baseline | yes |",
		"| placement | 1000 agents | placements committed per second | 110 /s | - | - | ≥ 3750 /s | no |",
		"- raft: bare hashicorp/raft",
		"1. sequential commits (1 client), throughput: best of 3",
	} {
		if !strings.Contains(md.String(), want+"\n") {
			t.Errorf("RESULTS.md lacks line %q:\n%s", want, md.String())
		}
	}
}

func TestReadMemory(t *testing.T) {
	m, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS == 0 || m.Peak < m.RSS {
		t.Errorf("memory of this process = %+v, want 0 < RSS ≤ peak", m)
	}
	if _, err := ReadMemory(-1); err == nil {
		t.Error("memory of process -1: no error")
	}
}

func TestCPUTime(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel has counted a tick more, or give up.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
		now, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now > before {
			return
		}
	}
	t.Errorf("cpu time of this process stayed %v while it ran for 10s (%d)", before, x)
}

func TestRunAdd(t *testing.T) {
	a := Run{Ops: 10, Errors: 1, Elapsed: time.Second, Latencies: []time.Duration{1, 2}, CPU: 3, CPUEach: []time.Duration{1, 2}}
	a.Add(Run{Ops: 30, Elapsed: time.Second, Latencies: []time.Duration{3}, CPU: 6, CPUEach: []time.Duration{1, 2, 3}})
	if a.Ops != 40 || a.Errors != 1 || a.Elapsed != 2*time.Second || len(a.Latencies) != 3 || a.CPU != 9 {
		t.Errorf("sum = %+v", a)
	}
	if want := []time.Duration{2, 4, 3}; len(a.CPUEach) != 3 || a.CPUEach[0] != want[0] || a.CPUEach[1] != want[1] || a.CPUEach[2] != want[2] {
		t.Errorf("CPUEach = %v, want %v", a.CPUEach, want)
	}
	if got := a.PerSecond(); got != 20 {
		t.Errorf("PerSecond = %v, want 20", got)
	}
}
