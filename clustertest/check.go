package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// JournalReport is what CheckJournals found in the journals of a workload.
type JournalReport struct {
	// Violations break C1 (volumes.CheckJournal's rules, per ordinal).
	Violations []string
	// Excused are the violations CheckJournal reports for two sequences
	// of writes that follow each other without overlapping:
	//   - restarts: a new process of the same incarnation (node and
	//     generation) takes over from one that never writes again, as
	//     when the agent restarts a container that exited or was killed;
	//     the volume stays attached, so no record comes between them;
	//   - with volumes that are not fenced (hostPath), handovers to a
	//     higher generation from a writer that never writes again, which
	//     lack the unmount or fence record such a volume never gets.
	// Whether the two processes ever lived at the same time is
	// CheckSamples' question.
	Excused []string
	// Writes and Rejects count the records per ordinal.
	Writes, Rejects map[int]int
}

// writeKey is one incarnation of an ordinal: a node and a generation.
// (The pid of a journal record is the process's id in its container, which
// the sampler cannot see.)
type writeKey struct {
	node string
	gen  uint64
}

// parseJournal decodes a journal's records by line (index 0 is line 1);
// a line that does not decode is a zero Record.
func parseJournal(j []byte) []volumes.Record {
	var out []volumes.Record
	sc := bufio.NewScanner(bytes.NewReader(j))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var r volumes.Record
		json.Unmarshal(sc.Bytes(), &r)
		out = append(out, r)
	}
	return out
}

// CheckJournals applies C1 to every ordinal's journal and excuses the
// violations that JournalReport.Excused describes; fenced says whether
// the volumes get mount, unmount and fence records (claim volumes) or not
// (hostPath). It is pure.
func CheckJournals(journals map[int][]byte, fenced bool) JournalReport {
	rep := JournalReport{Writes: map[int]int{}, Rejects: map[int]int{}}
	ords := make([]int, 0, len(journals))
	for ord := range journals {
		ords = append(ords, ord)
	}
	sort.Ints(ords)
	for _, ord := range ords {
		recs := parseJournal(journals[ord])
		for _, r := range recs {
			switch r.Kind {
			case volumes.KindWrite:
				rep.Writes[ord]++
			case volumes.KindReject:
				rep.Rejects[ord]++
			}
		}
		for _, v := range volumes.CheckJournal(bytes.NewReader(journals[ord])) {
			msg := fmt.Sprintf("ordinal %d: %s", ord, v)
			if why, ok := excused(recs, v, fenced); ok {
				rep.Excused = append(rep.Excused, msg+": "+why)
				continue
			}
			rep.Violations = append(rep.Violations, msg)
		}
	}
	return rep
}

// excused says whether a violation is a restart within an incarnation or
// (unfenced) a handover, and why.
func excused(recs []volumes.Record, v volumes.Violation, fenced bool) (string, bool) {
	if v.Line < 1 || v.Line > len(recs) {
		return "", false
	}
	cur := recs[v.Line-1]
	switch v.Rule {
	case volumes.RuleOneWriterPerGen:
		if sequentialRestarts(recs, cur.Gen) {
			return fmt.Sprintf("restart of %s generation %d", cur.Node, cur.Gen), true
		}
	case volumes.RuleNoInterleaving:
		prev := lastWriteBefore(recs, v.Line)
		if prev < 0 || writesAfter(recs, recs[prev], v.Line) {
			return "", false
		}
		p := recs[prev]
		switch {
		case p.Gen == cur.Gen && p.Node == cur.Node && sequentialRestarts(recs, cur.Gen):
			return fmt.Sprintf("restart of %s generation %d", cur.Node, cur.Gen), true
		case !fenced && cur.Gen > p.Gen:
			return fmt.Sprintf("clean handover from %s generation %d to %s generation %d", p.Node, p.Gen, cur.Node, cur.Gen), true
		}
	}
	return "", false
}

// lastWriteBefore is the index of the last write before line (1-based),
// or -1.
func lastWriteBefore(recs []volumes.Record, line int) int {
	for i := line - 2; i >= 0; i-- {
		if recs[i].Kind == volumes.KindWrite {
			return i
		}
	}
	return -1
}

// writesAfter reports whether w's process writes at or after line.
func writesAfter(recs []volumes.Record, w volumes.Record, line int) bool {
	for _, r := range recs[line-1:] {
		if r.Kind == volumes.KindWrite && r.Node == w.Node && r.PID == w.PID {
			return true
		}
	}
	return false
}

