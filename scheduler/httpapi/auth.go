package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// Security says how the API checks its callers (package acl has the
// rules, docs/security.md explains them).
type Security struct {
	// ACL turns token checks on: every request needs a token whose role
	// allows it, but for the few that package acl opens to anyone.
	ACL bool
	// Cluster is the cluster named by the server certificates, when the
	// API is served over mutual TLS: POST /v1/join then needs one.
	Cluster string
	// RateLimit is how many requests per second each token, or each
	// source address for requests without a valid token, may send on
	// average, in bursts of RateBurst; 0 means no limit. Other servers
	// (server certificates) are not limited.
	RateLimit float64
	RateBurst int
	// Now is the rate limiter's clock; time.Now when nil.
	Now func() time.Time
	// TokenCatchUp bounds how long a follower waits for a token it does
	// not know to reach its replica before it refuses the request;
	// DefaultTokenCatchUp when 0.
	TokenCatchUp time.Duration
	// BootstrapResetFile, when set, lets an operator with access to the
	// leader's disk bootstrap again after every management token was
	// lost: writing the reset index a refused bootstrap names into this
	// file allows one more bootstrap, which replaces the bootstrap token.
	BootstrapResetFile string
}

// Secure adds the ACL endpoints and returns the API behind the checks of
// sec: serve what it returns instead of s. Call it once, before serving.
//
//	POST   /v1/acl/bootstrap     the first management token, once
//	GET    /v1/acl/tokens        the tokens, never with their secrets
//	POST   /v1/acl/tokens        a new token (api.TokenRequest)
//	DELETE /v1/acl/tokens/{id}   revoke a token
//	GET    /v1/acl/token/self    the caller's own token
func (s *Server) Secure(sec Security) http.Handler {
	if sec.Now == nil {
		sec.Now = time.Now
	}
	if sec.TokenCatchUp == 0 {
		sec.TokenCatchUp = DefaultTokenCatchUp
	}
	s.mux.HandleFunc("POST /v1/acl/bootstrap", s.write(func(w http.ResponseWriter, r *http.Request, _ []byte) error {
		return s.aclBootstrap(w, r, sec.BootstrapResetFile)
	}))
	s.mux.HandleFunc("GET /v1/acl/tokens", s.listTokens)
	s.mux.HandleFunc("POST /v1/acl/tokens", s.write(s.createToken))
	s.mux.HandleFunc("DELETE /v1/acl/tokens/{id}", s.write(s.revokeToken))
	s.mux.HandleFunc("GET /v1/acl/token/self", s.tokenSelf)
	return &guard{s: s, sec: sec, limiter: acl.NewLimiter(sec.RateLimit, sec.RateBurst)}
}

// guard checks every request before the API's router sees it.
type guard struct {
	s       *Server
	sec     Security
	limiter *acl.Limiter
}

// callerKey keys the caller's token in a request's context.
type callerKey struct{}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := g.s
	v := s.cfg.Store.View()
	caller := acl.Caller{}
	if id, ok := api.PeerIdentity(r.TLS); ok {
		caller.Cert = &id
	}
	tok, authn, unknown := authenticate(v, r)
	caller.Token = tok

	// Limit by token; without a valid one by source address, so that
	// guessing tokens is limited too. Servers are not limited: what they
	// forward was limited where it arrived.
	key := ""
	switch {
	case tok != nil:
		key = "token " + tok.Name
	case caller.Cert != nil && caller.Cert.Role == api.CertServer && caller.Cert.Cluster == g.sec.Cluster:
	default:
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		key = "addr " + host
	}
	if key != "" {
		if ok, retry := g.limiter.Allow(key, g.sec.Now()); !ok {
			secs := int(math.Ceil(retry.Seconds()))
			w.Header().Set("Retry-After", fmt.Sprint(secs))
			s.fail(w, apierrors.NewTooManyRequests(fmt.Sprintf("too many requests from %s; retry in %ds", key, secs), secs))
			return
		}
	}

	if g.sec.ACL && unknown && !s.cfg.Store.IsLeader() {
		v, tok, authn = g.awaitToken(r)
		caller.Token = tok
	}
	if g.sec.ACL && !authn.Allowed() {
		g.refuse(w, r, authn)
		return
	}
	req := acl.Request{Method: r.Method, Path: acl.ParsePath(r.URL.EscapedPath())}
	if g.sec.ACL && acl.NeedsEvent(caller, req) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, api.MaxBodyBytes))
		if err != nil {
			s.fail(w, apierrors.NewBadRequest(fmt.Sprintf("read request body: %v", err)))
			return
		}
		var ev corev1.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			s.fail(w, apierrors.NewBadRequest(fmt.Sprintf("decode event: %v", err)))
			return
		}
		req.Event = &ev
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	policy := acl.Policy{ACL: g.sec.ACL, TLS: r.TLS != nil && g.sec.Cluster != "", Cluster: g.sec.Cluster}
	if d := policy.Authorize(caller, req, viewState{v}); !d.Allowed() {
		g.refuse(w, r, d)
		return
	}
	if tok != nil {
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, tok))
	}
	s.mux.ServeHTTP(w, r)
}

