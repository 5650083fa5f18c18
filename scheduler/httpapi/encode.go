package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// encodeCacheMax bounds the encodings an encodeCache keeps; it starts
// afresh once full.
const encodeCacheMax = 50_000

// encodeCache keeps the JSON of stored objects. A stored version of an
// object never changes, and the same versions are asked for again and
// again: every agent's DNS watch lists every pod, and each node's watch
// lists all of its pods when one of them changes. An object version is
// known by its kind, name, UID and resourceVersion, which no other
// version shares, also across a restore.
type encodeCache struct {
	mu sync.Mutex
	m  map[string][]byte
}

// encode returns the JSON of o, a stored object of kind.
func (c *encodeCache) encode(kind raftstore.Kind, o raftstore.Object) ([]byte, error) {
	key := string(kind) + "\x00" + o.GetNamespace() + "\x00" + o.GetName() + "\x00" + string(o.GetUID()) + "\x00" + o.GetResourceVersion()
	c.mu.Lock()
	data, ok := c.m[key]
	c.mu.Unlock()
	if ok {
		return data, nil
	}
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= encodeCacheMax {
		c.m = make(map[string][]byte)
	}
	c.m[key] = data
	return data, nil
}

// listJSON is the JSON of an api.List of items at resourceVersion index,
// as json.Marshal writes it, without checking and copying every item
// again.
func listJSON(index uint64, items [][]byte) []byte {
	head, _ := json.Marshal(struct {
		metav1.TypeMeta `json:",inline"`
		metav1.ListMeta `json:"metadata"`
	}{metav1.TypeMeta{APIVersion: "v1", Kind: "List"}, metav1.ListMeta{ResourceVersion: strconv.FormatUint(index, 10)}})
	size := len(head) + 12
	for _, it := range items {
		size += len(it) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, head[:len(head)-1]...)
	out = append(out, `,"items":[`...)
	for i, it := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, it...)
	}
	return append(out, "]}"...)
}

// writeList answers with a list of encoded objects.
func writeList(w http.ResponseWriter, index uint64, items [][]byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	w.WriteHeader(http.StatusOK)
	w.Write(listJSON(index, items))
	w.Write([]byte("\n"))
}
