// Package httpapi serves Stead's HTTP/JSON API on every server: reads from
// the local replicated state (with blocking queries), or with
// ?consistent=true from a leader that confirmed it is current; writes
// committed through Raft on the leader; and writes and consistent reads sent
// to a follower forwarded to the leader.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// Headers the API reads besides api.HeaderIndex.
const (
	// headerRequestID lets a client retry a write without applying it twice.
	headerRequestID = "X-Stead-Request-ID"
	// headerForwarded marks a request a follower forwarded to the leader, so
	// that it is never forwarded again.
	headerForwarded = "X-Stead-Forwarded"
)

// maxWait caps how long a blocking query may wait.
const maxWait = 5 * time.Minute

// Config configures a Server.
type Config struct {
	// ID is this server's Raft ID.
	ID string
	// Version is reported by /v1/status.
	Version string
	// Store is the replicated state.
	Store *raftstore.Store
	// Logger receives request errors.
	Logger hclog.Logger
	// Now stamps creation and deletion times; time.Now when nil.
	Now func() time.Time
	// ForwardClient sends writes to the leader; when nil, a client with a
	// 30 s timeout that keeps ForwardIdleConns idle connections.
	ForwardClient *http.Client
	// Leases is the leader's table of node leases that heartbeats renew;
	// a table with the default TTL when nil.
	Leases *scheduler.Leases
	// Metrics serves GET /metrics when set.
	Metrics http.Handler
	// ClusterCIDR is the range nodes' pod subnets come from;
	// DefaultClusterCIDR when not valid.
	ClusterCIDR netip.Prefix
}

// Server is the HTTP API of one Stead server. It is an http.Handler, safe
// for concurrent use.
type Server struct {
	cfg Config
	log hclog.Logger
	mux *http.ServeMux
	// encoded keeps the JSON of the objects lists answer with.
	encoded encodeCache
	// subnets are the pod subnets of node registrations not yet
	// committed, so that two never pick the same one.
	subnets subnetReservations
}

// ForwardIdleConns is how many idle connections to the leader a follower
// keeps for forwarding: as many as it may forward at once when thousands
// of agents heartbeat through it, so that a forwarded request seldom opens
// a connection of its own, which with TLS also costs a handshake.
const ForwardIdleConns = 256

// New returns the API handler for one server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Leases == nil {
		cfg.Leases = scheduler.NewLeases(nil, scheduler.DefaultLeaseTTL)
	}
	if !cfg.ClusterCIDR.IsValid() {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.ForwardClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost, tr.MaxIdleConns = ForwardIdleConns, ForwardIdleConns
		cfg.ForwardClient = &http.Client{Timeout: 30 * time.Second, Transport: tr}
	}
	s := &Server{cfg: cfg, log: cfg.Logger.Named("http"), mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("GET /v1/health", s.health)
	if s.cfg.Metrics != nil {
		m.Handle("GET /metrics", s.cfg.Metrics)
	}
	m.HandleFunc("GET /v1/ready", s.ready)
	m.HandleFunc("GET /v1/status", s.status)
	m.HandleFunc("POST /v1/apply", s.write(s.apply))
	m.HandleFunc("POST /v1/join", s.write(s.join))
	m.HandleFunc("POST /v1/nodes/{name}/heartbeat", s.write(s.heartbeat))
	m.HandleFunc("POST /v1/nodes/{name}/{action}", s.write(s.nodeAction))

	// Collections across every namespace, and cluster-scoped objects.
	m.HandleFunc("GET /v1/{res}", s.consistent(s.list))
	m.HandleFunc("GET /v1/{res}/{name}", s.consistent(s.get))
	m.HandleFunc("PUT /v1/{res}/{name}", s.write(s.put))
	m.HandleFunc("DELETE /v1/{res}/{name}", s.write(s.delete))

	// Namespaced objects.
	m.HandleFunc("GET /v1/namespaces/{ns}/{res}", s.consistent(s.list))
	m.HandleFunc("GET /v1/namespaces/{ns}/{res}/{name}", s.consistent(s.get))
	m.HandleFunc("PUT /v1/namespaces/{ns}/{res}/{name}", s.write(s.put))
	m.HandleFunc("DELETE /v1/namespaces/{ns}/{res}/{name}", s.write(s.delete))
	m.HandleFunc("GET /v1/namespaces/{ns}/{res}/{name}/{sub}", s.consistent(s.getSub))
	m.HandleFunc("PUT /v1/namespaces/{ns}/{res}/{name}/{sub}", s.write(s.putSub))
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, 0, map[string]string{"status": "ok"})
}

