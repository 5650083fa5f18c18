package raftstore

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
)

// A snapshot is a stream of JSON lines:
//
//	{"format":"stead-raftstore-snapshot","version":1,"index":N,"objects":M,"requests":[...]}
//	{"kind":"pods","object":{...}}          (M lines, in key order)
//	{"sha256":"<hex>"}
//
// The header carries the applied index and the remembered request IDs,
// oldest first. The trailer is the SHA-256 of every byte before it;
// Restore refuses a snapshot whose trailer does not match, so a flipped
// bit or a truncated file never becomes state.
const (
	snapshotFormat  = "stead-raftstore-snapshot"
	snapshotVersion = 1
)

type snapshotHeader struct {
	Format   string            `json:"format"`
	Version  int               `json:"version"`
	Index    uint64            `json:"index"`
	Objects  int               `json:"objects"`
	Requests []snapshotRequest `json:"requests"`
}

type snapshotRequest struct {
	ID    string    `json:"id"`
	Index uint64    `json:"index"`
	Err   *TxnError `json:"error,omitempty"`
}

type snapshotObject struct {
	Kind   Kind            `json:"kind"`
	Object json.RawMessage `json:"object"`
}

type snapshotTrailer struct {
	SHA256 string `json:"sha256"`
}

// writeSnapshot writes st to w in the snapshot format.
func writeSnapshot(w io.Writer, st *state) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sum := sha256.New()
	out := io.MultiWriter(bw, sum)

	hdr := snapshotHeader{
		Format:   snapshotFormat,
		Version:  snapshotVersion,
		Index:    st.index,
		Objects:  st.objects.Len(),
		Requests: []snapshotRequest{},
	}
	for _, e := range st.requests.entries() {
		hdr.Requests = append(hdr.Requests, snapshotRequest{ID: e.id, Index: e.rec.Index, Err: e.rec.Err})
	}
	if err := writeLine(out, hdr); err != nil {
		return fmt.Errorf("write header: %w", err)
	}

	oit := st.objects.Root().Iterator()
	for key, obj, ok := oit.Next(); ok; key, obj, ok = oit.Next() {
		data, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("encode %q: %w", key, err)
		}
		kind := Kind(key[:bytes.IndexByte(key, keySep)])
		if err := writeLine(out, snapshotObject{Kind: kind, Object: data}); err != nil {
			return fmt.Errorf("write %q: %w", key, err)
		}
	}

	if err := writeLine(bw, snapshotTrailer{SHA256: hex.EncodeToString(sum.Sum(nil))}); err != nil {
		return fmt.Errorf("write trailer: %w", err)
	}
	return bw.Flush()
}

func writeLine(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// readSnapshot reads a snapshot written by writeSnapshot and returns the
// state it holds. Nothing it builds is visible until it returns.
func readSnapshot(r io.Reader) (*state, error) {
	lr := &lineReader{r: bufio.NewReaderSize(r, 64<<10), sum: sha256.New()}

	var hdr snapshotHeader
	if err := lr.next(&hdr, true); err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	if hdr.Format != snapshotFormat {
		return nil, fmt.Errorf("not a snapshot: format %q", hdr.Format)
	}
	if hdr.Version != snapshotVersion {
		return nil, fmt.Errorf("snapshot version %d not supported (want %d)", hdr.Version, snapshotVersion)
	}

	st := emptyState()
	st.index = hdr.Index
	seen := make(map[string]bool, len(hdr.Requests))
	for i, req := range hdr.Requests {
		if seen[req.ID] || (i > 0 && req.Index < hdr.Requests[i-1].Index) {
			return nil, fmt.Errorf("request %d (%q at index %d): the requests are not unique and oldest first", i, req.ID, req.Index)
		}
		seen[req.ID] = true
		st.requests.buf = append(st.requests.buf, requestEntry{id: req.ID, rec: requestRecord{Index: req.Index, Err: req.Err}})
	}

	objs := st.objects.Txn()
	for i := 0; i < hdr.Objects; i++ {
		var line snapshotObject
		if err := lr.next(&line, true); err != nil {
			return nil, fmt.Errorf("read object %d: %w", i, err)
		}
		obj, err := NewObject(line.Kind)
		if err != nil {
			return nil, fmt.Errorf("read object %d: %w", i, err)
		}
		if err := json.Unmarshal(line.Object, obj); err != nil {
			return nil, fmt.Errorf("decode object %d (%s): %w", i, line.Kind, err)
		}
		if obj.GetName() == "" || line.Kind.Namespaced() != (obj.GetNamespace() != "") {
			return nil, fmt.Errorf("object %d: bad key %s %q/%q", i, line.Kind, obj.GetNamespace(), obj.GetName())
		}
		if _, dup := objs.Insert(objectKey(line.Kind, obj.GetNamespace(), obj.GetName()), obj); dup {
			return nil, fmt.Errorf("object %d: duplicate %s %s/%s", i, line.Kind, obj.GetNamespace(), obj.GetName())
		}
	}
	st.objects = objs.CommitOnly()
	st.idx = buildIndexes(st.objects, st.index)

	want := hex.EncodeToString(lr.sum.Sum(nil))
	var trailer snapshotTrailer
	if err := lr.next(&trailer, false); err != nil {
		return nil, fmt.Errorf("read trailer: %w", err)
	}
	if trailer.SHA256 != want {
		return nil, fmt.Errorf("checksum mismatch: trailer says %q, content is %q", trailer.SHA256, want)
	}
	if _, err := lr.r.ReadByte(); err != io.EOF {
		return nil, errors.New("data after trailer")
	}
	return st, nil
}

// lineReader reads JSON lines and hashes the ones it is told to.
type lineReader struct {
	r   *bufio.Reader
	sum hash.Hash
}

func (lr *lineReader) next(v any, hashed bool) error {
	line, err := lr.r.ReadBytes('\n')
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	if hashed {
		lr.sum.Write(line)
	}
	return json.Unmarshal(line, v)
}
