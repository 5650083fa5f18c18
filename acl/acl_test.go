package acl_test

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
)

func TestSecrets(t *testing.T) {
	id, secret, err := acl.NewSecret(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := acl.SecretID(secret); !ok || got != id {
		t.Fatalf("SecretID(%q) = %q, %v; want %q", secret, got, ok, id)
	}
	hash := acl.HashSecret(secret)
	if strings.Contains(hash, secret) || len(hash) != 64 {
		t.Fatalf("hash %q", hash)
	}
	if !acl.SecretMatches(hash, secret) {
		t.Error("a secret does not match its own hash")
	}
	_, other, _ := acl.NewSecret(rand.Reader)
	for name, s := range map[string]string{"another secret": other, "empty": "", "one byte more": secret + "0", "one byte less": secret[:len(secret)-1]} {
		if acl.SecretMatches(hash, s) {
			t.Errorf("%s matches", name)
		}
	}
	if acl.SecretMatches("nothex", secret) || acl.SecretMatches("", secret) {
		t.Error("a malformed hash matches")
	}
	// A fixed reader gives a fixed secret: the shape is id "." key.
	id, secret, _ = acl.NewSecret(bytes.NewReader(bytes.Repeat([]byte{0xab}, 40)))
	if id != strings.Repeat("ab", 8) || secret != id+"."+strings.Repeat("ab", 32) {
		t.Errorf("NewSecret from 0xab bytes = %q, %q", id, secret)
	}
	boot, err := acl.NewSecretFor(rand.Reader, acl.BootstrapID)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := acl.SecretID(boot); !ok || got != "bootstrap" {
		t.Errorf("SecretID(%q) = %q, %v", boot, got, ok)
	}
	for _, bad := range []string{"other." + strings.Repeat("ab", 32), "", "abc", id, id + ".", "." + strings.Repeat("ab", 32), strings.ToUpper(secret), id + "." + strings.Repeat("zz", 32), secret + ".x"} {
		if _, ok := acl.SecretID(bad); ok {
			t.Errorf("SecretID accepted %q", bad)
		}
	}
}

func token(id string, role api.TokenRole, node, secret string) *api.Token {
	tok := &api.Token{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: api.TokenSpec{Role: role, Node: node}}
	if secret != "" {
		tok.Spec.SecretHash = acl.HashSecret(secret)
	}
	return tok
}

func TestAuthenticate(t *testing.T) {
	mgmtID, mgmt, _ := acl.NewSecret(rand.Reader)
	revokedID, revoked, _ := acl.NewSecret(rand.Reader)
	_, unknown, _ := acl.NewSecret(rand.Reader)
	when := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	tokens := map[string]*api.Token{
		mgmtID:    token(mgmtID, api.TokenManagement, "", mgmt),
		revokedID: token(revokedID, api.TokenReadOnly, "", revoked),
	}
	tokens[revokedID].Spec.Revoked = &when
	lookup := func(id string) (*api.Token, bool) { tok, ok := tokens[id]; return tok, ok }
	// A secret with a known ID but another key.
	forged := mgmtID + "." + strings.Repeat("0", 64)

	cases := []struct {
		name   string
		header string
		want   string // token ID, or "" for none
		reason string // part of the refusal; "" when allowed
	}{
		{"no header", "", "", ""},
		{"management", "Bearer " + mgmt, mgmtID, ""},
		{"not bearer", "Basic " + mgmt, "", "is not \"Bearer TOKEN\""},
		{"malformed", "Bearer nonsense", "", "malformed"},
		{"unknown", "Bearer " + unknown, "", "not known"},
		{"forged key", "Bearer " + forged, "", "not known"},
		{"revoked", "Bearer " + revoked, "", "revoked at 2026-01-02T03:04:05Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, d := acl.Authenticate(tc.header, lookup)
			got := ""
			if tok != nil {
				got = tok.Name
			}
			if got != tc.want {
				t.Errorf("token %q, want %q", got, tc.want)
			}
			if tc.reason == "" {
				if !d.Allowed() {
					t.Errorf("refused: %s", d.Reason)
				}
				return
			}
			if d.Verdict != acl.Unauthenticated || !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("decision %+v; want Unauthenticated with %q", d, tc.reason)
			}
		})
	}
}

