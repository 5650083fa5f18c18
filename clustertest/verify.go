package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/stead-io/stead/api"
)

// C1Result is the at-most-one verdict over a workload's journals and the
// sampler's record.
type C1Result struct {
	Journal JournalReport
	// Samples breaks the cross-check under the non-strict rule; Strict
	// lists every coexistence (the strict mode's failures).
	Samples, Strict []string
}

// Violations are the C1 failures outside strict mode.
func (r C1Result) Violations() []string {
	return append(append([]string(nil), r.Journal.Violations...), r.Samples...)
}

// CheckC1 reads the workload's journals and cross-checks them with every
// sample so far. Claim volumes get mount, unmount and fence records from
// the agents; the hostPath ones do not, so handovers are judged without
// them (CheckJournals).
func (c *Cluster) CheckC1(w Workload) (C1Result, error) {
	fenced := c.opts.Claims
	journals, err := c.Journals(w)
	if err != nil {
		return C1Result{}, err
	}
	samples := c.Sampler.Samples()
	res := C1Result{
		Journal: CheckJournals(journals, fenced),
		Samples: CheckSamples(samples, journals, false),
		Strict:  CheckSamples(samples, journals, true),
	}
	c.Logf("C1: writes %v, rejects %v, %d samples; %d violations, %d excused, %d sampler violations, %d strict-mode coexistences",
		res.Journal.Writes, res.Journal.Rejects, len(samples), len(res.Journal.Violations), len(res.Journal.Excused), len(res.Samples), len(res.Strict))
	// One line per ordinal and reason: a restart is excused at each of
	// its records.
	seen := map[string]int{}
	var order []string
	for _, e := range res.Journal.Excused {
		ord, _, _ := strings.Cut(e, ":")
		key := ord + ":" + e[strings.LastIndex(e, ": ")+1:]
		if seen[key] == 0 {
			order = append(order, key)
		}
		seen[key]++
	}
	for _, k := range order {
		c.Logf("C1 excused %d×: %s", seen[k], k)
	}
	for _, s := range res.Strict {
		c.Logf("C1 strict: %s", s)
	}
	return res, nil
}

// WaitFSMConverged is C3's state check: it waits (bounded) until every
// running server answers with the same applied index and state hash.
func (c *Cluster) WaitFSMConverged(within time.Duration) ([]FSMHash, error) {
	var hashes []FSMHash
	err := Eventually(within, func() error {
		hashes = hashes[:0]
		for _, s := range c.servers {
			if !c.Running(s) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h, err := c.Client(s).StateHash(ctx)
			cancel()
			if err != nil {
				return err
			}
			hashes = append(hashes, h)
		}
		return CompareFSM(hashes)
	})
	if err == nil {
		c.Logf("C3: every server at index %d with state %s", hashes[0].Index, hashes[0].SHA256[:16])
	}
	return hashes, err
}

// KillServers kills every server with SIGKILL, so that their log stores
// can be read: what a server acknowledged must be in its log after any
// crash (DESIGN invariant 4).
func (c *Cluster) KillServers() {
	for _, s := range c.servers {
		if err := c.proc(s).kill(); err != nil {
			c.t.Error(err)
		}
	}
	c.Logf("killed the servers")
}

