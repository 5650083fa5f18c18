package acl

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
)

// Verdict is the outcome of a check.
type Verdict int

// The verdicts, each with the HTTP status the API answers.
const (
	// Allow lets the request through.
	Allow Verdict = iota
	// Unauthenticated (401): no token, or one that is malformed, unknown
	// or revoked.
	Unauthenticated
	// Forbidden (403): the caller is known, but its role does not allow
	// the request.
	Forbidden
	// NotFound (404): the object a rule must look at does not exist, so
	// neither would the request find it.
	NotFound
)

// Decision is a verdict and, unless it allows, why.
type Decision struct {
	Verdict Verdict
	Reason  string
}

// Allowed reports whether d lets the request through.
func (d Decision) Allowed() bool { return d.Verdict == Allow }

var allow = Decision{Verdict: Allow}

func deny(v Verdict, format string, args ...any) Decision {
	return Decision{Verdict: v, Reason: fmt.Sprintf(format, args...)}
}

// Caller is who sends a request.
type Caller struct {
	// Token is the caller's valid token (see Authenticate); nil when it
	// sent none.
	Token *api.Token
	// Cert is the identity of the verified certificate the caller
	// presented over TLS; nil without TLS.
	Cert *api.CertIdentity
}

// Request is what the rules look at.
type Request struct {
	// Method is the HTTP method; HEAD counts as GET.
	Method string
	// Path is the URL path's segments as the API's router matches them
	// (see ParsePath): ["v1", "namespaces", "default", "pods", "web-0"].
	Path []string
	// Event is the body of a PUT of an event, decoded, when NeedsEvent
	// said the rules need it.
	Event *corev1.Event
}

// ParsePath splits an escaped URL path into its unescaped segments, the
// way the API's router matches it. It returns nil for a path that is not
// clean (empty, "." or ".." segments, or a bad escape): the router
// redirects or refuses those, and no rule but management's grants them.
func ParsePath(escaped string) []string {
	rest, ok := strings.CutPrefix(escaped, "/")
	if !ok || rest == "" {
		return nil
	}
	segs := strings.Split(rest, "/")
	for i, s := range segs {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" || u == "." || u == ".." {
			return nil
		}
		segs[i] = u
	}
	return segs
}

// State is what the rules need to know of the cluster's state: the
// server's own replica, read when the request arrives.
type State interface {
	// PodNode returns the node pod ns/name is bound to ("" when none),
	// and whether the pod exists.
	PodNode(ns, name string) (node string, exists bool)
	// EventHost returns the source host of event ns/name and whether the
	// event exists.
	EventHost(ns, name string) (host string, exists bool)
	// ClaimNodes returns the nodes whose agents may write claim ns/name:
	// those of the pods that mount it, the node recorded as holding its
	// volume (stead.io/attached-node), which clears that record when it
	// detaches, and the node asked to delete its data
	// (stead.io/data-deleter), which removes the claim's data finalizer.
	ClaimNodes(ns, name string) []string
}

// Policy is how a server checks requests.
type Policy struct {
	// ACL turns token checks on: then every request needs a token unless
	// a rule below says otherwise (default deny).
	ACL bool
	// TLS says requests arrive over mutual TLS, so they carry a verified
	// certificate; Cluster is the cluster its server certificates name.
	TLS     bool
	Cluster string
}

// is reports whether path is exactly want, where "*" matches any segment.
func is(path []string, want ...string) bool {
	if len(path) != len(want) {
		return false
	}
	for i, w := range want {
		if w != "*" && w != path[i] {
			return false
		}
	}
	return true
}

func isRead(method string) bool { return method == http.MethodGet || method == http.MethodHead }

// open are the requests anyone may send: liveness and readiness carry
// nothing worth hiding and load balancers ask them.
func open(r Request) bool {
	return isRead(r.Method) && (is(r.Path, "v1", "health") || is(r.Path, "v1", "ready"))
}

// isJoin is a server asking to join the Raft group.
func isJoin(r Request) bool { return r.Method == http.MethodPost && is(r.Path, "v1", "join") }

// serverRead are the reads servers make of each other while they form or
// join a cluster, before any of them could hold a token.
func serverRead(r Request) bool {
	return isRead(r.Method) && (is(r.Path, "v1", "join-info") || is(r.Path, "v1", "operator", "raft", "configuration") || is(r.Path, "v1", "status"))
}

func isBootstrap(r Request) bool {
	return r.Method == http.MethodPost && is(r.Path, "v1", "acl", "bootstrap")
}

// isSelf reads the caller's own token.
func isSelf(r Request) bool { return isRead(r.Method) && is(r.Path, "v1", "acl", "token", "self") }

