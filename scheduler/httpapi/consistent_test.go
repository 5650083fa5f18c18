package httpapi

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// netServer is a testServer whose Raft traffic goes through an in-memory
// transport, so that a test can cut it off from the other servers while
// its HTTP API stays reachable.
type netServer struct {
	*testServer
	id    string
	trans *raft.InmemTransport
}

// timeouts are one server's Raft timers; zero leaves the defaults.
type timeouts struct{ heartbeat, election time.Duration }

// startNet starts a cluster of the named servers, bootstrapped together,
// waits for a leader, records every server's HTTP address and returns
// the servers and the leader. With sec, each serves its API behind
// those checks.
func startNet(t *testing.T, ids []string, timers map[string]timeouts, sec *Security) ([]*netServer, *netServer) {
	t.Helper()
	var members []raftstore.Member
	servers := make([]*netServer, len(ids))
	for i, id := range ids {
		addr, trans := raft.NewInmemTransport("")
		servers[i] = &netServer{id: id, trans: trans}
		members = append(members, raftstore.Member{ID: id, Addr: string(addr), Voter: true})
	}
	for _, a := range servers {
		for _, b := range servers {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	for _, s := range servers {
		log := hclog.New(&hclog.LoggerOptions{Name: s.id, Level: hclog.Warn, Output: testWriter{t}})
		store, err := raftstore.Open(raftstore.Config{
			ID: s.id, Bootstrap: true, Servers: members, Logger: log,
			Transport: s.trans, LogStore: raft.NewInmemStore(), StableStore: raft.NewInmemStore(), SnapshotStore: raft.NewInmemSnapshotStore(),
			HeartbeatTimeout: timers[s.id].heartbeat, ElectionTimeout: timers[s.id].election,
		})
		if err != nil {
			t.Fatal(err)
		}
		ts := &testServer{store: store, api: New(Config{ID: s.id, Version: "test", Store: store, Logger: log})}
		var h http.Handler = ts.api
		if sec != nil {
			h = ts.api.Secure(*sec)
		}
		ts.http = httptest.NewServer(h)
		if ts.client, err = api.NewClient(ts.http.URL); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			ts.http.Close()
			store.Close()
			s.trans.Close()
		})
		s.testServer = ts
	}
	leader := waitNetLeader(t, servers...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := leader.api.Register(ctx, s.id, string(s.trans.LocalAddr()), s.http.Listener.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
	// Every follower knows where the leader's API listens.
	waitFor(t, "the servers' records reach every server", func() bool {
		for _, s := range servers {
			if _, ok := serverInfo(s.store.View(), leader.id); !ok {
				return false
			}
		}
		return true
	})
	return servers, leader
}

// waitNetLeader waits until one of servers leads and every other one of
// them follows it.
func waitNetLeader(t *testing.T, servers ...*netServer) *netServer {
	t.Helper()
	var leader *netServer
	waitFor(t, "a leader every server follows", func() bool {
		leader = nil
		for _, s := range servers {
			if s.store.IsLeader() {
				leader = s
			}
		}
		if leader == nil {
			return false
		}
		for _, s := range servers {
			if id, _ := s.store.LeaderID(); id != leader.id {
				return false
			}
		}
		return true
	})
	return leader
}

// cut disconnects s's Raft transport from every other server's, both ways.
func cut(s *netServer, servers []*netServer) {
	s.trans.DisconnectAll()
	for _, o := range servers {
		if o != s {
			o.trans.Disconnect(s.trans.LocalAddr())
		}
	}
}

func putService(t *testing.T, s *netServer, name string) uint64 {
	t.Helper()
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "web", Port: 80}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idx, err := s.client.Put(ctx, res(t, "services"), "default", name, svc, nil)
	if err != nil {
		t.Fatalf("put service %s through %s: %v", name, s.id, err)
	}
	return idx
}

// getService reads service name through s, consistently or not, and
// reports whether it exists; err is any answer other than the object or
// 404.
func getService(s *netServer, name string, consistent bool, within time.Duration) (found bool, err error) {
	r, _ := api.LookupResource("services")
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var svc corev1.Service
	if consistent {
		_, err = s.client.GetConsistent(ctx, r, "default", name, &svc)
	} else {
		_, err = s.client.Get(ctx, r, "default", name, &svc)
	}
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// TestConsistentReadOnStaleFollower: a follower cut off from the leader
// still answers plain reads from its own, stale replica; a consistent
// read through it is answered by the leader and sees a write the leader
// acknowledged just before.
func TestConsistentReadOnStaleFollower(t *testing.T) {
	// c's long timers keep it a follower of the leader it knew while it
	// is cut off, instead of starting elections of its own.
	slow := timeouts{heartbeat: 20 * time.Second, election: 20 * time.Second}
	servers, leader := startNet(t, []string{"a", "b", "c"}, map[string]timeouts{"c": slow}, nil)
	stale := servers[2]
	if leader == stale {
		t.Fatalf("the slow server %s leads", stale.id)
	}
	cut(stale, servers)
	idx := putService(t, leader, "after-cut")

	found, err := getService(stale, "after-cut", false, 5*time.Second)
	if err != nil || found {
		t.Fatalf("plain read on the cut-off follower %s: found %v, err %v; want a stale 404 (the test needs a stale follower)", stale.id, found, err)
	}
	r, _ := api.LookupResource("services")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var svc corev1.Service
	at, err := stale.client.GetConsistent(ctx, r, "default", "after-cut", &svc)
	if err != nil {
		t.Fatalf("consistent read through follower %s of a write acknowledged at %d: %v", stale.id, idx, err)
	}
	if svc.Name != "after-cut" || at < idx {
		t.Fatalf("consistent read through %s: got %q at index %d, want after-cut at index >= %d", stale.id, svc.Name, at, idx)
	}

	// A list too.
	l, at, err := stale.client.List(ctx, r, "default", api.ListOptions{Consistent: true})
	if err != nil || at < idx || len(l.Items) != 1 {
		t.Fatalf("consistent list through %s: %d items at index %d, err %v; want after-cut at index >= %d", stale.id, len(l.Items), at, err, idx)
	}
}

// TestConsistentReadOnCutOffLeader: a leader cut off from the majority
// never answers a consistent read, neither while it still believes it
// leads nor after it stepped down; meanwhile the majority elects another
// leader, takes a write, and answers consistent reads with it.
func TestConsistentReadOnCutOffLeader(t *testing.T) {
	servers, old := startNet(t, []string{"a", "b", "c"}, nil, nil)
	putService(t, old, "before-cut")
	cut(old, servers)

	// Right after the cut the old leader believes it leads: a plain
	// read answers from its replica, a consistent one must not.
	found, err := getService(old, "before-cut", true, 15*time.Second)
	if err == nil {
		t.Fatalf("consistent read on the cut-off leader %s answered (found %v); want an error", old.id, found)
	}
	if !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("consistent read on the cut-off leader %s: %v; want 503", old.id, err)
	}

	var rest []*netServer
	for _, s := range servers {
		if s != old {
			rest = append(rest, s)
		}
	}
	next := waitNetLeader(t, rest...)
	putService(t, next, "after-cut")
	for _, s := range rest {
		if found, err := getService(s, "after-cut", true, 10*time.Second); err != nil || !found {
			t.Errorf("consistent read through %s of a write the new leader %s acknowledged: found %v, err %v", s.id, next.id, found, err)
		}
	}
	// The old leader's replica lacks the write: its plain read is stale,
	// its consistent read fails.
	if found, err := getService(old, "after-cut", false, 5*time.Second); err != nil || found {
		t.Fatalf("plain read on the cut-off %s: found %v, err %v; want a stale 404", old.id, found, err)
	}
	if found, err := getService(old, "after-cut", true, 15*time.Second); err == nil {
		t.Errorf("consistent read on the cut-off %s answered (found %v) without a leader; want an error", old.id, found)
	}
}

// TestWantsConsistent: the forms of the parameter, and its refusal next
// to a blocking query's index.
func TestWantsConsistent(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		want        bool
		wantErr     bool
	}{
		{"absent", "", false, false},
		{"bare", "consistent", true, false},
		{"true", "consistent=true", true, false},
		{"false", "consistent=false", false, false},
		{"garbage", "consistent=maybe", false, true},
		{"with index", "consistent=true&index=5", false, true},
		{"false with index", "consistent=false&index=5", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/services?"+tc.query, nil)
			got, err := wantsConsistent(r)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Fatalf("wantsConsistent(%q) = %v, %v; want %v, error %v", tc.query, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// heal connects s's Raft transport to every other server's again.
func heal(s *netServer, servers []*netServer) {
	for _, o := range servers {
		if o != s {
			s.trans.Connect(o.trans.LocalAddr(), o.trans)
			o.trans.Connect(s.trans.LocalAddr(), s.trans)
		}
	}
}

// TestFollowerWaitsForNewToken: a token the leader acknowledged is
// accepted by a follower whose replica has not received it yet, once the
// replica catches up; a token unknown to the cluster is still refused
// there.
func TestFollowerWaitsForNewToken(t *testing.T) {
	slow := timeouts{heartbeat: 20 * time.Second, election: 20 * time.Second}
	// A follower cut off for a while catches up only after Raft's
	// backoff, which can be longer than the default wait on a slow run.
	servers, leader := startNet(t, []string{"a", "b", "c"}, map[string]timeouts{"c": slow}, &Security{ACL: true, TokenCatchUp: 5 * time.Second})
	lagging := servers[2]
	if leader == lagging {
		t.Fatalf("the slow server %s leads", lagging.id)
	}
	client := func(s *netServer, token string) *api.Client {
		c, err := api.NewClientWithOptions(s.http.Listener.Addr().String(), api.ClientOptions{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var boot api.NewToken
	if err := call(client(leader, ""), http.MethodPost, "/v1/acl/bootstrap", nil, &boot); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	waitFor(t, "the bootstrap token reaches "+lagging.id, func() bool {
		_, ok := raftstore.GetOf[*api.Token](lagging.store.View(), raftstore.Tokens, "", boot.ID)
		return ok
	})

	cut(lagging, servers)
	var ro api.NewToken
	if err := call(client(leader, boot.Secret), http.MethodPost, "/v1/acl/tokens", mustJSON(t, api.TokenRequest{Role: api.TokenReadOnly}), &ro); err != nil {
		t.Fatalf("create a token: %v", err)
	}
	if _, ok := raftstore.GetOf[*api.Token](lagging.store.View(), raftstore.Tokens, "", ro.ID); ok {
		t.Fatalf("%s has the new token while cut off; the test needs a lagging follower", lagging.id)
	}
	answer := make(chan error, 1)
	go func() {
		var self api.TokenInfo
		err := call(client(lagging, ro.Secret), http.MethodGet, "/v1/acl/token/self", nil, &self)
		if err == nil && self.ID != ro.ID {
			err = fmt.Errorf("self is %q, want %q", self.ID, ro.ID)
		}
		answer <- err
	}()
	// The request is waiting when the follower is reconnected; without
	// the wait it would have been refused at once.
	select {
	case err := <-answer:
		t.Fatalf("%s answered before it could know the token: %v", lagging.id, err)
	case <-time.After(200 * time.Millisecond):
	}
	heal(lagging, servers)
	if err := <-answer; err != nil {
		t.Fatalf("the new token through follower %s: %v", lagging.id, err)
	}

	_, unknown, _ := acl.NewSecret(rand.Reader)
	err := call(client(lagging, unknown), http.MethodGet, "/v1/acl/token/self", nil, nil)
	if codeOf(err) != http.StatusUnauthorized || !strings.Contains(err.Error(), "not known to this cluster") {
		t.Fatalf("an unknown token through follower %s: %v; want 401, not known", lagging.id, err)
	}
}