// state is a cluster of two nodes' pods and events.
type state struct {
	pods   map[string]string   // ns/name -> node
	events map[string]string   // ns/name -> source host
	claims map[string][]string // ns/name -> nodes that may write it
}

func (s state) ClaimNodes(ns, name string) []string { return s.claims[ns+"/"+name] }

func (s state) PodNode(ns, name string) (string, bool) {
	n, ok := s.pods[ns+"/"+name]
	return n, ok
}

func (s state) EventHost(ns, name string) (string, bool) {
	h, ok := s.events[ns+"/"+name]
	return h, ok
}

func podEvent(host, ns, pod string) *corev1.Event {
	return &corev1.Event{
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
		Source:         corev1.EventSource{Component: "stead-agent", Host: host},
	}
}

func TestAuthorize(t *testing.T) {
	st := state{
		pods: map[string]string{
			"default/web-0": "node-a", "default/web-1": "node-b", "default/web-2": "",
		},
		events: map[string]string{"default/web-1.b1": "node-b", "default/web-0.a1": "node-a"},
		// www-web-7: no pod mounts it; node-a holds its volume or deletes its data.
		claims: map[string][]string{"default/www-web-0": {"node-a"}, "default/www-web-1": {"node-b"}, "default/www-web-7": {"node-a"}},
	}
	mgmt := token("m1", api.TokenManagement, "", "")
	ro := token("r1", api.TokenReadOnly, "", "")
	agentA := token("a1", api.TokenAgent, "node-a", "")
	agentB := token("b1", api.TokenAgent, "node-b", "")
	serverCert := &api.CertIdentity{Role: api.CertServer, Cluster: "global"}
	otherServer := &api.CertIdentity{Role: api.CertServer, Cluster: "prod"}
	agentCertA := &api.CertIdentity{Role: api.CertAgent, Cluster: "global", Node: "node-a"}
	clientCert := &api.CertIdentity{Role: api.CertClient, Cluster: "global"}

	aclOn := acl.Policy{ACL: true}
	aclTLS := acl.Policy{ACL: true, TLS: true, Cluster: "global"}
	tlsOnly := acl.Policy{TLS: true, Cluster: "global"}
	off := acl.Policy{}

	const (
		ok    = acl.Allow
		n401  = acl.Unauthenticated
		n403  = acl.Forbidden
		n404  = acl.NotFound
		get   = http.MethodGet
		put   = http.MethodPut
		post  = http.MethodPost
		del   = http.MethodDelete
		head  = http.MethodHead
		patch = http.MethodPatch
	)
	cases := []struct {
		name   string
		policy acl.Policy
		caller acl.Caller
		method string
		path   string
		event  *corev1.Event
		want   acl.Verdict
	}{
		// ACLs off: everything but a join without a server certificate.
		{"off: anonymous write", off, acl.Caller{}, post, "/v1/apply", nil, ok},
		{"off: anonymous join without TLS", off, acl.Caller{}, post, "/v1/join", nil, ok},
		{"tls: client certificate joins", tlsOnly, acl.Caller{Cert: clientCert}, post, "/v1/join", nil, n403},
		{"tls: agent certificate joins", tlsOnly, acl.Caller{Cert: agentCertA}, post, "/v1/join", nil, n403},
		{"tls: agent certificate with a management token joins", aclTLS, acl.Caller{Cert: agentCertA, Token: mgmt}, post, "/v1/join", nil, n403},
		{"tls: client certificate with a management token joins", aclTLS, acl.Caller{Cert: clientCert, Token: mgmt}, post, "/v1/join", nil, n403},
		{"tls: server of another cluster joins", tlsOnly, acl.Caller{Cert: otherServer}, post, "/v1/join", nil, n403},
		{"tls: server joins", tlsOnly, acl.Caller{Cert: serverCert}, post, "/v1/join", nil, ok},
		{"tls: client writes without ACLs", tlsOnly, acl.Caller{Cert: clientCert}, post, "/v1/apply", nil, ok},

		// Claims: an agent reads any, writes only those its own pods mount.
		{"agent reads a claim", aclOn, acl.Caller{Token: agentA}, get, "/v1/namespaces/default/persistentvolumeclaims/www-web-1", nil, ok},
		{"agent records holding its pod's claim", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/persistentvolumeclaims/www-web-0", nil, ok},
		{"agent writes another node's claim", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/persistentvolumeclaims/www-web-1", nil, n403},
		{"agent writes a claim no pod mounts", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/persistentvolumeclaims/www-web-9", nil, n403},
		{"agent finishes deleting a claim it holds the data of", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/persistentvolumeclaims/www-web-7", nil, ok},
		{"agent finishes deleting another node's claim", aclOn, acl.Caller{Token: agentB}, put, "/v1/namespaces/default/persistentvolumeclaims/www-web-7", nil, n403},
		{"agent deletes a claim", aclOn, acl.Caller{Token: agentA}, del, "/v1/namespaces/default/persistentvolumeclaims/www-web-0", nil, n403},

		// Open to anyone.
		{"health", aclOn, acl.Caller{}, get, "/v1/health", nil, ok},
		{"ready", aclOn, acl.Caller{}, head, "/v1/ready", nil, ok},
		{"bootstrap", aclOn, acl.Caller{}, post, "/v1/acl/bootstrap", nil, ok},
		{"bootstrap is POST only", aclOn, acl.Caller{}, get, "/v1/acl/bootstrap", nil, n401},

		// No token: 401 for everything else.
		{"no token: list pods", aclOn, acl.Caller{}, get, "/v1/pods", nil, n401},
		{"no token: apply", aclOn, acl.Caller{}, post, "/v1/apply", nil, n401},
		{"no token: metrics", aclOn, acl.Caller{}, get, "/metrics", nil, n401},
		{"no token: join without TLS", aclOn, acl.Caller{}, post, "/v1/join", nil, n401},
		{"no token: client certificate reads status", aclTLS, acl.Caller{Cert: clientCert}, get, "/v1/status", nil, n401},
		{"no token: tokens", aclOn, acl.Caller{}, get, "/v1/acl/tokens", nil, n401},

		// A server certificate reads what forming a cluster needs, nothing else.
		{"server: join-info", aclTLS, acl.Caller{Cert: serverCert}, get, "/v1/join-info", nil, ok},
		{"server: raft configuration", aclTLS, acl.Caller{Cert: serverCert}, get, "/v1/operator/raft/configuration", nil, ok},
		{"server: status", aclTLS, acl.Caller{Cert: serverCert}, get, "/v1/status", nil, ok},
		{"server: pods need a token", aclTLS, acl.Caller{Cert: serverCert}, get, "/v1/pods", nil, n401},
		{"server: remove a peer needs a token", aclTLS, acl.Caller{Cert: serverCert}, del, "/v1/operator/raft/peers/s2", nil, n401},
		{"server: forwarded write with a management token", aclTLS, acl.Caller{Cert: serverCert, Token: mgmt}, post, "/v1/apply", nil, ok},
		{"server: forwarded write with a read-only token", aclTLS, acl.Caller{Cert: serverCert, Token: ro}, post, "/v1/apply", nil, n403},
		{"agent certificate: join-info", aclTLS, acl.Caller{Cert: agentCertA}, get, "/v1/join-info", nil, n401},

		// Management: everything.
		{"management: apply", aclOn, acl.Caller{Token: mgmt}, post, "/v1/apply", nil, ok},
		{"management: tokens", aclOn, acl.Caller{Token: mgmt}, get, "/v1/acl/tokens", nil, ok},
		{"management: revoke", aclOn, acl.Caller{Token: mgmt}, del, "/v1/acl/tokens/r1", nil, ok},
		{"management: remove a peer", aclOn, acl.Caller{Token: mgmt}, del, "/v1/operator/raft/peers/s2", nil, ok},
		{"management: another node's pod status", aclOn, acl.Caller{Token: mgmt}, put, "/v1/namespaces/default/pods/web-1/status", nil, ok},

		// Read-only: every GET but tokens.
		{"read-only: list sets", aclOn, acl.Caller{Token: ro}, get, "/v1/namespaces/default/statefulsets", nil, ok},
		{"read-only: metrics", aclOn, acl.Caller{Token: ro}, get, "/metrics", nil, ok},
		{"read-only: raft configuration", aclOn, acl.Caller{Token: ro}, get, "/v1/operator/raft/configuration", nil, ok},
		{"read-only: itself", aclOn, acl.Caller{Token: ro}, get, "/v1/acl/token/self", nil, ok},
		{"read-only: tokens", aclOn, acl.Caller{Token: ro}, get, "/v1/acl/tokens", nil, n403},
		{"read-only: tokens, escaped", aclOn, acl.Caller{Token: ro}, get, "/v1/%61cl/tokens", nil, n403},
		{"read-only: snapshot", aclOn, acl.Caller{Token: ro}, get, "/v1/operator/snapshot", nil, n403},
		{"read-only: restore", aclOn, acl.Caller{Token: ro}, put, "/v1/operator/snapshot", nil, n403},
		{"management: snapshot", aclOn, acl.Caller{Token: mgmt}, get, "/v1/operator/snapshot", nil, ok},
		{"agent: snapshot", aclOn, acl.Caller{Token: agentA}, get, "/v1/operator/snapshot", nil, n403},
		{"read-only: apply", aclOn, acl.Caller{Token: ro}, post, "/v1/apply", nil, n403},
		{"read-only: scale", aclOn, acl.Caller{Token: ro}, put, "/v1/namespaces/default/statefulsets/web/scale", nil, n403},
		{"read-only: delete", aclOn, acl.Caller{Token: ro}, del, "/v1/namespaces/default/pods/web-0", nil, n403},
		{"read-only: cordon", aclOn, acl.Caller{Token: ro}, post, "/v1/nodes/node-a/cordon", nil, n403},
		{"read-only: heartbeat", aclOn, acl.Caller{Token: ro}, post, "/v1/nodes/node-a/heartbeat", nil, n403},
		{"read-only: create a token", aclOn, acl.Caller{Token: ro}, post, "/v1/acl/tokens", nil, n403},
		{"read-only: patch", aclOn, acl.Caller{Token: ro}, patch, "/v1/nodes/node-a", nil, n403},
		{"read-only: unclean path", aclOn, acl.Caller{Token: ro}, get, "/v1/pods/../acl/tokens", nil, n403},

		// Agent of node-a: its assignments, what DNS and routes need.
		{"agent: its assignments", aclOn, acl.Caller{Token: agentA}, get, "/v1/pods", nil, ok},
		{"agent: pods of a namespace", aclOn, acl.Caller{Token: agentA}, get, "/v1/namespaces/default/pods", nil, ok},
		{"agent: one pod", aclOn, acl.Caller{Token: agentA}, get, "/v1/namespaces/default/pods/web-1", nil, ok},
		{"agent: services", aclOn, acl.Caller{Token: agentA}, get, "/v1/services", nil, ok},
		{"agent: namespaces", aclOn, acl.Caller{Token: agentA}, get, "/v1/namespaces", nil, ok},
		{"agent: nodes", aclOn, acl.Caller{Token: agentA}, get, "/v1/nodes", nil, ok},
		{"agent: one node", aclOn, acl.Caller{Token: agentA}, get, "/v1/nodes/node-b", nil, ok},
		{"agent: status", aclOn, acl.Caller{Token: agentA}, get, "/v1/status", nil, ok},
		{"agent: itself", aclOn, acl.Caller{Token: agentA}, get, "/v1/acl/token/self", nil, ok},
		{"agent: statefulsets", aclOn, acl.Caller{Token: agentA}, get, "/v1/statefulsets", nil, n403},
		{"agent: volumes of a namespace", aclOn, acl.Caller{Token: agentA}, get, "/v1/namespaces/default/persistentvolumeclaims", nil, ok},
		{"agent: volumes", aclOn, acl.Caller{Token: agentA}, get, "/v1/persistentvolumeclaims", nil, ok},
		{"read-only: volumes", aclOn, acl.Caller{Token: ro}, get, "/v1/persistentvolumeclaims", nil, ok},
		{"agent: servers", aclOn, acl.Caller{Token: agentA}, get, "/v1/servers", nil, n403},
		{"agent: metrics", aclOn, acl.Caller{Token: agentA}, get, "/metrics", nil, n403},
		{"agent: tokens", aclOn, acl.Caller{Token: agentA}, get, "/v1/acl/tokens", nil, n403},
		{"agent: raft configuration", aclOn, acl.Caller{Token: agentA}, get, "/v1/operator/raft/configuration", nil, n403},
		// Its own node.
		{"agent: register its node", aclOn, acl.Caller{Token: agentA}, put, "/v1/nodes/node-a", nil, ok},
		{"agent: heartbeat", aclOn, acl.Caller{Token: agentA}, post, "/v1/nodes/node-a/heartbeat", nil, ok},
		{"agent: register another node", aclOn, acl.Caller{Token: agentA}, put, "/v1/nodes/node-b", nil, n403},
		{"agent: another node's heartbeat", aclOn, acl.Caller{Token: agentA}, post, "/v1/nodes/node-b/heartbeat", nil, n403},
		{"agent: cordon its node", aclOn, acl.Caller{Token: agentA}, post, "/v1/nodes/node-a/cordon", nil, n403},
		{"agent: unfence its node", aclOn, acl.Caller{Token: agentA}, post, "/v1/nodes/node-a/unfence", nil, n403},
		{"agent: delete its node", aclOn, acl.Caller{Token: agentA}, del, "/v1/nodes/node-a", nil, n403},
		// Its own pods.
		{"agent: its pod's status", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-0/status", nil, ok},
		{"agent: its pod gone", aclOn, acl.Caller{Token: agentA}, del, "/v1/namespaces/default/pods/web-0", nil, ok},
		{"agent: another node's pod status", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-1/status", nil, n403},
		{"agent: delete another node's pod", aclOn, acl.Caller{Token: agentA}, del, "/v1/namespaces/default/pods/web-1", nil, n403},
		{"agent: status of an unbound pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-2/status", nil, n403},
		{"agent: delete an unbound pod", aclOn, acl.Caller{Token: agentA}, del, "/v1/namespaces/default/pods/web-2", nil, n403},
		{"agent: status of a missing pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-9/status", nil, n404},
		{"agent: replace its pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-0", nil, n403},
		{"agent: pod status through an escaped slash", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/pods/web-0%2Fstatus", nil, n403},
		{"agent: apply", aclOn, acl.Caller{Token: agentA}, post, "/v1/apply", nil, n403},
		{"agent: scale", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/statefulsets/web/scale", nil, n403},
		{"agent: create a token", aclOn, acl.Caller{Token: agentA}, post, "/v1/acl/tokens", nil, n403},
		{"agent: join without TLS", aclOn, acl.Caller{Token: agentA}, post, "/v1/join", nil, n403},
		// Events.
		{"agent: event about its pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-0.a2", podEvent("node-a", "default", "web-0"), ok},
		{"agent: event about a pod that is gone", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-7.a2", podEvent("node-a", "default", "web-7"), ok},
		{"agent: event about its node", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/node-a.a3",
			&corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "node-a"}, Source: corev1.EventSource{Host: "node-a"}}, ok},
		{"agent: event about another node's pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-1.a2", podEvent("node-a", "default", "web-1"), n403},
		{"agent: event from another host", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-0.a3", podEvent("node-b", "default", "web-0"), n403},
		{"agent: overwrite another node's event", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-1.b1", podEvent("node-a", "default", "web-0"), n403},
		{"agent: event about another node", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/node-b.a3",
			&corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "node-b"}, Source: corev1.EventSource{Host: "node-a"}}, n403},
		{"agent: event about a set", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web.a3",
			&corev1.Event{InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "web"}, Source: corev1.EventSource{Host: "node-a"}}, n403},
		{"agent: event in another namespace than its pod", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/other/events/web-0.a3", podEvent("node-a", "default", "web-0"), n403},
		{"agent: event without a body", aclOn, acl.Caller{Token: agentA}, put, "/v1/namespaces/default/events/web-0.a4", nil, n403},

		// An agent's certificate acts only with its own node's agent token.
		{"agent certificate with its token", aclTLS, acl.Caller{Cert: agentCertA, Token: agentA}, post, "/v1/nodes/node-a/heartbeat", nil, ok},
		{"agent certificate with another node's token", aclTLS, acl.Caller{Cert: agentCertA, Token: agentB}, post, "/v1/nodes/node-b/heartbeat", nil, n403},
		{"agent certificate with a management token", aclTLS, acl.Caller{Cert: agentCertA, Token: mgmt}, post, "/v1/apply", nil, n403},
		{"agent certificate with a management token: the token itself", aclTLS, acl.Caller{Cert: agentCertA, Token: mgmt}, get, "/v1/acl/token/self", nil, ok},
		{"agent certificate with a read-only token reads pods", aclTLS, acl.Caller{Cert: agentCertA, Token: ro}, get, "/v1/pods", nil, n403},
		{"client certificate with an agent token", aclTLS, acl.Caller{Cert: clientCert, Token: agentA}, post, "/v1/nodes/node-a/heartbeat", nil, ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.policy.Authorize(tc.caller, acl.Request{Method: tc.method, Path: acl.ParsePath(tc.path), Event: tc.event}, st)
			if d.Verdict != tc.want {
				t.Errorf("%s %s: verdict %d (%s), want %d", tc.method, tc.path, d.Verdict, d.Reason, tc.want)
			}
			if d.Verdict != acl.Allow && d.Reason == "" {
				t.Error("a refusal without a reason")
			}
		})
	}
}

func TestNeedsEvent(t *testing.T) {
	agentA := token("a1", api.TokenAgent, "node-a", "")
	mgmt := token("m1", api.TokenManagement, "", "")
	ev := acl.ParsePath("/v1/namespaces/default/events/x")
	if !acl.NeedsEvent(acl.Caller{Token: agentA}, acl.Request{Method: http.MethodPut, Path: ev}) {
		t.Error("an agent's event is not read")
	}
	if acl.NeedsEvent(acl.Caller{Token: mgmt}, acl.Request{Method: http.MethodPut, Path: ev}) {
		t.Error("a management token's event is read")
	}
	if acl.NeedsEvent(acl.Caller{Token: agentA}, acl.Request{Method: http.MethodPut, Path: acl.ParsePath("/v1/nodes/node-a")}) {
		t.Error("a node is read as an event")
	}
}

func TestParsePath(t *testing.T) {
	cases := map[string][]string{
		"/v1/pods":                      {"v1", "pods"},
		"/v1/namespaces/a%2Fb/pods":     {"v1", "namespaces", "a/b", "pods"},
		"/v1/%61cl/tokens":              {"v1", "acl", "tokens"},
		"/v1/pods/":                     nil,
		"/v1//pods":                     nil,
		"/v1/pods/../acl":               nil,
		"/v1/./pods":                    nil,
		"/v1/%zz":                       nil,
		"":                              nil,
		"v1/pods":                       nil,
		"/":                             nil,
		"/v1/nodes/node-a/heartbeat":    {"v1", "nodes", "node-a", "heartbeat"},
		"/v1/namespaces/x/pods/%2E%2E/": nil,
	}
	for in, want := range cases {
		got := acl.ParsePath(in)
		if strings.Join(got, "|") != strings.Join(want, "|") || (got == nil) != (want == nil) {
			t.Errorf("ParsePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLimiter(t *testing.T) {
	l := acl.NewLimiter(2, 3) // 2 per second, bursts of 3
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	steps := []struct {
		key   string
		at    time.Duration
		ok    bool
		retry time.Duration
	}{
		{"a", 0, true, 0},
		{"a", 0, true, 0},
		{"a", 0, true, 0},
		{"a", 0, false, 500 * time.Millisecond}, // the burst is spent
		{"b", 0, true, 0},                       // another key has its own bucket
		{"a", 250 * time.Millisecond, false, 250 * time.Millisecond},
		{"a", 500 * time.Millisecond, true, 0}, // one request refilled
		{"a", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"a", 10 * time.Second, true, 0}, // full again, but never more than the burst
		{"a", 10 * time.Second, true, 0},
		{"a", 10 * time.Second, true, 0},
		{"a", 10 * time.Second, false, 500 * time.Millisecond},
	}
	for i, s := range steps {
		ok, retry := l.Allow(s.key, t0.Add(s.at))
		if ok != s.ok || retry != s.retry {
			t.Errorf("step %d (%s at %v): %v, retry %v; want %v, %v", i, s.key, s.at, ok, retry, s.ok, s.retry)
		}
	}
	if ok, _ := acl.NewLimiter(0, 0).Allow("a", t0); !ok {
		t.Error("a limiter without a rate refused")
	}
}
