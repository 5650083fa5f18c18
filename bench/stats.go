package bench

import (
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 < p ≤ 100) of samples by the
// nearest-rank method: the smallest sample that at least p % of the samples
// are less than or equal to. It sorts samples in place and returns 0 for
// none.
func Percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	slices.Sort(samples)
	rank := int(p / 100 * float64(len(samples)))
	if float64(rank) < p/100*float64(len(samples)) {
		rank++ // ceil
	}
	rank = min(max(rank, 1), len(samples))
	return samples[rank-1]
}

// Run is the outcome of one load phase: how many operations finished in how
// long, and the latency of each.
type Run struct {
	Ops       int
	Errors    int
	Elapsed   time.Duration
	Latencies []time.Duration
	// CPU is the CPU time the processes involved used meanwhile, when
	// measured, and CPUEach that of each of them.
	CPU     time.Duration
	CPUEach []time.Duration
}

// Add merges o into r, as if the two phases had run one after the other.
func (r *Run) Add(o Run) {
	r.Ops += o.Ops
	r.Errors += o.Errors
	r.Elapsed += o.Elapsed
	r.CPU += o.CPU
	if len(r.CPUEach) < len(o.CPUEach) {
		r.CPUEach = append(r.CPUEach, make([]time.Duration, len(o.CPUEach)-len(r.CPUEach))...)
	}
	for i, c := range o.CPUEach {
		r.CPUEach[i] += c
	}
	r.Latencies = append(r.Latencies, o.Latencies...)
}

// PerSecond returns the operations per second.
func (r Run) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// CPUPerOp returns the CPU time used per operation.
func (r Run) CPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Ops)
}

// Percentile returns the p-th percentile of the latencies.
func (r Run) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }
