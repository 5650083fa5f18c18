package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// paramConsistent asks for a consistent read (the name Consul uses):
// GET ...?consistent=true is answered by the leader only once it holds
// every write acknowledged before the read arrived, so that the answer is
// linearizable. Without it a server answers from its own replica, which
// on a follower, or on a leader cut off from the others that does not know
// it yet, may lag behind.
const paramConsistent = "consistent"

// consistentTimeout bounds how long a leader tries to confirm a
// consistent read before it gives up with 503.
const consistentTimeout = 10 * time.Second

// consistent wraps a read handler. A read without ?consistent runs as
// before. With it, a follower forwards the read to the leader, as it does
// writes, and the leader confirms first (confirmRead) and then runs the
// handler, which reads the local state that now covers everything
// committed before the read began.
func (s *Server) consistent(read http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		on, err := wantsConsistent(r)
		if err != nil {
			s.fail(w, err)
			return
		}
		if !on {
			read(w, r)
			return
		}
		if !s.cfg.Store.IsLeader() {
			s.forward(w, r, nil)
			return
		}
		if err := s.confirmRead(r.Context()); err != nil {
			s.fail(w, err)
			return
		}
		read(w, r)
	}
}

// wantsConsistent reports whether r asks for a consistent read:
// ?consistent, ?consistent=true (or any other true value of
// strconv.ParseBool). A consistent read does not block: it cannot be
// combined with ?index.
func wantsConsistent(r *http.Request) (bool, error) {
	q := r.URL.Query()
	if !q.Has(paramConsistent) {
		return false, nil
	}
	on := true
	if v := q.Get(paramConsistent); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, apierrors.NewBadRequest(fmt.Sprintf("consistent %q is not true or false", v))
		}
		on = b
	}
	if on && q.Has("index") {
		return false, apierrors.NewBadRequest("a consistent read does not block: drop index (and wait), or drop consistent")
	}
	return on, nil
}

// confirmRead makes this leader's state cover every entry committed
// before it was called, or fails. It commits a barrier entry through the
// log: the barrier commits only if a quorum still accepts this server's
// term (a quorum that has moved to a newer term refuses it, so a deposed
// leader, cut off or not, cannot pass), and its future resolves only once
// every entry before it is applied to the local state. Every write
// acknowledged before the read began was committed before the barrier,
// by this leader or, by Raft's leader completeness, by an earlier one
// whose entries this leader holds. Any failure is 503: the client may
// retry, on this server or another.
func (s *Server) confirmRead(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, consistentTimeout)
	defer cancel()
	if err := s.cfg.Store.Barrier(ctx); err != nil {
		return apierrors.NewServiceUnavailable(fmt.Sprintf("the leader could not confirm a consistent read: %v; retry", err))
	}
	return nil
}
