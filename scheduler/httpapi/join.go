package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// JoinRequest asks the leader to add a server to the Raft group.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	HTTPAddr string `json:"httpAddr"`
	// ClusterID is the cluster the joiner's data directory belongs to; a
	// new server takes the cluster's ID before it starts Raft and sends
	// it. A joiner from another cluster is refused.
	ClusterID string `json:"clusterID,omitempty"`
	// HasState says the joiner held Raft state when it started: it is a
	// member restarting, not a new server. A server without state is
	// never let in under the ID of a member: it may have forgotten the
	// votes it cast, and could cast one twice.
	HasState bool `json:"hasState,omitempty"`
	// Formed says the joiner is one of the servers the cluster was
	// formed with (--bootstrap-expect), starting Raft for the first time
	// after the others bootstrapped: a member without state that never
	// took part. Only the joiner can know this, from what it saw while
	// the cluster formed.
	Formed bool `json:"formed,omitempty"`
	// LogVersion is the newest Raft log entry format the joiner reads
	// (raftstore.LogVersion); absent from servers that predate it, which
	// read version 1.
	LogVersion int `json:"logVersion,omitempty"`
}

// JoinResponse is the answer to an accepted JoinRequest.
type JoinResponse struct {
	Joined    string `json:"joined"`
	ClusterID string `json:"clusterID,omitempty"`
}

// Peer is one server of the Raft configuration.
type Peer struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	// HTTPAddr is where its API listens, as it recorded when it joined
	// (or when it took office); "" for a server that never did.
	HTTPAddr string `json:"httpAddr,omitempty"`
	Voter    bool   `json:"voter"`
	Leader   bool   `json:"leader,omitempty"`
}

// JoinInfo is the answer of GET /v1/join-info: who a server is and
// whether it belongs to a cluster yet. Servers forming a cluster with
// --bootstrap-expect exchange it before any of them starts Raft, and a
// server about to start asks it of the servers it was told to join.
type JoinInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raftAddr"`
	HTTPAddr string `json:"httpAddr"`
	// ClusterID is the cluster the server belongs to or, for one without
	// Raft state waiting to form a cluster, the ID it proposes.
	ClusterID string `json:"clusterID,omitempty"`
	// HasState reports whether the server holds Raft state.
	HasState bool `json:"hasState"`
	// Leader is the ID of the leader the server knows of, and
	// LeaderHTTPAddr where that leader's API listens.
	Leader         string `json:"leader,omitempty"`
	LeaderHTTPAddr string `json:"leaderHTTPAddr,omitempty"`
	// LastIndex is the index of the server's last Raft log entry: 1 when
	// it has bootstrapped and no leader has written since.
	LastIndex uint64 `json:"lastIndex"`
	// Servers is the server's Raft configuration, when it has one.
	Servers []Peer `json:"servers,omitempty"`
	// BootstrapExpect is the number of servers it waits for to form a new
	// cluster (--bootstrap-expect).
	BootstrapExpect int `json:"bootstrapExpect,omitempty"`
	// Discovered are, while it waits to form a cluster, the servers
	// without state it would form it with so far, itself included.
	Discovered []Peer `json:"discovered,omitempty"`
}

// ClusterOptions is what the cluster endpoints need to know of this
// server besides its store.
type ClusterOptions struct {
	// HTTPAddr is where this server's API listens, as other servers reach
	// it.
	HTTPAddr string
	// BootstrapExpect is this server's --bootstrap-expect, reported by
	// GET /v1/join-info.
	BootstrapExpect int
}

// HandleCluster adds the endpoints that form and run a cluster of several
// servers: GET /v1/join-info, GET /v1/operator/raft/configuration,
// DELETE /v1/operator/raft/peers/{id} and GET and PUT
// /v1/operator/snapshot. (POST /v1/join is always served.) Call it once,
// before serving.
func (s *Server) HandleCluster(o ClusterOptions) {
	s.mux.HandleFunc("GET /v1/join-info", func(w http.ResponseWriter, r *http.Request) {
		info, err := s.joinInfo(o)
		if err != nil {
			s.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, 0, info)
	})
	s.mux.HandleFunc("GET /v1/operator/raft/configuration", s.raftConfiguration)
	s.mux.HandleFunc("DELETE /v1/operator/raft/peers/{id}", s.write(s.removePeer))
	s.handleSnapshots()
}

// joinInfo describes this server from its local state.
func (s *Server) joinInfo(o ClusterOptions) (JoinInfo, error) {
	st := s.cfg.Store
	info := JoinInfo{
		ID:              s.cfg.ID,
		RaftAddr:        st.Addr(),
		HTTPAddr:        o.HTTPAddr,
		ClusterID:       st.ClusterID(),
		HasState:        st.HasState(),
		BootstrapExpect: o.BootstrapExpect,
	}
	info.LastIndex, _ = strconv.ParseUint(st.Stats()["last_log_index"], 10, 64)
	v := st.View()
	info.Leader, _ = st.LeaderID()
	if srv, ok := serverInfo(v, info.Leader); ok {
		info.LeaderHTTPAddr = srv.Spec.HTTPAddr
	}
	peers, err := s.peers(v, info.Leader)
	if err != nil {
		return info, err
	}
	info.Servers = peers
	return info, nil
}