// DefaultTokenCatchUp is how long a follower waits for a token it does
// not know to reach its replica before it refuses the request.
const DefaultTokenCatchUp = 2 * time.Second

// authenticate checks r's token against the state in v. unknown says the
// token's ID is not in v at all: the one refusal a lagging replica can
// get wrong, as a token just created is acknowledged once the leader has
// it, before every follower does.
func authenticate(v *raftstore.View, r *http.Request) (tok *api.Token, d acl.Decision, unknown bool) {
	tok, d = acl.Authenticate(r.Header.Get("Authorization"), func(id string) (*api.Token, bool) {
		t, ok := raftstore.GetOf[*api.Token](v, raftstore.Tokens, "", id)
		unknown = !ok
		return t, ok
	})
	return tok, d, unknown && !d.Allowed()
}

// awaitToken authenticates r again each time the tokens change in this
// follower's replica, for up to Security.TokenCatchUp, so that a client that
// creates a token through the leader and uses it at once on a follower is
// not refused. It returns the last view it checked and its decision.
// Guessing tokens gains nothing from it: the rate limit by address has
// been charged before the wait, and an unknown token is still refused.
func (g *guard) awaitToken(r *http.Request) (*raftstore.View, *api.Token, acl.Decision) {
	ctx, cancel := context.WithTimeout(r.Context(), g.sec.TokenCatchUp)
	defer cancel()
	for {
		v := g.s.cfg.Store.View()
		tok, d, unknown := authenticate(v, r)
		if !unknown {
			return v, tok, d
		}
		if _, err := g.s.cfg.Store.WaitForChange(ctx, raftstore.KindChanges(raftstore.Tokens), v.Changed(raftstore.KindChanges(raftstore.Tokens))); err != nil {
			return v, tok, d
		}
	}
}

// refuse answers a request the checks refused, and logs who tried what.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, d acl.Decision) {
	var err error
	switch d.Verdict {
	case acl.Unauthenticated:
		g.s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", d.Reason)
		err = apierrors.NewUnauthorized(d.Reason)
	case acl.NotFound:
		err = &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusNotFound,
			Reason: metav1.StatusReasonNotFound, Message: d.Reason}}
	default:
		g.s.log.Warn("request forbidden", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", d.Reason)
		err = &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
			Reason: metav1.StatusReasonForbidden, Message: d.Reason}}
	}
	g.s.fail(w, err)
}

// viewState answers the rules' questions from one view of the state.
type viewState struct{ v *raftstore.View }

func (s viewState) PodNode(ns, name string) (string, bool) {
	pod, ok := raftstore.GetOf[*corev1.Pod](s.v, raftstore.Pods, ns, name)
	if !ok {
		return "", false
	}
	return pod.Spec.NodeName, true
}

func (s viewState) ClaimNodes(ns, name string) []string {
	var nodes []string
	if pvc, ok := raftstore.GetOf[*corev1.PersistentVolumeClaim](s.v, raftstore.PersistentVolumeClaims, ns, name); ok {
		for _, k := range []string{scheduler.AnnotationAttachedNode, scheduler.AnnotationDataDeleter} {
			if n := pvc.Annotations[k]; n != "" {
				nodes = append(nodes, n)
			}
		}
	}
	for _, pod := range raftstore.ListOf[*corev1.Pod](s.v, raftstore.Pods, ns) {
		if pod.Spec.NodeName == "" {
			continue
		}
		for _, vol := range pod.Spec.Volumes {
			if vol.PersistentVolumeClaim != nil && vol.PersistentVolumeClaim.ClaimName == name {
				nodes = append(nodes, pod.Spec.NodeName)
			}
		}
	}
	return nodes
}

func (s viewState) EventHost(ns, name string) (string, bool) {
	ev, ok := raftstore.GetOf[*corev1.Event](s.v, raftstore.Events, ns, name)
	if !ok {
		return "", false
	}
	return ev.Source.Host, true
}

