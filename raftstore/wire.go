package raftstore

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The binary form of transactions (log version 3, cmdBinTxn and
// cmdBinTxns) is protocol buffers' wire format of these messages:
//
//	message Txn {
//	  string request_id = 1;
//	  repeated Op ops = 2;
//	}
//	message Op {
//	  string type = 1;
//	  string kind = 2;
//	  string namespace = 3;
//	  string name = 4;
//	  bytes object_proto = 5;  // the object in Kubernetes' protobuf encoding
//	  bytes object_json = 6;   // or in JSON, for kinds without one
//	  uint64 if_version = 7;
//	  bool if_absent = 8;
//	  bool stamp_generation = 9;
//	}
//
// A cmdBinTxns payload is the concatenation of `repeated Txn txns = 1`.
// Objects are in the protobuf encoding Kubernetes' API server stores in
// etcd, which decodes several times faster than JSON and is about half
// its size; it carries no TypeMeta, which the FSM sets anyway.
const (
	fieldTxnRequestID protowire.Number = 1
	fieldTxnOps       protowire.Number = 2

	fieldOpType            protowire.Number = 1
	fieldOpKind            protowire.Number = 2
	fieldOpNamespace       protowire.Number = 3
	fieldOpName            protowire.Number = 4
	fieldOpObjectProto     protowire.Number = 5
	fieldOpObjectJSON      protowire.Number = 6
	fieldOpIfVersion       protowire.Number = 7
	fieldOpIfAbsent        protowire.Number = 8
	fieldOpStampGeneration protowire.Number = 9

	fieldEntryTxns protowire.Number = 1
)

// protoObject is an object with Kubernetes' generated protobuf encoding.
type protoObject interface {
	Marshal() ([]byte, error)
	Unmarshal([]byte) error
}

// marshalBinaryTxn returns txn's binary form.
func marshalBinaryTxn(txn Txn) []byte {
	// Room for every field's bytes and, per op, its tags and lengths.
	size := 16 + len(txn.RequestID)
	for _, op := range txn.Ops {
		size += 48 + len(op.Type) + len(op.Kind) + len(op.Namespace) + len(op.Name) + len(op.Object) + len(op.protoEncoding())
	}
	b := make([]byte, 0, size)
	b = protowire.AppendTag(b, fieldTxnRequestID, protowire.BytesType)
	b = protowire.AppendString(b, txn.RequestID)
	var head [16]byte
	for _, op := range txn.Ops {
		// The op goes where it belongs, then moves up to make room for
		// its tag and length, known once it is written.
		start := len(b)
		b = appendBinaryOp(b, op)
		n := len(b) - start
		h := protowire.AppendVarint(protowire.AppendTag(head[:0], fieldTxnOps, protowire.BytesType), uint64(n))
		b = append(b, h...)
		copy(b[start+len(h):], b[start:start+n])
		copy(b[start:], h)
	}
	return b
}

func appendBinaryOp(b []byte, op Op) []byte {
	str := func(n protowire.Number, s string) {
		if s != "" {
			b = protowire.AppendTag(b, n, protowire.BytesType)
			b = protowire.AppendString(b, s)
		}
	}
	str(fieldOpType, string(op.Type))
	str(fieldOpKind, string(op.Kind))
	str(fieldOpNamespace, op.Namespace)
	str(fieldOpName, op.Name)
	switch pb := op.protoEncoding(); {
	case pb != nil:
		b = protowire.AppendTag(b, fieldOpObjectProto, protowire.BytesType)
		b = protowire.AppendBytes(b, pb)
	case len(op.Object) > 0:
		b = protowire.AppendTag(b, fieldOpObjectJSON, protowire.BytesType)
		b = protowire.AppendBytes(b, op.Object)
	}
	if op.IfVersion != 0 {
		b = protowire.AppendTag(b, fieldOpIfVersion, protowire.VarintType)
		b = protowire.AppendVarint(b, op.IfVersion)
	}
	for _, f := range []struct {
		n  protowire.Number
		on bool
	}{{fieldOpIfAbsent, op.IfAbsent}, {fieldOpStampGeneration, op.StampGeneration}} {
		if f.on {
			b = protowire.AppendTag(b, f.n, protowire.VarintType)
			b = protowire.AppendVarint(b, 1)
		}
	}
	return b
}

// binaryTxnsEntry returns the cmdBinTxns entry that carries the
// transactions whose binary forms are txns.
func binaryTxnsEntry(txns [][]byte) []byte {
	n := 1
	for _, t := range txns {
		n += protowire.SizeTag(fieldEntryTxns) + protowire.SizeBytes(len(t))
	}
	data := make([]byte, 0, n)
	data = append(data, cmdBinTxns)
	for _, t := range txns {
		data = protowire.AppendTag(data, fieldEntryTxns, protowire.BytesType)
		data = protowire.AppendBytes(data, t)
	}
	return data
}

// errWire is the error of a payload that is not what the encoder writes.
var errWire = errors.New("malformed binary transaction")

// forEachField calls fn with each field of the message b; a
// length-delimited field's value is v, a varint's is x.
func forEachField(b []byte, fn func(n protowire.Number, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("%w: %v", errWire, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		default:
			return fmt.Errorf("%w: field %d has wire type %d", errWire, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("%w: field %d: %v", errWire, num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, v, x); err != nil {
			return err
		}
	}
	return nil
}

// decodeBinaryTxns decodes a cmdBinTxns payload.
func decodeBinaryTxns(b []byte) ([]Txn, error) {
	var txns []Txn
	err := forEachField(b, func(n protowire.Number, v []byte, _ uint64) error {
		if n != fieldEntryTxns {
			return fmt.Errorf("%w: unknown entry field %d", errWire, n)
		}
		txn, err := decodeBinaryTxn(v)
		txns = append(txns, txn)
		return err
	})
	return txns, err
}

// decodeBinaryTxn decodes one transaction's binary form. The ops' objects
// alias b.
func decodeBinaryTxn(b []byte) (Txn, error) {
	var txn Txn
	err := forEachField(b, func(n protowire.Number, v []byte, _ uint64) error {
		switch n {
		case fieldTxnRequestID:
			txn.RequestID = string(v)
		case fieldTxnOps:
			op, err := decodeBinaryOp(v)
			if err != nil {
				return err
			}
			txn.Ops = append(txn.Ops, op)
		default:
			return fmt.Errorf("%w: unknown transaction field %d", errWire, n)
		}
		return nil
	})
	return txn, err
}

func decodeBinaryOp(b []byte) (Op, error) {
	var op Op
	err := forEachField(b, func(n protowire.Number, v []byte, x uint64) error {
		switch n {
		case fieldOpType:
			op.Type = opTypeOf(v)
		case fieldOpKind:
			op.Kind = kindOf(v)
		case fieldOpNamespace:
			op.Namespace = string(v)
		case fieldOpName:
			op.Name = string(v)
		case fieldOpObjectProto:
			op.proto = v
		case fieldOpObjectJSON:
			op.Object = json.RawMessage(v)
		case fieldOpIfVersion:
			op.IfVersion = x
		case fieldOpIfAbsent:
			op.IfAbsent = x != 0
		case fieldOpStampGeneration:
			op.StampGeneration = x != 0
		default:
			return fmt.Errorf("%w: unknown op field %d", errWire, n)
		}
		return nil
	})
	return op, err
}

// opTypeOf returns the op type named v, without allocating for the known
// ones.
func opTypeOf(v []byte) OpType {
	for _, t := range []OpType{OpPut, OpDelete, OpEnsure} {
		if string(v) == string(t) {
			return t
		}
	}
	return OpType(v)
}

// kindOf returns the kind named v, without allocating for the known ones.
func kindOf(v []byte) Kind {
	for _, k := range Kinds {
		if string(v) == string(k) {
			return k
		}
	}
	return Kind(v)
}
