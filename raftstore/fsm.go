package raftstore

import (
	"context"
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

// FSM is the raft.BatchingFSM that holds the replicated state. Apply,
// ApplyBatch, Snapshot and Restore are called by Raft from one goroutine;
// View and WaitForIndex may be called from any goroutine at any time.
type FSM struct {
	cur        atomic.Pointer[state]
	dedupLimit int
	// requests finds the current state's remembered requests by ID; only
	// Raft's FSM goroutine uses it.
	requests requestIndex
	waiters  changeWaiters
}

// state is one immutable version of the FSM's contents. Nothing in it is
// modified after it is published; the next batch builds a new one.
type state struct {
	objects *iradix.Tree[Object]
	// requests are the remembered requests, oldest first.
	requests requestLog
	// idx are the objects' indexes for blocking queries.
	idx indexes
	// index is the log index of the last command applied.
	index uint64
	// next is closed when a newer state replaces this one.
	next chan struct{}
}

func emptyState() *state {
	return &state{
		objects: iradix.New[Object](),
		idx:     emptyIndexes(),
		next:    make(chan struct{}),
	}
}

// NewFSM returns an empty FSM.
func NewFSM() *FSM {
	f := &FSM{dedupLimit: DefaultDedupLimit, requests: requestIndex{}}
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

// Apply applies one committed log entry and returns a Result (nil for an
// entry that is not a command). It is ApplyBatch of that one entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies log entries Raft committed together, in order, and
// returns what Apply would have returned for each. The batch shares one
// transaction of each tree and is published once, at its last entry: an
// entry sees the effect of those before it exactly as if each had been
// applied alone, and a refused one changes nothing, but the trees' paths
// are copied once per batch instead of once per entry. It panics on an
// entry that does not decode: the log is corrupt, and carrying on would
// diverge from the other servers. After a panic the FSM is not to be used
// again; nothing of the batch was published.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	cur := f.cur.Load()
	b := newBatch(cur, f.requests, f.dedupLimit)
	out := make([]any, len(logs))
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			// Configuration changes change no state, and are not
			// counted as applied, as a non-batching FSM never sees them.
			continue
		}
		txns, several, err := decodeCommand(l.Data)
		if err != nil {
			panic(fmt.Sprintf("raftstore: corrupt log entry %d: %v", l.Index, err))
		}
		if !several {
			out[i] = b.apply(l.Index, txns[0], nil)
			continue
		}
		results := make([]Result, len(txns))
		changed := map[string]bool{}
		for j, txn := range txns {
			results[j] = b.apply(l.Index, txn, changed)
		}
		out[i] = results
	}
	if b.index == cur.index {
		return out
	}
	next, moved := b.commit()
	f.publish(next)
	if len(moved) > 0 {
		f.waiters.wake(moved)
	}
	return out
}

// decodeCommand decodes the transactions a command entry carries: one
// for cmdTxn and cmdBinTxn, and several (so reported) for cmdTxns and
// cmdBinTxns.
func decodeCommand(data []byte) (txns []Txn, several bool, err error) {
	if len(data) == 0 {
		return nil, false, fmt.Errorf("empty command")
	}
	switch data[0] {
	case cmdTxn:
		var txn Txn
		if err := json.Unmarshal(data[1:], &txn); err != nil {
			return nil, false, fmt.Errorf("decode transaction: %w", err)
		}
		return []Txn{txn}, false, nil
	case cmdTxns:
		if err := json.Unmarshal(data[1:], &txns); err != nil {
			return nil, false, fmt.Errorf("decode transactions: %w", err)
		}
		if len(txns) == 0 {
			return nil, false, fmt.Errorf("an entry of transactions holds none")
		}
		return txns, true, nil
	case cmdBinTxn:
		txn, err := decodeBinaryTxn(data[1:])
		if err != nil {
			return nil, false, fmt.Errorf("decode transaction: %w", err)
		}
		return []Txn{txn}, false, nil
	case cmdBinTxns:
		if txns, err = decodeBinaryTxns(data[1:]); err != nil {
			return nil, false, fmt.Errorf("decode transactions: %w", err)
		}
		if len(txns) == 0 {
			return nil, false, fmt.Errorf("an entry of transactions holds none")
		}
		return txns, true, nil
	default:
		return nil, false, fmt.Errorf("unknown command type %d (written by a newer stead; run the same version on every server)", data[0])
	}
}

// batch is the next state being built from a batch of entries.
type batch struct {
	objects *iradix.Txn[Object]
	idx     *indexTxn
	// requests is the next state's log of requests; ids, the FSM's index
	// of them, is changed in place.
	requests requestLog
	ids      requestIndex
	limit    int
	index    uint64
}

