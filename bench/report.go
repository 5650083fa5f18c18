package bench

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// ReadResults reads the JSON lines benchmark programs print. Lines that
// are not JSON objects (stray output) are skipped; a malformed object is
// an error.
func ReadResults(r io.Reader) ([]Result, error) {
	var out []Result
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var res Result
		if err := json.Unmarshal([]byte(line), &res); err != nil {
			return nil, fmt.Errorf("result line %d: %w", n, err)
		}
		out = append(out, res)
	}
	return out, sc.Err()
}

// RunInfo says when, how and on what a run measured.
type RunInfo struct {
	Started  time.Time
	Duration time.Duration
	// Mode is "full" or "quick".
	Mode    string
	Commit  string
	Go      string
	Machine Machine
	// LoadBefore and LoadAfter are /proc/loadavg's first three fields at
	// the start and end of the run: other work on the machine.
	LoadBefore, LoadAfter string
}

// Summary counts the rows that have a target and those that met it.
func Summary(results []Result) (met, targets int) {
	for _, r := range results {
		if r.Pass != nil {
			targets++
			if *r.Pass {
				met++
			}
		}
	}
	return met, targets
}

// row is a result as the tables print it.
type row struct {
	bench, name, metric, value, baseline, ratio, target, pass string
}

func rowOf(r Result) row {
	out := row{bench: r.Bench, name: r.Name, metric: r.Metric, value: withUnit(r.Value, r.Unit)}
	if r.Baseline != nil {
		out.baseline = withUnit(*r.Baseline, r.Unit)
	}
	if r.Ratio != nil {
		out.ratio = FormatNumber(*r.Ratio*100) + " %"
	}
	out.target = r.Target
	if r.Pass != nil {
		out.pass = "no"
		if *r.Pass {
			out.pass = "yes"
		}
	}
	return out
}

func withUnit(v float64, unit string) string {
	if unit == "" {
		return FormatNumber(v)
	}
	return FormatNumber(v) + " " + unit
}

// WriteTable prints the results as an aligned text table.
func WriteTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BENCH\tMEASUREMENT\tMETRIC\tSTEAD\tBASELINE\tRATIO\tTARGET\tMET")
	for _, r := range results {
		x := rowOf(r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.bench, x.name, x.metric, x.value, dash(x.baseline), dash(x.ratio), dash(x.target), dash(x.pass))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	met, targets := Summary(results)
	_, err := fmt.Fprintf(w, "%d of %d targets met\n", met, targets)
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteMarkdown writes RESULTS.md: the run, the machine, one table of
// every result, and the notes and baselines of each row.
func WriteMarkdown(w io.Writer, info RunInfo, results []Result) error {
	var b strings.Builder
	met, targets := Summary(results)
	b.WriteString("# Benchmark results\n\n")
	b.WriteString("Written by `bench/run.sh` (`make bench`). Every ratio compares Stead with a baseline measured in the same run on the same machine.\n\n")
	fmt.Fprintf(&b, "- Date: %s (run took %s)\n", info.Started.UTC().Format("2006-01-02 15:04 MST"), info.Duration.Round(time.Second))
	fmt.Fprintf(&b, "- Mode: %s\n", info.Mode)
	fmt.Fprintf(&b, "- Machine: %d cores (%s), %.1f GiB memory, Linux %s\n", info.Machine.Cores, info.Machine.CPU,
		float64(info.Machine.MemTotal)/(1<<30), info.Machine.Kernel)
	if info.LoadBefore != "" {
		fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before: %s, after: %s — other work shares the machine\n", info.LoadBefore, info.LoadAfter)
	}
	fmt.Fprintf(&b, "- Commit: %s, %s\n", info.Commit, info.Go)
	fmt.Fprintf(&b, "- Targets met: %d of %d\n\n", met, targets)

	b.WriteString("| Benchmark | Measurement | Metric | Stead | Baseline | Ratio | Target | Met |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---|---|\n")
	var notes []string
	for _, r := range results {
		x := rowOf(r)
		metric := x.metric
		if r.Note != "" {
			notes = append(notes, fmt.Sprintf("%d. %s, %s: %s", len(notes)+1, r.Name, r.Metric, r.Note))
			metric += fmt.Sprintf(" [%d]", len(notes))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", md(x.bench), md(x.name), md(metric),
			md(x.value), md(dash(x.baseline)), md(dash(x.ratio)), md(dash(x.target)), md(dash(x.pass)))
	}
	baselines := map[string]bool{}
	var names []string
	for _, r := range results {
		if r.BaselineName != "" && !baselines[r.Bench+"\x00"+r.BaselineName] {
			baselines[r.Bench+"\x00"+r.BaselineName] = true
			names = append(names, fmt.Sprintf("- %s: %s", r.Bench, r.BaselineName))
		}
	}
	if len(names) > 0 {
		b.WriteString("\nBaselines:\n\n" + strings.Join(names, "\n") + "\n")
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// md escapes a table cell.
func md(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
