package raftstore

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// Code classifies why a transaction was refused.
type Code string

// The domain failures of a transaction.
const (
	// CodeConflict: an op's IfVersion does not match the object's
	// current resourceVersion.
	CodeConflict Code = "Conflict"
	// CodeNotFound: a delete, or an op with IfVersion, names an object
	// that does not exist.
	CodeNotFound Code = "NotFound"
	// CodeAlreadyExists: an IfAbsent put names an object that exists.
	CodeAlreadyExists Code = "AlreadyExists"
	// CodeInvalid: an op is malformed (unknown kind or op type, missing
	// name, a namespace on a cluster-scoped kind, an object whose
	// metadata does not match the op). Store.Apply refuses these before
	// they reach the log; the FSM refuses them again the same way.
	CodeInvalid Code = "Invalid"
)

// Sentinels matched with errors.Is against a *TxnError of that code.
var (
	ErrConflict      = errors.New("conflict")
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrInvalid       = errors.New("invalid")
)

// Errors from Raft, re-exported so that callers need not import it.
var (
	// ErrNotLeader: this server is not the leader. Errors from Store
	// methods that need the leader are a *NotLeaderError wrapping it.
	ErrNotLeader = raft.ErrNotLeader
	// ErrLeadershipLost: leadership was lost while a command was in
	// flight; the command may or may not have committed. Retry it with
	// the same request ID.
	ErrLeadershipLost = raft.ErrLeadershipLost
	// ErrShutdown: the store is closed.
	ErrShutdown = raft.ErrRaftShutdown
)

// ErrOutcomeUnknown is wrapped by the errors of Store.Apply for a write
// that was submitted but whose outcome was not learned: it may still
// commit. Retry it with the same request ID to learn it.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrNoRequestID is returned by Store.Apply for a Txn without a RequestID.
var ErrNoRequestID = errors.New("transaction has no request id")

// ErrClusterMismatch is returned by Open when the data directory belongs
// to a different cluster than Config.ClusterID names.
var ErrClusterMismatch = errors.New("data directory belongs to another cluster")

// TxnError is the domain result of a transaction that changed nothing:
// the first op whose precondition failed, and why.
type TxnError struct {
	Code      Code   `json:"code"`
	Kind      Kind   `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Message   string `json:"message,omitempty"`
}

// Error returns, for example, "pods default/web-0: conflict:
// resourceVersion is 12, want 9".
func (e *TxnError) Error() string {
	obj := e.Name
	if e.Namespace != "" {
		obj = e.Namespace + "/" + e.Name
	}
	s := string(e.Kind)
	if obj != "" {
		s += " " + obj
	}
	if s != "" {
		s += ": "
	}
	s += e.sentinel().Error()
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the sentinel of e's code (ErrConflict, ...).
func (e *TxnError) Unwrap() error { return e.sentinel() }

func (e *TxnError) sentinel() error {
	switch e.Code {
	case CodeConflict:
		return ErrConflict
	case CodeNotFound:
		return ErrNotFound
	case CodeAlreadyExists:
		return ErrAlreadyExists
	}
	return ErrInvalid
}

func txnErr(code Code, op Op, format string, args ...any) *TxnError {
	return &TxnError{
		Code:      code,
		Kind:      op.Kind,
		Namespace: op.Namespace,
		Name:      op.Name,
		Message:   fmt.Sprintf(format, args...),
	}
}

// NotLeaderError says that a request needs the leader and this server is
// not it. errors.Is(err, ErrNotLeader) holds.
type NotLeaderError struct {
	// LeaderID and LeaderAddr name the current leader and its Raft
	// address; both are empty when no leader is known.
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return "not the leader (no leader known)"
	}
	return fmt.Sprintf("not the leader (leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Unwrap returns ErrNotLeader.
func (e *NotLeaderError) Unwrap() error { return ErrNotLeader }