// sequentialRestarts reports whether every write of generation gen comes
// from one node, by processes whose writes follow each other without
// overlapping (each stops before the next starts).
func sequentialRestarts(recs []volumes.Record, gen uint64) bool {
	type span struct{ first, last int }
	var node string
	spans := map[int]*span{}
	var order []int
	for i, r := range recs {
		if r.Kind != volumes.KindWrite || r.Gen != gen {
			continue
		}
		if node == "" {
			node = r.Node
		}
		if r.Node != node {
			return false
		}
		if sp, ok := spans[r.PID]; ok {
			sp.last = i
		} else {
			spans[r.PID] = &span{i, i}
			order = append(order, r.PID)
		}
	}
	for i := 1; i < len(order); i++ {
		if spans[order[i-1]].last > spans[order[i]].first {
			return false
		}
	}
	return true
}

// CheckSamples cross-checks the samples with the journals (C1): no sample
// may show two live processes of one ordinal, unless (outside strict
// mode) the older has a lower generation and logged no write after the
// newer generation's first record (its fence, mount or first write).
// Paused processes count as live. Each pair of incarnations is reported
// once, with the first sample that showed it and how many did. It is pure.
func CheckSamples(samples []Sample, journals map[int][]byte, strict bool) []string {
	type pair struct {
		ord      int
		old, new writeKey
	}
	first := map[pair]int64{}
	count := map[pair]int{}
	why := map[pair]string{}
	var order []pair
	recs := map[int][]volumes.Record{}
	for ord, j := range journals {
		recs[ord] = parseJournal(j)
	}
	for _, s := range samples {
		byOrd := map[int][]Proc{}
		for _, p := range s.Procs {
			byOrd[p.Ord] = append(byOrd[p.Ord], p)
		}
		for ord, ps := range byOrd {
			if len(ps) < 2 {
				continue
			}
			sort.Slice(ps, func(i, j int) bool { return ps[i].Gen < ps[j].Gen })
			newest := ps[len(ps)-1]
			for _, o := range ps[:len(ps)-1] {
				k := pair{ord, writeKey{o.Node, o.Gen}, writeKey{newest.Node, newest.Gen}}
				var reason string
				switch {
				case strict:
					reason = "two live processes (strict mode)"
				case o.Gen == newest.Gen:
					reason = "two live processes of one generation"
				default:
					if line, ok := writesAfterFence(recs[ord], k.old, newest.Gen); ok {
						reason = fmt.Sprintf("the older wrote at line %d, after generation %d's first record", line, newest.Gen)
					}
				}
				if reason == "" {
					continue
				}
				if _, seen := first[k]; !seen {
					first[k] = s.Mono
					why[k] = reason
					order = append(order, k)
				}
				count[k]++
			}
		}
	}
	var out []string
	for _, k := range order {
		out = append(out, fmt.Sprintf("ordinal %d live on %s (generation %d) and on %s (generation %d) in %d samples from mono %d: %s",
			k.ord, k.old.node, k.old.gen, k.new.node, k.new.gen, count[k], first[k], why[k]))
	}
	return out
}

// writesAfterFence finds a write of incarnation old after the first record
// of generation gen, and returns its line.
func writesAfterFence(recs []volumes.Record, old writeKey, gen uint64) (int, bool) {
	fence := -1
	for i, r := range recs {
		if r.Gen == gen {
			fence = i
			break
		}
	}
	if fence < 0 {
		return 0, false
	}
	for i := fence + 1; i < len(recs); i++ {
		r := recs[i]
		if r.Kind == volumes.KindWrite && (writeKey{r.Node, r.Gen}) == old {
			return i + 1, true
		}
	}
	return 0, false
}

// CheckLiveness is C4 over one sample: each ordinal below replicas has
// exactly one live process, of its pod's node and generation (the highest
// assignment), and no other ordinal runs. pods are the set's pods. It is
// pure.
func CheckLiveness(set string, replicas int, pods []*corev1.Pod, s Sample) []string {
	var out []string
	byName := map[string]*corev1.Pod{}
	for _, p := range pods {
		byName[p.Name] = p
	}
	byOrd := map[int][]Proc{}
	for _, p := range s.Procs {
		byOrd[p.Ord] = append(byOrd[p.Ord], p)
	}
	for ord := range replicas {
		name := api.ReplicaName(set, ord)
		pod := byName[name]
		procs := byOrd[ord]
		switch {
		case pod == nil:
			out = append(out, fmt.Sprintf("%s: no pod", name))
		case pod.Spec.NodeName == "":
			out = append(out, fmt.Sprintf("%s: not bound to a node", name))
		case len(procs) != 1:
			out = append(out, fmt.Sprintf("%s: %d live processes %s, want 1 on %s generation %d", name, len(procs), procsString(procs), pod.Spec.NodeName, generationOf(pod)))
		case procs[0].Node != pod.Spec.NodeName || procs[0].Gen != generationOf(pod):
			out = append(out, fmt.Sprintf("%s: runs on %s generation %d, bound to %s generation %d", name, procs[0].Node, procs[0].Gen, pod.Spec.NodeName, generationOf(pod)))
		}
		delete(byOrd, ord)
	}
	var extra []int
	for ord := range byOrd {
		extra = append(extra, ord)
	}
	sort.Ints(extra)
	for _, ord := range extra {
		out = append(out, fmt.Sprintf("ordinal %d is not desired but runs: %s", ord, procsString(byOrd[ord])))
	}
	return out
}

