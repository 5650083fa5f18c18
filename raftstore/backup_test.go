package raftstore_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

func serverRecord(id, httpAddr string) *api.Server {
	return &api.Server{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: api.ServerSpec{RaftAddr: id + ".raft", HTTPAddr: httpAddr}}
}

// fill writes a small cluster's worth of objects to s, each transaction
// with the request ID "fill-N".
func fill(t *testing.T, s *raftstore.Store) {
	t.Helper()
	applyOps(t, s, "fill-1", put(t, namespace("default")), put(t, namespace("db")))
	applyOps(t, s, "fill-2", put(t, statefulSet("default", "web", 3)), put(t, statefulSet("db", "pg", 2)))
	for i := range 3 {
		applyOps(t, s, fmt.Sprintf("fill-p%d", i), put(t, pod("default", api.ReplicaName("web", i), "app", "web")))
	}
	applyOps(t, s, "fill-del", raftstore.DeleteOp(raftstore.Pods, "default", api.ReplicaName("web", 2)))
}

func save(t *testing.T, s *raftstore.Store) ([]byte, raftstore.BackupMeta) {
	t.Helper()
	var buf bytes.Buffer
	meta, err := s.SaveSnapshot(ctxFor(t, 10*time.Second), &buf)
	if err != nil {
		t.Fatalf("save snapshot of %s: %v", s.ID(), err)
	}
	return buf.Bytes(), meta
}

func TestSaveAndRestoreSnapshot(t *testing.T) {
	a := raftstoretest.NewStore(t)
	fill(t, a)
	data, meta := save(t, a)
	saved := a.View()
	if meta.Index != saved.Index() || meta.ClusterID != "test" || meta.Term == 0 {
		t.Errorf("meta %+v, want index %d of cluster test with a term", meta, saved.Index())
	}

	info, err := raftstore.InspectBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	wantCounts := map[raftstore.Kind]int{raftstore.Namespaces: 2, raftstore.StatefulSets: 2, raftstore.Pods: 2}
	if !maps.Equal(info.Objects, wantCounts) || info.BackupMeta != meta {
		t.Errorf("inspect: %+v, want %+v and counts %v", info, meta, wantCounts)
	}

	// Another cluster, further along, with objects the backup does not
	// have.
	b := raftstoretest.NewStore(t)
	for i := range 20 {
		applyOps(t, b, fmt.Sprintf("b-%d", i), put(t, pod("other", fmt.Sprintf("x-%d", i))))
	}
	before := b.View().Index()
	res, err := b.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(data))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	got := b.View()
	if got.Hash() != saved.Hash() {
		t.Errorf("restored state %v, want %v", dump(got), dump(saved))
	}
	// Assignments made from now on must outrank any generation a lost
	// cluster may have reached after the backup.
	if res.From != meta || res.Index <= before+1<<32 || got.Index() != res.Index {
		t.Errorf("restored %+v at view index %d; want from %+v, 2^32 above %d", res, got.Index(), meta, before)
	}
	if snap, _ := strconv.ParseUint(b.Stats()["last_snapshot_index"], 10, 64); snap != res.Index {
		t.Errorf("raft snapshot at %d, state at %d", snap, res.Index)
	}

	// The restored store goes on: a new write lands above the restored
	// index, and a request the backup remembers is answered from it, not
	// applied again.
	if idx := applyOps(t, b, "after", put(t, pod("default", "after"))); idx <= res.Index {
		t.Errorf("write after restore at %d, want above %d", idx, res.Index)
	}
	idx, err := b.Apply(ctxFor(t, 10*time.Second), raftstore.Txn{RequestID: "fill-del",
		Ops: []raftstore.Op{raftstore.DeleteOp(raftstore.Pods, "default", api.ReplicaName("web", 2))}})
	if err != nil || idx != saved.Index() {
		t.Errorf("repeated request after restore: index %d, %v; want the first answer, index %d", idx, err, saved.Index())
	}
}

func TestRestoreKeepsTheRunningClustersServers(t *testing.T) {
	a := raftstoretest.NewStore(t)
	ia := applyOps(t, a, "a", put(t, serverRecord("old-1", "10.0.0.1:7470")), put(t, serverRecord("old-2", "10.0.0.2:7470")), put(t, pod("default", "p")))
	data, _ := save(t, a)

	b := raftstoretest.NewStore(t)
	ib := applyOps(t, b, "b", put(t, serverRecord("s1", "127.0.0.1:7470")), put(t, pod("default", "q")))
	if _, err := b.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("pods default/p rv=%d", ia), fmt.Sprintf("servers /s1 rv=%d", ib)}
	if got := dump(b.View()); !slices.Equal(got, want) {
		t.Errorf("after restore: %v, want %v", got, want)
	}
	if srv, ok := raftstore.GetOf[*api.Server](b.View(), raftstore.Servers, "", "s1"); !ok || srv.Spec.HTTPAddr != "127.0.0.1:7470" {
		t.Errorf("server s1 after restore: %+v", srv)
	}
}

