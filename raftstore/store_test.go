package raftstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// eventually waits until cond holds, failing t after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// fastTimers are shorter than Raft's defaults, for single-server tests.
func fastTimers(cfg raftstore.Config) raftstore.Config {
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	cfg.ElectionTimeout = 200 * time.Millisecond
	cfg.LeaderLeaseTimeout = 100 * time.Millisecond
	return cfg
}

func openStore(t testing.TB, cfg raftstore.Config) *raftstore.Store {
	t.Helper()
	s, err := raftstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func applyOps(t testing.TB, s *raftstore.Store, id string, ops ...raftstore.Op) uint64 {
	t.Helper()
	idx, err := s.Apply(ctxFor(t, 10*time.Second), raftstore.Txn{RequestID: id, Ops: ops})
	if err != nil {
		t.Fatalf("apply %s: %v", id, err)
	}
	return idx
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	cfg := fastTimers(raftstore.Config{
		ID:        "s1",
		ClusterID: "c1",
		DataDir:   dir,
		BindAddr:  "127.0.0.1:0",
		Bootstrap: true,
		Logger:    raftstoretest.Logger(t),
	})
	s := openStore(t, cfg)
	raftstoretest.WaitLeader(t, s, 10*time.Second)

	applyOps(t, s, "ns", ensure(t, namespace("default")))
	for i := range 10 {
		applyOps(t, s, fmt.Sprintf("pod-%d", i), putIfAbsent(t, pod("default", fmt.Sprintf("web-%d", i))))
	}
	applyOps(t, s, "sts", put(t, statefulSet("default", "web", 10)))
	applyOps(t, s, "del", raftstore.DeleteOp(raftstore.Pods, "default", "web-3"))
	web5, _ := s.View().Get(raftstore.Pods, "default", "web-5")
	rv, _ := strconv.ParseUint(web5.GetResourceVersion(), 10, 64)
	updated := applyOps(t, s, "upd", putIfVersion(t, pod("default", "web-5", "app", "web"), rv))
	before := s.View()
	if got := len(before.List(raftstore.Pods, "default")); got != 9 {
		t.Fatalf("%d pods before restart, want 9", got)
	}

	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if data, err := os.ReadFile(filepath.Join(dir, "cluster-id")); err != nil || string(data) != "c1\n" {
		t.Errorf("cluster-id marker %q, %v; want \"c1\\n\"", data, err)
	}

	// Same data dir, same address.
	cfg.BindAddr = addr
	s2 := openStore(t, cfg)
	raftstoretest.WaitLeader(t, s2, 10*time.Second)
	after := s2.View()
	sameState(t, "after restart", before, after)
	p, ok := raftstore.GetOf[*corev1.Pod](after, raftstore.Pods, "default", "web-5")
	if !ok || p.ResourceVersion != strconv.FormatUint(updated, 10) || p.Labels["app"] != "web" {
		t.Errorf("web-5 after restart: %v %+v", ok, p)
	}
	if _, ok := after.Get(raftstore.Pods, "default", "web-3"); ok {
		t.Errorf("deleted web-3 is back after restart")
	}
	// The log goes on where it stopped.
	if idx := applyOps(t, s2, "more", put(t, pod("default", "web-10"))); idx <= after.Index() {
		t.Errorf("write after restart at index %d, not after %d", idx, after.Index())
	}
}

func TestOpenChecksClusterID(t *testing.T) {
	dir := t.TempDir()
	open := func(clusterID string, bootstrap bool) (*raftstore.Store, error) {
		_, trans := raft.NewInmemTransport("")
		t.Cleanup(func() { trans.Close() })
		s, err := raftstore.Open(raftstore.Config{
			ID: "s1", ClusterID: clusterID, DataDir: dir, Bootstrap: bootstrap,
			Transport: trans, Logger: raftstoretest.Logger(t),
		})
		if err == nil {
			t.Cleanup(func() { s.Close() })
		}
		return s, err
	}

	s, err := open("c1", true)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = open("c2", true)
	if !errors.Is(err, raftstore.ErrClusterMismatch) {
		t.Fatalf("open with cluster c2: %v, want ErrClusterMismatch", err)
	}
	t.Logf("refused: %v", err)

	s, err = open("", false)
	if err != nil {
		t.Fatalf("open without a cluster id: %v", err)
	}
	if got := s.ClusterID(); got != "c1" {
		t.Errorf("cluster id %q, want c1 from the marker", got)
	}
	s.Close()

	// A bootstrap without a cluster id makes one up and records it.
	dir = t.TempDir()
	s, err = open("", true)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ClusterID()
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("made-up cluster id %q", id)
	}
	s.Close()
	if data, _ := os.ReadFile(filepath.Join(dir, "cluster-id")); string(data) != id+"\n" {
		t.Errorf("marker %q, want %q", data, id)
	}
	if _, err := open("other", false); !errors.Is(err, raftstore.ErrClusterMismatch) {
		t.Errorf("open with another cluster id: %v, want ErrClusterMismatch", err)
	}
}