var tokensGR = schema.GroupResource{Group: "stead.io", Resource: "tokens"}

// aclBootstrap makes the first management token, once: its record stays
// after it is revoked, and a second bootstrap is refused unless the
// operator wrote the bootstrap record's version into resetFile on this
// server (the leader), which then replaces the bootstrap token.
func (s *Server) aclBootstrap(w http.ResponseWriter, r *http.Request, resetFile string) error {
	cur, done := raftstore.GetOf[*api.Token](s.cfg.Store.View(), raftstore.Tokens, "", acl.BootstrapID)
	if done && !resetAllowed(resetFile, cur) {
		return bootstrapDone(cur, resetFile)
	}
	secret, err := acl.NewSecretFor(rand.Reader, acl.BootstrapID)
	if err != nil {
		return err
	}
	tok := s.newToken(acl.BootstrapID, secret, api.TokenRequest{Role: api.TokenManagement, Description: "bootstrap token"})
	tok.Spec.Bootstrap = true
	op, err := raftstore.PutOp(raftstore.Tokens, tok)
	if err != nil {
		return err
	}
	if done {
		op.IfVersion = scheduler.Version(cur)
	} else {
		op.IfAbsent = true
	}
	// A request ID of its own: a retry must never be answered with a
	// secret other than the one stored.
	if _, err := s.commitID(r.Context(), newRequestID(), []raftstore.Op{op}); err != nil {
		if errors.Is(err, raftstore.ErrAlreadyExists) || errors.Is(err, raftstore.ErrConflict) {
			cur, _ := raftstore.GetOf[*api.Token](s.cfg.Store.View(), raftstore.Tokens, "", acl.BootstrapID)
			return bootstrapDone(cur, resetFile)
		}
		return err
	}
	if done {
		os.Remove(resetFile)
		s.log.Warn("ACL bootstrap reset: replaced the bootstrap token", "reset_file", resetFile)
	} else {
		s.log.Info("ACL bootstrap: made the first management token", "token", tok.Name)
	}
	return s.answerNewToken(w, tok, secret)
}

// resetAllowed reports whether resetFile holds the version of the
// bootstrap record cur.
func resetAllowed(resetFile string, cur *api.Token) bool {
	if resetFile == "" {
		return false
	}
	data, err := os.ReadFile(resetFile)
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(data)) == cur.ResourceVersion
}

func bootstrapDone(tok *api.Token, resetFile string) error {
	when, index := "earlier", "?"
	if tok != nil {
		when, index = "at "+tok.CreationTimestamp.UTC().Format(time.RFC3339), tok.ResourceVersion
	}
	how := "see docs/security.md"
	if resetFile != "" {
		how = fmt.Sprintf("write %s into %s on the leader and bootstrap again", index, resetFile)
	}
	return conflict("ACL bootstrap was already done (%s, reset index %s); it works once. Make tokens with a management token "+
		"('stead acl token create'). If every management token is lost: %s", when, index, how)
}

// createToken makes a token of the requested role.
func (s *Server) createToken(w http.ResponseWriter, r *http.Request, body []byte) error {
	var req api.TokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("decode token request: %v", err))
	}
	switch {
	case !req.Role.Valid():
		return apierrors.NewBadRequest(fmt.Sprintf("role %q is not management, read-only or agent", req.Role))
	case req.Role == api.TokenAgent && req.Node == "":
		return apierrors.NewBadRequest("an agent token needs the node it acts for (--node)")
	case req.Role != api.TokenAgent && req.Node != "":
		return apierrors.NewBadRequest(fmt.Sprintf("only agent tokens name a node; a %s token acts for no node", req.Role))
	}
	if req.Node != "" {
		if errs := validation.IsDNS1123Subdomain(req.Node); len(errs) > 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("node %q: %s", req.Node, errs[0]))
		}
	}
	if len(req.Description) > 256 {
		return apierrors.NewBadRequest("the description is longer than 256 bytes")
	}
	id, secret, err := acl.NewSecret(rand.Reader)
	if err != nil {
		return err
	}
	tok := s.newToken(id, secret, req)
	op, err := raftstore.PutOp(raftstore.Tokens, tok)
	if err != nil {
		return err
	}
	op.IfAbsent = true
	// A request ID of its own: a retry of a request whose answer was lost
	// makes another token rather than answer with a secret never stored.
	if _, err := s.commitID(r.Context(), newRequestID(), []raftstore.Op{op}); err != nil {
		return err
	}
	s.log.Info("made a token", "token", tok.Name, "role", tok.Spec.Role, "node", tok.Spec.Node)
	return s.answerNewToken(w, tok, secret)
}