// peers lists the Raft configuration with the addresses the state records.
func (s *Server) peers(v *raftstore.View, leader string) ([]Peer, error) {
	members, err := s.cfg.Store.Members()
	if err != nil {
		return nil, err
	}
	var out []Peer
	for _, m := range members {
		p := Peer{ID: m.ID, RaftAddr: m.Addr, Voter: m.Voter, Leader: m.ID == leader}
		if srv, ok := serverInfo(v, m.ID); ok {
			p.HTTPAddr = srv.Spec.HTTPAddr
		}
		out = append(out, p)
	}
	return out, nil
}

// Starting returns the API of a server that has not started Raft yet: it
// answers GET /v1/join-info with what info returns and GET /v1/health, and
// 503 to everything else.
func Starting(info func() JoinInfo) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/join-info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, 0, info())
	})
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, 0, map[string]string{"status": "starting"})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		st := apierrors.NewServiceUnavailable("this server is starting: it waits for the servers it forms a cluster with, or to be let into one; ask another server").Status()
		writeJSON(w, int(st.Code), 0, st)
	})
	return mux
}

// join adds a server as a voter and records where its API listens. It
// refuses a server from another cluster, and a server that comes back
// without its Raft state under the ID of a member.
func (s *Server) join(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req JoinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decode join request: %v", err))
	}
	if req.ID == "" || req.RaftAddr == "" || req.HTTPAddr == "" {
		return apierrors.NewBadRequest("a join request needs id, raftAddr and httpAddr")
	}
	st := s.cfg.Store
	// Decide from a configuration this server still leads.
	if err := st.VerifyLeader(r.Context()); err != nil {
		return err
	}
	ours := st.ClusterID()
	if req.ClusterID != ours && (req.ClusterID != "" || req.HasState) {
		return conflict("server %s: its data directory belongs to cluster %q, and this is cluster %q. "+
			"Start it with an empty --data-dir to join this cluster as a new server", req.ID, req.ClusterID, ours)
	}
	members, err := st.Members()
	if err != nil {
		return err
	}
	var current *raftstore.Member
	for i, m := range members {
		if m.ID == req.ID {
			current = &members[i]
		} else if m.Addr == req.RaftAddr {
			return conflict("server %s: Raft address %s is server %s's. Remove %s first with 'stead operator raft remove-peer --id %s'",
				req.ID, req.RaftAddr, m.ID, m.ID, m.ID)
		}
	}
	if current != nil && !req.HasState && !req.Formed {
		return conflict("%s", lostStateMessage(req.ID))
	}
	if current == nil && req.LogVersion < raftstore.LogVersion {
		// Its record would hold the others back from the newer entries, but
		// the log it would replicate may hold some already.
		return conflict("server %s runs a stead that reads Raft log version %d, and this cluster's servers write version %d. "+
			"Start it with the stead version the cluster's servers run", req.ID, max(req.LogVersion, 1), raftstore.LogVersion)
	}
	if current == nil || !current.Voter || current.Addr != req.RaftAddr {
		if err := st.AddVoter(r.Context(), req.ID, req.RaftAddr); err != nil {
			return fmt.Errorf("add voter %s at %s: %w", req.ID, req.RaftAddr, err)
		}
	}
	if err := s.register(r.Context(), req.ID, api.ServerSpec{RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr, LogVersion: req.LogVersion}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, st.View().Index(), JoinResponse{Joined: req.ID, ClusterID: ours})
	return nil
}

// lostStateMessage says what to do about a member that came back without
// its Raft state.
func lostStateMessage(id string) string {
	return fmt.Sprintf("server %s is a member of this cluster, but it started without its Raft state "+
		"(its data directory was emptied or replaced). A member that forgot its votes must not vote again. "+
		"Remove it with 'stead operator raft remove-peer --id %s', empty its data directory, and start it again to join as a new member",
		id, id)
}

// conflict is a 409 answer whose message is the whole story.
func conflict(format string, args ...any) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusConflict,
		Reason:  metav1.StatusReasonConflict,
		Message: fmt.Sprintf(format, args...),
	}}
}

// Register records, on the leader, where server id, which runs this
// binary, listens, unless the state already says so. The leader calls it
// for itself when it takes office, so followers can always find the
// leader's API.
func (s *Server) Register(ctx context.Context, id, raftAddr, httpAddr string) error {
	return s.register(ctx, id, api.ServerSpec{RaftAddr: raftAddr, HTTPAddr: httpAddr, LogVersion: raftstore.LogVersion})
}

// register records spec as server id's, unless the state already says so.
func (s *Server) register(ctx context.Context, id string, spec api.ServerSpec) error {
	want := &api.Server{
		TypeMeta:   metav1.TypeMeta{APIVersion: "stead.io/v1", Kind: "Server"},
		ObjectMeta: metav1.ObjectMeta{Name: id},
		Spec:       spec,
	}
	v := s.cfg.Store.View()
	var current uint64
	if cur, ok := serverInfo(v, id); ok {
		if equality.Semantic.DeepEqual(cur.Spec, want.Spec) {
			return nil
		}
		want.UID, want.CreationTimestamp = cur.UID, cur.CreationTimestamp
		current = scheduler.Version(cur)
	} else {
		s.stampNew(want)
	}
	op, err := scheduler.PutOp(raftstore.Servers, want, current)
	if err != nil {
		return err
	}
	_, err = s.commitID(ctx, newRequestID(), []raftstore.Op{op})
	return err
}