// ready answers 200 once a leader is known, so a load balancer sends
// traffic only to servers that can take it.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if id, _ := s.cfg.Store.LeaderID(); id == "" {
		s.fail(w, apierrors.NewServiceUnavailable("no leader elected yet"))
		return
	}
	writeJSON(w, http.StatusOK, 0, map[string]string{"status": "ready"})
}

// status answers who leads, the members and the state index; with
// ?index=N it first waits until the state index passes N (a blocking
// query on every commit).
func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	v, err := s.view(r, nil)
	if err != nil {
		s.fail(w, err)
		return
	}
	leaderID, _ := s.cfg.Store.LeaderID()
	st := api.ClusterStatus{ServerID: s.cfg.ID, Leader: leaderID, Index: v.Index(), Version: s.cfg.Version}
	if srv, ok := serverInfo(v, leaderID); ok {
		st.LeaderAddr = srv.Spec.HTTPAddr
	}
	members, err := s.cfg.Store.Members()
	if err != nil {
		s.fail(w, err)
		return
	}
	for _, m := range members {
		ss := api.ServerStatus{ID: m.ID, RaftAddr: m.Addr, Voter: m.Voter, Leader: m.ID == leaderID}
		if srv, ok := serverInfo(v, m.ID); ok {
			ss.HTTPAddr = srv.Spec.HTTPAddr
		}
		st.Servers = append(st.Servers, ss)
	}
	writeJSON(w, http.StatusOK, v.Index(), st)
}

func serverInfo(v *raftstore.View, id string) (*api.Server, bool) {
	if id == "" {
		return nil, false
	}
	o, ok := v.Get(raftstore.Servers, "", id)
	if !ok {
		return nil, false
	}
	srv, ok := o.(*api.Server)
	return srv, ok
}

// writeHandler handles a write on the leader and returns the state index
// the write committed at.
type writeHandler func(w http.ResponseWriter, r *http.Request, body []byte) error

// write wraps a write handler: it reads the body under the size limit and
// either runs the handler on the leader or forwards the request to it.
func (s *Server) write(h writeHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				s.fail(w, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("request body is larger than %d bytes; split the manifest into several files", api.MaxBodyBytes)))
				return
			}
			s.fail(w, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err)))
			return
		}
		if !s.cfg.Store.IsLeader() {
			s.forward(w, r, body)
			return
		}
		if err := h(w, r, body); err != nil {
			s.fail(w, err)
		}
	}
}

// leaderWait bounds how long a follower waits to learn where the leader's
// API listens: a new leader records its address as its first write, which
// reaches followers a moment after they learn its ID.
const leaderWait = 3 * time.Second

