// Command benchreport renders the result lines of a benchmark run: it
// prints one table and writes RESULTS.md.
//
//	benchreport -results results.jsonl -out bench/RESULTS.md -mode full -started UNIX
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/stead-io/stead/bench"
)

func main() {
	results := flag.String("results", "", "file of result lines")
	out := flag.String("out", "bench/RESULTS.md", "the Markdown report to write")
	mode := flag.String("mode", "full", "full or quick")
	started := flag.Int64("started", 0, "start of the run, in Unix seconds")
	commit := flag.String("commit", "unknown", "commit measured")
	loadBefore := flag.String("load-before", "", "load average at the start")
	loadAfter := flag.String("load-after", "", "load average at the end")
	flag.Parse()
	if err := run(*results, *out, *mode, *started, *commit, *loadBefore, *loadAfter); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(resultsPath, out, mode string, started int64, commit, loadBefore, loadAfter string) error {
	f, err := os.Open(resultsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	results, err := bench.ReadResults(f)
	if err != nil {
		return err
	}
	m, err := bench.ReadMachine()
	if err != nil {
		return err
	}
	info := bench.RunInfo{
		Started: time.Unix(started, 0), Mode: mode, Commit: commit, Go: runtime.Version(),
		Machine: m, LoadBefore: loadBefore, LoadAfter: loadAfter,
	}
	if started > 0 {
		info.Duration = time.Since(info.Started)
	}
	if err := bench.WriteTable(os.Stdout, results); err != nil {
		return err
	}
	md, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := bench.WriteMarkdown(md, info, results); err != nil {
		md.Close()
		return err
	}
	if err := md.Close(); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", out)
	return nil
}
