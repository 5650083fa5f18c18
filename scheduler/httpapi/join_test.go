package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// startClusterServer starts a server with the cluster endpoints. With
// servers set it bootstraps a cluster of them; raftAddr is its own entry.
func startClusterServer(t *testing.T, id, raftAddr string, servers []raftstore.Member) *testServer {
	t.Helper()
	log := hclog.New(&hclog.LoggerOptions{Name: id, Level: hclog.Warn, Output: testWriter{t}})
	store, err := raftstore.Open(raftstore.Config{
		ID: id, ClusterID: "c1", DataDir: t.TempDir(), BindAddr: raftAddr, AdvertiseAddr: raftAddr,
		Bootstrap: len(servers) > 0, Servers: servers, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{store: store}
	ts.api = New(Config{ID: id, Version: "test", Store: store, Logger: log})
	ts.http = httptest.NewServer(ts.api)
	ts.api.HandleCluster(ClusterOptions{HTTPAddr: ts.http.Listener.Addr().String(), BootstrapExpect: len(servers)})
	ts.client, err = api.NewClient(ts.http.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ts.http.Close()
		store.Close()
	})
	return ts
}

func (ts *testServer) httpAddr() string { return ts.http.Listener.Addr().String() }

// joinVia posts a join request to ts and returns the error.
func joinVia(ts *testServer, req JoinRequest) error {
	body, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := ts.client.Do(ctx, http.MethodPost, "/v1/join", nil, body, nil)
	return err
}

// leaderOf waits until one of servers leads and has recorded its address.
func leaderOf(t *testing.T, servers ...*testServer) *testServer {
	t.Helper()
	var leader *testServer
	waitFor(t, "a leader", func() bool {
		for _, s := range servers {
			if s.store.IsLeader() {
				leader = s
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.api.Register(ctx, leader.api.cfg.ID, leader.store.Addr(), leader.httpAddr()); err != nil {
		t.Fatal(err)
	}
	return leader
}

func TestJoinChecksClusterAndLostState(t *testing.T) {
	s1Addr := freeAddr(t)
	s1 := startClusterServer(t, "s1", s1Addr, []raftstore.Member{{ID: "s1", Addr: s1Addr, Voter: true}})
	leaderOf(t, s1)
	s2 := startClusterServer(t, "s2", freeAddr(t), nil)
	s2req := JoinRequest{ID: "s2", RaftAddr: s2.store.Addr(), HTTPAddr: s2.httpAddr(), ClusterID: "c1", LogVersion: raftstore.LogVersion}

	steps := []struct {
		name string
		req  JoinRequest
		want string // "" for success, else part of the 409's message
	}{
		{"another cluster's directory", JoinRequest{ID: "s2", RaftAddr: s2req.RaftAddr, HTTPAddr: s2req.HTTPAddr, ClusterID: "c9"},
			`its data directory belongs to cluster "c9", and this is cluster "c1"`},
		{"state without a cluster id", JoinRequest{ID: "s2", RaftAddr: s2req.RaftAddr, HTTPAddr: s2req.HTTPAddr, HasState: true},
			`belongs to cluster "", and this is cluster "c1"`},
		{"a new server of an older stead", JoinRequest{ID: "s2", RaftAddr: s2req.RaftAddr, HTTPAddr: s2req.HTTPAddr, ClusterID: "c1"},
			fmt.Sprintf("server s2 runs a stead that reads Raft log version 1, and this cluster's servers write version %d", raftstore.LogVersion)},
		{"a new server", s2req, ""},
		{"the member restarting with an older stead", JoinRequest{ID: "s2", RaftAddr: s2req.RaftAddr, HTTPAddr: s2req.HTTPAddr, ClusterID: "c1", HasState: true}, ""},
		{"the member restarting", JoinRequest{ID: "s2", RaftAddr: s2req.RaftAddr, HTTPAddr: s2req.HTTPAddr, ClusterID: "c1", HasState: true, LogVersion: raftstore.LogVersion}, ""},
		{"the member without its state", s2req,
			"server s2 is a member of this cluster, but it started without its Raft state"},
		{"another id at a member's address", JoinRequest{ID: "s9", RaftAddr: s2req.RaftAddr, HTTPAddr: "127.0.0.1:1", ClusterID: "c1", LogVersion: raftstore.LogVersion},
			"Raft address " + s2req.RaftAddr + " is server s2's"},
	}
	for _, step := range steps {
		err := joinVia(s1, step.req)
		switch {
		case step.want == "" && err != nil:
			t.Fatalf("%s: %v", step.name, err)
		case step.want != "" && (!apierrors.IsConflict(err) || !strings.Contains(err.Error(), step.want)):
			t.Fatalf("%s: %v, want a conflict saying %q", step.name, err, step.want)
		}
		if step.want == "" {
			// The record says what log version the server reads, as of its
			// last join.
			rec, ok := serverInfo(s1.store.View(), "s2")
			if !ok || rec.Spec.LogVersion != step.req.LogVersion {
				t.Fatalf("%s: s2's record %+v, want log version %d", step.name, rec, step.req.LogVersion)
			}
		}
	}
	members, err := s1.store.Members()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(members), fmt.Sprintf("[{s1 %s true} {s2 %s true}]", s1Addr, s2req.RaftAddr); got != want {
		t.Errorf("members %s, want %s", got, want)
	}
}

// A server named by the bootstrap of the others but started after they
// elected a leader has no state; it says it was formed with them, and is
// let in. Without saying so it is a member that lost its state.
func TestJoinOfBootstrapMemberStartedLate(t *testing.T) {
	addrs := []string{freeAddr(t), freeAddr(t), freeAddr(t)}
	var all []raftstore.Member
	for i, a := range addrs {
		all = append(all, raftstore.Member{ID: fmt.Sprintf("s%d", i+1), Addr: a, Voter: true})
	}
	s1 := startClusterServer(t, "s1", addrs[0], all)
	s2 := startClusterServer(t, "s2", addrs[1], all)
	leader := leaderOf(t, s1, s2)
	s3 := startClusterServer(t, "s3", addrs[2], nil)
	req := JoinRequest{ID: "s3", RaftAddr: addrs[2], HTTPAddr: s3.httpAddr(), ClusterID: "c1", LogVersion: raftstore.LogVersion}
	if err := joinVia(leader, req); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "started without its Raft state") {
		t.Fatalf("join of a listed server without state: %v, want a conflict", err)
	}
	req.Formed = true
	if err := joinVia(leader, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "s3 follows", func() bool { id, _ := s3.store.LeaderID(); return id == leader.api.cfg.ID })
	if srv, ok := raftstore.GetOf[*api.Server](leader.store.View(), raftstore.Servers, "", "s3"); !ok || srv.Spec.HTTPAddr != s3.httpAddr() {
		t.Errorf("s3's record: %v %+v", ok, srv)
	}
}

func TestOperatorRaftConfigurationAndRemovePeer(t *testing.T) {
	s1Addr := freeAddr(t)
	s1 := startClusterServer(t, "s1", s1Addr, []raftstore.Member{{ID: "s1", Addr: s1Addr, Voter: true}})
	leaderOf(t, s1)
	s2 := startClusterServer(t, "s2", freeAddr(t), nil)
	s3 := startClusterServer(t, "s3", freeAddr(t), nil)
	for _, s := range []*testServer{s2, s3} {
		if err := joinVia(s, JoinRequest{ID: s.api.cfg.ID, RaftAddr: s.store.Addr(), HTTPAddr: s.httpAddr(), ClusterID: "c1", LogVersion: raftstore.LogVersion}); err == nil {
			t.Fatalf("%s joined itself while in no cluster", s.api.cfg.ID)
		}
		if err := joinVia(s1, JoinRequest{ID: s.api.cfg.ID, RaftAddr: s.store.Addr(), HTTPAddr: s.httpAddr(), ClusterID: "c1", LogVersion: raftstore.LogVersion}); err != nil {
			t.Fatal(err)
		}
	}
	// s3 forwards to the leader once it holds the leader's record.
	waitFor(t, "s3 caught up with the leader", func() bool {
		id, _ := s3.store.LeaderID()
		return id == "s1" && s3.store.View().Index() >= s1.store.View().Index()
	})
	ctx := context.Background()
	configuration := func(ts *testServer, stale bool) RaftConfiguration {
		t.Helper()
		var q map[string][]string
		if stale {
			q = map[string][]string{"stale": {"true"}}
		}
		var c RaftConfiguration
		if _, err := ts.client.Do(ctx, http.MethodGet, "/v1/operator/raft/configuration", q, nil, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	peers := func(c RaftConfiguration) string {
		var parts []string
		for _, p := range c.Servers {
			parts = append(parts, fmt.Sprintf("%s voter=%v leader=%v http=%v", p.ID, p.Voter, p.Leader, p.HTTPAddr != ""))
		}
		return strings.Join(parts, "; ")
	}

	// A follower forwards to the leader.
	c := configuration(s3, false)
	if want := "s1 voter=true leader=true http=true; s2 voter=true leader=false http=true; s3 voter=true leader=false http=true"; peers(c) != want || c.Leader != "s1" || c.ClusterID != "c1" || c.Stale {
		t.Fatalf("configuration via s3: %+v\n got %s\nwant %s", c, peers(c), want)
	}
	if c.Servers[2].HTTPAddr != s3.httpAddr() || c.Servers[2].RaftAddr != s3.store.Addr() {
		t.Errorf("s3's addresses %+v", c.Servers[2])
	}
	if c := configuration(s3, true); !c.Stale || len(c.Servers) != 3 {
		t.Errorf("stale configuration from s3: %+v", c)
	}

	var info JoinInfo
	if _, err := s2.client.Do(ctx, http.MethodGet, "/v1/join-info", nil, nil, &info); err != nil {
		t.Fatal(err)
	}
	if info.ID != "s2" || info.RaftAddr != s2.store.Addr() || info.HTTPAddr != s2.httpAddr() || info.ClusterID != "c1" ||
		!info.HasState || info.Leader != "s1" || info.LeaderHTTPAddr != s1.httpAddr() || info.LastIndex < 3 || len(info.Servers) != 3 {
		t.Errorf("join-info of s2: %+v", info)
	}

	// Remove s3 through s2, which forwards to the leader.
	s3.store.Close()
	if _, err := s2.client.Do(ctx, http.MethodDelete, "/v1/operator/raft/peers/s3", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := peers(configuration(s2, false)), "s1 voter=true leader=true http=true; s2 voter=true leader=false http=true"; got != want {
		t.Errorf("after removing s3: %s, want %s", got, want)
	}
	if _, ok := s1.store.View().Get(raftstore.Servers, "", "s3"); ok {
		t.Errorf("s3's record is still there")
	}
	if _, err := s1.client.Do(ctx, http.MethodDelete, "/v1/operator/raft/peers/s3", nil, nil, nil); !apierrors.IsNotFound(err) {
		t.Errorf("remove s3 again: %v, want not found", err)
	}
	if _, err := s1.client.Do(ctx, http.MethodDelete, "/v1/operator/raft/peers/s2", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, err := s1.client.Do(ctx, http.MethodDelete, "/v1/operator/raft/peers/s1", nil, nil, nil)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "server s1 is the last voter") {
		t.Errorf("remove the last voter: %v, want a conflict", err)
	}
}

func TestStartingAnswersJoinInfoOnly(t *testing.T) {
	want := JoinInfo{ID: "s1", RaftAddr: "10.0.0.1:7471", HTTPAddr: "10.0.0.1:7470", ClusterID: "proposal", BootstrapExpect: 3,
		Discovered: []Peer{{ID: "s1", RaftAddr: "10.0.0.1:7471", HTTPAddr: "10.0.0.1:7470", Voter: true}}}
	srv := httptest.NewServer(Starting(func() JoinInfo { return want }))
	defer srv.Close()
	c, _ := api.NewClient(srv.URL)
	var got JoinInfo
	if _, err := c.Do(context.Background(), http.MethodGet, "/v1/join-info", nil, nil, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("join-info %+v, want %+v", got, want)
	}
	if _, err := c.Status(context.Background()); !apierrors.IsServiceUnavailable(err) {
		t.Errorf("status while starting: %v, want 503", err)
	}
}