// leaderInfo returns the recorded address of the current leader, waiting
// up to leaderWait for a leader and its record to be known here.
func (s *Server) leaderInfo(ctx context.Context) (*api.Server, string, bool) {
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	for {
		v := s.cfg.Store.View()
		leaderID, _ := s.cfg.Store.LeaderID()
		if srv, ok := serverInfo(v, leaderID); ok {
			return srv, leaderID, true
		}
		if leaderID == "" {
			// No leader known: Raft may elect one within the wait, but no
			// state change tells us; look again shortly.
			select {
			case <-ctx.Done():
				return nil, "", false
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if _, err := s.cfg.Store.WaitForIndex(ctx, v.Index()); err != nil {
			return nil, leaderID, false
		}
	}
}

// forward sends a write or a consistent read to the leader and copies its
// answer back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Header.Get(headerForwarded) != "" {
		s.fail(w, apierrors.NewServiceUnavailable("leadership changed while the request was forwarded; retry"))
		return
	}
	srv, leaderID, ok := s.leaderInfo(r.Context())
	if !ok {
		s.fail(w, apierrors.NewServiceUnavailable("no leader elected yet; retry in a few seconds"))
		return
	}
	u := "http://" + srv.Spec.HTTPAddr + r.URL.RequestURI()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, u, bytes.NewReader(body))
	if err != nil {
		s.fail(w, err)
		return
	}
	req.Header = r.Header.Clone()
	req.Header.Set(headerForwarded, s.cfg.ID)
	if req.Header.Get(headerRequestID) == "" {
		req.Header.Set(headerRequestID, newRequestID())
	}
	resp, err := s.cfg.ForwardClient.Do(req)
	if err != nil {
		s.fail(w, apierrors.NewServiceUnavailable(fmt.Sprintf("forward to leader %s at %s: %v", leaderID, srv.Spec.HTTPAddr, err)))
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// commit applies a transaction on the leader. The request ID comes from the
// client when it sent one, so that a retry of a write whose outcome it could
// not learn is applied once. attempt numbers the server's own retries after
// a conflict: each is a new transaction and needs an ID of its own.
func (s *Server) commit(r *http.Request, ops []raftstore.Op, attempt int) (uint64, error) {
	id := r.Header.Get(headerRequestID)
	if id == "" {
		id = newRequestID()
	}
	return s.commitID(r.Context(), id+"/"+strconv.Itoa(attempt), ops)
}

func (s *Server) commitID(ctx context.Context, id string, ops []raftstore.Op) (uint64, error) {
	idx, err := s.cfg.Store.Apply(ctx, raftstore.Txn{RequestID: id, Ops: ops})
	if err != nil {
		return 0, err
	}
	return idx, nil
}

// newRequestID returns a random ID for a write.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// fail writes err as a Kubernetes Status object with the matching HTTP code.
func (s *Server) fail(w http.ResponseWriter, err error) {
	st := toStatus(err)
	if st.Code >= 500 {
		s.log.Warn("request failed", "error", err)
	}
	writeJSON(w, int(st.Code), 0, st)
}

// toStatus maps an error to the Status the client sees.
func toStatus(err error) metav1.Status {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status()
	}
	var txnErr *raftstore.TxnError
	if errors.As(err, &txnErr) {
		gr := schema.GroupResource{Resource: string(txnErr.Kind)}
		switch {
		case errors.Is(err, raftstore.ErrNotFound):
			return apierrors.NewNotFound(gr, txnErr.Name).Status()
		case errors.Is(err, raftstore.ErrAlreadyExists):
			return apierrors.NewAlreadyExists(gr, txnErr.Name).Status()
		case errors.Is(err, raftstore.ErrConflict):
			return apierrors.NewConflict(gr, txnErr.Name, errors.New("the object has been modified; please apply your changes to the latest version and try again")).Status()
		}
	}
	var notLeader *raftstore.NotLeaderError
	if errors.As(err, &notLeader) {
		return apierrors.NewServiceUnavailable("no leader elected yet; retry in a few seconds").Status()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return apierrors.NewTimeoutError("the write did not commit in time; its outcome is unknown, retry with the same request ID", 1).Status()
	}
	return apierrors.NewInternalError(err).Status()
}

// writeStored answers a write that committed at index: with the object as
// now stored (what stored returns), or, when the client asked with
// "Prefer: return=minimal" (RFC 7240), with 204 No Content and the index
// alone. An agent's events and status reports do not read the object
// back, and encoding it is a good part of what a write costs the leader.
func writeStored(w http.ResponseWriter, r *http.Request, index uint64, stored func() any) {
	if !prefersMinimal(r.Header) {
		writeJSON(w, http.StatusOK, index, stored())
		return
	}
	w.Header().Set("Preference-Applied", api.PreferMinimal)
	setIndex(w.Header(), index)
	w.WriteHeader(http.StatusNoContent)
}

// prefersMinimal reports whether the Prefer headers of h hold the
// preference return=minimal. Names and values are matched without regard
// to case, and a preference's parameters (after ";") are ignored.
func prefersMinimal(h http.Header) bool {
	for _, line := range h["Prefer"] {
		for more := true; more; {
			var pref string
			pref, line, more = strings.Cut(line, ",")
			pref, _, _ = strings.Cut(pref, ";")
			name, value, _ := strings.Cut(pref, "=")
			if strings.EqualFold(strings.TrimSpace(name), "return") &&
				strings.EqualFold(strings.Trim(strings.TrimSpace(value), `"`), "minimal") {
				return true
			}
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, code int, index uint64, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		data = []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encode answer","code":500}`)
	}
	w.Header().Set("Content-Type", "application/json")
	setIndex(w.Header(), index)
	w.WriteHeader(code)
	w.Write(data)
	w.Write([]byte("\n"))
}

// setIndex puts the state index an answer was read or written at in h;
// index 0 (none known) puts nothing.
func setIndex(h http.Header, index uint64) {
	if index > 0 {
		h.Set(api.HeaderIndex, strconv.FormatUint(index, 10))
	}
}
