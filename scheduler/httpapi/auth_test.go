package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// manualClock is a scheduler.Clock that moves only when told.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time { return make(chan time.Time) }

func (c *manualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// secureServer is one server whose API is served over mutual TLS behind
// Secure, and whose Raft transport runs over TLS.
type secureServer struct {
	id     string
	store  *raftstore.Store
	api    *Server
	addr   string
	ca     *tlstest.CA
	ld     *api.TLS
	clock  *manualClock
	leases *scheduler.Leases
}

func startSecure(t *testing.T, ca *tlstest.CA, id string, bootstrap bool, sec Security) *secureServer {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	ld := ca.TLS(api.CertServer, id)
	raftAddr := freeAddr(t)
	store, err := raftstore.Open(raftstore.Config{
		ID: id, ClusterID: "c1", DataDir: t.TempDir(), BindAddr: raftAddr, AdvertiseAddr: raftAddr,
		Bootstrap: bootstrap, Logger: log, TLS: ld.PeerConfig(),
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := &manualClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	ss := &secureServer{id: id, store: store, ca: ca, ld: ld, clock: clock, leases: scheduler.NewLeases(clock, time.Minute)}
	ss.api = New(Config{ID: id, Version: "test", Store: store, Logger: log, Leases: ss.leases,
		ForwardClient: &http.Client{Timeout: 30 * time.Second, Transport: ld.Transport(ForwardIdleConns)}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ss.addr = ln.Addr().String()
	ss.api.HandleCluster(ClusterOptions{HTTPAddr: ss.addr})
	if sec.Cluster == "" {
		sec.Cluster = ca.Cluster
	}
	// Refused handshakes are what the tests are about; keep them out of
	// the test's output.
	srv := &http.Server{Handler: ss.api.Secure(sec), ErrorLog: stdlog.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, ld.ServerConfig()))
	t.Cleanup(func() {
		srv.Close()
		store.Close()
	})
	if bootstrap {
		waitFor(t, "leader elected", store.IsLeader)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ss.api.Register(ctx, id, raftAddr, ss.addr); err != nil {
			t.Fatal(err)
		}
	}
	return ss
}

// client is a client of ss presenting ld's certificate and token.
func (ss *secureServer) client(t *testing.T, ld *api.TLS, token string) *api.Client {
	t.Helper()
	c, err := api.NewClientWithOptions(ss.addr, api.ClientOptions{TLS: ld.ClientConfig(), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// call sends one request; path may carry a query.
func call(c *api.Client, method, path string, body []byte, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	path, rawQuery, _ := strings.Cut(path, "?")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return err
	}
	_, err = c.Do(ctx, method, path, q, body, out)
	return err
}

// codeOf is the HTTP status of an API error; 200 for none, 0 when the
// request got no answer.
func codeOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return int(se.Status().Code)
	}
	return 0
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func nodeBody(name string) *corev1.Node {
	return &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func podBody(name, node string) *corev1.Pod {
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	p.Spec.NodeName = node
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox"}}
	p.Status.Phase = corev1.PodPending
	return p
}

func eventBody(name, host, pod string) *corev1.Event {
	return &corev1.Event{
		TypeMeta:       metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta:     metav1.ObjectMeta{Name: name, Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "default", Name: pod},
		Reason:         "Started", Message: "started",
		Source: corev1.EventSource{Component: "stead-agent", Host: host},
	}
}

// snapshot is what a refused request must leave as it was.
type snapshot struct {
	hash    [32]byte
	members []raftstore.Member
	ageB    time.Duration
}

func (ss *secureServer) snapshot(t *testing.T) snapshot {
	t.Helper()
	m, err := ss.store.Members()
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{hash: ss.store.View().Hash(), members: m, ageB: ss.leases.Age("node-b")}
}

func (a snapshot) equal(b snapshot) bool {
	return a.hash == b.hash && slices.Equal(a.members, b.members) && a.ageB == b.ageB
}

// TestACLRefusals is S4: every class of endpoint, called by callers that
// must be refused (no token, a malformed, unknown or revoked one, a
// read-only token writing, an agent token on another node's pods and on
// admin endpoints, an agent's certificate with another token, an agent's
// certificate joining), each answered 401, 403 or 404, and the state,
// the Raft configuration and the other node's lease exactly as they were.
func TestACLRefusals(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	ss := startSecure(t, ca, "s1", true, Security{ACL: true})
	clientCert := ca.TLS(api.CertClient, "alice")
	agentCertA := ca.TLS(api.CertAgent, "node-a")

	// Bootstrap and the tokens.
	var boot api.NewToken
	if err := call(ss.client(t, clientCert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, &boot); err != nil {
		t.Fatal(err)
	}
	mgmt := ss.client(t, clientCert, boot.Secret)
	newToken := func(role api.TokenRole, node string) api.NewToken {
		t.Helper()
		var tok api.NewToken
		if err := call(mgmt, http.MethodPost, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: role, Node: node}), &tok); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ro, agentA, agentB, revoked := newToken(api.TokenReadOnly, ""), newToken(api.TokenAgent, "node-a"), newToken(api.TokenAgent, "node-b"), newToken(api.TokenReadOnly, "")
	if err := call(mgmt, http.MethodDelete, "/v1/acl/tokens/"+revoked.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, unknown, _ := acl.NewSecret(rand.Reader)

	who := map[string]*api.Client{
		"anonymous":                      ss.client(t, clientCert, ""),
		"malformed":                      ss.client(t, clientCert, "not-a-token"),
		"unknown":                        ss.client(t, clientCert, unknown),
		"revoked":                        ss.client(t, clientCert, revoked.Secret),
		"read-only":                      ss.client(t, clientCert, ro.Secret),
		"agent-a":                        ss.client(t, agentCertA, agentA.Secret),
		"agent-a token, client cert":     ss.client(t, clientCert, agentA.Secret),
		"agent-a cert, agent-b token":    ss.client(t, agentCertA, agentB.Secret),
		"agent-a cert, management token": ss.client(t, agentCertA, boot.Secret),
		"management":                     mgmt,
		"agent-b":                        ss.client(t, ca.TLS(api.CertAgent, "node-b"), agentB.Secret),
	}

	// The cluster: nodes a and b registered by their agents, web, a pod
	// on each node, an event of node b.
	for _, step := range []struct {
		who, method, path string
		body              any
	}{
		{"agent-a", http.MethodPut, "/v1/nodes/node-a", nodeBody("node-a")},
		{"agent-b", http.MethodPut, "/v1/nodes/node-b", nodeBody("node-b")},
		{"management", http.MethodPost, "/v1/apply", nil},
		{"management", http.MethodPut, "/v1/namespaces/default/pods/web-0", podBody("web-0", "node-a")},
		{"management", http.MethodPut, "/v1/namespaces/default/pods/web-1", podBody("web-1", "node-b")},
		{"agent-b", http.MethodPut, "/v1/namespaces/default/events/web-1.b1", eventBody("web-1.b1", "node-b", "web-1")},
		{"agent-b", http.MethodPost, "/v1/nodes/node-b/heartbeat", nil},
	} {
		body := []byte(webYAML)
		if step.body != nil {
			body = mustJSON(t, step.body)
		}
		if err := call(who[step.who], step.method, step.path, body, nil); err != nil {
			t.Fatalf("%s %s %s: %v", step.who, step.method, step.path, err)
		}
	}
	// From now on node b's lease ages; a heartbeat in its name would
	// show as a younger lease.
	ss.clock.advance(30 * time.Second)

	status := mustJSON(t, &corev1.Pod{Status: corev1.PodStatus{Phase: corev1.PodFailed}})
	scale := []byte(`{"spec":{"replicas":9}}`)
	big := bytes.Repeat([]byte("#"), api.MaxBodyBytes+1)
	const (
		get, put, post, del = http.MethodGet, http.MethodPut, http.MethodPost, http.MethodDelete
	)
	pod0, pod1 := "/v1/namespaces/default/pods/web-0", "/v1/namespaces/default/pods/web-1"
	cases := []struct {
		who, method, path string
		body              []byte
		code              int
	}{
		// No valid token: 401 everywhere.
		{"anonymous", get, "/v1/pods", nil, 401},
		{"anonymous", get, "/v1/namespaces/default/statefulsets/web", nil, 401},
		{"anonymous", post, "/v1/apply", []byte(webYAML), 401},
		{"anonymous", put, pod1 + "/status", status, 401},
		{"anonymous", del, pod1, nil, 401},
		{"anonymous", post, "/v1/nodes/node-b/heartbeat", nil, 401},
		{"anonymous", get, "/v1/acl/tokens", nil, 401},
		{"anonymous", post, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenManagement}), 401},
		{"anonymous", del, "/v1/operator/raft/peers/s1", nil, 401},
		{"anonymous", get, "/v1/join-info", nil, 401},
		{"malformed", get, "/v1/pods", nil, 401},
		{"malformed", post, "/v1/apply", []byte(webYAML), 401},
		{"unknown", post, "/v1/apply", []byte(webYAML), 401},
		{"unknown", put, pod1 + "/status", status, 401},
		{"revoked", get, "/v1/pods", nil, 401},
		{"revoked", post, "/v1/apply", []byte(webYAML), 401},
		{"revoked", del, "/v1/namespaces/default/statefulsets/web", nil, 401},

		// A read-only token writing: 403.
		{"read-only", post, "/v1/apply", []byte(webYAML), 403},
		{"read-only", put, "/v1/namespaces/default/statefulsets/web", []byte(webYAML), 403},
		{"read-only", put, "/v1/namespaces/default/statefulsets/web/scale", scale, 403},
		{"read-only", del, "/v1/namespaces/default/statefulsets/web", nil, 403},
		{"read-only", put, pod0 + "/status", status, 403},
		{"read-only", del, pod0, nil, 403},
		{"read-only", post, "/v1/nodes/node-a/cordon", nil, 403},
		{"read-only", post, "/v1/nodes/node-a/fence", nil, 403},
		{"read-only", del, "/v1/nodes/node-a", nil, 403},
		{"read-only", post, "/v1/nodes/node-b/heartbeat", nil, 403},
		{"read-only", put, "/v1/namespaces/default/events/web-1.r1", mustJSON(t, eventBody("web-1.r1", "node-b", "web-1")), 403},
		{"read-only", get, "/v1/acl/tokens", nil, 403},
		{"read-only", post, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenManagement}), 403},
		{"read-only", del, "/v1/acl/tokens/" + agentA.ID, nil, 403},
		{"read-only", del, "/v1/operator/raft/peers/s1", nil, 403},
		// A snapshot holds the tokens' records.
		{"read-only", get, "/v1/operator/snapshot", nil, 403},
		{"read-only", put, "/v1/operator/snapshot", []byte("not a snapshot"), 403},
		{"agent-a", get, "/v1/operator/snapshot", nil, 403},

		// Node a's agent on node b's pods and node, and on admin endpoints.
		{"agent-a", put, pod1 + "/status", status, 403},
		{"agent-a", del, pod1, nil, 403},
		{"agent-a", put, "/v1/nodes/node-b", mustJSON(t, nodeBody("node-b")), 403},
		{"agent-a", post, "/v1/nodes/node-b/heartbeat", nil, 403},
		{"agent-a", put, "/v1/namespaces/default/events/web-1.a1", mustJSON(t, eventBody("web-1.a1", "node-a", "web-1")), 403},
		{"agent-a", put, "/v1/namespaces/default/events/web-1.b1", mustJSON(t, eventBody("web-1.b1", "node-a", "web-0")), 403},
		{"agent-a", put, pod0, mustJSON(t, podBody("web-0", "node-a")), 403},
		{"agent-a", put, "/v1/namespaces/default/pods/web-9/status", status, 404},
		{"agent-a", post, "/v1/apply", []byte(webYAML), 403},
		{"agent-a", put, "/v1/namespaces/default/statefulsets/web/scale", scale, 403},
		{"agent-a", post, "/v1/nodes/node-a/cordon", nil, 403},
		{"agent-a", post, "/v1/nodes/node-a/unfence", nil, 403},
		{"agent-a", del, "/v1/nodes/node-a", nil, 403},
		{"agent-a", get, "/v1/namespaces/default/statefulsets", nil, 403},
		{"agent-a", get, "/v1/acl/tokens", nil, 403},
		{"agent-a", post, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenManagement}), 403},
		{"agent-a", del, "/v1/operator/raft/peers/s1", nil, 403},
		{"agent-a token, client cert", put, pod1 + "/status", status, 403},
		{"agent-a token, client cert", del, pod1, nil, 403},
		{"agent-a cert, agent-b token", post, "/v1/nodes/node-b/heartbeat", nil, 403},
		{"agent-a cert, agent-b token", put, pod1 + "/status", status, 403},
		{"agent-a cert, management token", post, "/v1/apply", []byte(webYAML), 403},

		// Joins need a server certificate, whatever the token.
		{"agent-a", post, "/v1/join", mustJSON(t, JoinRequest{ID: "evil", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", ClusterID: "c1", LogVersion: raftstore.LogVersion}), 403},
		{"agent-a cert, management token", post, "/v1/join", mustJSON(t, JoinRequest{ID: "evil", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", ClusterID: "c1", LogVersion: raftstore.LogVersion}), 403},
		{"management", post, "/v1/join", mustJSON(t, JoinRequest{ID: "evil", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2", ClusterID: "c1", LogVersion: raftstore.LogVersion}), 403},

		// Management, refused for what it asks, not who it is.
		{"management", post, "/v1/acl/bootstrap", nil, 409},
		{"management", post, "/v1/apply", big, 413},
		{"management", get, "/v1/tokens", nil, 404},
		{"management", get, "/v1/tokens/bootstrap", nil, 404},
		{"management", put, "/v1/tokens/x", []byte(`{}`), 404},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s %s %s", tc.who, tc.method, tc.path), func(t *testing.T) {
			before := ss.snapshot(t)
			err := call(who[tc.who], tc.method, tc.path, tc.body, nil)
			if got := codeOf(err); got != tc.code {
				t.Errorf("answered %d (%v), want %d", got, err, tc.code)
			}
			if after := ss.snapshot(t); !after.equal(before) {
				t.Errorf("a refused request changed something: before %+v, after %+v", before, after)
			}
		})
	}
	if age := ss.leases.Age("node-b"); age != 30*time.Second {
		t.Errorf("node b's lease is %v old, want 30s: someone renewed it", age)
	}

	// The same callers are let through where their role allows.
	allowed := []struct {
		who, method, path string
		body              []byte
	}{
		{"read-only", get, "/v1/namespaces/default/statefulsets/web", nil},
		{"read-only", get, "/v1/acl/token/self", nil},
		{"agent-a", get, "/v1/pods?fieldSelector=spec.nodeName=node-a", nil},
		{"agent-a", get, "/v1/services", nil},
		{"agent-a", post, "/v1/nodes/node-a/heartbeat", nil},
		{"agent-a", put, pod0 + "/status", status},
		{"agent-a", put, "/v1/namespaces/default/events/web-0.a1", mustJSON(t, eventBody("web-0.a1", "node-a", "web-0"))},
		{"agent-b", put, pod1 + "/status", status},
		{"management", put, "/v1/namespaces/default/statefulsets/web/scale", scale},
	}
	for _, a := range allowed {
		if err := call(who[a.who], a.method, a.path, a.body, nil); err != nil {
			t.Errorf("%s %s %s: %v", a.who, a.method, a.path, err)
		}
	}
	for _, name := range []string{"web-0", "web-1"} {
		pod, _ := raftstore.GetOf[*corev1.Pod](ss.store.View(), raftstore.Pods, "default", name)
		if pod.Status.Phase != corev1.PodFailed {
			t.Errorf("%s's own agent reported Failed, the state says %q", name, pod.Status.Phase)
		}
	}
	if err := call(who["agent-a"], del, pod0+"?force=true", nil, nil); err != nil {
		t.Errorf("node a's agent confirming web-0 gone: %v", err)
	}
	if _, ok := ss.store.View().Get(raftstore.Pods, "default", "web-0"); ok {
		t.Error("web-0 is still stored after its agent confirmed it gone")
	}
}

// TestTokens covers the token endpoints: what a list shows, self,
// revocation taking effect, the last management token, and bootstrap
// once, then again after a reset from the leader's disk.
func TestTokens(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	resetFile := filepath.Join(t.TempDir(), "acl-bootstrap-reset")
	ss := startSecure(t, ca, "s1", true, Security{ACL: true, BootstrapResetFile: resetFile})
	cert := ca.TLS(api.CertClient, "alice")
	var boot api.NewToken
	if err := call(ss.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, &boot); err != nil {
		t.Fatal(err)
	}
	if boot.ID != "bootstrap" || boot.Role != api.TokenManagement || !boot.Bootstrap {
		t.Fatalf("bootstrap made %+v", boot.TokenInfo)
	}
	mgmt := ss.client(t, cert, boot.Secret)

	// A second bootstrap is refused and changes nothing.
	before := ss.snapshot(t)
	err := call(ss.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, nil)
	if codeOf(err) != 409 || !strings.Contains(err.Error(), "bootstrap was already done") {
		t.Fatalf("second bootstrap: %v", err)
	}
	if !ss.snapshot(t).equal(before) {
		t.Fatal("a refused bootstrap changed the state")
	}

	var ro api.NewToken
	if err := call(mgmt, http.MethodPost, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenReadOnly, Description: "dashboards"}), &ro); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []api.TokenRequest{{Role: "root"}, {Role: api.TokenAgent}, {Role: api.TokenReadOnly, Node: "node-a"}, {Role: api.TokenAgent, Node: "Node_A"}} {
		if err := call(mgmt, http.MethodPost, "/v1/acl/tokens", mustJSON(t, bad), nil); codeOf(err) != 400 {
			t.Errorf("token request %+v: %v, want 400", bad, err)
		}
	}

	// The list shows every token, never a secret or its hash.
	resp := rawGet(t, ss, cert, boot.Secret, "/v1/acl/tokens")
	for _, secret := range []string{boot.Secret, ro.Secret, acl.HashSecret(boot.Secret), acl.HashSecret(ro.Secret), "secretHash"} {
		if strings.Contains(resp, secret) {
			t.Errorf("the token list shows %q", secret)
		}
	}
	var list api.TokenList
	if err := json.Unmarshal([]byte(resp), &list); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, it := range list.Items {
		ids = append(ids, it.ID+"="+string(it.Role))
	}
	if want := []string{"bootstrap=management", ro.ID + "=read-only"}; !slices.Equal(sorted(ids), sorted(want)) {
		t.Errorf("tokens %q, want %q", ids, want)
	}
	var self api.TokenInfo
	if err := call(ss.client(t, cert, ro.Secret), http.MethodGet, "/v1/acl/token/self", nil, &self); err != nil || self.ID != ro.ID || self.Description != "dashboards" {
		t.Errorf("self: %+v, %v", self, err)
	}

	// Revocation takes effect at once, and keeps the record.
	roClient := ss.client(t, cert, ro.Secret)
	if err := call(roClient, http.MethodGet, "/v1/pods", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := call(mgmt, http.MethodDelete, "/v1/acl/tokens/"+ro.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := call(roClient, http.MethodGet, "/v1/pods", nil, nil); codeOf(err) != 401 || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("a revoked token read: %v", err)
	}
	if err := call(mgmt, http.MethodDelete, "/v1/acl/tokens/nosuch", nil, nil); codeOf(err) != 404 {
		t.Errorf("revoke an unknown token: %v", err)
	}

	// The last management token cannot be revoked.
	before = ss.snapshot(t)
	if err := call(mgmt, http.MethodDelete, "/v1/acl/tokens/bootstrap", nil, nil); codeOf(err) != 409 || !strings.Contains(err.Error(), "last management token") {
		t.Fatalf("revoke the last management token: %v", err)
	}
	if !ss.snapshot(t).equal(before) {
		t.Fatal("a refused revocation changed the state")
	}
	var spare api.NewToken
	if err := call(mgmt, http.MethodPost, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenManagement}), &spare); err != nil {
		t.Fatal(err)
	}
	if err := call(ss.client(t, cert, spare.Secret), http.MethodDelete, "/v1/acl/tokens/bootstrap", nil, nil); err != nil {
		t.Fatalf("rotate the bootstrap token: %v", err)
	}
	if err := call(mgmt, http.MethodGet, "/v1/pods", nil, nil); codeOf(err) != 401 {
		t.Errorf("the revoked bootstrap token still reads: %v", err)
	}
	// Its record stays, so bootstrap stays done.
	if err := call(ss.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, nil); codeOf(err) != 409 {
		t.Fatalf("bootstrap after the bootstrap token was revoked: %v", err)
	}

	// The reset: the index the refusal names, written on the leader.
	rec, _ := raftstore.GetOf[*api.Token](ss.store.View(), raftstore.Tokens, "", "bootstrap")
	if err := os.WriteFile(resetFile, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := call(ss.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, nil); codeOf(err) != 409 {
		t.Fatalf("bootstrap with a wrong reset index: %v", err)
	}
	if err := os.WriteFile(resetFile, []byte(rec.ResourceVersion+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var again api.NewToken
	if err := call(ss.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, &again); err != nil {
		t.Fatalf("bootstrap after a reset: %v", err)
	}
	if err := call(ss.client(t, cert, again.Secret), http.MethodGet, "/v1/acl/tokens", nil, nil); err != nil {
		t.Errorf("the new bootstrap token: %v", err)
	}
	if err := call(mgmt, http.MethodGet, "/v1/pods", nil, nil); codeOf(err) != 401 {
		t.Errorf("the old bootstrap token after a reset: %v", err)
	}
	if _, err := os.Stat(resetFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the reset file is still there: %v", err)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// rawGet returns the body of a GET, as the wire carries it.
func rawGet(t *testing.T, ss *secureServer, ld *api.TLS, token, path string) string {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: ld.ClientConfig()}}
	req, _ := http.NewRequest(http.MethodGet, "https://"+ss.addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, data)
	}
	return string(data)
}

// TestTLSRefusals is S5 at the API: plain HTTP to the TLS port, a client
// certificate from an unknown CA, an expired one, no certificate, and TLS
// 1.1 are refused, and nothing changes.
func TestTLSRefusals(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	other := tlstest.NewCA(t, "")
	ss := startSecure(t, ca, "s1", true, Security{})
	good := ca.TLS(api.CertClient, "alice")
	noCert := good.ClientConfig()
	noCert.Certificates = nil
	configs := map[string]*tls.Config{
		"unknown CA":     other.Foreign(ca, api.CertClient, "mallory").ClientConfig(),
		"expired":        ca.TLS(api.CertClient, "old", tlstest.Expired).ClientConfig(),
		"no certificate": noCert,
		"TLS 1.1":        tlstest.ClientTLS11(good),
	}
	for name, c := range configs {
		t.Run(name, func(t *testing.T) {
			before := ss.snapshot(t)
			hc := &http.Client{Transport: &http.Transport{TLSClientConfig: c}}
			resp, err := hc.Post("https://"+ss.addr+"/v1/apply", "application/yaml", strings.NewReader(webYAML))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("answered %s", resp.Status)
			}
			t.Logf("refused: %v", err)
			if !ss.snapshot(t).equal(before) {
				t.Error("the state changed")
			}
		})
	}
	t.Run("plain HTTP", func(t *testing.T) {
		before := ss.snapshot(t)
		resp, err := http.Post("http://"+ss.addr+"/v1/apply", "application/yaml", strings.NewReader(webYAML))
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP answered %s: %s", resp.Status, data)
			}
		}
		if !ss.snapshot(t).equal(before) {
			t.Error("the state changed")
		}
	})
	// The control: the good certificate writes.
	if err := call(ss.client(t, good, ""), http.MethodPost, "/v1/apply", []byte(webYAML), nil); err != nil {
		t.Fatalf("a good client certificate: %v", err)
	}
}

// TestJoinOverTLS lets a server in with its server certificate, through
// a follower that forwards the join over TLS, and refuses a server
// started with an agent's certificate: it is not added to the Raft
// configuration.
func TestJoinOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	s1 := startSecure(t, ca, "s1", true, Security{ACL: true})
	s2 := startSecure(t, ca, "s2", false, Security{ACL: true})
	join := func(via *secureServer, ss *secureServer, ld *api.TLS) error {
		req := JoinRequest{ID: ss.id, RaftAddr: ss.store.Addr(), HTTPAddr: ss.addr, ClusterID: "c1", LogVersion: raftstore.LogVersion}
		return call(via.client(t, ld, ""), http.MethodPost, "/v1/join", mustJSON(t, req), nil)
	}
	if err := join(s1, s2, s2.ld); err != nil {
		t.Fatalf("s2 joins with its server certificate: %v", err)
	}
	waitFor(t, "s2 to know the leader", func() bool { id, _ := s2.store.LeaderID(); return id == "s1" })

	// A third server whose only certificate is an agent's: refused at
	// the leader and through the follower, which forwards over TLS.
	s3 := startSecure(t, ca, "s3", false, Security{ACL: true})
	agentCert := ca.TLS(api.CertAgent, "node-a")
	for _, via := range []*secureServer{s1, s2} {
		before := s1.snapshot(t)
		if err := join(via, s3, agentCert); codeOf(err) != 403 {
			t.Errorf("join with an agent certificate via %s: %v, want 403", via.id, err)
		}
		if after := s1.snapshot(t); !after.equal(before) {
			t.Errorf("via %s: members before %v, after %v", via.id, before.members, after.members)
		}
	}
	// s3 with its server certificate, through the follower.
	if err := join(s2, s3, s3.ld); err != nil {
		t.Fatalf("s3 joins through the follower: %v", err)
	}
	members, _ := s1.store.Members()
	var ids []string
	for _, m := range members {
		ids = append(ids, m.ID)
	}
	if !slices.Equal(ids, []string{"s1", "s2", "s3"}) {
		t.Errorf("members %q", ids)
	}

	// A write through a follower is forwarded to the leader over TLS, with
	// the caller's token.
	cert := ca.TLS(api.CertClient, "alice")
	var boot api.NewToken
	if err := call(s2.client(t, cert, ""), http.MethodPost, "/v1/acl/bootstrap", nil, &boot); err != nil {
		t.Fatalf("bootstrap through a follower: %v", err)
	}
	// s3 checks tokens against its own replica.
	waitFor(t, "s3 to hold the bootstrap token", func() bool {
		_, ok := s3.store.View().Get(raftstore.Tokens, "", "bootstrap")
		return ok
	})
	if err := call(s3.client(t, cert, ""), http.MethodPost, "/v1/apply", []byte(webYAML), nil); codeOf(err) != 401 {
		t.Errorf("anonymous apply through a follower: %v", err)
	}
	var res api.ApplyResult
	if err := call(s3.client(t, cert, boot.Secret), http.MethodPost, "/v1/apply", []byte(webYAML), &res); err != nil {
		t.Fatalf("apply through a follower: %v", err)
	}
	for _, ss := range []*secureServer{s1, s2, s3} {
		if _, err := ss.store.WaitForIndex(context.Background(), res.Index-1); err != nil {
			t.Fatal(err)
		}
		if _, ok := ss.store.View().Get(raftstore.StatefulSets, "default", "web"); !ok {
			t.Errorf("%s lacks web", ss.id)
		}
	}
}

func TestRateLimit(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	clock := &manualClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	ss := startSecure(t, ca, "s1", true, Security{RateLimit: 1, RateBurst: 2, Now: clock.Now})
	alice := ss.client(t, ca.TLS(api.CertClient, "alice"), "")
	for i, want := range []int{200, 200, 429} {
		if got := codeOf(call(alice, http.MethodGet, "/v1/pods", nil, nil)); got != want {
			t.Errorf("request %d: %d, want %d", i+1, got, want)
		}
	}
	// Servers are not limited: they forward what was limited where it
	// arrived.
	server := ss.client(t, ca.TLS(api.CertServer, "s2"), "")
	for i := range 3 {
		if err := call(server, http.MethodGet, "/v1/status", nil, nil); err != nil {
			t.Errorf("server request %d: %v", i+1, err)
		}
	}
	clock.advance(time.Second)
	if err := call(alice, http.MethodGet, "/v1/pods", nil, nil); err != nil {
		t.Errorf("after a second: %v", err)
	}
}
