package raftstore

import (
	"context"
	"reflect"
	"sync"

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
	// keys are the change keys the transaction moved, for waking their
	// waiters once it is published.
	keys map[string]bool
}

func (idx indexes) txn(index uint64) *indexTxn {
	return &indexTxn{byNode: idx.byNode.Txn(), changes: idx.changes.Txn(), index: index, floor: idx.floor, keys: map[string]bool{}}
}

// changed records that the object of kind named by namespace and name
// changed from old to new (either nil when there was or is none).
func (t *indexTxn) changed(kind Kind, namespace, name string, old, new Object) {
	t.moved(kindChangeKey(kind))
	if kind != Pods {
		return
	}
	if old != nil {
		node := podNode(old)
		t.byNode.Delete(nodeKey(node, namespace, name))
		t.moved(nodeChangeKey(node))
	}
	if new != nil {
		node := podNode(new)
		t.byNode.Insert(nodeKey(node, namespace, name), new)
		t.moved(nodeChangeKey(node))
	}
}

func (t *indexTxn) moved(key []byte) {
	t.changes.Insert(key, t.index)
	t.keys[string(key)] = true
}

func (t *indexTxn) commit() indexes {
	return indexes{byNode: t.byNode.CommitOnly(), changes: t.changes.CommitOnly(), floor: t.floor}
}

// ChangeKey names what a blocking query waits on: the objects of one kind
// (KindChanges) or the pods bound to one node (PodChangesOn).
type ChangeKey struct{ key string }

// KindChanges is the change key of every object of kind.
func KindChanges(kind Kind) ChangeKey { return ChangeKey{string(kindChangeKey(kind))} }

// PodChangesOn is the change key of the pods bound to node, before or
// after a change: a pod bound, changed, unbound or deleted.
func PodChangesOn(node string) ChangeKey { return ChangeKey{string(nodeChangeKey(node))} }

// Changed returns the log index of the last change k names: at most
// Index, and 0 if nothing it names changed since the store began (or
// the index of the snapshot the state was restored from). A blocking
// query waits until it passes the caller's index.
func (v *View) Changed(k ChangeKey) uint64 {
	i, _ := v.idx.changes.Get([]byte(k.key))
	return max(i, v.idx.floor)
}

// changeWaiters wakes the goroutines waiting on a change key when a
// transaction moves it, and no others: a commit that binds one pod wakes
// the watch of that pod's node, not every watch.
type changeWaiters struct {
	mu    sync.Mutex
	chans map[string]chan struct{}
}

// channel returns the channel closed at the next change of key.
func (w *changeWaiters) channel(key string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.chans == nil {
		w.chans = map[string]chan struct{}{}
	}
	ch, ok := w.chans[key]
	if !ok {
		ch = make(chan struct{})
		w.chans[key] = ch
	}
	return ch
}

// wake closes the channels of keys; all of them when keys is nil.
func (w *changeWaiters) wake(keys map[string]bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for key, ch := range w.chans {
		if keys == nil || keys[key] {
			close(ch)
			delete(w.chans, key)
		}
	}
}

// WaitForChange blocks until the change k names passes after, and returns
// its index. It returns ctx's error if ctx ends first. Unlike
// WaitForIndex, it sleeps through commits that do not move k.
func (f *FSM) WaitForChange(ctx context.Context, k ChangeKey, after uint64) (uint64, error) {
	for {
		// The channel is taken before the state is read, so a change
		// published in between closes it.
		ch := f.waiters.channel(k.key)
		if i := f.View().Changed(k); i > after {
			return i, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return f.View().Changed(k), ctx.Err()
		}
	}
}

// WaitForChanges is WaitForChange for several keys: it returns once any
// of them passes after, with the highest index among them.
func (f *FSM) WaitForChanges(ctx context.Context, keys []ChangeKey, after uint64) (uint64, error) {
	cases := make([]reflect.SelectCase, len(keys)+1)
	cases[0] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}
	for {
		for i, k := range keys {
			cases[i+1] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(f.waiters.channel(k.key))}
		}
		v := f.View()
		var last uint64
		for _, k := range keys {
			last = max(last, v.Changed(k))
		}
		if last > after {
			return last, nil
		}
		if chosen, _, _ := reflect.Select(cases); chosen == 0 {
			return last, ctx.Err()
		}
	}
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
