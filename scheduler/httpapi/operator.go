package httpapi

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/api"
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

// MaxSnapshotBytes is the largest snapshot PUT /v1/operator/snapshot
// accepts: far above the state of any cluster Stead is meant for, yet
// bounded, since a follower holds the body in memory to forward it.
const MaxSnapshotBytes = 1 << 30

// snapshotLimit is MaxSnapshotBytes; tests lower it.
var snapshotLimit = func() *atomic.Int64 {
	var v atomic.Int64
	v.Store(MaxSnapshotBytes)
	return &v
}()

// HeaderSnapshotSHA256 carries, with GET /v1/operator/snapshot, the
// SHA-256 in the snapshot's header, so a client can name the snapshot
// before it has read it all.
const HeaderSnapshotSHA256 = "X-Stead-Snapshot-Sha256"

// SnapshotRestoreResponse is the answer to PUT /v1/operator/snapshot.
type SnapshotRestoreResponse struct {
	// SavedIndex and SavedClusterID describe the snapshot restored.
	SavedIndex     uint64 `json:"savedIndex"`
	SavedClusterID string `json:"savedClusterID,omitempty"`
	// Index is the state index the cluster now stands at.
	Index uint64 `json:"index"`
}

// handleSnapshots adds GET and PUT /v1/operator/snapshot.
func (s *Server) handleSnapshots() {
	s.mux.HandleFunc("GET /v1/operator/snapshot", s.saveSnapshot)
	s.mux.HandleFunc("PUT /v1/operator/snapshot", s.restoreSnapshot)
}

// saveSnapshot streams a backup of the whole state (see
// raftstore.Store.Backup), taken on the leader after a barrier; followers
// forward the request. With ?stale=true the server asked answers with its
// own copy, which works without a leader (after a loss of quorum).
func (s *Server) saveSnapshot(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Store
	if r.URL.Query().Get("stale") != "true" && !st.IsLeader() {
		s.forward(w, r, nil)
		return
	}
	b, err := st.Backup(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	meta := b.Meta()
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(b.Len(), 10))
	h.Set(api.HeaderIndex, strconv.FormatUint(meta.Index, 10))
	h.Set(HeaderSnapshotSHA256, meta.SHA256)
	w.WriteHeader(http.StatusOK)
	if _, err := b.WriteTo(w); err != nil {
		// The client sees a short or damaged body and refuses it.
		s.log.Warn("send snapshot", "index", meta.Index, "error", err)
	}
}

// restoreSnapshot replaces the whole state with the snapshot in the body
// (see raftstore.Store.RestoreSnapshot), on the leader; followers forward
// the request. A snapshot that is not whole and well formed is refused
// with 400 and changes nothing.
func (s *Server) restoreSnapshot(w http.ResponseWriter, r *http.Request) {
	body := http.MaxBytesReader(w, r.Body, snapshotLimit.Load())
	if !s.cfg.Store.IsLeader() {
		data, err := io.ReadAll(body)
		if err != nil {
			s.fail(w, snapshotBodyError(err))
			return
		}
		s.forward(w, r, data)
		return
	}
	res, err := s.cfg.Store.RestoreSnapshot(r.Context(), body)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.fail(w, snapshotBodyError(err))
		return
	case errors.Is(err, raftstore.ErrBadBackup):
		s.fail(w, apierrors.NewBadRequest(err.Error()))
		return
	case err != nil:
		s.fail(w, err)
		return
	}
	s.log.Warn("restored the state from a snapshot", "saved_index", res.From.Index, "saved_cluster", res.From.ClusterID, "index", res.Index)
	writeJSON(w, http.StatusOK, res.Index, SnapshotRestoreResponse{SavedIndex: res.From.Index, SavedClusterID: res.From.ClusterID, Index: res.Index})
}

func snapshotBodyError(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("snapshot is larger than %d bytes", snapshotLimit.Load()))
	}
	return apierrors.NewBadRequest(fmt.Sprintf("read snapshot: %v", err))
}
