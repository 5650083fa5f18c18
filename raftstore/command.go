package raftstore

import (
	"encoding/json"
	"fmt"
)

// Commands in the Raft log are one type byte followed by a JSON payload.
// A new command gets a new type byte; the meaning of an existing one
// never changes, because old logs are replayed by new binaries.
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
)

// LogVersion is the newest log entry format this binary reads and
// writes: 1 is cmdTxn, 2 adds cmdTxns. A leader writes cmdTxns only once
// every server of the configuration has recorded that it reads version 2
// (see api.ServerSpec.LogVersion), so a cluster can be upgraded one
// server at a time.
const LogVersion = 2

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
	// sets its TypeMeta and its resourceVersion (the log index).
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

	// typed, set by PutOp and EnsureOp, is how they encoded a typed
	// object: ValidateTxn need not decode Object again as long as the op
	// still carries that very encoding under the same key.
	typed *typedEncoding
}

// typedEncoding is an op's object as encoded from a typed object of kind
// with that namespace and name.
type typedEncoding struct {
	object          json.RawMessage
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

func objectOp(t OpType, kind Kind, obj Object) (Op, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return Op{}, fmt.Errorf("encode %s %s/%s: %w", kind, obj.GetNamespace(), obj.GetName(), err)
	}
	op := Op{Type: t, Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName(), Object: data}
	if k, err := KindOf(obj); err == nil && k == kind {
		op.typed = &typedEncoding{object: data, kind: kind, namespace: op.Namespace, name: op.Name}
	}
	return op, nil
}

// encodedFromTyped reports whether op's object is the encoding objectOp
// made of a typed object of op's kind, namespace and name, so that it
// decodes into that kind with that name and namespace.
func encodedFromTyped(op Op) bool {
	t := op.typed
	if t == nil || t.kind != op.Kind || t.namespace != op.Namespace || t.name != op.Name {
		return false
	}
	a, b := op.Object, t.object
	return len(a) > 0 && len(a) == len(b) && &a[0] == &b[0]
}

// marshalTxn returns txn's JSON, what a log entry carries of it.
func marshalTxn(txn Txn) ([]byte, error) {
	data, err := json.Marshal(txn)
	if err != nil {
		return nil, fmt.Errorf("encode transaction %s: %w", txn.RequestID, err)
	}
	return data, nil
}

// txnEntry returns the cmdTxn entry that carries the transaction whose
// JSON is data.
func txnEntry(data []byte) []byte {
	return append([]byte{cmdTxn}, data...)
}

// encodeTxn returns the log entry for txn.
func encodeTxn(txn Txn) ([]byte, error) {
	data, err := marshalTxn(txn)
	if err != nil {
		return nil, err
	}
	return txnEntry(data), nil
}

// EncodeTxn returns the Raft log entry that carries txn, as Store.Apply
// submits it. It is for tests that drive an FSM directly.
func EncodeTxn(txn Txn) ([]byte, error) { return encodeTxn(txn) }

// encodeTxns returns the cmdTxns entry that carries the transactions
// whose JSON encodings are txns.
func encodeTxns(txns [][]byte) []byte {
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

// EncodeTxns returns the Raft log entry that carries txns as one entry,
// as the leader's Store submits writes that arrive together. It is for
// tests that drive an FSM directly.
func EncodeTxns(txns []Txn) ([]byte, error) {
	enc := make([][]byte, len(txns))
	for i, txn := range txns {
		data, err := marshalTxn(txn)
		if err != nil {
			return nil, err
		}
		enc[i] = data
	}
	return encodeTxns(enc), nil
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
		if len(op.Object) != 0 {
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
	if len(op.Object) == 0 {
		return nil, txnErr(CodeInvalid, op, "object is missing"), nil
	}
	if err := json.Unmarshal(op.Object, obj); err != nil {
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
