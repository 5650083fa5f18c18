// Package raftstoretest provides what other packages' tests need from
// the replicated store: a single-server Store on in-memory Raft that is
// already the leader, Views built from a list of objects, and a logger
// that writes to the test's log.
package raftstoretest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/stead-io/stead/raftstore"
)

// Logger returns a logger that writes to t.Log while the test runs and
// drops what comes after (Raft's goroutines may log while shutting down).
func Logger(t testing.TB) hclog.Logger {
	w := &testWriter{t: t}
	// Registered before anything the caller sets up, so it runs last.
	t.Cleanup(w.stop)
	return hclog.New(&hclog.LoggerOptions{
		Name:   strings.ReplaceAll(t.Name(), "/", "."),
		Output: w,
		Level:  hclog.Info,
	})
}

type testWriter struct {
	mu      sync.Mutex
	t       testing.TB
	stopped bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
}

// NewStore returns a single-server store on in-memory Raft (transport,
// log and snapshots), already the leader. It is closed when the test
// ends.
func NewStore(t testing.TB) *raftstore.Store {
	t.Helper()
	logger := Logger(t)
	addr, trans := raft.NewInmemTransport("")
	s, err := raftstore.Open(raftstore.Config{
		ID:                 "s1",
		ClusterID:          "test",
		Bootstrap:          true,
		Logger:             logger,
		Transport:          trans,
		LogStore:           raft.NewInmemStore(),
		StableStore:        raft.NewInmemStore(),
		SnapshotStore:      raft.NewInmemSnapshotStore(),
		HeartbeatTimeout:   50 * time.Millisecond,
		ElectionTimeout:    50 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("open store at %s: %v", addr, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
		trans.Close()
	})
	WaitLeader(t, s, 10*time.Second)
	return s
}

// WaitLeader waits until s is the leader and has applied everything
// committed before, failing t after timeout.
func WaitLeader(t testing.TB, s *raftstore.Store, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ch := s.LeaderCh()
	for leader := false; !leader; {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatalf("store %s closed while waiting for leadership", s.ID())
			}
			leader = v
		case <-ctx.Done():
			t.Fatalf("store %s not leader after %v", s.ID(), timeout)
		}
	}
	if err := s.Barrier(ctx); err != nil {
		t.Fatalf("barrier on %s: %v", s.ID(), err)
	}
}

var requestSeq atomic.Uint64

// RequestID returns a request ID no other call in this process returns.
func RequestID(t testing.TB) string {
	return fmt.Sprintf("%s-%d", t.Name(), requestSeq.Add(1))
}

// Apply applies ops as one transaction with a new request ID and returns
// its index, failing t on any error.
func Apply(t testing.TB, s *raftstore.Store, ops ...raftstore.Op) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idx, err := s.Apply(ctx, raftstore.Txn{RequestID: RequestID(t), Ops: ops})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return idx
}

// Put returns an OpPut of obj, whose kind comes from its Go type.
func Put(t testing.TB, obj raftstore.Object) raftstore.Op {
	t.Helper()
	kind, err := raftstore.KindOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	op, err := raftstore.PutOp(kind, obj)
	if err != nil {
		t.Fatal(err)
	}
	return op
}

// ViewOf returns a View that holds objs, as stored by one transaction
// at log index 1: TypeMeta filled and resourceVersion "1". It needs no
// Raft, for tests of code that only reads a View.
func ViewOf(t testing.TB, objs ...raftstore.Object) *raftstore.View {
	t.Helper()
	ops := make([]raftstore.Op, len(objs))
	for i, obj := range objs {
		ops[i] = Put(t, obj)
	}
	data, err := raftstore.EncodeTxn(raftstore.Txn{RequestID: "view", Ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	fsm := raftstore.NewFSM()
	res := fsm.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: data}).(raftstore.Result)
	if res.Err != nil {
		t.Fatalf("build view: %v", res.Err)
	}
	return fsm.View()
}
