package raftstore_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

// BenchmarkApplyBatch applies the entries an API write of an event
// makes (ensure its namespace, put the event) to an FSM, in batches of
// the sizes Raft hands over: one at a time, as on a lightly loaded
// server, and 32 at once, as under many concurrent writers.
func BenchmarkApplyBatch(b *testing.B) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	entry := func(index uint64, writer int) *raft.Log {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench", UID: "00000000-0000-0000-0000-000000000000", CreationTimestamp: now}}
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("w-%d", writer), Namespace: "bench", UID: "00000000-0000-0000-0000-000000000001", CreationTimestamp: now},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "bench", Name: fmt.Sprintf("w-%d", writer)},
			Reason:         "Bench", Message: fmt.Sprintf("write %d", index), Type: corev1.EventTypeNormal,
			Count: int32(index), FirstTimestamp: now, LastTimestamp: now,
		}
		nsOp, err := raftstore.EnsureOp(raftstore.Namespaces, ns)
		if err != nil {
			b.Fatal(err)
		}
		evOp, err := raftstore.PutOp(raftstore.Events, ev)
		if err != nil {
			b.Fatal(err)
		}
		data, err := raftstore.EncodeTxn(raftstore.Txn{RequestID: fmt.Sprintf("%032x/0", index), Ops: []raftstore.Op{nsOp, evOp}})
		if err != nil {
			b.Fatal(err)
		}
		return &raft.Log{Index: index, Type: raft.LogCommand, Data: data}
	}
	// Entries are made ahead, as Raft hands over decoded log entries;
	// only applying them is measured. A request ID comes round again
	// only once the FSM has forgotten it, so every entry applies.
	const ahead = 3 * raftstore.DefaultDedupLimit
	entries := make([]*raft.Log, ahead)
	for i := range entries {
		entries[i] = entry(uint64(i+1), i%64)
	}
	for _, size := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f := raftstore.NewFSM()
			next := uint64(ahead + 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += size {
				batch := make([]*raft.Log, 0, size)
				for j := 0; j < size; j++ {
					e := entries[(i+j)%ahead]
					batch = append(batch, &raft.Log{Index: next, Type: e.Type, Data: e.Data})
					next++
				}
				for _, r := range f.ApplyBatch(batch) {
					if err := r.(raftstore.Result).Err; err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
