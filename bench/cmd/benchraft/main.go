// Command benchraft measures small writes committed through Stead's HTTP
// API on a three-server cluster against a bare hashicorp/raft group of
// three with a no-op FSM, both on loopback in the same run: commits per
// second and latency, first from one client writing sequentially, then from
// many at once. It prints bench.Result lines on standard output.
//
//	benchraft -stead bin/stead -dir /tmp/b [-duration 5s -rounds 3 -clients 64]
//
// Both groups run as three processes with fsync on every log write. The
// baseline's leader process also runs its load, calling raft.Apply; Stead's
// load comes from this process over HTTP to the leader's API, each write a
// PUT of an Event that the server commits in one transaction; each client
// writes on a connection of its own. Writes ask for a minimal answer
// ("Prefer: return=minimal"), as Stead's agent does for the events and
// reports it sends; a second Stead load takes the stored object back in
// each answer, as kubectl does, and is reported beside it.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/bench"
	"github.com/stead-io/stead/raftstore"
)

const benchName = "raft"

// minRatio is the goal: Stead commits at least this share of what the bare
// library commits.
const minRatio = 0.70

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bare-node" {
		if err := runBareNode(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "benchraft:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	flag.StringVar(&o.stead, "stead", "bin/stead", "the stead binary")
	flag.StringVar(&o.dir, "dir", "", "work directory (default: a new temporary one)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of one measured round")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each phase, Stead's and the baseline's alternating; the best counts")
	flag.IntVar(&o.clients, "clients", 64, "clients of the concurrent phase")
	flag.StringVar(&o.benchserver, "benchserver", "", "run Stead as this benchserver binary (the same parts as stead server, with profiling) instead of -stead")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "with -benchserver, write CPU profiles of Stead's servers during the first concurrent round: the leader's to this file, each follower's beside it with the suffix .follower1, .follower2")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchraft:", err)
		os.Exit(1)
	}
}

type options struct {
	stead    string
	dir      string
	duration time.Duration
	rounds   int
	clients  int
	// benchserver and cpuprofile are for finding where Stead's time goes.
	benchserver, cpuprofile string
}

