package volumes

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
)

// Kind is what a journal record says happened.
type Kind string

// Record kinds (RELIABILITY 6.2, C1). Agents write mount and unmount, the
// holder of the fence lock writes fence when it raises the marker, and the
// workload writes write and reject.
const (
	KindWrite   Kind = "write"
	KindMount   Kind = "mount"
	KindUnmount Kind = "unmount"
	KindFence   Kind = "fence"
	KindReject  Kind = "reject"
)

// Record is one line of a volume's journal, a JSON object in this field
// order: {"ord":1,"gen":G,"node":"a2","pid":P,"seq":n,"mono":t,"kind":"write"}.
type Record struct {
	Ord  int    `json:"ord"`  // ordinal of the pod the volume belongs to; -1 if unknown
	Gen  uint64 `json:"gen"`  // generation of the writer's assignment
	Node string `json:"node"` // node the writer runs on
	PID  int    `json:"pid"`  // writer's process id
	Seq  uint64 `json:"seq"`  // strictly increasing per (node, pid)
	Mono int64  `json:"mono"` // CLOCK_MONOTONIC nanoseconds on the writer's node
	Kind Kind   `json:"kind"`
}

// AppendRecord appends rec to the journal file f as one JSON line in a
// single write and syncs it. f must be open with O_APPEND, so that records
// of concurrent writers never mix.
func AppendRecord(f *os.File, rec Record) error {
	line, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("append journal record: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync journal: %w", err)
	}
	return nil
}

// Rule names a C1 assertion that a journal can break.
type Rule string

// The rules CheckJournal applies, in file order.
const (
	// RuleCorrupt: a line that is not a record.
	RuleCorrupt Rule = "corrupt"
	// RuleNoRegression: once a record of generation G appears, no later
	// write has a generation below G.
	RuleNoRegression Rule = "no-regression"
	// RuleNoInterleaving: when writes switch from one (node, pid) to
	// another, an unmount by the old writer's node of its generation or a
	// fence of the new writer's generation comes between them.
	RuleNoInterleaving Rule = "no-interleaving"
	// RuleOneWriterPerGen: all writes of one generation come from one
	// (node, pid).
	RuleOneWriterPerGen Rule = "one-writer-per-generation"
	// RuleIncreasingSeq: each (node, pid)'s seq strictly increases.
	RuleIncreasingSeq Rule = "increasing-seq"
	// RuleNoStaleAccept: no write or mount has a generation below an
	// earlier fence or mount (the marker would have refused it), and no
	// writer writes after it rejected.
	RuleNoStaleAccept Rule = "no-stale-accept"
)

// Violation is one broken rule at one line of a journal.
type Violation struct {
	Line   int // 1-based line number
	Rule   Rule
	Record Record // the offending record (zero for a corrupt line)
	Reason string
}

func (v Violation) String() string {
	return fmt.Sprintf("line %d: %s: %s", v.Line, v.Rule, v.Reason)
}

// writerID identifies one writing process.
type writerID struct {
	node string
	pid  int
}

func (w writerID) String() string { return w.node + "/" + strconv.Itoa(w.pid) }

// nodeGen is an unmount: which node released which generation.
type nodeGen struct {
	node string
	gen  uint64
}

// maxJournalLine bounds a journal line; a longer one is corruption.
const maxJournalLine = 64 << 10

// CheckJournal reads a volume's journal and returns every violation of
// RELIABILITY's C1 rules, in file order. It is pure: the same journal
// always gives the same answer.
func CheckJournal(r io.Reader) []Violation {
	var (
		out       []Violation
		maxGen    uint64 // highest generation of any record so far
		maxLine   int
		fenceGen  uint64 // highest generation of a fence or mount so far
		fenceLine int
		firstOf   = map[uint64]writerID{} // generation → its first writer
		lastSeq   = map[writerID]uint64{}
		rejected  = map[writerID]int{} // writer → line of its reject
		last      *writerID            // writer of the last write
		lastGen   uint64
		unmounts  = map[nodeGen]bool{} // unmounts since the last write
		fences    = map[uint64]bool{}  // fences since the last write
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxJournalLine)
	line := 0
	for sc.Scan() {
		line++
		var rec Record
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rec); err != nil {
			out = append(out, Violation{Line: line, Rule: RuleCorrupt, Reason: fmt.Sprintf("not a record: %v", err)})
			continue
		}
		switch rec.Kind {
		case KindWrite, KindMount, KindUnmount, KindFence, KindReject:
		default:
			out = append(out, Violation{Line: line, Rule: RuleCorrupt, Record: rec, Reason: fmt.Sprintf("unknown kind %q", rec.Kind)})
			continue
		}
		add := func(rule Rule, format string, args ...any) {
			out = append(out, Violation{Line: line, Rule: rule, Record: rec, Reason: fmt.Sprintf(format, args...)})
		}
		id := writerID{rec.Node, rec.PID}

		if prev, ok := lastSeq[id]; ok && rec.Seq <= prev {
			add(RuleIncreasingSeq, "writer %s: seq %d after seq %d", id, rec.Seq, prev)
		}
		lastSeq[id] = rec.Seq

		switch rec.Kind {
		case KindWrite:
			if rec.Gen < maxGen {
				add(RuleNoRegression, "write of generation %d after a record of generation %d (line %d)", rec.Gen, maxGen, maxLine)
			}
			if rec.Gen < fenceGen {
				add(RuleNoStaleAccept, "write of generation %d accepted after the volume was fenced at generation %d (line %d)", rec.Gen, fenceGen, fenceLine)
			}
			if at, ok := rejected[id]; ok {
				add(RuleNoStaleAccept, "writer %s writes after its reject (line %d)", id, at)
			}
			if first, ok := firstOf[rec.Gen]; ok && first != id {
				add(RuleOneWriterPerGen, "generation %d written by %s and by %s", rec.Gen, first, id)
			} else if !ok {
				firstOf[rec.Gen] = id
			}
			if last != nil && *last != id {
				released := unmounts[nodeGen{last.node, lastGen}] || fences[rec.Gen]
				if !released {
					add(RuleNoInterleaving, "writer %s (generation %d) follows %s (generation %d) with no unmount of %d on %s nor fence of %d between them",
						id, rec.Gen, *last, lastGen, lastGen, last.node, rec.Gen)
				}
			}
			last, lastGen = &id, rec.Gen
			clear(unmounts)
			clear(fences)
		case KindMount:
			if rec.Gen < fenceGen {
				add(RuleNoStaleAccept, "mount of generation %d accepted after the volume was fenced at generation %d (line %d)", rec.Gen, fenceGen, fenceLine)
			}
		case KindUnmount:
			unmounts[nodeGen{rec.Node, rec.Gen}] = true
		case KindFence:
			fences[rec.Gen] = true
		case KindReject:
			if _, ok := rejected[id]; !ok {
				rejected[id] = line
			}
		}

		if rec.Gen > maxGen {
			maxGen, maxLine = rec.Gen, line
		}
		if (rec.Kind == KindFence || rec.Kind == KindMount) && rec.Gen > fenceGen {
			fenceGen, fenceLine = rec.Gen, line
		}
	}
	if err := sc.Err(); err != nil {
		out = append(out, Violation{Line: line + 1, Rule: RuleCorrupt, Reason: fmt.Sprintf("unreadable: %v", err)})
	}
	return out
}