func (p Policy) serverCert(c Caller) bool {
	return c.Cert != nil && c.Cert.Role == api.CertServer && c.Cert.Cluster == p.Cluster
}

// NeedsEvent reports whether Authorize needs the request's body decoded
// as an event: an agent writing an event.
func NeedsEvent(c Caller, r Request) bool {
	return c.Token != nil && c.Token.Spec.Role == api.TokenAgent && r.Method == http.MethodPut &&
		is(r.Path, "v1", "namespaces", "*", "events", "*")
}

// Authorize decides whether c may send r.
func (p Policy) Authorize(c Caller, r Request, st State) Decision {
	if isRead(r.Method) {
		r.Method = http.MethodGet
	}
	if open(r) {
		return allow
	}
	// Certificates first: an agent's certificate must never join Raft,
	// whatever token comes with it, ACLs on or off.
	if p.TLS && isJoin(r) {
		if !p.serverCert(c) {
			return deny(Forbidden, "only a server certificate of cluster %q (%s) may join the cluster; this one is %s",
				p.Cluster, api.ServerName(p.Cluster), describeCert(c.Cert))
		}
		return allow
	}
	if p.serverCert(c) && serverRead(r) {
		return allow
	}
	if !p.ACL {
		return allow
	}
	if isBootstrap(r) {
		// Anyone, once: the handler refuses every call after the first.
		return allow
	}
	tok := c.Token
	if tok == nil {
		return deny(Unauthenticated, "ACLs are on and the request carries no token: pass --token or set STEAD_TOKEN ('stead acl bootstrap' makes the first one)")
	}
	// Reading a token's own record needs no more than its secret; an
	// agent asks it with its certificate to check the tokens its own API
	// is called with.
	if isSelf(r) {
		return allow
	}
	if c.Cert != nil && c.Cert.Role == api.CertAgent && (tok.Spec.Role != api.TokenAgent || tok.Spec.Node != c.Cert.Node) {
		return deny(Forbidden, "the certificate of node %s's agent may act only with that node's agent token, not token %s (%s)",
			c.Cert.Node, tok.Name, describeToken(tok))
	}
	switch tok.Spec.Role {
	case api.TokenManagement:
		return allow
	case api.TokenReadOnly:
		// An unclean path (nil) is refused: the router would redirect
		// it, and the redirect's target is checked on its own.
		if r.Method == http.MethodGet && len(r.Path) > 0 && !managementRead(r.Path) {
			return allow
		}
		return deny(Forbidden, "token %s is read-only: it may not %s %s", tok.Name, r.Method, "/"+strings.Join(r.Path, "/"))
	case api.TokenAgent:
		return AgentRule(tok.Spec.Node, r, st, tok.Name)
	}
	return deny(Forbidden, "token %s has unknown role %q", tok.Name, tok.Spec.Role)
}

// managementRead are the reads only a management token may make: the
// tokens, and a snapshot of the whole state, which holds the tokens'
// records.
func managementRead(p []string) bool {
	return len(p) >= 2 && p[0] == "v1" && p[1] == "acl" || is(p, "v1", "operator", "snapshot")
}

// agentReads are the resources an agent reads, and why: its
// assignments, and what every node's cluster DNS answers (pods,
// services, namespaces) and its routes to other nodes' pod subnets
// (nodes) are built from. Pods are read cluster-wide because DNS answers
// for every pod; an agent writes only its own.
//
// Claims are read cluster-wide too: an agent follows them to grow the
// volumes it holds and to delete the data of deleted claims it is asked
// to.
var agentReads = map[string]bool{"pods": true, "services": true, "namespaces": true, "nodes": true, "persistentvolumeclaims": true}

