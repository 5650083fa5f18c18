package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/raftstore"
)

// TestSnapshotSaveAndRestore saves a snapshot through a follower, changes
// the state, and restores the snapshot through another follower: every
// server ends with the saved objects. A damaged or oversized snapshot is
// refused and changes nothing.
func TestSnapshotSaveAndRestore(t *testing.T) {
	s1Addr := freeAddr(t)
	s1 := startClusterServer(t, "s1", s1Addr, []raftstore.Member{{ID: "s1", Addr: s1Addr, Voter: true}})
	leaderOf(t, s1)
	s2 := startClusterServer(t, "s2", freeAddr(t), nil)
	s3 := startClusterServer(t, "s3", freeAddr(t), nil)
	for _, s := range []*testServer{s2, s3} {
		if err := joinVia(s1, JoinRequest{ID: s.api.cfg.ID, RaftAddr: s.store.Addr(), HTTPAddr: s.httpAddr(), ClusterID: "c1", LogVersion: raftstore.LogVersion}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s1.client.Apply(ctx, []byte(webYAML), ""); err != nil {
		t.Fatal(err)
	}
	caughtUp := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool {
			id2, _ := s2.store.LeaderID()
			id3, _ := s3.store.LeaderID()
			i := s1.store.View().Index()
			return id2 == "s1" && id3 == "s1" && s2.store.View().Index() >= i && s3.store.View().Index() >= i
		})
	}
	caughtUp("followers caught up")

	get := func(ts *testServer, stale bool) ([]byte, http.Header) {
		t.Helper()
		var q map[string][]string
		if stale {
			q = map[string][]string{"stale": {"true"}}
		}
		resp, err := ts.client.Stream(ctx, http.MethodGet, "/v1/operator/snapshot", q, nil)
		if err != nil {
			t.Fatalf("save via %s: %v", ts.api.cfg.ID, err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return data, resp.Header
	}

	// Through a follower: the leader answers, after a barrier.
	data, h := get(s2, false)
	info, err := raftstore.InspectBackup(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("saved snapshot: %v", err)
	}
	saved := s1.store.View()
	if info.Index != saved.Index() || info.ClusterID != "c1" || h.Get(HeaderSnapshotSHA256) != info.SHA256 ||
		h.Get("X-Stead-Index") != strconv.FormatUint(info.Index, 10) || h.Get("Content-Length") != strconv.Itoa(len(data)) {
		t.Errorf("snapshot %+v with headers %v; leader at %d", info.BackupMeta, h, saved.Index())
	}
	if info.Objects[raftstore.StatefulSets] != 1 || info.Objects[raftstore.Services] != 1 || info.Objects[raftstore.Servers] != 3 {
		t.Errorf("snapshot holds %v", info.Objects)
	}
	// A stale save is answered by the server asked.
	stale, _ := get(s3, true)
	if si, err := raftstore.InspectBackup(bytes.NewReader(stale)); err != nil || si.SHA256 != info.SHA256 || si.Index != info.Index || si.Term != 0 {
		t.Errorf("stale snapshot of s3: %+v, %v; want the leader's state without a term, %+v", si.BackupMeta, err, info.BackupMeta)
	}

	// Change the state, then restore through a follower.
	if _, err := s1.client.Do(ctx, http.MethodDelete, "/v1/namespaces/default/statefulsets/web", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	put := func(ts *testServer, body []byte) (SnapshotRestoreResponse, error) {
		var res SnapshotRestoreResponse
		resp, err := ts.client.Stream(ctx, http.MethodPut, "/v1/operator/snapshot", nil, bytes.NewReader(body))
		if err != nil {
			return res, err
		}
		defer resp.Body.Close()
		return res, json.NewDecoder(resp.Body).Decode(&res)
	}

	before := s1.store.View()
	damaged := bytes.Clone(data)
	damaged[len(damaged)/2] ^= 1
	t.Cleanup(func() { snapshotLimit.Store(MaxSnapshotBytes) })
	for _, tc := range []struct {
		name  string
		via   *testServer
		body  []byte
		limit int64
		code  int32
		want  string
	}{
		{"damaged on the leader", s1, damaged, MaxSnapshotBytes, http.StatusBadRequest, "checksum mismatch"},
		{"damaged via a follower", s3, damaged, MaxSnapshotBytes, http.StatusBadRequest, "checksum mismatch"},
		{"not a snapshot", s1, []byte(webYAML), MaxSnapshotBytes, http.StatusBadRequest, `does not start with "STEADSNAP1"`},
		{"oversized on the leader", s1, data, int64(len(data) - 1), http.StatusRequestEntityTooLarge, "snapshot is larger than"},
		{"oversized via a follower", s2, data, int64(len(data) - 1), http.StatusRequestEntityTooLarge, "snapshot is larger than"},
	} {
		snapshotLimit.Store(tc.limit)
		_, err := put(tc.via, tc.body)
		var se *apierrors.StatusError
		if !errors.As(err, &se) || se.ErrStatus.Code != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %d saying %q", tc.name, err, tc.code, tc.want)
		}
	}
	if after := s1.store.View(); after.Index() != before.Index() || after.Hash() != before.Hash() {
		t.Fatalf("a refused snapshot changed the state")
	}
	snapshotLimit.Store(MaxSnapshotBytes)

	res, err := put(s3, data)
	if err != nil {
		t.Fatalf("restore via s3: %v", err)
	}
	if res.SavedIndex != info.Index || res.SavedClusterID != "c1" || res.Index <= before.Index() {
		t.Errorf("restore answered %+v; saved at %d, state was at %d", res, info.Index, before.Index())
	}
	caughtUp("followers installed the restored state")
	for _, ts := range []*testServer{s1, s2, s3} {
		v := ts.store.View()
		if v.Hash() != saved.Hash() || v.Index() < res.Index {
			t.Errorf("%s at %d holds %d objects, want the saved %d at %d or later", ts.api.cfg.ID, v.Index(), v.Len(), saved.Len(), res.Index)
		}
	}
}
