package raftstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
	"github.com/hashicorp/raft"

	"github.com/stead-io/stead/api"
)

// DefaultDedupLimit is how many request IDs the FSM remembers. It must
// be the same on every server, since eviction is part of the replicated
// state.
const DefaultDedupLimit = 8192

// Result is what FSM.Apply returns for a command, and what the leader's
// raft.ApplyFuture.Response holds.
type Result struct {
	// Index is the log index at which the transaction applied; for a
	// repeated request ID, the index of its first application.
	Index uint64
	// Err is nil or a *TxnError; a failed transaction changed nothing.
	Err error
}

// FSM is the raft.FSM that holds the replicated state. Apply, Snapshot
// and Restore are called by Raft from one goroutine; View and
// WaitForIndex may be called from any goroutine at any time.
type FSM struct {
	cur        atomic.Pointer[state]
	dedupLimit int
	waiters    changeWaiters
}

// state is one immutable version of the FSM's contents. Nothing in it is
// modified after it is published; the next Apply builds a new one.
type state struct {
	objects *iradix.Tree[Object]
	// requests maps a request ID to the result of its transaction.
	requests *iradix.Tree[requestRecord]
	// order maps the log index of each remembered request (8 bytes, big
	// endian) to its ID, so the oldest is evicted first.
	order *iradix.Tree[string]
	// idx are the objects' indexes for blocking queries.
	idx indexes
	// index is the log index of the last command applied.
	index uint64
	// next is closed when a newer state replaces this one.
	next chan struct{}
}

// requestRecord is the remembered result of one request ID.
type requestRecord struct {
	Index uint64    `json:"index"`
	Err   *TxnError `json:"error,omitempty"`
}

func (r requestRecord) result() Result {
	if r.Err == nil {
		return Result{Index: r.Index}
	}
	return Result{Index: r.Index, Err: r.Err}
}

func emptyState() *state {
	return &state{
		objects:  iradix.New[Object](),
		requests: iradix.New[requestRecord](),
		order:    iradix.New[string](),
		idx:      emptyIndexes(),
		next:     make(chan struct{}),
	}
}

// NewFSM returns an empty FSM.
func NewFSM() *FSM {
	f := &FSM{dedupLimit: DefaultDedupLimit}
	f.cur.Store(emptyState())
	return f
}

// View returns the current state.
func (f *FSM) View() *View {
	st := f.cur.Load()
	return &View{objects: st.objects, idx: st.idx, index: st.index}
}

// WaitForIndex blocks until the applied index is greater than after, and
// returns it. It returns ctx's error if ctx ends first.
func (f *FSM) WaitForIndex(ctx context.Context, after uint64) (uint64, error) {
	for {
		st := f.cur.Load()
		if st.index > after {
			return st.index, nil
		}
		select {
		case <-st.next:
		case <-ctx.Done():
			return st.index, ctx.Err()
		}
	}
}

// publish makes st the current state and wakes everyone waiting on the
// one it replaces. Only the Raft FSM goroutine calls it.
func (f *FSM) publish(st *state) {
	old := f.cur.Load()
	f.cur.Store(st)
	close(old.next)
}

// Apply applies one committed log entry and returns a Result. It panics
// on an entry that does not decode: the log is corrupt, and carrying on
// would diverge from the other servers.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		// Only commands reach a non-batching FSM; nothing else changes state.
		return nil
	}
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: corrupt log entry %d: empty command", l.Index))
	}
	switch l.Data[0] {
	case cmdTxn:
		var txn Txn
		if err := json.Unmarshal(l.Data[1:], &txn); err != nil {
			panic(fmt.Sprintf("raftstore: corrupt log entry %d: decode transaction: %v", l.Index, err))
		}
		return f.applyTxn(l.Index, txn)
	default:
		panic(fmt.Sprintf("raftstore: corrupt log entry %d: unknown command type %d", l.Index, l.Data[0]))
	}
}