func TestRestoreRefusesDamagedBackup(t *testing.T) {
	a := raftstoretest.NewStore(t)
	fill(t, a)
	data, _ := save(t, a)
	header := bytes.IndexByte(data[len("STEADSNAP1\n"):], '\n') + len("STEADSNAP1\n") + 1
	trailer := bytes.LastIndex(data, []byte(`{"sha256"`))
	objects := bytes.Index(data, []byte(`"kind":"statefulsets"`))

	flip := func(i int) []byte {
		d := bytes.Clone(data)
		d[i] ^= 0x01
		return d
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "does not start with"},
		{"other file", []byte("apiVersion: v1\nkind: Pod\n"), "does not start with"},
		{"magic", flip(3), "does not start with"},
		{"header size digit", bytes.Replace(data, []byte(`"size":`), []byte(`"size":1`), 1), "truncated"},
		{"header checksum", flip(header - 5), "checksum mismatch"},
		{"snapshot header", flip(header + 2), "checksum mismatch"},
		{"object", flip(objects + 10), "checksum mismatch"},
		{"inner trailer", flip(trailer + 15), "checksum mismatch"},
		{"last newline", flip(len(data) - 1), "checksum mismatch"},
		{"truncated", data[:len(data)-40], "truncated"},
		{"no snapshot", data[:header], "truncated"},
		{"data after", append(bytes.Clone(data), "x"...), "data after the snapshot"},
	}

	b := raftstoretest.NewStore(t)
	applyOps(t, b, "b", put(t, pod("default", "keep")))
	before := b.View()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := raftstore.InspectBackup(bytes.NewReader(tt.data)); !errors.Is(err, raftstore.ErrBadBackup) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("inspect: %v, want ErrBadBackup saying %q", err, tt.want)
			}
			_, err := b.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(tt.data))
			if !errors.Is(err, raftstore.ErrBadBackup) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("restore: %v, want ErrBadBackup saying %q", err, tt.want)
			}
			if after := b.View(); after.Index() != before.Index() || after.Hash() != before.Hash() {
				t.Errorf("state changed: %v at %d, was %v at %d", dump(after), after.Index(), dump(before), before.Index())
			}
		})
	}
	// The untouched backup still restores.
	if _, err := b.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(data)); err != nil {
		t.Errorf("restore of the undamaged backup: %v", err)
	}
}

// TestRestoreReachesEveryServer restores on the leader of three servers:
// the followers install the state through Raft, and a follower asked to
// restore refuses.
func TestRestoreReachesEveryServer(t *testing.T) {
	src := raftstoretest.NewStore(t)
	fill(t, src)
	data, meta := save(t, src)

	c := newCluster(t, 3)
	s1 := c.servers[0]
	raftstoretest.WaitLeader(t, s1.store, 20*time.Second)
	for _, srv := range c.servers[1:] {
		if err := s1.store.AddVoter(ctxFor(t, 10*time.Second), srv.id, string(srv.trans.LocalAddr())); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		applyOps(t, s1.store, fmt.Sprintf("c-%d", i), put(t, pod("other", fmt.Sprintf("c-%d", i))))
	}
	c.converge(s1)

	s2 := c.servers[1]
	before := s2.store.View()
	_, err := s2.store.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(data))
	var nl *raftstore.NotLeaderError
	if !errors.As(err, &nl) || nl.LeaderID != "s1" {
		t.Errorf("restore on a follower: %v, want not leader, leader s1", err)
	}
	if after := s2.store.View(); after.Hash() != before.Hash() {
		t.Errorf("a refused restore changed the follower")
	}

	// A follower saves its own copy.
	if _, fmeta := save(t, s2.store); fmeta.Index != before.Index() || fmeta.Term != 0 || fmeta.ClusterID != "c1" {
		t.Errorf("follower's backup %+v, want index %d of c1 without a term", fmeta, before.Index())
	}

	// Followers busy installing the snapshot answer no heartbeats: on a
	// loaded machine the leader may step down meanwhile, leaving the
	// outcome unknown. Restoring the same backup again on the new leader
	// is safe.
	var res raftstore.Restored
	leader := s1
	for attempt := 1; ; attempt++ {
		res, err = leader.store.RestoreSnapshot(ctxFor(t, 20*time.Second), bytes.NewReader(data))
		if err == nil {
			break
		}
		if errors.Is(err, raftstore.ErrBadBackup) || attempt == 5 {
			t.Fatalf("restore on the leader %s, attempt %d: %v", leader.id, attempt, err)
		}
		t.Logf("restore on %s, attempt %d: %v", leader.id, attempt, err)
		leader = c.waitLeader()
	}
	if res.From.Index != meta.Index {
		t.Errorf("restored from index %d, want %d", res.From.Index, meta.Index)
	}
	final := c.converge(leader)
	if final.Hash() != src.View().Hash() || final.Index() != res.Index {
		t.Errorf("cluster state %v at %d, want %v at %d", dump(final), final.Index(), dump(src.View()), res.Index)
	}
	applyOps(t, leader.store, "after", put(t, pod("default", "after")))
	c.converge(leader)
}

func TestRestoreKeepsTokenChangesSinceTheBackup(t *testing.T) {
	token := func(id string, revoked bool) *api.Token {
		tok := &api.Token{ObjectMeta: metav1.ObjectMeta{Name: id}, Spec: api.TokenSpec{Role: api.TokenReadOnly, SecretHash: "h-" + id}}
		if revoked {
			now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			tok.Spec.Revoked = &now
		}
		return tok
	}
	s := raftstoretest.NewStore(t)
	applyOps(t, s, "before", put(t, token("kept", false)), put(t, token("later-revoked", false)))
	data, _ := save(t, s)
	applyOps(t, s, "after", put(t, token("later-revoked", true)), put(t, token("created-since", false)))
	if _, err := s.RestoreSnapshot(ctxFor(t, 10*time.Second), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	v := s.View()
	for id, wantRevoked := range map[string]bool{"kept": false, "later-revoked": true, "created-since": false} {
		tok, ok := raftstore.GetOf[*api.Token](v, raftstore.Tokens, "", id)
		if !ok {
			t.Errorf("token %s missing after restore", id)
			continue
		}
		if (tok.Spec.Revoked != nil) != wantRevoked {
			t.Errorf("token %s revoked=%v after restore, want %v: a restore must not bring a revoked token back", id, tok.Spec.Revoked != nil, wantRevoked)
		}
	}
}
