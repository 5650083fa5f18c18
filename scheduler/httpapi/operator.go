package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/raftstore"
)

// RaftConfiguration is the answer of GET /v1/operator/raft/configuration:
// the servers of the Raft group.
type RaftConfiguration struct {
	// ClusterID is the cluster's ID.
	ClusterID string `json:"clusterID,omitempty"`
	// Leader is the leader's ID, "" while none is known.
	Leader string `json:"leader,omitempty"`
	// Servers are the members, in the configuration's order.
	Servers []Peer `json:"servers"`
	// Stale is set when a server other than a confirmed leader answered
	// (?stale=true): the configuration is the one it last heard of.
	Stale bool `json:"stale,omitempty"`
}

// RemovePeerResponse is the answer to DELETE /v1/operator/raft/peers/{id}.
type RemovePeerResponse struct {
	Removed string `json:"removed"`
}

// raftConfiguration answers with the Raft configuration as the leader
// knows it, after confirming that it still leads; followers forward the
// request. With ?stale=true the server that is asked answers from its own
// copy, which works without a leader (after a loss of quorum).
func (s *Server) raftConfiguration(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Store
	stale := r.URL.Query().Get("stale") == "true"
	if !stale {
		if !st.IsLeader() {
			s.forward(w, r, nil)
			return
		}
		if err := st.VerifyLeader(r.Context()); err != nil {
			s.fail(w, err)
			return
		}
	}
	v := st.View()
	leader, _ := st.LeaderID()
	peers, err := s.peers(v, leader)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v.Index(), RaftConfiguration{ClusterID: st.ClusterID(), Leader: leader, Servers: peers, Stale: stale})
}

// removePeer removes a server from the Raft group and its record from the
// state. It refuses to remove the last voter, which would leave a cluster
// that can never elect a leader.
func (s *Server) removePeer(w http.ResponseWriter, r *http.Request, _ []byte) error {
	id := r.PathValue("id")
	st := s.cfg.Store
	if err := st.VerifyLeader(r.Context()); err != nil {
		return err
	}
	members, err := st.Members()
	if err != nil {
		return err
	}
	var target *raftstore.Member
	voters := 0
	for i, m := range members {
		if m.Voter {
			voters++
		}
		if m.ID == id {
			target = &members[i]
		}
	}
	if target == nil {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "raft peers"}, id)
	}
	if target.Voter && voters == 1 {
		return conflict("server %s is the last voter: without it the cluster could never elect a leader", id)
	}
	// The record goes first: removing the leader itself ends its term,
	// after which it could no longer commit anything.
	if _, ok := serverInfo(st.View(), id); ok {
		_, err := s.commitID(r.Context(), newRequestID(), []raftstore.Op{raftstore.DeleteOp(raftstore.Servers, "", id)})
		if err != nil && !errors.Is(err, raftstore.ErrNotFound) {
			return fmt.Errorf("remove the record of server %s: %w", id, err)
		}
	}
	if err := st.RemoveServer(r.Context(), id); err != nil {
		return err
	}
	s.log.Info("removed a server from the cluster", "server", id, "raft_addr", target.Addr)
	writeJSON(w, http.StatusOK, st.View().Index(), RemovePeerResponse{Removed: id})
	return nil
}