// applyTxn applies txn at log index and publishes the new state.
func (f *FSM) applyTxn(index uint64, txn Txn) Result {
	cur := f.cur.Load()
	next := &state{
		objects:  cur.objects,
		requests: cur.requests,
		order:    cur.order,
		idx:      cur.idx,
		index:    index,
		next:     make(chan struct{}),
	}
	if txn.RequestID != "" {
		if rec, ok := cur.requests.Get([]byte(txn.RequestID)); ok {
			// A retry of a request that already applied: answer as the
			// first time, change nothing but the applied index.
			f.publish(next)
			return rec.result()
		}
	}
	objects, idx, moved, terr := applyOps(cur.objects, cur.idx, index, txn.Ops)
	if terr == nil {
		next.objects, next.idx = objects, idx
	}
	rec := requestRecord{Index: index, Err: terr}
	if txn.RequestID != "" {
		next.requests, next.order = remember(cur.requests, cur.order, txn.RequestID, rec, f.dedupLimit)
	}
	f.publish(next)
	if len(moved) > 0 {
		f.waiters.wake(moved)
	}
	return rec.result()
}

// remember records rec for id, evicting the oldest records beyond limit.
func remember(requests *iradix.Tree[requestRecord], order *iradix.Tree[string], id string, rec requestRecord, limit int) (*iradix.Tree[requestRecord], *iradix.Tree[string]) {
	rt := requests.Txn()
	ot := order.Txn()
	rt.Insert([]byte(id), rec)
	ot.Insert(orderKey(rec.Index), id)
	// Each record has its own log index, so order holds one more entry.
	for n := order.Len() + 1; n > limit; n-- {
		key, oldest, _ := ot.Root().Minimum()
		ot.Delete(key)
		rt.Delete([]byte(oldest))
	}
	return rt.CommitOnly(), ot.CommitOnly()
}

func orderKey(index uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], index)
	return k[:]
}

// applyOps applies ops in order to objects at log index. Each op sees the
// effect of the ops before it. On the first failed precondition it
// returns the error and objects and their indexes are left as they were.
// It also returns the change keys the ops moved.
func applyOps(objects *iradix.Tree[Object], idx indexes, index uint64, ops []Op) (*iradix.Tree[Object], indexes, map[string]bool, *TxnError) {
	txn := objects.Txn()
	itxn := idx.txn(index)
	version := strconv.FormatUint(index, 10)
	for _, op := range ops {
		if terr := checkOp(op); terr != nil {
			return nil, idx, nil, terr
		}
		key := objectKey(op.Kind, op.Namespace, op.Name)
		existing, exists := txn.Get(key)
		if op.Type == OpEnsure && exists {
			continue
		}
		if op.IfAbsent && exists {
			return nil, idx, nil, txnErr(CodeAlreadyExists, op, "object exists")
		}
		if !exists && (op.Type == OpDelete || op.IfVersion != 0) {
			return nil, idx, nil, txnErr(CodeNotFound, op, "object does not exist")
		}
		if op.IfVersion != 0 {
			if rv := existing.GetResourceVersion(); rv != strconv.FormatUint(op.IfVersion, 10) {
				return nil, idx, nil, txnErr(CodeConflict, op, "resourceVersion is %s, want %d", rv, op.IfVersion)
			}
		}
		if op.Type == OpDelete {
			txn.Delete(key)
			itxn.changed(op.Kind, op.Namespace, op.Name, existing, nil)
			continue
		}
		obj, terr, err := decodeOpObject(op)
		if err != nil {
			panic(fmt.Sprintf("raftstore: corrupt log entry %d: %v", index, err))
		}
		if terr != nil {
			return nil, idx, nil, terr
		}
		setTypeMeta(op.Kind, obj)
		obj.SetResourceVersion(version)
		if op.StampGeneration {
			ann := obj.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[api.AnnotationGeneration] = version
			obj.SetAnnotations(ann)
		}
		txn.Insert(key, obj)
		itxn.changed(op.Kind, op.Namespace, op.Name, existing, obj)
	}
	return txn.CommitOnly(), itxn.commit(), itxn.keys, nil
}

// Snapshot returns the current state for Raft to persist. It only takes
// a pointer; Persist does the work while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{st: f.cur.Load()}, nil
}

// Restore replaces the whole state with the snapshot read from rc. If the
// snapshot is malformed or its checksum does not match, it returns an
// error and the state is unchanged.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	f.publish(st)
	// What changed is unknown: every waiter looks again.
	f.waiters.wake(nil)
	return nil
}

type fsmSnapshot struct {
	st *state
}

// Persist writes the snapshot to sink and closes it, or cancels it on
// error.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.st); err != nil {
		sink.Cancel()
		return fmt.Errorf("persist snapshot at index %d: %w", s.st.index, err)
	}
	return sink.Close()
}

// Release does nothing: the snapshot holds only immutable state.
func (s *fsmSnapshot) Release() {}
