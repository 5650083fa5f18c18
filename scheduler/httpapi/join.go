package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

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
}

// join adds a server as a voter and records where its API listens.
func (s *Server) join(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req JoinRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decode join request: %v", err))
	}
	if req.ID == "" || req.RaftAddr == "" || req.HTTPAddr == "" {
		return apierrors.NewBadRequest("a join request needs id, raftAddr and httpAddr")
	}
	if err := s.cfg.Store.AddVoter(r.Context(), req.ID, req.RaftAddr); err != nil {
		return fmt.Errorf("add voter %s at %s: %w", req.ID, req.RaftAddr, err)
	}
	if err := s.Register(r.Context(), req.ID, req.RaftAddr, req.HTTPAddr); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.cfg.Store.View().Index(), map[string]string{"joined": req.ID})
	return nil
}

// Register records, on the leader, where server id listens, unless the
// state already says so. The leader calls it for itself when it takes
// office, so followers can always find the leader's API.
func (s *Server) Register(ctx context.Context, id, raftAddr, httpAddr string) error {
	want := &api.Server{
		TypeMeta:   metav1.TypeMeta{APIVersion: "stead.io/v1", Kind: "Server"},
		ObjectMeta: metav1.ObjectMeta{Name: id},
		Spec:       api.ServerSpec{RaftAddr: raftAddr, HTTPAddr: httpAddr},
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
