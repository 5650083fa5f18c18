package raftstore_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// groupWrite is a write of concurrentWrites: the pod it put and the index
// it committed at.
type groupWrite struct {
	pod   string
	index uint64
}

// concurrentWrites applies, from several writers at once, puts of pods
// own-<round>-<i> (one each) and unconditional puts of pod "shared" (every
// third writer), and returns each write by request ID.
func concurrentWrites(t *testing.T, s *raftstore.Store, round, writers int) map[string]groupWrite {
	t.Helper()
	out := map[string]groupWrite{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("own-%d-%d", round, i)
			if i%3 == 0 {
				name = "shared"
			}
			id := fmt.Sprintf("r%d-w%d", round, i)
			idx, err := s.Apply(ctxFor(t, 20*time.Second), raftstore.Txn{RequestID: id, Ops: []raftstore.Op{
				ensure(t, namespace("default")), put(t, pod("default", name, "writer", id)),
			}})
			if err != nil {
				t.Errorf("write %s: %v", id, err)
			}
			mu.Lock()
			out[id] = groupWrite{pod: name, index: idx}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// indexes returns how many writes there are of pod "shared" (or of the
// others), and how many different indexes they got.
func indexes(writes map[string]groupWrite, shared bool) (n, distinct int) {
	seen := map[uint64]bool{}
	for _, w := range writes {
		if (w.pod == "shared") == shared {
			n++
			seen[w.index] = true
		}
	}
	return n, len(seen)
}

// The type bytes of the log entry formats (raftstore's cmdTxn, cmdTxns,
// cmdBinTxn, cmdBinTxns): the log's format is what other versions of
// stead read, so the test names the bytes themselves.
const (
	jsonTxn, jsonTxns     = 1, 2
	binaryTxn, binaryTxns = 3, 4
)

// TestGroupCommit: writes that arrive together at the leader share log
// entries once every server's record says it reads them, never before,
// and never two writes of one object; entries are in binary form once
// every server reads log version 3; every server applies them alike.
func TestGroupCommit(t *testing.T) {
	logs := &storedLogs{LogStore: boltLogs(t, "s1")}
	c := newCluster(t, 3, func(i int, cfg *raftstore.Config) {
		if i == 0 {
			cfg.LogStore = logs
		}
	})
	leader := c.servers[0]
	raftstoretest.WaitLeader(t, leader.store, 20*time.Second)
	for _, srv := range c.servers[1:] {
		if err := leader.store.AddVoter(ctxFor(t, 10*time.Second), srv.id, string(srv.trans.LocalAddr())); err != nil {
			t.Fatal(err)
		}
	}
	record := func(id string, version int) {
		srv := &api.Server{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: api.ServerSpec{RaftAddr: id + ".raft", HTTPAddr: id + ":80", LogVersion: version}}
		applyOps(t, leader.store, "record-"+id+fmt.Sprint(version), put(t, srv))
	}
	// s3 predates log version 2.
	record("s1", raftstore.LogVersion)
	record("s2", raftstore.LogVersion)
	record("s3", 0)

	const writers = 48
	from := logs.count()
	writes := concurrentWrites(t, leader.store, 0, writers)
	if _, n := indexes(writes, false); n != len(writes)-writers/3 {
		t.Fatalf("with s3 on log version 1, writes shared indexes: %v", writes)
	}
	if got := logs.since(from); slices.ContainsFunc(got, func(b byte) bool { return b != jsonTxn }) {
		t.Fatalf("with s3 on log version 1, the leader wrote entries of types %v, want only %d", got, jsonTxn)
	}

	// Once s3 reads a version and the leader has seen it (it looks once a
	// second), writes that arrive together share entries of that
	// version's format.
	round := 1
	for _, step := range []struct {
		version int
		// want are the entry types of the version; shared the one of
		// several writes.
		want   []byte
		shared byte
	}{
		{2, []byte{jsonTxn, jsonTxns}, jsonTxns},
		{raftstore.LogVersion, []byte{binaryTxn, binaryTxns}, binaryTxns},
	} {
		record("s3", step.version)
		from := logs.count()
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Contains(logs.since(from), step.shared) {
			if time.Now().After(deadline) {
				t.Fatalf("s3 on log version %d: no entry of type %d in %v", step.version, step.shared, logs.since(from))
			}
			writes := concurrentWrites(t, leader.store, round, writers)
			if n, d := indexes(writes, true); d != n {
				t.Fatalf("round %d: %d writes of pod shared committed at %d indexes: two shared an entry", round, n, d)
			}
			// Each pod holds its write, at the index the write got.
			v := leader.store.View()
			for id, w := range writes {
				p, ok := v.Get(raftstore.Pods, "default", w.pod)
				if w.pod != "shared" && (!ok || p.GetLabels()["writer"] != id || p.GetResourceVersion() != fmt.Sprint(w.index)) {
					t.Fatalf("round %d: pod %s = %v, want written by %s at %d", round, w.pod, p, id, w.index)
				}
			}
			round++
		}
		// Until the leader looked again, entries kept the older format;
		// from the first of the new one, every entry has it.
		got := logs.since(from)
		first := slices.IndexFunc(got, func(b byte) bool { return slices.Contains(step.want, b) })
		if i := slices.IndexFunc(got[first:], func(b byte) bool { return !slices.Contains(step.want, b) }); i >= 0 {
			t.Fatalf("s3 on log version %d: entry types %v: type %d after the first of %v", step.version, got, got[first+i], step.want)
		}
	}
	c.converge(leader)
}
