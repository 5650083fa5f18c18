package raftstore

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
	corev1 "k8s.io/api/core/v1"
)

// indexes are what the state keeps beside its objects so that blocking
// queries wake only for changes that concern them: the pods bound to each
// node, and the log index at which each kind, and each node's set of pods,
// last changed. They are derived from the objects (a restore rebuilds
// them) and never part of a snapshot or of the state's hash.
type indexes struct {
	// byNode holds every pod under nodeKey(spec.nodeName, ns, name).
	byNode *iradix.Tree[Object]
	// changes maps kindChangeKey(kind) and nodeChangeKey(node) to the
	// index of the last change.
	changes *iradix.Tree[uint64]
	// floor is the index of the snapshot the state was restored from:
	// what changed up to it is unknown, so every change index is at
	// least floor.
	floor uint64
}

func emptyIndexes() indexes {
	return indexes{byNode: iradix.New[Object](), changes: iradix.New[uint64]()}
}

// buildIndexes derives the indexes of objects restored at index.
func buildIndexes(objects *iradix.Tree[Object], index uint64) indexes {
	idx := emptyIndexes()
	idx.floor = index
	txn := idx.byNode.Txn()
	it := objects.Root().Iterator()
	it.SeekPrefix(kindPrefix(Pods))
	for _, obj, ok := it.Next(); ok; _, obj, ok = it.Next() {
		txn.Insert(nodeKey(podNode(obj), obj.GetNamespace(), obj.GetName()), obj)
	}
	idx.byNode = txn.CommitOnly()
	return idx
}

func kindChangeKey(kind Kind) []byte   { return append([]byte("k\x00"), kind...) }
func nodeChangeKey(node string) []byte { return append([]byte("n\x00"), node...) }

func nodeKey(node, namespace, name string) []byte {
	k := make([]byte, 0, len(node)+len(namespace)+len(name)+2)
	k = append(k, node...)
	k = append(k, keySep)
	k = append(k, namespace...)
	k = append(k, keySep)
	return append(k, name...)
}

// podNode is the node a stored pod is bound to, "" for one not bound.
func podNode(obj Object) string {
	if pod, ok := obj.(*corev1.Pod); ok {
		return pod.Spec.NodeName
	}
	return ""
}

// indexTxn updates indexes along with one transaction's objects.
type indexTxn struct {
	byNode  *iradix.Txn[Object]
	changes *iradix.Txn[uint64]
	index   uint64
	floor   uint64
}

func (idx indexes) txn(index uint64) *indexTxn {
	return &indexTxn{byNode: idx.byNode.Txn(), changes: idx.changes.Txn(), index: index, floor: idx.floor}
}

// changed records that the object of kind named by namespace and name
// changed from old to new (either nil when there was or is none).
func (t *indexTxn) changed(kind Kind, namespace, name string, old, new Object) {
	t.changes.Insert(kindChangeKey(kind), t.index)
	if kind != Pods {
		return
	}
	if old != nil {
		node := podNode(old)
		t.byNode.Delete(nodeKey(node, namespace, name))
		t.changes.Insert(nodeChangeKey(node), t.index)
	}
	if new != nil {
		node := podNode(new)
		t.byNode.Insert(nodeKey(node, namespace, name), new)
		t.changes.Insert(nodeChangeKey(node), t.index)
	}
}

func (t *indexTxn) commit() indexes {
	return indexes{byNode: t.byNode.CommitOnly(), changes: t.changes.CommitOnly(), floor: t.floor}
}

// LastChange returns the log index of the last change to an object of
// kind: at most Index, and 0 if none changed since the store began. A
// blocking query on kind waits until it passes the caller's index.
func (v *View) LastChange(kind Kind) uint64 {
	return v.lastChange(kindChangeKey(kind))
}

// LastPodChangeOn returns the log index of the last change to a pod bound
// to node, before or after the change: a pod bound, changed, unbound or
// deleted. A blocking query on the pods of one node waits until it passes
// the caller's index.
func (v *View) LastPodChangeOn(node string) uint64 {
	return v.lastChange(nodeChangeKey(node))
}

func (v *View) lastChange(key []byte) uint64 {
	i, _ := v.idx.changes.Get(key)
	return max(i, v.idx.floor)
}

// PodsOn returns the pods bound to node ("" for the pods bound to none),
// ordered by namespace and then name, without looking at any other pod.
// The objects are shared: do not modify them.
func (v *View) PodsOn(node string) []Object {
	prefix := append([]byte(node), keySep)
	var out []Object
	it := v.idx.byNode.Root().Iterator()
	it.SeekPrefix(prefix)
	for _, obj, ok := it.Next(); ok; _, obj, ok = it.Next() {
		out = append(out, obj)
	}
	return out
}