func TestSnapshotTruncatesLogAndRestartRestores(t *testing.T) {
	dir := t.TempDir()
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	cfg := fastTimers(raftstore.Config{
		ID:                "s1",
		DataDir:           dir,
		Bootstrap:         true,
		Transport:         trans,
		Logger:            raftstoretest.Logger(t),
		SnapshotThreshold: 16,
		TrailingLogs:      8,
		SnapshotInterval:  50 * time.Millisecond,
	})
	s := openStore(t, cfg)
	raftstoretest.WaitLeader(t, s, 10*time.Second)
	for i := range 80 {
		applyOps(t, s, fmt.Sprintf("w%d", i), put(t, pod("default", fmt.Sprintf("p-%d", i%50), "round", strconv.Itoa(i/50))))
	}
	eventually(t, 20*time.Second, "a snapshot past index 40", func() bool {
		n, _ := strconv.ParseUint(s.Stats()["last_snapshot_index"], 10, 64)
		return n > 40
	})
	// A tail after the snapshot.
	for i := range 5 {
		applyOps(t, s, fmt.Sprintf("tail%d", i), raftstore.DeleteOp(raftstore.Pods, "default", fmt.Sprintf("p-%d", i)))
	}
	before := s.View()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The log no longer starts at 1: what came before is only in the
	// snapshot.
	bolt, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft", "raft.db"))
	if err != nil {
		t.Fatal(err)
	}
	first, err := bolt.FirstIndex()
	bolt.Close()
	if err != nil || first <= 1 {
		t.Fatalf("first log index %d (%v), want the log truncated", first, err)
	}
	snaps, err := os.ReadDir(filepath.Join(dir, "raft", "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) == 0 || len(snaps) > 2 {
		t.Errorf("%d snapshots kept, want 1 or 2", len(snaps))
	}
	t.Logf("log starts at %d, %d snapshots", first, len(snaps))

	s2 := openStore(t, cfg)
	raftstoretest.WaitLeader(t, s2, 10*time.Second)
	sameState(t, "restored from snapshot and log", before, s2.View())
	if got := s2.View().Len(); got != 45 {
		t.Errorf("%d objects, want 45", got)
	}
}

// flakyLogStore fails writes while fail is set, as a disk would on EIO.
type flakyLogStore struct {
	raft.LogStore
	fail atomic.Bool
}

var errEIO = errors.New("fsync: input/output error")

func (s *flakyLogStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

func (s *flakyLogStore) StoreLogs(logs []*raft.Log) error {
	if s.fail.Load() {
		return errEIO
	}
	return s.LogStore.StoreLogs(logs)
}

func TestStorageErrorIsFatalAndNotAcknowledged(t *testing.T) {
	logs := &flakyLogStore{LogStore: raft.NewInmemStore()}
	fatal := make(chan error, 16)
	_, trans := raft.NewInmemTransport("")
	defer trans.Close()
	s := openStore(t, fastTimers(raftstore.Config{
		ID:            "s1",
		Bootstrap:     true,
		Transport:     trans,
		LogStore:      logs,
		StableStore:   raft.NewInmemStore(),
		SnapshotStore: raft.NewInmemSnapshotStore(),
		Logger:        raftstoretest.Logger(t),
		OnStorageError: func(err error) {
			select {
			case fatal <- err:
			default:
			}
		},
	}))
	raftstoretest.WaitLeader(t, s, 10*time.Second)
	idx := applyOps(t, s, "ok", put(t, pod("default", "a")))

	logs.fail.Store(true)
	_, err := s.Apply(ctxFor(t, 10*time.Second), raftstore.Txn{RequestID: "lost", Ops: []raftstore.Op{put(t, pod("default", "b"))}})
	// raft.LogCache flattens the error to text on its way to Apply.
	if err == nil || !strings.Contains(err.Error(), errEIO.Error()) {
		t.Fatalf("apply on a failing disk: %v, want the disk's error", err)
	}
	select {
	case err := <-fatal:
		if !errors.Is(err, errEIO) {
			t.Errorf("storage error handler got %v", err)
		}
	default:
		t.Errorf("storage error handler not called")
	}
	if got, want := dump(s.View()), []string{fmt.Sprintf("pods default/a rv=%d", idx)}; !slices.Equal(got, want) {
		t.Errorf("state %q, want only pod a", got)
	}
}

func TestApplyRefusesMalformedTxn(t *testing.T) {
	s := raftstoretest.NewStore(t)
	ctx := ctxFor(t, 10*time.Second)
	start := s.View().Index()
	if _, err := s.Apply(ctx, raftstore.Txn{Ops: []raftstore.Op{put(t, pod("d", "p"))}}); !errors.Is(err, raftstore.ErrNoRequestID) {
		t.Errorf("no request id: %v", err)
	}
	bad := put(t, pod("d", "p"))
	bad.Name = "q"
	for _, op := range []raftstore.Op{
		bad,
		raftstore.DeleteOp(raftstore.Pods, "", "p"),
		{Type: "patch", Kind: raftstore.Pods, Namespace: "d", Name: "p"},
		{Type: raftstore.OpPut, Kind: raftstore.Pods, Namespace: "d", Name: "p", Object: []byte(`{"spec":7}`)},
	} {
		_, err := s.Apply(ctx, raftstore.Txn{RequestID: raftstoretest.RequestID(t), Ops: []raftstore.Op{op}})
		if !errors.Is(err, raftstore.ErrInvalid) {
			t.Errorf("op %+v: %v, want ErrInvalid", op, err)
		}
	}
	if got := s.View().Index(); got != start {
		t.Errorf("index moved from %d to %d: a malformed txn reached the log", start, got)
	}
	// A domain failure is committed and changes nothing.
	idx := raftstoretest.Apply(t, s, put(t, pod("d", "p")))
	_, err := s.Apply(ctx, raftstore.Txn{RequestID: raftstoretest.RequestID(t), Ops: []raftstore.Op{putIfAbsent(t, pod("d", "p"))}})
	var terr *raftstore.TxnError
	if !errors.As(err, &terr) || terr.Code != raftstore.CodeAlreadyExists || terr.Name != "p" {
		t.Errorf("create of an existing pod: %v", err)
	}
	if p, _ := s.View().Get(raftstore.Pods, "d", "p"); p.GetResourceVersion() != strconv.FormatUint(idx, 10) {
		t.Errorf("pod changed by a failed txn: rv %s, want %d", p.GetResourceVersion(), idx)
	}
}

func TestWaitForIndex(t *testing.T) {
	s := raftstoretest.NewStore(t)
	now := s.View().Index()

	// An index already passed returns at once.
	if now > 0 {
		if got, err := s.WaitForIndex(ctxFor(t, time.Second), now-1); err != nil || got != now {
			t.Errorf("wait for a past index: %d, %v; want %d", got, err, now)
		}
	}

	type result struct {
		idx uint64
		err error
	}
	waiting := make(chan result, 1)
	go func() {
		idx, err := s.WaitForIndex(ctxFor(t, 10*time.Second), now)
		waiting <- result{idx, err}
	}()
	idx := raftstoretest.Apply(t, s, put(t, pod("d", "p")))
	if r := <-waiting; r.err != nil || r.idx <= now || r.idx > idx {
		t.Errorf("wait after %d: %d, %v; want an index in (%d, %d]", now, r.idx, r.err, now, idx)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.WaitForIndex(ctx, idx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}

	go func() {
		_, err := s.WaitForIndex(ctxFor(t, 10*time.Second), idx)
		waiting <- result{err: err}
	}()
	leaderCh := s.LeaderCh()
	if v := <-leaderCh; !v {
		t.Errorf("LeaderCh first says %v on the leader", v)
	}
	s.Close()
	if r := <-waiting; !errors.Is(r.err, raftstore.ErrShutdown) {
		t.Errorf("wait across Close: %v, want ErrShutdown", r.err)
	}
	for range leaderCh {
	}
	if _, err := s.Apply(ctxFor(t, time.Second), raftstore.Txn{RequestID: "late", Ops: []raftstore.Op{put(t, pod("d", "q"))}}); !errors.Is(err, raftstore.ErrNotLeader) {
		t.Errorf("apply after Close: %v", err)
	}
}

// clusterServer is one server of a test cluster.
type clusterServer struct {
	id    string
	trans *raft.InmemTransport
	store *raftstore.Store
	down  atomic.Bool
}

type cluster struct {
	t       *testing.T
	servers []*clusterServer
}

// newCluster returns n servers on in-memory transports, s1 bootstrapping;
// each option may change a server's configuration before it opens.
func newCluster(t *testing.T, n int, options ...func(i int, cfg *raftstore.Config)) *cluster {
	c := &cluster{t: t}
	for i := range n {
		id := fmt.Sprintf("s%d", i+1)
		_, trans := raft.NewInmemTransport(raft.ServerAddress(id + ".raft"))
		c.servers = append(c.servers, &clusterServer{id: id, trans: trans})
	}
	for _, a := range c.servers {
		for _, b := range c.servers {
			if a != b {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
	for i, srv := range c.servers {
		cfg := raftstore.Config{
			ID:                 srv.id,
			ClusterID:          "c1",
			DataDir:            t.TempDir(),
			Bootstrap:          i == 0,
			Transport:          srv.trans,
			Logger:             raftstoretest.Logger(t).Named(srv.id),
			HeartbeatTimeout:   500 * time.Millisecond,
			ElectionTimeout:    500 * time.Millisecond,
			LeaderLeaseTimeout: 250 * time.Millisecond,
			SnapshotThreshold:  32,
			TrailingLogs:       16,
			SnapshotInterval:   100 * time.Millisecond,
		}
		for _, o := range options {
			o(i, &cfg)
		}
		srv.store = openStore(t, cfg)
		t.Cleanup(func() { srv.trans.Close() })
	}
	return c
}

// leader returns the live server that is the leader, or nil.
func (c *cluster) leader() *clusterServer {
	for _, srv := range c.servers {
		if !srv.down.Load() && srv.store.IsLeader() {
			return srv
		}
	}
	return nil
}

func (c *cluster) waitLeader() *clusterServer {
	var l *clusterServer
	eventually(c.t, 20*time.Second, "a leader", func() bool { l = c.leader(); return l != nil })
	if err := l.store.Barrier(ctxFor(c.t, 10*time.Second)); err != nil {
		c.t.Logf("barrier on %s: %v", l.id, err)
	}
	return l
}

// stop shuts srv down and cuts it off from the others.
func (c *cluster) stop(srv *clusterServer) {
	srv.down.Store(true)
	if err := srv.store.Close(); err != nil {
		c.t.Errorf("close %s: %v", srv.id, err)
	}
	for _, o := range c.servers {
		o.trans.Disconnect(srv.trans.LocalAddr())
	}
	srv.trans.Close()
}

// converge waits until every live server has applied what the leader
// has, and checks that their states are equal.
func (c *cluster) converge(leader *clusterServer) *raftstore.View {
	c.t.Helper()
	want := leader.store.View()
	for _, srv := range c.servers {
		if srv.down.Load() || srv == leader {
			continue
		}
		if _, err := srv.store.WaitForIndex(ctxFor(c.t, 20*time.Second), want.Index()-1); err != nil {
			c.t.Fatalf("%s did not reach index %d: %v", srv.id, want.Index(), err)
		}
		sameState(c.t, srv.id+" against leader "+leader.id, want, srv.store.View())
	}
	return want
}

func TestClusterFailover(t *testing.T) {
	// s1's and s3's logs are bolt stores of the test's: it sees when a
	// snapshot has truncated s1's (Raft records the snapshot a moment
	// before it compacts the log), and which entry s3 stored first.
	s1Logs, s3Logs := boltLogs(t, "s1"), &storedLogs{LogStore: boltLogs(t, "s3")}
	c := newCluster(t, 3, func(i int, cfg *raftstore.Config) {
		switch i {
		case 0:
			cfg.LogStore = s1Logs
		case 2:
			cfg.LogStore = s3Logs
		}
	})
	s1, s2, s3 := c.servers[0], c.servers[1], c.servers[2]
	raftstoretest.WaitLeader(t, s1.store, 20*time.Second)
	if err := s1.store.AddVoter(ctxFor(t, 10*time.Second), s2.id, string(s2.trans.LocalAddr())); err != nil {
		t.Fatal(err)
	}

	// Enough writes for a snapshot and a truncated log, so that s3
	// catches up through InstallSnapshot.
	for i := range 60 {
		applyOps(t, s1.store, fmt.Sprintf("p%d", i), put(t, pod("default", fmt.Sprintf("p-%d", i))))
	}
	eventually(t, 20*time.Second, "a snapshot on s1 and its log truncated", func() bool {
		n, _ := strconv.ParseUint(s1.store.Stats()["last_snapshot_index"], 10, 64)
		first, err := s1Logs.FirstIndex()
		return n > 32 && err == nil && first > 1
	})
	if err := s1.store.AddVoter(ctxFor(t, 10*time.Second), s3.id, string(s3.trans.LocalAddr())); err != nil {
		t.Fatal(err)
	}
	c.converge(s1)
	// Caught up through a snapshot, s3 stored no entry it covers; from the
	// log alone, it would have stored the first.
	if s3Logs.first() == 1 {
		t.Errorf("s3 caught up without a snapshot: it stored the log from entry 1")
	}
	members, err := s2.store.Members()
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 || members[0].ID != "s1" || members[1].ID != "s2" || members[2].ID != "s3" || !members[2].Voter {
		t.Errorf("members %+v, want voters s1 s2 s3", members)
	}

	// A follower refuses writes and names the leader.
	_, err = s2.store.Apply(ctxFor(t, time.Second), raftstore.Txn{RequestID: "x", Ops: []raftstore.Op{put(t, pod("default", "x"))}})
	var nl *raftstore.NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderID != "s1" || nl.LeaderAddr != string(s1.trans.LocalAddr()) {
		t.Errorf("apply on a follower: %v, want not leader, leader s1", err)
	}

	// A writer creates pods w-0..w-39, each once, retrying on whatever
	// server leads with the same request ID until it is acknowledged.
	// The leader goes down midway. A retry of a create that did commit
	// must be answered from the request table, not fail as a duplicate.
	const writes = 40
	txns := make([]raftstore.Txn, writes)
	for i := range txns {
		txns[i] = raftstore.Txn{
			RequestID: fmt.Sprintf("w-%d", i),
			Ops:       []raftstore.Op{putIfAbsent(t, pod("default", fmt.Sprintf("w-%d", i)))},
		}
	}
	acked := make([]uint64, writes)
	ackedSome := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		writerDone <- func() error {
			for i, txn := range txns {
				deadline := time.Now().Add(30 * time.Second)
				for attempt := 0; ; attempt++ {
					if time.Now().After(deadline) {
						return fmt.Errorf("%s: no acknowledgement after %d attempts", txn.RequestID, attempt)
					}
					l := c.leader()
					if l == nil {
						<-tick.C // no leader right now: look again
						continue
					}
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					idx, err := l.store.Apply(ctx, txn)
					cancel()
					var terr *raftstore.TxnError
					if errors.As(err, &terr) {
						return fmt.Errorf("%s on %s: %w", txn.RequestID, l.id, err)
					}
					if err == nil {
						acked[i] = idx
						break
					}
					t.Logf("%s on %s, attempt %d: %v", txn.RequestID, l.id, attempt, err)
				}
				if i == 9 {
					close(ackedSome)
				}
			}
			return nil
		}()
	}()

	select {
	case <-ackedSome:
	case err := <-writerDone:
		t.Fatalf("writer stopped early: %v", err)
	}
	c.stop(s1)
	t.Logf("stopped leader s1")
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}

	l := c.waitLeader()
	if l == s1 {
		t.Fatal("a stopped server leads")
	}
	t.Logf("new leader %s", l.id)
	final := c.converge(l)
	for i, idx := range acked {
		for _, srv := range []*clusterServer{s2, s3} {
			p, ok := srv.store.View().Get(raftstore.Pods, "default", fmt.Sprintf("w-%d", i))
			if !ok {
				t.Errorf("acknowledged w-%d missing on %s", i, srv.id)
				continue
			}
			if p.GetResourceVersion() != strconv.FormatUint(idx, 10) {
				t.Errorf("w-%d on %s has rv %s, acknowledged at %d", i, srv.id, p.GetResourceVersion(), idx)
			}
		}
	}
	if got := len(final.List(raftstore.Pods, "default")); got != 60+writes {
		t.Errorf("%d pods, want %d", got, 60+writes)
	}

	// The survivors still take writes.
	applyOps(t, l.store, "after", put(t, pod("default", "after")))
	c.converge(l)
}
