package raftstore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// memServer is a server on in-memory Raft whose data directory survives
// its store, so that a test can restart it.
type memServer struct {
	id    string
	dir   string
	trans *raft.InmemTransport
	store *raftstore.Store
}

func newMemServers(t *testing.T, ids ...string) []*memServer {
	var out []*memServer
	for _, id := range ids {
		out = append(out, &memServer{id: id, dir: t.TempDir()})
	}
	return out
}

// open starts srv's store on a new transport at the same address,
// connected both ways to the others that are running.
func (srv *memServer) open(t *testing.T, others []*memServer, cfg raftstore.Config) error {
	t.Helper()
	_, trans := raft.NewInmemTransport(raft.ServerAddress(srv.id + ".raft"))
	for _, o := range others {
		if o != srv && o.store != nil {
			trans.Connect(o.trans.LocalAddr(), o.trans)
			o.trans.Connect(trans.LocalAddr(), trans)
		}
	}
	cfg.ID, cfg.DataDir, cfg.Transport = srv.id, srv.dir, trans
	cfg.Logger = raftstoretest.Logger(t).Named(srv.id)
	cfg.HeartbeatTimeout = 500 * time.Millisecond
	cfg.ElectionTimeout = 500 * time.Millisecond
	cfg.LeaderLeaseTimeout = 250 * time.Millisecond
	s, err := raftstore.Open(cfg)
	if err != nil {
		trans.Close()
		return err
	}
	srv.trans, srv.store = trans, s
	t.Cleanup(srv.stop)
	return nil
}

func (srv *memServer) mustOpen(t *testing.T, others []*memServer, cfg raftstore.Config) {
	t.Helper()
	if err := srv.open(t, others, cfg); err != nil {
		t.Fatal(err)
	}
}

