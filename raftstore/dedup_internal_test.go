package raftstore

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// remembered returns the request IDs f remembers, oldest first.
func remembered(f *FSM) []string {
	var ids []string
	st := f.cur.Load()
	it := st.order.Root().Iterator()
	for _, id, ok := it.Next(); ok; _, id, ok = it.Next() {
		ids = append(ids, id)
	}
	if st.requests.Len() != len(ids) {
		panic("request table and order disagree")
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
		data, err := encodeTxn(Txn{RequestID: id, Ops: []Op{{Type: OpPut, Kind: Pods, Namespace: "default", Name: name, Object: obj, IfAbsent: true}}})
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
	rec, _ := g.cur.Load().requests.Get([]byte("r1"))
	if rec.Index != 7 || rec.Err == nil || rec.Err.Code != CodeAlreadyExists {
		t.Errorf("restored r1 record %+v, want already exists at 7", rec)
	}
}
