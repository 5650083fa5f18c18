// Package raftstore is Stead's replicated state: hashicorp/raft with
// raft-boltdb on local disk, the finite state machine that holds every
// cluster object, its snapshots, and the read-only views that every other
// package reads from.
//
// It is the only package that knows about Raft. Readers take a [View], an
// immutable point-in-time snapshot of the state that is cheap to take and
// safe to share between goroutines. Writers submit a [Txn] of [Op]s
// through [Store.Apply] on the leader; the transaction commits atomically
// or not at all, and a domain failure (a stale resourceVersion, a missing
// or already existing object) comes back as a [*TxnError].
//
// Objects are the Kubernetes Go types (and [api.Server]) keyed by
// (kind, namespace, name). Every stored object has its TypeMeta filled and
// metadata.resourceVersion set to the Raft index of its last change.
//
// Objects handed out by a View are shared with every other reader and
// with the state itself: treat them as read-only and DeepCopy before
// changing anything.
//
// The state machine follows hashicorp/raft's FSM contract: Apply is
// deterministic (no clock, randomness, map-order dependence or I/O; the
// leader stamps times into the objects it submits), Snapshot only grabs a
// pointer, and Restore replaces everything or nothing. Every transaction
// carries a request ID and the FSM remembers the results of recent ones,
// so a client that lost track of a write (raft.ErrLeadershipLost, a
// timeout) retries it with the same ID without applying it twice.
//
// [api.Server]: github.com/stead-io/stead/api.Server
package raftstore
