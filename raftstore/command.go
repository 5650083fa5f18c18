package raftstore

import (
	"encoding/json"
	"fmt"
	"slices"
)

// Commands in the Raft log are one type byte followed by a payload. A
// new command gets a new type byte; the meaning of an existing one never
// changes, because old logs are replayed by new binaries.
const (
	// cmdTxn: the payload is a JSON-encoded Txn.
	cmdTxn byte = 1
	// cmdTxns: the payload is a JSON array of Txns the leader committed
	// as one entry. Each applies as though it were an entry of its own at
	// the entry's index, except that a transaction may not change an
	// object an earlier one of the same entry changed: it fails with
	// CodeConflict, so that an object's resourceVersion still names one
	// version of it. Log version 2.
	cmdTxns byte = 2
	// cmdBinTxn and cmdBinTxns are cmdTxn and cmdTxns in binary form
	// (see wire.go), objects in Kubernetes' protobuf encoding. Log
	// version 3.
	cmdBinTxn  byte = 3
	cmdBinTxns byte = 4
)

// LogVersion is the newest log entry format this binary reads and
// writes: 1 is cmdTxn, 2 adds cmdTxns, 3 adds their binary forms. A
// leader writes an entry of a version only once every server of the
// configuration has recorded that it reads that version (see
// api.ServerSpec.LogVersion), so a cluster can be upgraded one server at
// a time.
const LogVersion = 3

// OpType says what an Op does.
type OpType string

// The op types.
const (
	// OpPut writes Object, replacing any existing object of that key.
	// IfVersion and IfAbsent make it conditional.
	OpPut OpType = "put"
	// OpDelete removes the object; it must exist.
	OpDelete OpType = "delete"
	// OpEnsure writes Object only if no object of that key exists, and
	// never fails for an existing one. It creates namespaces on first use.
	OpEnsure OpType = "ensure"
)

// Txn is one atomic write: either every op applies or none does.
type Txn struct {
	// RequestID identifies the write for de-duplication: the FSM
	// remembers the result of recent request IDs and answers a repeat
	// with the first result instead of applying it again. Required;
	// a retry of the same write must reuse it.
	RequestID string `json:"requestID"`
	// Ops apply in order; each one sees the effect of those before it.
	Ops []Op `json:"ops"`
}