func procsString(ps []Proc) string {
	var s []string
	for _, p := range ps {
		st := ""
		if p.Stopped {
			st = ", stopped"
		}
		s = append(s, fmt.Sprintf("%s/gen %d/pid %d%s", p.Node, p.Gen, p.PID, st))
	}
	return "[" + strings.Join(s, " ") + "]"
}

// FSMHash is a server's state at its applied index.
type FSMHash struct {
	Server string
	Index  uint64
	SHA256 string
}

// CompareFSM is C3's state check: every server is at the same applied
// index with the same state hash. It is pure.
func CompareFSM(hashes []FSMHash) error {
	if len(hashes) == 0 {
		return fmt.Errorf("no server answered")
	}
	ref := hashes[0]
	for _, h := range hashes[1:] {
		if h.Index != ref.Index {
			return fmt.Errorf("%s is at index %d, %s at %d", h.Server, h.Index, ref.Server, ref.Index)
		}
		if h.SHA256 != ref.SHA256 {
			return fmt.Errorf("state at index %d differs: %s has %s, %s has %s", h.Index, h.Server, h.SHA256, ref.Server, ref.SHA256)
		}
	}
	return nil
}

// LogEntry is one Raft log entry as C3 compares it.
type LogEntry struct {
	Index, Term uint64
	Type        string
	// SHA256 of the entry's data.
	SHA256 string
}

// LogRange is what a server's log store holds.
type LogRange struct {
	Server  string
	Entries []LogEntry // in index order, without gaps
}

// CompareLogs is C3's Log Matching check: over the index range every log
// holds, every entry is identical on every server. It returns the
// mismatches (at most 10) and the range compared. It is pure.
func CompareLogs(logs []LogRange) (mismatches []string, from, to uint64) {
	if len(logs) < 2 {
		return nil, 0, 0
	}
	for i, l := range logs {
		if len(l.Entries) == 0 {
			return nil, 0, 0
		}
		lo, hi := l.Entries[0].Index, l.Entries[len(l.Entries)-1].Index
		if i == 0 || lo > from {
			from = lo
		}
		if i == 0 || hi < to {
			to = hi
		}
	}
	if from > to {
		return nil, from, to
	}
	at := func(l LogRange, idx uint64) LogEntry { return l.Entries[idx-l.Entries[0].Index] }
	ref := logs[0]
	for idx := from; idx <= to; idx++ {
		want := at(ref, idx)
		for _, l := range logs[1:] {
			if got := at(l, idx); got != want {
				mismatches = append(mismatches, fmt.Sprintf("index %d: %s has term %d %s %s, %s has term %d %s %s",
					idx, ref.Server, want.Term, want.Type, want.SHA256[:12], l.Server, got.Term, got.Type, got.SHA256[:12]))
				if len(mismatches) == 10 {
					return mismatches, from, to
				}
			}
		}
	}
	return mismatches, from, to
}

// electionWon matches hashicorp/raft's log line of a won election.
var electionWon = regexp.MustCompile(`election won: term=(\d+)`)

// ElectionsWon reads the servers' logs (server → its log) and returns, for
// every term, the servers that logged winning its election, sorted. It is
// pure.
func ElectionsWon(logs map[string]string) map[uint64][]string {
	out := map[uint64][]string{}
	for s, log := range logs {
		for _, m := range electionWon.FindAllStringSubmatch(log, -1) {
			term, err := strconv.ParseUint(m[1], 10, 64)
			if err != nil {
				continue
			}
			if !slices.Contains(out[term], s) {
				out[term] = append(out[term], s)
			}
		}
	}
	for _, servers := range out {
		sort.Strings(servers)
	}
	return out
}
