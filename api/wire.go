package api

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// HeaderIndex carries the state index a response was read at. A client
// passes it back as ?index=N&wait=D to block until the state moves past N.
const HeaderIndex = "X-Stead-Index"

// PreferMinimal is the preference (header "Prefer", RFC 7240) with which a
// client that will not read the object it writes asks for an answer
// without it: 204 No Content, with the index in HeaderIndex. Client.Do
// sends it for a write whose answer the caller does not decode.
const PreferMinimal = "return=minimal"

// MaxBodyBytes is the largest request body the API accepts.
const MaxBodyBytes = 4 << 20

// List is the shape of every list response: Kubernetes' `kind: List`, so
// that scripts written against `kubectl get -o json` keep working.
type List struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []json.RawMessage `json:"items"`
}

// ApplyAction says what an apply did to one object.
type ApplyAction string

// The outcomes of applying one object, in kubectl's words.
const (
	ApplyCreated    ApplyAction = "created"
	ApplyConfigured ApplyAction = "configured"
	ApplyUnchanged  ApplyAction = "unchanged"
)

// ApplyResult reports the outcome of POST /v1/apply, one entry per object
// in the order of the manifest.
type ApplyResult struct {
	Items []AppliedObject `json:"items"`
	// Index is the state index at which the whole apply was committed (or
	// read, when nothing changed).
	Index uint64 `json:"index"`
}

// AppliedObject is the outcome for one object of an apply.
type AppliedObject struct {
	Resource  string      `json:"resource"`
	Kind      string      `json:"kind"`
	Namespace string      `json:"namespace,omitempty"`
	Name      string      `json:"name"`
	Action    ApplyAction `json:"action"`
}

// ClusterStatus is the answer of GET /v1/status: who leads and what the
// state index is.
type ClusterStatus struct {
	// ServerID is the ID of the server that answered.
	ServerID string `json:"serverID"`
	// Leader is the ID of the current leader, empty while none is known.
	Leader string `json:"leader"`
	// LeaderAddr is the leader's HTTP address, when known.
	LeaderAddr string `json:"leaderAddr,omitempty"`
	// Index is the last state index applied on the answering server.
	Index uint64 `json:"index"`
	// Servers are the members of the Raft group.
	Servers []ServerStatus `json:"servers"`
	// Version of the answering server's binary.
	Version string `json:"version"`
}

// ServerStatus is one Raft member as seen by the answering server.
type ServerStatus struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	HTTPAddr string `json:"httpAddr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader"`
}

// Lease is the answer to a node's heartbeat (POST /v1/nodes/NAME/heartbeat).
type Lease struct {
	// TTLSeconds is how long the lease lasts after the heartbeat. The
	// agent counts it from before it sent the heartbeat, so it always
	// expires on the node before it does on the leader.
	TTLSeconds float64 `json:"ttlSeconds"`
	// HeartbeatSeconds is how often the agent should renew.
	HeartbeatSeconds float64 `json:"heartbeatSeconds"`
}
