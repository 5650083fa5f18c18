package raftstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// remembered returns the request IDs f remembers, oldest first, and
// checks that its index of them agrees.
func remembered(f *FSM) []string {
	var ids []string
	for _, e := range f.cur.Load().requests.entries() {
		ids = append(ids, e.id)
		if rec, ok := f.requests[e.id]; !ok || rec != e.rec {
			panic("request log and index disagree on " + e.id)
		}
	}
	if len(f.requests) != len(ids) {
		panic("request log and index disagree")
	}
	return ids
}

func TestDedupEvictsOldestFirst(t *testing.T) {
	f := NewFSM()
	f.dedupLimit = 3
	index := uint64(0)
	apply := func(id, name string) Result {
		t.Helper()
		index++
		obj, _ := json.Marshal(map[string]any{"metadata": map[string]string{"namespace": "default", "name": name}})
		data, err := EncodeTxn(Txn{RequestID: id, Ops: []Op{{Type: OpPut, Kind: Pods, Namespace: "default", Name: name, Object: obj, IfAbsent: true}}})
		if err != nil {
			t.Fatal(err)
		}
		return f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}).(Result)
	}
	for _, id := range []string{"r1", "r2", "r3", "r4", "r5"} {
		if res := apply(id, "p-"+id); res.Err != nil {
			t.Fatalf("%s: %v", id, res.Err)
		}
	}
	if got, want := remembered(f), []string{"r3", "r4", "r5"}; !slices.Equal(got, want) {
		t.Fatalf("remembered %q, want %q", got, want)
	}

	// r3 is still remembered: its first result comes back.
	if res := apply("r3", "p-r3"); res.Err != nil || res.Index != 3 {
		t.Errorf("repeat of r3: %+v, want index 3 and no error", res)
	}
	// A repeat is not a new request: it does not move r3 to the back.
	if got, want := remembered(f), []string{"r3", "r4", "r5"}; !slices.Equal(got, want) {
		t.Errorf("after repeat of r3: remembered %q, want %q", got, want)
	}
	// r1 was forgotten: it applies again, and its create now fails.
	if res := apply("r1", "p-r1"); res.Index != 7 || res.Err == nil {
		t.Errorf("repeat of r1: %+v, want already exists at 7", res)
	}
	if got, want := remembered(f), []string{"r4", "r5", "r1"}; !slices.Equal(got, want) {
		t.Errorf("after repeat of r1: remembered %q, want %q", got, want)
	}

	// The table survives a snapshot, in the same order.
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, f.cur.Load()); err != nil {
		t.Fatal(err)
	}
	g := NewFSM()
	g.dedupLimit = 3
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got, want := remembered(g), []string{"r4", "r5", "r1"}; !slices.Equal(got, want) {
		t.Errorf("restored: remembered %q, want %q", got, want)
	}
	rec := g.requests["r1"]
	if rec.Index != 7 || rec.Err == nil || rec.Err.Code != CodeAlreadyExists {
		t.Errorf("restored r1 record %+v, want already exists at 7", rec)
	}
}

// TestRequestLogKeepsPublishedLogs: adding to a request log, across
// evictions and new buffers, never changes what an earlier log holds,
// and each log holds the last limit records, oldest first.
func TestRequestLogKeepsPublishedLogs(t *testing.T) {
	const limit = 5
	type kept struct {
		log  requestLog
		want []requestEntry
	}
	var logs []kept
	var l requestLog
	for i := 1; i <= 100; i++ {
		var dropped []requestEntry
		e := requestEntry{id: fmt.Sprintf("r%d", i), rec: requestRecord{Index: uint64(i)}}
		l, dropped = l.add(e, limit)
		if i > limit && (len(dropped) != 1 || dropped[0].rec.Index != uint64(i-limit)) {
			t.Fatalf("add %d dropped %v, want r%d", i, dropped, i-limit)
		}
		if got := l.entries(); len(got) != min(i, limit) || got[len(got)-1] != e || got[0].rec.Index != uint64(max(1, i-limit+1)) {
			t.Fatalf("after add %d: %v", i, got)
		}
		logs = append(logs, kept{l, slices.Clone(l.entries())})
	}
	for i, k := range logs {
		if !slices.Equal(k.log.entries(), k.want) {
			t.Errorf("log %d changed: %v, was %v", i+1, k.log.entries(), k.want)
		}
	}
}

// TestRestoreRefusesDisorderedRequests: a snapshot whose checksum holds
// but whose request table repeats an ID or is not oldest first is refused,
// since the table decides which retries apply.
func TestRestoreRefusesDisorderedRequests(t *testing.T) {
	for name, entries := range map[string][]requestEntry{
		"repeated ID":      {{id: "a", rec: requestRecord{Index: 1}}, {id: "a", rec: requestRecord{Index: 2}}},
		"not oldest first": {{id: "a", rec: requestRecord{Index: 2}}, {id: "b", rec: requestRecord{Index: 1}}},
	} {
		st := emptyState()
		st.index = 2
		st.requests.buf = entries
		var buf bytes.Buffer
		if err := writeSnapshot(&buf, st); err != nil {
			t.Fatal(err)
		}
		f := NewFSM()
		if err := f.Restore(io.NopCloser(&buf)); err == nil || !strings.Contains(err.Error(), "oldest first") {
			t.Errorf("%s: restore: %v, want a refusal", name, err)
		}
		if f.View().Index() != 0 || len(f.requests) != 0 {
			t.Errorf("%s: a refused restore changed the state", name)
		}
	}
}
