// Package bench holds what Stead's benchmark programs share: the result
// lines they print, the targets results are checked against, percentiles,
// and the server processes they start and measure.
//
// Every benchmark program (bench/cmd/bench*) writes one JSON Result per
// line to standard output and its progress to standard error; bench/run.sh
// collects the lines of all of them and bench/cmd/benchreport renders the
// table and bench/RESULTS.md. A new benchmark is a new program that prints
// Results, plus one line in run.sh.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// Result is one measured figure, with the baseline it is compared to when
// there is one. A claim of speed is only the ratio to a baseline measured in
// the same run on the same machine.
type Result struct {
	// Bench groups the rows of one benchmark: "raft", "placement", "dns".
	Bench string `json:"bench"`
	// Name says what was run: "sequential commits".
	Name string `json:"name"`
	// Metric says what was measured of it: "throughput", "p99 latency".
	Metric string `json:"metric"`
	// Value is Stead's figure, in Unit.
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	// Baseline is the same figure for the baseline, nil when the row has
	// none; BaselineName says what the baseline was.
	Baseline     *float64 `json:"baseline,omitempty"`
	BaselineName string   `json:"baselineName,omitempty"`
	// Ratio is Value / Baseline, nil without a baseline.
	Ratio *float64 `json:"ratio,omitempty"`
	// Target is the goal in words and Pass whether it was met; both are
	// empty for figures that are reported without a goal.
	Target string `json:"target,omitempty"`
	Pass   *bool  `json:"pass,omitempty"`
	// Note is a remark for RESULTS.md: parameters, errors seen, caveats.
	Note string `json:"note,omitempty"`
}

// NewResult returns a row without a baseline.
func NewResult(benchName, name, metric string, value float64, unit string) Result {
	return Result{Bench: benchName, Name: name, Metric: metric, Value: value, Unit: unit}
}

// Against sets the row's baseline and the ratio to it.
func (r Result) Against(baselineName string, baseline float64) Result {
	r.BaselineName = baselineName
	r.Baseline = &baseline
	if baseline != 0 {
		ratio := r.Value / baseline
		r.Ratio = &ratio
	}
	return r
}

// Want checks the row against t.
func (r Result) Want(t Target) Result {
	r.Target = t.String()
	pass := t.Met(r)
	r.Pass = &pass
	return r
}

// WithNote appends a remark to the row's note.
func (r Result) WithNote(format string, args ...any) Result {
	n := fmt.Sprintf(format, args...)
	if r.Note != "" {
		n = r.Note + "; " + n
	}
	r.Note = n
	return r
}

// Target is a goal for one row: its value, or its ratio to the baseline,
// at least Min or at most Max.
type Target struct {
	// OfRatio applies the bound to the ratio instead of the value.
	OfRatio bool
	// AtMost makes Bound an upper bound; otherwise it is a lower bound.
	AtMost bool
	Bound  float64
	// Unit is printed after the bound of a value target.
	Unit string
}

// AtLeastRatio is the goal ratio ≥ bound.
func AtLeastRatio(bound float64) Target { return Target{OfRatio: true, Bound: bound} }

// AtLeast is the goal value ≥ bound.
func AtLeast(bound float64, unit string) Target { return Target{Bound: bound, Unit: unit} }

// AtMost is the goal value ≤ bound.
func AtMost(bound float64, unit string) Target { return Target{AtMost: true, Bound: bound, Unit: unit} }

// Met reports whether r meets t. A ratio target without a ratio is not met.
func (t Target) Met(r Result) bool {
	v := r.Value
	if t.OfRatio {
		if r.Ratio == nil {
			return false
		}
		v = *r.Ratio
	}
	if math.IsNaN(v) {
		return false
	}
	if t.AtMost {
		return v <= t.Bound
	}
	return v >= t.Bound
}

// String renders t as the report shows it: "≥ 70 % of baseline", "≤ 500 µs".
func (t Target) String() string {
	op := "≥"
	if t.AtMost {
		op = "≤"
	}
	if t.OfRatio {
		return fmt.Sprintf("%s %s %% of baseline", op, FormatNumber(t.Bound*100))
	}
	return fmt.Sprintf("%s %s %s", op, FormatNumber(t.Bound), t.Unit)
}

// Emitter writes Results as JSON lines.
type Emitter struct {
	enc *json.Encoder
}

// NewEmitter returns an Emitter writing to w.
func NewEmitter(w io.Writer) *Emitter { return &Emitter{enc: json.NewEncoder(w)} }

// Emit writes one result line.
func (e *Emitter) Emit(r Result) error {
	if err := e.enc.Encode(r); err != nil {
		return fmt.Errorf("write result %s/%s/%s: %w", r.Bench, r.Name, r.Metric, err)
	}
	return nil
}

// Micros returns d in microseconds, the unit latency rows use.
func Micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// FormatNumber prints a figure with three significant digits at most for
// small numbers and no decimals for large ones: 0.123, 12.3, 1234.
func FormatNumber(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return fmt.Sprint(v)
	case a >= 100 || a == math.Trunc(a):
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// AppendResults appends rows as JSON lines to the file at path, creating
// it if needed: how benchmarks that run as Go benchmarks (go test -bench)
// hand their rows to bench/run.sh.
func AppendResults(path string, rows []Result) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	e := NewEmitter(f)
	for _, r := range rows {
		if err := e.Emit(r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// MetricName is the row as a unit for testing.B.ReportMetric, which takes
// no whitespace: its name, metric and unit joined by dashes.
func (r Result) MetricName() string {
	return strings.Join(strings.Fields(r.Name+"-"+r.Metric+"-"+r.Unit), "_")
}