func newBatch(cur *state, ids requestIndex, limit int) *batch {
	return &batch{
		objects:  cur.objects.Txn(),
		idx:      cur.idx.txn(cur.index),
		requests: cur.requests,
		ids:      ids,
		limit:    limit,
		index:    cur.index,
	}
}

// apply applies txn at log index and returns its result. For a
// transaction of a cmdTxns entry, changed holds the keys of the objects
// the entry's transactions changed so far; apply adds txn's.
func (b *batch) apply(index uint64, txn Txn, changed map[string]bool) Result {
	b.index = index
	if txn.RequestID != "" {
		if rec, ok := b.ids[txn.RequestID]; ok {
			// A retry of a request that already applied: answer as the
			// first time, change nothing but the applied index.
			return rec.result()
		}
	}
	writes, terr := planOps(b.objects, index, txn.Ops, changed)
	if terr == nil {
		b.idx.index = index
		for _, w := range writes {
			if changed != nil {
				changed[string(w.key)] = true
			}
			if w.new == nil {
				b.objects.Delete(w.key)
			} else {
				b.objects.Insert(w.key, w.new)
			}
			b.idx.changed(w.kind, w.namespace, w.name, w.old, w.new)
		}
	}
	rec := requestRecord{Index: index, Err: terr}
	if txn.RequestID != "" {
		b.remember(txn.RequestID, rec)
	}
	return rec.result()
}

// remember records rec for id, forgetting the oldest records beyond the
// limit.
func (b *batch) remember(id string, rec requestRecord) {
	var dropped []requestEntry
	b.requests, dropped = b.requests.add(requestEntry{id: id, rec: rec}, b.limit)
	b.ids[id] = rec
	for _, e := range dropped {
		delete(b.ids, e.id)
	}
}

// commit returns the state the batch built and the change keys it moved.
func (b *batch) commit() (*state, map[string]bool) {
	st := &state{
		objects:  b.objects.CommitOnly(),
		requests: b.requests,
		idx:      b.idx.commit(),
		index:    b.index,
		next:     make(chan struct{}),
	}
	return st, b.idx.keys
}

// write is one object's change planned by planOps: new is nil for a
// delete, old nil for a create.
type write struct {
	kind            Kind
	namespace, name string
	key             []byte
	old, new        Object
}

// planOps checks ops in order against objects at log index and returns
// the writes they make, or the first failed precondition, in which case
// nothing is to be written. Each op sees the effect of the ops before it.
// An op may not change an object whose key is in taken, the objects
// earlier transactions of the same entry changed. objects is only read.
func planOps(objects *iradix.Txn[Object], index uint64, ops []Op, taken map[string]bool) ([]write, *TxnError) {
	version := strconv.FormatUint(index, 10)
	writes := make([]write, 0, len(ops))
	// planned holds what the ops so far wrote, by key: nil for deleted.
	var planned map[string]Object
	get := func(key []byte) (Object, bool) {
		if obj, ok := planned[string(key)]; ok {
			return obj, obj != nil
		}
		return objects.Get(key)
	}
	for _, op := range ops {
		if terr := checkOp(op); terr != nil {
			return nil, terr
		}
		key := objectKey(op.Kind, op.Namespace, op.Name)
		existing, exists := get(key)
		if op.Type == OpEnsure && exists {
			continue
		}
		if taken[string(key)] {
			return nil, txnErr(CodeConflict, op, "changed by another write committed in the same log entry")
		}
		if op.IfAbsent && exists {
			return nil, txnErr(CodeAlreadyExists, op, "object exists")
		}
		if !exists && (op.Type == OpDelete || op.IfVersion != 0) {
			return nil, txnErr(CodeNotFound, op, "object does not exist")
		}
		if op.IfVersion != 0 {
			if rv := existing.GetResourceVersion(); rv != strconv.FormatUint(op.IfVersion, 10) {
				return nil, txnErr(CodeConflict, op, "resourceVersion is %s, want %d", rv, op.IfVersion)
			}
		}
		w := write{kind: op.Kind, namespace: op.Namespace, name: op.Name, key: key}
		if exists {
			w.old = existing
		}
		if op.Type != OpDelete {
			obj, terr, err := decodeOpObject(op)
			if err != nil {
				panic(fmt.Sprintf("raftstore: corrupt log entry %d: %v", index, err))
			}
			if terr != nil {
				return nil, terr
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
			w.new = obj
		}
		if len(ops) > 1 {
			if planned == nil {
				planned = map[string]Object{}
			}
			planned[string(key)] = w.new
		}
		writes = append(writes, w)
	}
	return writes, nil
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
	f.requests = indexRequests(st.requests)
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