// stop closes srv's store; the others stop reaching it.
func (srv *memServer) stop() {
	if srv.store == nil {
		return
	}
	srv.store.Close()
	srv.trans.Close()
	srv.store = nil
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestMemberMarkerGuardsLostState(t *testing.T) {
	srv := newMemServers(t, "s1")[0]
	srv.mustOpen(t, nil, raftstore.Config{ClusterID: "c1", Bootstrap: true})
	raftstoretest.WaitLeader(t, srv.store, 10*time.Second)
	if !srv.store.HasState() {
		t.Errorf("HasState false after a bootstrap")
	}
	applyOps(t, srv.store, "ns", ensure(t, namespace("default")))
	srv.stop()
	if got, want := readFile(t, filepath.Join(srv.dir, "member")), `{"server":"s1","cluster":"c1"}`+"\n"; got != want {
		t.Errorf("member marker %q, want %q", got, want)
	}

	st, err := raftstore.Inspect(srv.dir, "s1")
	if err != nil || st != (raftstore.DirState{ClusterID: "c1", Member: "s1", HasState: true}) {
		t.Errorf("Inspect: %+v, %v", st, err)
	}
	if _, err := raftstore.Inspect(srv.dir, "s9"); !errors.Is(err, raftstore.ErrOtherServer) {
		t.Errorf("Inspect as s9: %v, want ErrOtherServer", err)
	}
	other := &memServer{id: "s9", dir: srv.dir}
	if err := other.open(t, nil, raftstore.Config{}); !errors.Is(err, raftstore.ErrOtherServer) {
		t.Errorf("open as s9: %v, want ErrOtherServer", err)
	}

	// The Raft state goes; the markers stay.
	if err := os.RemoveAll(filepath.Join(srv.dir, "raft")); err != nil {
		t.Fatal(err)
	}
	st, err = raftstore.Inspect(srv.dir, "s1")
	if !errors.Is(err, raftstore.ErrStateLost) || st.HasState || st.Member != "s1" {
		t.Errorf("Inspect without Raft state: %+v, %v; want ErrStateLost", st, err)
	}
	for _, bootstrap := range []bool{false, true} {
		err := srv.open(t, nil, raftstore.Config{ClusterID: "c1", Bootstrap: bootstrap})
		if !errors.Is(err, raftstore.ErrStateLost) {
			t.Fatalf("open without Raft state (bootstrap %v): %v, want ErrStateLost", bootstrap, err)
		}
		t.Logf("refused: %v", err)
	}
}

func TestJoinerMarksItselfWithItsFirstState(t *testing.T) {
	servers := newMemServers(t, "s1", "s2")
	s1, s2 := servers[0], servers[1]
	s1.mustOpen(t, servers, raftstore.Config{ClusterID: "c1", Bootstrap: true})
	raftstoretest.WaitLeader(t, s1.store, 10*time.Second)

	// A joiner takes the cluster's ID first, then starts Raft.
	if err := raftstore.SetClusterID(s2.dir, "c1"); err != nil {
		t.Fatal(err)
	}
	s2.mustOpen(t, servers, raftstore.Config{ClusterID: "c1"})
	if s2.store.HasState() {
		t.Fatalf("a new joiner has state")
	}
	if _, err := os.Stat(filepath.Join(s2.dir, "member")); !os.IsNotExist(err) {
		t.Fatalf("member marker before any Raft state: %v", err)
	}
	if err := s1.store.AddVoter(ctxFor(t, 10*time.Second), "s2", string(s2.trans.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "s2 holds state", s2.store.HasState)
	if got, want := readFile(t, filepath.Join(s2.dir, "member")), `{"server":"s2","cluster":"c1"}`+"\n"; got != want {
		t.Errorf("member marker %q, want %q", got, want)
	}
	s2.stop()

	if err := os.Remove(filepath.Join(s2.dir, "raft", "raft.db")); err != nil {
		t.Fatal(err)
	}
	if err := s2.open(t, servers, raftstore.Config{ClusterID: "c1"}); !errors.Is(err, raftstore.ErrStateLost) {
		t.Fatalf("reopen s2 without raft.db: %v, want ErrStateLost", err)
	}
}

func TestSetClusterID(t *testing.T) {
	dir := t.TempDir()
	st, err := raftstore.Inspect(dir, "s1")
	if err != nil || st != (raftstore.DirState{}) {
		t.Fatalf("Inspect of an empty directory: %+v, %v", st, err)
	}
	// Without Raft state the ID may change: a proposal, then the ID of
	// the cluster the server joins.
	for _, id := range []string{"proposed", "c1"} {
		if err := raftstore.SetClusterID(dir, id); err != nil {
			t.Fatalf("set %s: %v", id, err)
		}
		if got := readFile(t, filepath.Join(dir, "cluster-id")); got != id+"\n" {
			t.Errorf("marker %q after setting %s", got, id)
		}
	}
	srv := &memServer{id: "s1", dir: dir}
	srv.mustOpen(t, nil, raftstore.Config{ClusterID: "c1", Bootstrap: true})
	raftstoretest.WaitLeader(t, srv.store, 10*time.Second)
	srv.stop()

	if err := raftstore.SetClusterID(dir, "c1"); err != nil {
		t.Errorf("set the same id on a directory with state: %v", err)
	}
	err = raftstore.SetClusterID(dir, "c2")
	if !errors.Is(err, raftstore.ErrClusterMismatch) {
		t.Fatalf("set another id on a directory with state: %v, want ErrClusterMismatch", err)
	}
	if got := readFile(t, filepath.Join(dir, "cluster-id")); got != "c1\n" {
		t.Errorf("marker %q after a refused change", got)
	}
}

func TestBootstrapTogether(t *testing.T) {
	servers := newMemServers(t, "s1", "s2", "s3")
	var all []raftstore.Member
	for _, srv := range servers {
		all = append(all, raftstore.Member{ID: srv.id, Addr: srv.id + ".raft", Voter: true})
	}
	for _, srv := range servers {
		srv.mustOpen(t, servers, raftstore.Config{ClusterID: "c1", Bootstrap: true, Servers: all})
	}
	var leader *memServer
	eventually(t, 20*time.Second, "a leader", func() bool {
		for _, srv := range servers {
			if srv.store.IsLeader() {
				leader = srv
				return true
			}
		}
		return false
	})
	idx := applyOps(t, leader.store, "ns", ensure(t, namespace("default")))
	for _, srv := range servers {
		if _, err := srv.store.WaitForIndex(ctxFor(t, 10*time.Second), idx-1); err != nil {
			t.Fatalf("%s: %v", srv.id, err)
		}
		members, err := srv.store.Members()
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(members); got != "[{s1 s1.raft true} {s2 s2.raft true} {s3 s3.raft true}]" {
			t.Errorf("%s members %s", srv.id, got)
		}
		if srv.store.ClusterID() != "c1" {
			t.Errorf("%s cluster %q", srv.id, srv.store.ClusterID())
		}
	}

	// A list without this server, or with a non-voter, is refused.
	lone := newMemServers(t, "s4")[0]
	if err := lone.open(t, nil, raftstore.Config{Bootstrap: true, Servers: all}); err == nil || !strings.Contains(err.Error(), "do not include this one") {
		t.Errorf("bootstrap without itself: %v", err)
	}
	withNonVoter := append([]raftstore.Member{{ID: "s4", Addr: "s4.raft", Voter: false}}, all...)
	if err := lone.open(t, nil, raftstore.Config{Bootstrap: true, Servers: withNonVoter}); err == nil || !strings.Contains(err.Error(), "not a voter") {
		t.Errorf("bootstrap with a non-voter: %v", err)
	}
}

func TestRecoverFromPeersJSON(t *testing.T) {
	servers := newMemServers(t, "s1", "s2", "s3")
	s1, s2, s3 := servers[0], servers[1], servers[2]
	s1.mustOpen(t, servers, raftstore.Config{ClusterID: "c1", Bootstrap: true})
	raftstoretest.WaitLeader(t, s1.store, 10*time.Second)
	for _, srv := range []*memServer{s2, s3} {
		srv.mustOpen(t, servers, raftstore.Config{ClusterID: "c1"})
		if err := s1.store.AddVoter(ctxFor(t, 10*time.Second), srv.id, string(srv.trans.LocalAddr())); err != nil {
			t.Fatal(err)
		}
	}
	acked := applyOps(t, s1.store, "ns", ensure(t, namespace("default")))
	for i := range 5 {
		applyOps(t, s1.store, fmt.Sprintf("p%d", i), put(t, pod("default", fmt.Sprintf("web-%d", i))))
	}
	before := s1.store.View()

	// s2 and s3 are lost for good; s1 alone has no quorum.
	s2.stop()
	s3.stop()
	s1.stop()
	peers := filepath.Join(s1.dir, "raft", "peers.json")
	write := func(content string) {
		if err := os.WriteFile(peers, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A file that leaves this server out is refused and kept.
	write(`[{"id":"s2","address":"s2.raft","non_voter":false}]`)
	if err := s1.open(t, nil, raftstore.Config{}); err == nil || !strings.Contains(err.Error(), `does not list this server "s1"`) {
		t.Fatalf("recovery without s1: %v", err)
	}

	write(`[{"id":"s1","address":"s1.raft","non_voter":false}]`)
	s1.mustOpen(t, nil, raftstore.Config{})
	raftstoretest.WaitLeader(t, s1.store, 10*time.Second)
	sameState(t, "after recovery", before, s1.store.View())
	if _, err := os.Stat(peers); !os.IsNotExist(err) {
		t.Errorf("peers.json still there after the recovery: %v", err)
	}
	newID := s1.store.ClusterID()
	if newID == "c1" || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(newID) {
		t.Errorf("cluster id after recovery %q, want a new one", newID)
	}
	if got, want := readFile(t, filepath.Join(s1.dir, "cluster-id")), newID+"\nrecovered-from c1\n"; got != want {
		t.Errorf("marker %q, want %q", got, want)
	}
	if got, want := readFile(t, filepath.Join(s1.dir, "member")), fmt.Sprintf(`{"server":"s1","cluster":%q}`+"\n", newID); got != want {
		t.Errorf("member marker %q, want %q", got, want)
	}
	members, _ := s1.store.Members()
	if fmt.Sprint(members) != "[{s1 s1.raft true}]" {
		t.Errorf("members after recovery %v", members)
	}
	if idx := applyOps(t, s1.store, "after", put(t, pod("default", "after"))); idx <= acked {
		t.Errorf("write after recovery at %d", idx)
	}

	// A start that recovered and stopped before removing the file does
	// the recovery again without deriving yet another ID.
	s1.stop()
	write(`[{"id":"s1","address":"s1.raft","non_voter":false}]`)
	s1.mustOpen(t, nil, raftstore.Config{})
	if got := s1.store.ClusterID(); got != newID {
		t.Errorf("cluster id after a repeated recovery %q, want %q", got, newID)
	}
	s1.stop()

	// A lost server's old directory is from the old cluster: it cannot
	// take the recovered cluster's ID.
	if err := raftstore.SetClusterID(s2.dir, newID); !errors.Is(err, raftstore.ErrClusterMismatch) {
		t.Errorf("adopt the recovered cluster on s2's old directory: %v, want ErrClusterMismatch", err)
	}
	if err := s2.open(t, nil, raftstore.Config{ClusterID: newID}); !errors.Is(err, raftstore.ErrClusterMismatch) {
		t.Errorf("open s2's old directory in the recovered cluster: %v, want ErrClusterMismatch", err)
	}

	// peers.json in a directory without state is an operator error.
	empty := newMemServers(t, "s5")[0]
	os.MkdirAll(filepath.Join(empty.dir, "raft"), 0o700)
	os.WriteFile(filepath.Join(empty.dir, "raft", "peers.json"), []byte(`[{"id":"s5","address":"s5.raft"}]`), 0o600)
	if err := empty.open(t, nil, raftstore.Config{}); err == nil || !strings.Contains(err.Error(), "holds no Raft state") {
		t.Errorf("recovery without state: %v", err)
	}
}