// Op is one change to one object.
type Op struct {
	Type      OpType `json:"type"`
	Kind      Kind   `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Object is the JSON of the object for OpPut and OpEnsure. Its
	// metadata name and namespace must equal Name and Namespace. The FSM
	// sets its TypeMeta and its resourceVersion (the log index). PutOp
	// and EnsureOp leave it empty for kinds with a protobuf encoding and
	// carry the object in that encoding; ObjectJSON returns the JSON of
	// either. Setting Object replaces that encoding.
	Object json.RawMessage `json:"object,omitempty"`
	// IfVersion, when not 0, requires the object to exist with this
	// resourceVersion (OpPut, OpDelete).
	IfVersion uint64 `json:"ifVersion,omitempty"`
	// IfAbsent requires that the object does not exist (OpPut only).
	IfAbsent bool `json:"ifAbsent,omitempty"`
	// StampGeneration makes the FSM set the object's fencing generation
	// (annotation api.AnnotationGeneration) to the log index of this
	// command (OpPut only). Assigning a pod to a node sets it, so every
	// assignment of an ordinal carries a generation higher than all
	// earlier ones, known only once it commits.
	StampGeneration bool `json:"stampGeneration,omitempty"`

	// proto is the object in Kubernetes' protobuf encoding, used when
	// Object is empty: PutOp and EnsureOp encode the kinds that have one
	// so, and binary log entries carry them so.
	proto []byte
	// typed, set by PutOp and EnsureOp, is how they encoded a typed
	// object: ValidateTxn need not decode the object again as long as the
	// op still carries that very encoding under the same key.
	typed *typedEncoding
}

// typedEncoding is an op's object as encoded from a typed object of kind
// with that namespace and name: its JSON or its protobuf encoding.
type typedEncoding struct {
	object          json.RawMessage
	proto           []byte
	kind            Kind
	namespace, name string
}

// PutOp returns an unconditional OpPut of obj, keyed by obj's namespace
// and name. Set IfVersion or IfAbsent on the result to make it
// conditional.
func PutOp(kind Kind, obj Object) (Op, error) {
	return objectOp(OpPut, kind, obj)
}

// EnsureOp returns an OpEnsure of obj: create it unless it exists.
func EnsureOp(kind Kind, obj Object) (Op, error) {
	return objectOp(OpEnsure, kind, obj)
}

// DeleteOp returns an OpDelete of the named object. Set IfVersion on the
// result to make it conditional.
func DeleteOp(kind Kind, namespace, name string) Op {
	return Op{Type: OpDelete, Kind: kind, Namespace: namespace, Name: name}
}

// objectOp encodes obj for an op: in protobuf when it is of kind and the
// kind has that encoding, else in JSON.
func objectOp(t OpType, kind Kind, obj Object) (Op, error) {
	op := Op{Type: t, Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
	k, kerr := KindOf(obj)
	typed := kerr == nil && k == kind
	if pm, ok := obj.(protoObject); ok && typed {
		data, err := pm.Marshal()
		if err != nil {
			return Op{}, fmt.Errorf("encode %s %s/%s: %w", kind, op.Namespace, op.Name, err)
		}
		op.proto = data
		op.typed = &typedEncoding{proto: data, kind: kind, namespace: op.Namespace, name: op.Name}
		return op, nil
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return Op{}, fmt.Errorf("encode %s %s/%s: %w", kind, op.Namespace, op.Name, err)
	}
	op.Object = data
	if typed {
		op.typed = &typedEncoding{object: data, kind: kind, namespace: op.Namespace, name: op.Name}
	}
	return op, nil
}

// protoEncoding returns op's object in protobuf encoding, or nil when it
// has none or its Object (JSON) was set and so takes precedence.
func (op Op) protoEncoding() []byte {
	if len(op.Object) > 0 {
		return nil
	}
	return op.proto
}

// hasObject reports whether op carries an object, in either encoding.
func (op Op) hasObject() bool { return len(op.Object) > 0 || len(op.proto) > 0 }

// ObjectJSON returns the JSON of op's object, encoding it from protobuf
// if that is how the op carries it; nil for an op without an object.
func (op Op) ObjectJSON() (json.RawMessage, error) {
	if op.protoEncoding() == nil {
		return op.Object, nil
	}
	obj, terr, err := decodeOpObject(op)
	if err == nil && terr != nil {
		err = terr
	}
	if err != nil {
		return nil, err
	}
	setTypeMeta(op.Kind, obj)
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encode %s %s/%s: %w", op.Kind, op.Namespace, op.Name, err)
	}
	return data, nil
}

// encodedFromTyped reports whether op's object is the encoding objectOp
// made of a typed object of op's kind, namespace and name, so that it
// decodes into that kind with that name and namespace.
func encodedFromTyped(op Op) bool {
	t := op.typed
	if t == nil || t.kind != op.Kind || t.namespace != op.Namespace || t.name != op.Name {
		return false
	}
	same := func(a, b []byte) bool { return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0] }
	if pb := op.protoEncoding(); pb != nil {
		return same(pb, t.proto)
	}
	return same(op.Object, t.object)
}

// marshalTxn returns what a log entry of the given log version carries
// of txn: its binary form from version 3, its JSON before.
func marshalTxn(txn Txn, logVersion int) ([]byte, error) {
	if logVersion >= 3 {
		return marshalBinaryTxn(txn), nil
	}
	// A JSON entry carries every object in JSON: ops is txn's ops with
	// those in protobuf converted, copied at the first one.
	var ops []Op
	for i, op := range txn.Ops {
		if op.protoEncoding() == nil {
			continue
		}
		if ops == nil {
			ops = slices.Clone(txn.Ops)
		}
		data, err := op.ObjectJSON()
		if err != nil {
			return nil, fmt.Errorf("encode transaction %s: %w", txn.RequestID, err)
		}
		ops[i].Object = data
	}
	if ops != nil {
		txn.Ops = ops
	}
	data, err := json.Marshal(txn)
	if err != nil {
		return nil, fmt.Errorf("encode transaction %s: %w", txn.RequestID, err)
	}
	return data, nil
}

// txnEntry returns the entry of the given log version that carries the
// transaction whose encoding (by marshalTxn) is data.
func txnEntry(data []byte, logVersion int) []byte {
	cmd := cmdTxn
	if logVersion >= 3 {
		cmd = cmdBinTxn
	}
	return append([]byte{cmd}, data...)
}

// txnsEntry returns the entry of the given log version, at least 2, that
// carries the transactions whose encodings (by marshalTxn) are txns.
func txnsEntry(txns [][]byte, logVersion int) []byte {
	if logVersion >= 3 {
		return binaryTxnsEntry(txns)
	}
	n := 2 + len(txns)
	for _, t := range txns {
		n += len(t)
	}
	data := make([]byte, 0, n)
	data = append(data, cmdTxns, '[')
	for i, t := range txns {
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, t...)
	}
	return append(data, ']')
}

// EncodeTxn returns the Raft log entry that carries txn, as Store.Apply
// submits it once every server reads LogVersion. It is for tests that
// drive an FSM directly.
func EncodeTxn(txn Txn) ([]byte, error) { return EncodeTxnAs(txn, LogVersion) }

// EncodeTxnAs returns the entry of the given log version that carries
// txn, as a leader writes it while some server reads no newer version.
func EncodeTxnAs(txn Txn, logVersion int) ([]byte, error) {
	data, err := marshalTxn(txn, logVersion)
	if err != nil {
		return nil, err
	}
	return txnEntry(data, logVersion), nil
}

// EncodeTxns returns the Raft log entry that carries txns as one entry,
// as the leader's Store submits writes that arrive together. It is for
// tests that drive an FSM directly.
func EncodeTxns(txns []Txn) ([]byte, error) { return EncodeTxnsAs(txns, LogVersion) }

// EncodeTxnsAs is EncodeTxns for the given log version, at least 2.
func EncodeTxnsAs(txns []Txn, logVersion int) ([]byte, error) {
	enc := make([][]byte, len(txns))
	for i, txn := range txns {
		data, err := marshalTxn(txn, logVersion)
		if err != nil {
			return nil, err
		}
		enc[i] = data
	}
	return txnsEntry(enc, logVersion), nil
}

// checkOp returns a CodeInvalid error if op is malformed, ignoring its
// object's content (see decodeOpObject).
func checkOp(op Op) *TxnError {
	if !op.Kind.Valid() {
		return txnErr(CodeInvalid, op, "unknown kind %q", op.Kind)
	}
	if op.Name == "" {
		return txnErr(CodeInvalid, op, "name is empty")
	}
	if op.Kind.Namespaced() && op.Namespace == "" {
		return txnErr(CodeInvalid, op, "namespace is empty")
	}
	if !op.Kind.Namespaced() && op.Namespace != "" {
		return txnErr(CodeInvalid, op, "kind %s is cluster-scoped but namespace is %q", op.Kind, op.Namespace)
	}
	switch op.Type {
	case OpPut:
	case OpEnsure:
		if op.IfVersion != 0 || op.IfAbsent || op.StampGeneration {
			return txnErr(CodeInvalid, op, "ensure takes no precondition")
		}
	case OpDelete:
		if op.IfAbsent {
			return txnErr(CodeInvalid, op, "delete cannot require absence")
		}
		if op.hasObject() {
			return txnErr(CodeInvalid, op, "delete carries no object")
		}
		if op.StampGeneration {
			return txnErr(CodeInvalid, op, "delete stamps no generation")
		}
	default:
		return txnErr(CodeInvalid, op, "unknown op type %q", op.Type)
	}
	return nil
}

// decodeOpObject decodes the object of an OpPut or OpEnsure. It returns a
// decode error separately from a CodeInvalid mismatch between the object
// and the op, because in the FSM the first means a corrupt log.
func decodeOpObject(op Op) (Object, *TxnError, error) {
	obj, err := NewObject(op.Kind)
	if err != nil {
		return nil, txnErr(CodeInvalid, op, "%v", err), nil
	}
	if !op.hasObject() {
		return nil, txnErr(CodeInvalid, op, "object is missing"), nil
	}
	if pb := op.protoEncoding(); pb != nil {
		pm, ok := obj.(protoObject)
		if !ok {
			return nil, txnErr(CodeInvalid, op, "kind %s has no protobuf encoding", op.Kind), nil
		}
		if err := pm.Unmarshal(pb); err != nil {
			return nil, nil, fmt.Errorf("decode %s %s/%s: %w", op.Kind, op.Namespace, op.Name, err)
		}
	} else if err := json.Unmarshal(op.Object, obj); err != nil {
		return nil, nil, fmt.Errorf("decode %s %s/%s: %w", op.Kind, op.Namespace, op.Name, err)
	}
	if obj.GetName() != op.Name || obj.GetNamespace() != op.Namespace {
		return nil, txnErr(CodeInvalid, op, "object is named %q in namespace %q", obj.GetName(), obj.GetNamespace()), nil
	}
	// A TypeMeta may be left empty (the FSM fills it) but not be wrong.
	want := op.Kind.TypeMeta()
	apiVersion, kind := obj.GetObjectKind().GroupVersionKind().ToAPIVersionAndKind()
	if (apiVersion != "" && apiVersion != want.APIVersion) || (kind != "" && kind != want.Kind) {
		return nil, txnErr(CodeInvalid, op, "object is apiVersion %q kind %q, want %s %s",
			apiVersion, kind, want.APIVersion, want.Kind), nil
	}
	return obj, nil, nil
}

// ValidateTxn checks txn as Store.Apply does before submitting it: a
// request ID, well-formed ops and objects that decode into their kind and
// match their op. The error is ErrNoRequestID or a *TxnError with
// CodeInvalid.
func ValidateTxn(txn Txn) error {
	if txn.RequestID == "" {
		return ErrNoRequestID
	}
	for _, op := range txn.Ops {
		if terr := checkOp(op); terr != nil {
			return terr
		}
		if op.Type == OpDelete || encodedFromTyped(op) {
			continue
		}
		// A protobuf encoding does not say what it encodes: decoded as
		// another kind it may give a wrong object rather than an error.
		if op.protoEncoding() != nil {
			return txnErr(CodeInvalid, op, "object was encoded for another kind, namespace or name; build the op with PutOp or EnsureOp")
		}
		_, terr, err := decodeOpObject(op)
		if err != nil {
			return txnErr(CodeInvalid, op, "%v", err)
		}
		if terr != nil {
			return terr
		}
	}
	return nil
}