func (s *Server) newToken(id, secret string, req api.TokenRequest) *api.Token {
	tok := &api.Token{
		TypeMeta:   raftstore.Tokens.TypeMeta(),
		ObjectMeta: metav1.ObjectMeta{Name: id},
		Spec:       api.TokenSpec{Role: req.Role, Node: req.Node, Description: req.Description, SecretHash: acl.HashSecret(secret)},
	}
	s.stampNew(tok)
	return tok
}

func (s *Server) answerNewToken(w http.ResponseWriter, tok *api.Token, secret string) error {
	stored, ok := raftstore.GetOf[*api.Token](s.cfg.Store.View(), raftstore.Tokens, "", tok.Name)
	if !ok {
		stored = tok
	}
	writeJSON(w, http.StatusOK, s.cfg.Store.View().Index(), api.NewToken{TokenInfo: stored.Info(), Secret: secret})
	return nil
}

// listTokens lists every token, revoked ones included, without their
// secrets' hashes.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	v := s.cfg.Store.View()
	out := api.TokenList{Items: []api.TokenInfo{}}
	for _, tok := range raftstore.ListOf[*api.Token](v, raftstore.Tokens, "") {
		out.Items = append(out.Items, tok.Info())
	}
	writeJSON(w, http.StatusOK, v.Index(), out)
}

// revokeToken marks a token revoked. It refuses to revoke the last
// management token that is not: nobody could manage tokens again.
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, _ []byte) error {
	id := r.PathValue("id")
	var info api.TokenInfo
	var idx uint64
	attempt := 0
	err := retryConflicts(func() error {
		v := s.cfg.Store.View()
		cur, ok := raftstore.GetOf[*api.Token](v, raftstore.Tokens, "", id)
		if !ok {
			return apierrors.NewNotFound(tokensGR, id)
		}
		info, idx = cur.Info(), v.Index()
		if cur.Spec.Revoked != nil {
			return nil
		}
		if cur.Spec.Role == api.TokenManagement {
			live := 0
			for _, t := range raftstore.ListOf[*api.Token](v, raftstore.Tokens, "") {
				if t.Spec.Role == api.TokenManagement && t.Spec.Revoked == nil {
					live++
				}
			}
			if live == 1 {
				return conflict("token %s is the last management token: make another one first ('stead acl token create --role management'), then revoke this one", id)
			}
		}
		tok := cur.DeepCopyObject().(*api.Token)
		now := metav1.NewTime(s.cfg.Now().UTC().Truncate(time.Second))
		tok.Spec.Revoked = &now
		op, err := scheduler.PutOp(raftstore.Tokens, tok, scheduler.Version(cur))
		if err != nil {
			return err
		}
		idx, err = s.commit(r, []raftstore.Op{op}, attempt)
		attempt++
		info = tok.Info()
		return err
	})
	if err != nil {
		return err
	}
	s.log.Info("revoked a token", "token", id)
	writeJSON(w, http.StatusOK, idx, info)
	return nil
}

// tokenSelf shows the caller its own token.
func (s *Server) tokenSelf(w http.ResponseWriter, r *http.Request) {
	tok, _ := r.Context().Value(callerKey{}).(*api.Token)
	if tok == nil {
		s.fail(w, apierrors.NewUnauthorized("the request carries no valid token"))
		return
	}
	writeJSON(w, http.StatusOK, s.cfg.Store.View().Index(), tok.Info())
}

// checkOwner repeats, inside a write's retry loop and against the object
// it is about to change, the rule that an agent token acts only on pods
// bound to its own node: the check before the router saw an earlier state,
// and the pod may have been deleted and re-created elsewhere since.
func (s *Server) checkOwner(r *http.Request, cur raftstore.Object) error {
	tok, _ := r.Context().Value(callerKey{}).(*api.Token)
	pod, isPod := cur.(*corev1.Pod)
	if tok == nil || tok.Spec.Role != api.TokenAgent || !isPod || pod.Spec.NodeName == tok.Spec.Node {
		return nil
	}
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
		Message: fmt.Sprintf("pod %s/%s is bound to node %q, not to this agent's node %q", pod.Namespace, pod.Name, pod.Spec.NodeName, tok.Spec.Node)}}
}
