package raftstore

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// View is a consistent, immutable snapshot of the replicated state as of
// one applied log index. Taking one is cheap (two words), it never
// changes, and it is safe for concurrent use.
//
// The objects a View returns are shared with every other reader and with
// the store itself. Never modify one: DeepCopy it first (obj.DeepCopy()
// or DeepCopyObject()) and change the copy.
type View struct {
	objects *iradix.Tree[Object]
	idx     indexes
	index   uint64
}

// Index returns the log index of the last command applied to this view's
// state. Every object's resourceVersion is at most Index.
func (v *View) Index() uint64 { return v.index }

// Len returns the number of objects in the view.
func (v *View) Len() int { return v.objects.Len() }

// Get returns the object of kind with that namespace and name (namespace
// "" for cluster-scoped kinds). The object is shared: do not modify it.
func (v *View) Get(kind Kind, namespace, name string) (Object, bool) {
	return v.objects.Get(objectKey(kind, namespace, name))
}

// List returns the objects of kind in namespace, or in every namespace
// when namespace is "", ordered by namespace and then name. The objects
// are shared: do not modify them.
func (v *View) List(kind Kind, namespace string) []Object {
	prefix := kindPrefix(kind)
	if namespace != "" {
		prefix = append(prefix, namespace...)
		prefix = append(prefix, keySep)
	}
	var out []Object
	it := v.objects.Root().Iterator()
	it.SeekPrefix(prefix)
	for _, obj, ok := it.Next(); ok; _, obj, ok = it.Next() {
		out = append(out, obj)
	}
	return out
}

// Hash returns a SHA-256 digest of every object in the view, in key
// order, each as its kind, namespace, name and JSON encoding. Two views
// with the same objects have the same hash whatever their history, so
// servers compare hashes at equal indexes to check that their states
// agree. The index is not part of the hash.
func (v *View) Hash() [32]byte {
	h := sha256.New()
	var n [8]byte
	it := v.objects.Root().Iterator()
	for key, obj, ok := it.Next(); ok; key, obj, ok = it.Next() {
		data, err := json.Marshal(obj)
		if err != nil {
			// Every stored object was decoded from JSON.
			panic(fmt.Sprintf("raftstore: encode stored object %q: %v", key, err))
		}
		binary.BigEndian.PutUint64(n[:], uint64(len(key)))
		h.Write(n[:])
		h.Write(key)
		binary.BigEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// GetOf is View.Get for a caller that knows the Go type of kind, such as
// GetOf[*corev1.Pod](v, Pods, "default", "web-0"). It panics if T is not
// kind's type. The object is shared: do not modify it.
func GetOf[T Object](v *View, kind Kind, namespace, name string) (T, bool) {
	obj, ok := v.Get(kind, namespace, name)
	if !ok {
		var zero T
		return zero, false
	}
	return obj.(T), true
}

// ListOf is View.List for a caller that knows the Go type of kind, such
// as ListOf[*corev1.Pod](v, Pods, "default"). It panics if T is not
// kind's type. The objects are shared: do not modify them.
func ListOf[T Object](v *View, kind Kind, namespace string) []T {
	objs := v.List(kind, namespace)
	out := make([]T, len(objs))
	for i, obj := range objs {
		out[i] = obj.(T)
	}
	return out
}

// keySep separates kind, namespace and name in a key. It sorts below any
// character a name can hold, so keys order by namespace and then name
// ("a" before "a-b"), which a "/" separator would not.
const keySep = 0

func kindPrefix(kind Kind) []byte {
	return append([]byte(kind), keySep)
}

func objectKey(kind Kind, namespace, name string) []byte {
	k := make([]byte, 0, len(kind)+len(namespace)+len(name)+2)
	k = append(k, kind...)
	k = append(k, keySep)
	k = append(k, namespace...)
	k = append(k, keySep)
	return append(k, name...)
}