// ReadLogs reads every server's Raft log store (servers must be stopped).
func (c *Cluster) ReadLogs() ([]LogRange, error) {
	var out []LogRange
	for _, s := range c.servers {
		if c.Running(s) {
			return nil, fmt.Errorf("read logs: %s still runs", s)
		}
		l, err := readLog(s, filepath.Join(c.Dir, s, "raft", "raft.db"))
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// checkBolt runs bbolt's consistency check over a database, read-only
// (C5 storage integrity).
func checkBolt(path string) error {
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer db.Close()
	var errs []error
	db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	if len(errs) > 0 {
		return fmt.Errorf("bbolt check of %s: %w", path, errors.Join(errs...))
	}
	return nil
}

// readLog checks a raft-boltdb log store and reads it, read-only.
func readLog(server, path string) (LogRange, error) {
	if err := checkBolt(path); err != nil {
		return LogRange{}, fmt.Errorf("%s: %w", server, err)
	}
	st, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
	if err != nil {
		return LogRange{}, fmt.Errorf("open %s of %s: %w", path, server, err)
	}
	defer st.Close()
	first, err := st.FirstIndex()
	if err != nil {
		return LogRange{}, err
	}
	last, err := st.LastIndex()
	if err != nil {
		return LogRange{}, err
	}
	lr := LogRange{Server: server}
	if first == 0 {
		return lr, nil
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := st.GetLog(i, &l); err != nil {
			return LogRange{}, fmt.Errorf("%s: log entry %d of %d..%d: %w", server, i, first, last, err)
		}
		sum := sha256.Sum256(l.Data)
		lr.Entries = append(lr.Entries, LogEntry{Index: l.Index, Term: l.Term, Type: l.Type.String(), SHA256: hex.EncodeToString(sum[:])})
	}
	return lr, nil
}

// CheckLogMatching kills the servers and compares their logs (C3 Log
// Matching). The cluster's servers stay down.
func (c *Cluster) CheckLogMatching() error {
	c.KillServers()
	logs, err := c.ReadLogs()
	if err != nil {
		return err
	}
	mism, from, to := CompareLogs(logs)
	var ranges []string
	for _, l := range logs {
		if len(l.Entries) > 0 {
			ranges = append(ranges, fmt.Sprintf("%s %d..%d", l.Server, l.Entries[0].Index, l.Entries[len(l.Entries)-1].Index))
		}
	}
	c.Logf("C3: logs %s (bbolt check passed); compared %d..%d, %d mismatches", strings.Join(ranges, ", "), from, to, len(mism))
	if len(mism) > 0 {
		return fmt.Errorf("raft logs diverge:\n%s", strings.Join(mism, "\n"))
	}
	return nil
}

// CheckLeadersPerTerm is C3's "one leader per term" over the servers'
// own logs: no two servers won the election of one term.
func (c *Cluster) CheckLeadersPerTerm() error {
	logs := map[string]string{}
	for _, s := range c.servers {
		b, err := os.ReadFile(c.logPath(s))
		if err != nil {
			return err
		}
		logs[s] = string(b)
	}
	won := ElectionsWon(logs)
	var bad []string
	for term, servers := range won {
		if len(servers) > 1 {
			bad = append(bad, fmt.Sprintf("term %d won by %v", term, servers))
		}
	}
	sort.Strings(bad)
	c.Logf("C3: %d elections won, by term: %v", len(won), won)
	if len(bad) > 0 {
		return fmt.Errorf("two leaders in one term: %s", strings.Join(bad, "; "))
	}
	return nil
}

// WaitLive is C4: it waits (bounded) until each of the workload's
// ordinals has exactly one live process, on its pod's node with its pod's
// generation, and its DNS name resolves to its pod's IP on every running
// agent. It returns the last shortfall on timeout.
func (c *Cluster) WaitLive(w Workload, within time.Duration) error {
	start := time.Now()
	err := Eventually(within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s := c.AnyServer()
		pods, err := c.Pods(ctx, s, w)
		if err != nil {
			return err
		}
		if err := podsReady(pods, w); err != nil {
			return err
		}
		if v := CheckLiveness(w.Name, w.Replicas, pods, c.Sampler.Now()); len(v) > 0 {
			return errors.New(strings.Join(v, "; "))
		}
		for _, p := range pods {
			want, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil {
				return fmt.Errorf("%s has no pod IP", p.Name)
			}
			name := api.PodFQDN(p.Name, w.Name, "default", api.DefaultClusterDomain)
			for _, a := range c.agents {
				if !c.Running(a) {
					continue
				}
				got, err := c.Resolve(ctx, a, name)
				if err != nil {
					return err
				}
				if got != want.String() {
					return fmt.Errorf("%s resolves to %q on %s, want %s", name, got, a, want)
				}
			}
		}
		return nil
	})
	if err == nil {
		c.Logf("C4: every ordinal of %s runs once, at its generation, and resolves on every agent (%v)", w.Name, time.Since(start).Round(100*time.Millisecond))
	}
	return err
}

// Resolve asks agent a's DNS server for name's A records from inside a's
// namespace, with dig, and returns them space-separated.
func (c *Cluster) Resolve(ctx context.Context, a, name string) (string, error) {
	out, err := c.ExecIn(ctx, a, "dig", "+short", "+time=2", "+tries=1", "-p", fmt.Sprint(DNSPort), "@"+c.Host(a).Addr.String(), name, "A")
	if err != nil {
		return "", err
	}
	return strings.Join(strings.Fields(out), " "), nil
}