func run(o options) error {
	if o.dir == "" {
		d, err := os.MkdirTemp("", "benchraft-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	progress("starting the baseline group")
	bare, err := startBareGroup(ctx, filepath.Join(o.dir, "bare"))
	if err != nil {
		return err
	}
	defer bare.stop()

	progress("starting a Stead cluster")
	cfg := bench.ClusterConfig{
		Command: []string{o.stead, "server"},
		// One client process sends every write from one address, which
		// the per-address rate limit is meant to stop; it measures
		// commits, not that limit.
		Args:    []string{"--api-rate-limit", "0"},
		Dir:     filepath.Join(o.dir, "stead"),
		Servers: 3,
	}
	if o.benchserver != "" {
		cfg.Command, cfg.Args, cfg.ExtraHTTP = []string{o.benchserver}, nil, "--pprof-addr"
	}
	cluster, err := bench.StartCluster(ctx, cfg)
	if err != nil {
		return err
	}
	defer cluster.Stop()
	stead := newSteadWriter(cluster.Leader(), o.clients, true)
	defer stead.close()
	steadFull := newSteadWriter(cluster.Leader(), o.clients, false)
	defer steadFull.close()

	payload, err := steadSizedPayload()
	if err != nil {
		return err
	}
	bareOp := func(_, _ int) error {
		return bare.leader.raft.Apply(payload, 10*time.Second).Error()
	}

	// Warm both up: connections, caches, the first snapshot threshold far away.
	load(1, time.Second, bareOp)
	load(1, time.Second, stead.write)
	load(1, time.Second, steadFull.write)

	// CPU time counts every process of a group and this one, which runs
	// the baseline's load or Stead's clients.
	barePIDs := []int{os.Getpid()}
	for _, p := range bare.followers {
		barePIDs = append(barePIDs, p.PID())
	}
	steadPIDs := []int{os.Getpid()}
	for _, s := range cluster.Servers {
		steadPIDs = append(steadPIDs, s.Proc.PID())
	}

	em := bench.NewEmitter(os.Stdout)
	phases := []struct {
		name    string
		clients int
	}{
		{"sequential commits (1 client)", 1},
		{fmt.Sprintf("concurrent commits (%d clients)", o.clients), o.clients},
	}
	for _, ph := range phases {
		var bs, ss, fs []bench.Run
		for r := range o.rounds {
			progress("%s, round %d/%d: baseline", ph.name, r+1, o.rounds)
			bs = append(bs, load(ph.clients, o.duration, bareOp, barePIDs...))
			// Stead's two loads take turns going first, so that neither
			// always runs right after the baseline.
			full := func() {
				progress("%s, round %d/%d: Stead, full answers", ph.name, r+1, o.rounds)
				fs = append(fs, load(ph.clients, o.duration, steadFull.write, steadPIDs...))
			}
			if r%2 == 1 {
				full()
			}
			progress("%s, round %d/%d: Stead", ph.name, r+1, o.rounds)
			profiled := make(chan error, len(cluster.Servers))
			profiles := 0
			if o.cpuprofile != "" && o.benchserver != "" && ph.clients > 1 && r == 0 {
				for i, s := range cluster.Servers {
					path := o.cpuprofile
					if i > 0 {
						path += fmt.Sprintf(".follower%d", i)
					}
					profiles++
					go func() { profiled <- bench.CPUProfile(ctx, s.ExtraAddr, path, o.duration) }()
				}
			}
			ss = append(ss, load(ph.clients, o.duration, stead.write, steadPIDs...))
			for range profiles {
				if err := <-profiled; err != nil {
					progress("%v", err)
				}
			}
			if r%2 == 0 {
				full()
			}
		}
		b, s, f := best(bs), best(ss), best(fs)
		progress("%s: baseline %.0f/s, Stead %.0f/s, with full answers %.0f/s", ph.name, b.PerSecond(), s.PerSecond(), f.PerSecond())
		const baseName = "bare hashicorp/raft"
		note := fmt.Sprintf("best of %d alternating rounds of %s: Stead %s, baseline %s; baseline entry %d bytes",
			o.rounds, o.duration, rates(ss), rates(bs), len(payload))
		if errs := failed(ss) + failed(fs) + failed(bs); errs > 0 {
			note += fmt.Sprintf("; failed writes: Stead %d, with full answers %d, baseline %d", failed(ss), failed(fs), failed(bs))
		}
		rows := []bench.Result{
			bench.NewResult(benchName, ph.name, "throughput", s.PerSecond(), "commits/s").
				Against(baseName, b.PerSecond()).Want(bench.AtLeastRatio(minRatio)).WithNote("%s", note),
			bench.NewResult(benchName, ph.name, "p50 latency", bench.Micros(s.Percentile(50)), "µs").
				Against(baseName, bench.Micros(b.Percentile(50))),
			bench.NewResult(benchName, ph.name, "p99 latency", bench.Micros(s.Percentile(99)), "µs").
				Against(baseName, bench.Micros(b.Percentile(99))).WithNote("of the best round"),
			bench.NewResult(benchName, ph.name, "CPU time per commit", bench.Micros(s.CPUPerOp()), "µs").
				Against(baseName, bench.Micros(b.CPUPerOp())).
				WithNote("all three servers and the client process, in the best round; %.2f of %d cores busy for Stead, %.2f for the baseline; "+
					"per commit, Stead: client %s, leader %s, followers %s; baseline: leader with its load %s, followers %s",
					s.CPU.Seconds()/s.Elapsed.Seconds(), runtime.NumCPU(), b.CPU.Seconds()/b.Elapsed.Seconds(),
					perOp(s, 0), perOp(s, 1), perOp(s, 2, 3), perOp(b, 0), perOp(b, 1, 2)),
			bench.NewResult(benchName, ph.name+", full answers", "throughput", f.PerSecond(), "commits/s").
				Against(baseName, b.PerSecond()).
				WithNote("each answer holds the stored object, as kubectl reads it; best of %d rounds: %s; p50 %.0fµs, p99 %.0fµs",
					o.rounds, rates(fs), bench.Micros(f.Percentile(50)), bench.Micros(f.Percentile(99))),
		}
		for _, r := range rows {
			if err := em.Emit(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// best returns the round with the most commits per second. Other work on
// the machine only ever takes throughput away, so the best round is the
// closest to what the system can do.
func best(runs []bench.Run) bench.Run {
	var b bench.Run
	for _, r := range runs {
		if r.PerSecond() > b.PerSecond() {
			b = r
		}
	}
	return b
}

// perOp returns the CPU time per operation of the processes at indexes
// which of r's CPUEach, as "12µs" or "12µs + 11µs".
func perOp(r bench.Run, which ...int) string {
	var parts []string
	for _, i := range which {
		if i < len(r.CPUEach) && r.Ops > 0 {
			parts = append(parts, fmt.Sprintf("%.0fµs", bench.Micros(r.CPUEach[i]/time.Duration(r.Ops))))
		}
	}
	return strings.Join(parts, " + ")
}

func rates(runs []bench.Run) string {
	var parts []string
	for _, r := range runs {
		parts = append(parts, fmt.Sprintf("%.0f/s", r.PerSecond()))
	}
	return strings.Join(parts, ", ")
}

func failed(runs []bench.Run) int {
	n := 0
	for _, r := range runs {
		n += r.Errors
	}
	return n
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchraft: "+format+"\n", args...)
}

// load runs op from the given number of clients for d, each client calling
// it again as soon as it returns, and measures each call and the CPU time
// the processes pids used meanwhile.
func load(clients int, d time.Duration, op func(client, seq int) error, pids ...int) bench.Run {
	cpu0, cpuErr := bench.CPUTimes(pids...)
	runs := make([]bench.Run, clients)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &runs[c]
			for i := 0; time.Now().Before(deadline); i++ {
				t0 := time.Now()
				err := op(c, i)
				took := time.Since(t0)
				if err != nil {
					r.Errors++
					once.Do(func() { firstErr = err })
					continue
				}
				r.Ops++
				r.Latencies = append(r.Latencies, took)
			}
		}()
	}
	wg.Wait()
	total := bench.Run{}
	for _, r := range runs {
		total.Add(r)
	}
	total.Elapsed = time.Since(start)
	if cpu1, err := bench.CPUTimes(pids...); err == nil && cpuErr == nil {
		for i := range cpu1 {
			total.CPUEach = append(total.CPUEach, cpu1[i]-cpu0[i])
			total.CPU += cpu1[i] - cpu0[i]
		}
	}
	if firstErr != nil {
		progress("%d writes failed, the first with: %v", total.Errors, firstErr)
	}
	return total
}

// bareGroup is the baseline: the leader in this process, two followers in
// their own.
type bareGroup struct {
	leader    *bareNode
	followers []*bench.Process
}

func startBareGroup(ctx context.Context, dir string) (*bareGroup, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := bench.FreeAddr()
	if err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(mkdir(dir), "n1.log"))
	if err != nil {
		return nil, err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "bare-n1", Level: hclog.Info, Output: logFile})
	g := &bareGroup{}
	if g.leader, err = openBare("n1", filepath.Join(dir, "n1"), addr, true, log); err != nil {
		return nil, err
	}
	err = bench.WaitFor(ctx, 20*time.Millisecond, "the baseline leader", func() (bool, error) {
		return g.leader.raft.State() == raft.Leader, nil
	})
	if err != nil {
		g.stop()
		return nil, err
	}
	for _, id := range []string{"n2", "n3"} {
		addr, err := bench.FreeAddr()
		if err != nil {
			g.stop()
			return nil, err
		}
		p, err := bench.Start("bare "+id, filepath.Join(dir, id+".log"),
			self, "bare-node", "-id", id, "-dir", filepath.Join(dir, id), "-raft-addr", addr)
		if err != nil {
			g.stop()
			return nil, err
		}
		g.followers = append(g.followers, p)
		if err := g.leader.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, time.Minute).Error(); err != nil {
			g.stop()
			return nil, fmt.Errorf("add baseline node %s: %w", id, err)
		}
	}
	return g, nil
}

func (g *bareGroup) stop() {
	for _, p := range g.followers {
		p.Stop(5 * time.Second)
	}
	if g.leader != nil {
		g.leader.close()
	}
}

func mkdir(dir string) string {
	os.MkdirAll(dir, 0o700)
	return dir
}

// steadWriter writes through Stead's API: client c overwrites Event w-c in
// namespace bench, so writers never conflict and the state stays small.
//
// Each client keeps one HTTP/1.1 connection of its own and writes its
// request and reads the response on it directly, as load generators such
// as wrk do: the servers share the machine's cores with this process, and
// net/http's client hands every request between three goroutines, which
// costs the servers CPU time that a client elsewhere would not.
type steadWriter struct {
	addr  string
	path  string
	conns []*clientConn
	// minimal asks for answers without the stored object.
	minimal bool
}

// clientConn is one client's connection, or nil fields before its first
// write and after an error.
type clientConn struct {
	c   net.Conn
	r   *bufio.Reader
	req []byte
}

func newSteadWriter(s *bench.Server, clients int, minimal bool) *steadWriter {
	conns := make([]*clientConn, clients)
	for i := range conns {
		conns[i] = &clientConn{}
	}
	return &steadWriter{addr: s.HTTPAddr, path: "/v1/namespaces/bench/events/", conns: conns, minimal: minimal}
}

// close closes the clients' connections.
func (w *steadWriter) close() {
	for _, cc := range w.conns {
		if cc.c != nil {
			cc.c.Close()
		}
	}
}

func (w *steadWriter) write(client, seq int) error {
	name := "w-" + strconv.Itoa(client)
	cc := w.conns[client]
	if cc.c == nil {
		c, err := net.DialTimeout("tcp", w.addr, 5*time.Second)
		if err != nil {
			return err
		}
		cc.c, cc.r = c, bufio.NewReader(c)
	}
	body := eventBody(name, seq, time.Now())
	cc.req = fmt.Appendf(cc.req[:0], "PUT %s%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n",
		w.path, name, w.addr, len(body))
	if w.minimal {
		cc.req = append(cc.req, "Prefer: "+api.PreferMinimal+"\r\n"...)
	}
	cc.req = append(cc.req, "\r\n"...)
	cc.req = append(cc.req, body...)
	keep, err := cc.roundTrip(name, w.minimal)
	if !keep {
		cc.c.Close()
		cc.c, cc.r = nil, nil
	}
	return err
}

// roundTrip sends cc's request and reads its response, which must be 200
// with the stored object, or 204 with none when minimal, and reports
// whether the connection can carry the next request.
func (cc *clientConn) roundTrip(name string, minimal bool) (keep bool, err error) {
	cc.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := cc.c.Write(cc.req); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(cc.r, nil)
	if err != nil {
		return false, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return false, err
	}
	want := http.StatusOK
	if minimal {
		want = http.StatusNoContent
	}
	if resp.StatusCode != want || (!minimal && len(body) == 0) {
		return !resp.Close, fmt.Errorf("PUT event %s: %s: %s", name, resp.Status, bytes.TrimSpace(body))
	}
	return !resp.Close, nil
}

// eventBody is the small write: an Event, as an agent or the controller
// would record one.
func eventBody(name string, seq int, now time.Time) []byte {
	ts := now.UTC().Format(time.RFC3339)
	return fmt.Appendf(nil, `{"apiVersion":"v1","kind":"Event","metadata":{"name":%q,"namespace":"bench"},`+
		`"involvedObject":{"kind":"Pod","namespace":"bench","name":%q},"reason":"Bench","message":"write %d",`+
		`"type":"Normal","count":%d,"firstTimestamp":%q,"lastTimestamp":%q}`, name, name, seq, seq+1, ts, ts)
}

// steadSizedPayload returns a baseline log entry as large as the one Stead
// commits for one write: the transaction that ensures the namespace and
// puts the event, as the API builds it.
func steadSizedPayload() ([]byte, error) {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench", UID: "00000000-0000-0000-0000-000000000000", CreationTimestamp: now, Generation: 1},
		Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}
	ns.APIVersion, ns.Kind = "v1", "Namespace"
	ev := &corev1.Event{}
	if err := json.Unmarshal(eventBody("w-0", 1000, now.Time), ev); err != nil {
		return nil, err
	}
	ev.UID, ev.CreationTimestamp = "00000000-0000-0000-0000-000000000000", now
	nsOp, err := raftstore.EnsureOp(raftstore.Namespaces, ns)
	if err != nil {
		return nil, err
	}
	evOp, err := raftstore.PutOp(raftstore.Events, ev)
	if err != nil {
		return nil, err
	}
	evOp.IfVersion = 1000
	data, err := raftstore.EncodeTxn(raftstore.Txn{RequestID: "0123456789abcdef0123456789abcdef/0", Ops: []raftstore.Op{nsOp, evOp}})
	if err != nil {
		return nil, errors.Join(errors.New("encode the baseline entry"), err)
	}
	return data, nil
}
