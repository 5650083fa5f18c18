package api

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Server is one member of the Raft group as the cluster records it, so that
// any server can find where the leader's HTTP API listens. Kubernetes has no
// such object; it is cluster-scoped and named by the server's Raft ID.
type Server struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServerSpec `json:"spec"`
}

// ServerSpec says where a server listens and what it can read.
type ServerSpec struct {
	// RaftAddr is the address other servers reach its Raft transport at.
	RaftAddr string `json:"raftAddr"`
	// HTTPAddr is the address of its HTTP API, used to forward writes to
	// the leader.
	HTTPAddr string `json:"httpAddr"`
	// LogVersion is the newest Raft log entry format the server's binary
	// reads (raftstore.LogVersion); 0 for a server that predates it, which
	// reads version 1. A leader writes an entry of a newer format only once
	// every server of the cluster reads it.
	LogVersion int `json:"logVersion,omitempty"`
}

// DeepCopyObject implements runtime.Object.
func (s *Server) DeepCopyObject() runtime.Object {
	if s == nil {
		return nil
	}
	out := *s
	s.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}