// AgentRule decides what the agent of node may do (token names the
// token in the reason):
//
//   - read pods, services, namespaces, nodes and the cluster's status;
//   - register and renew its own node: PUT /v1/nodes/NODE, POST
//     /v1/nodes/NODE/heartbeat;
//   - report the status of a pod bound to its node (PUT .../status) and
//     confirm that such a pod is gone (DELETE), nothing of another
//     node's pods;
//   - write events its node is the source of, about itself or its pods;
//   - read claims, and write those State.ClaimNodes names it for.
//
// Everything else is forbidden.
func AgentRule(node string, r Request, st State, token string) Decision {
	p := r.Path
	refuse := func(format string, args ...any) Decision {
		return deny(Forbidden, "agent token %s of node %s: %s", token, node, fmt.Sprintf(format, args...))
	}
	switch r.Method {
	case http.MethodGet:
		switch {
		case is(p, "v1", "status"),
			is(p, "v1", "*") && agentReads[p[1]],
			is(p, "v1", "*", "*") && (p[1] == "namespaces" || p[1] == "nodes"),
			is(p, "v1", "namespaces", "*", "*") && (p[3] == "pods" || p[3] == "services" || p[3] == "persistentvolumeclaims"),
			is(p, "v1", "namespaces", "*", "*", "*") && (p[3] == "pods" || p[3] == "services"),
			// A node mounts the volumes of its pods: it reads their claims.
			is(p, "v1", "namespaces", "*", "persistentvolumeclaims", "*"),
			is(p, "v1", "namespaces", "*", "pods", "*", "status"):
			return allow
		}
		return refuse("it may not read %s", "/"+strings.Join(p, "/"))
	case http.MethodPut:
		switch {
		case is(p, "v1", "nodes", "*"):
			if p[2] != node {
				return refuse("it may not register node %s", p[2])
			}
			return allow
		case is(p, "v1", "namespaces", "*", "pods", "*", "status"):
			return ownPod(node, p[2], p[4], st, refuse, "report the status of")
		case is(p, "v1", "namespaces", "*", "events", "*"):
			return agentEvent(node, p[2], p[4], r.Event, st, refuse)
		case is(p, "v1", "namespaces", "*", "persistentvolumeclaims", "*"):
			// A node records that it holds a claim's volume only for a
			// claim one of its own pods mounts; it clears the record of
			// a volume it holds, and finishes deleting a claim whose
			// data it was asked to delete.
			if !slices.Contains(st.ClaimNodes(p[2], p[4]), node) {
				return refuse("it may not write claim %s/%s: no pod on node %s mounts it, the node does not hold its volume and was not asked to delete its data", p[2], p[4], node)
			}
			return allow
		}
	case http.MethodPost:
		if is(p, "v1", "nodes", "*", "heartbeat") {
			if p[2] != node {
				return refuse("it may not renew the lease of node %s", p[2])
			}
			return allow
		}
	case http.MethodDelete:
		if is(p, "v1", "namespaces", "*", "pods", "*") {
			return ownPod(node, p[2], p[4], st, refuse, "delete")
		}
	}
	return refuse("it may not %s %s", r.Method, "/"+strings.Join(p, "/"))
}

// ownPod allows a change to pod ns/name only if it is bound to node.
func ownPod(node, ns, name string, st State, refuse func(string, ...any) Decision, what string) Decision {
	bound, ok := st.PodNode(ns, name)
	switch {
	case !ok:
		return deny(NotFound, "pod %s/%s not found", ns, name)
	case bound != node:
		where := "node " + bound
		if bound == "" {
			where = "no node"
		}
		return refuse("it may not %s pod %s/%s, which is bound to %s", what, ns, name, where)
	}
	return allow
}

// agentEvent allows an event whose source is node, about node itself or
// one of its pods, that replaces no event of another source.
func agentEvent(node, ns, name string, ev *corev1.Event, st State, refuse func(string, ...any) Decision) Decision {
	if ev == nil {
		return refuse("the event's body is missing")
	}
	if ev.Source.Host != node {
		return refuse("it may write only events whose source.host is %s, not %q", node, ev.Source.Host)
	}
	if host, ok := st.EventHost(ns, name); ok && host != node {
		return refuse("event %s/%s comes from %q", ns, name, host)
	}
	obj := ev.InvolvedObject
	switch obj.Kind {
	case "Node":
		if obj.Name != node {
			return refuse("it may not write events about node %s", obj.Name)
		}
		return allow
	case "Pod":
		if obj.Namespace != "" && obj.Namespace != ns {
			return refuse("the event in namespace %s is about pod %s/%s", ns, obj.Namespace, obj.Name)
		}
		// An event may outlive its pod by a moment: the pod's record
		// goes as soon as the agent confirms it stopped.
		if bound, ok := st.PodNode(ns, obj.Name); ok && bound != node {
			return refuse("it may not write events about pod %s/%s, which is not bound to it", ns, obj.Name)
		}
		return allow
	}
	return refuse("it may write events only about its node and its pods, not a %q", obj.Kind)
}

func describeCert(id *api.CertIdentity) string {
	switch {
	case id == nil:
		return "none"
	case id.Role == api.CertAgent:
		return fmt.Sprintf("node %s's agent certificate of cluster %q", id.Node, id.Cluster)
	}
	return fmt.Sprintf("a %s certificate of cluster %q", id.Role, id.Cluster)
}

func describeToken(t *api.Token) string {
	if t.Spec.Role == api.TokenAgent {
		return "agent of node " + t.Spec.Node
	}
	return string(t.Spec.Role)
}
