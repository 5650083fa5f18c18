package raftstore

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// A data directory says which cluster and which server it belongs to with
// two small files beside the Raft state, each written atomically (a
// temporary file, fsync, rename, fsync of the directory):
//
//   - cluster-id: the cluster's ID on its first line. It is written before
//     the server takes part in Raft, so that a directory from another
//     cluster is refused before it can vote there.
//   - member: this server's ID (and the cluster's), written as soon as the
//     server holds Raft state (a term, a vote, a log entry or a snapshot),
//     before Raft acknowledges anything it stored.
//
// A member marker without Raft state means the state was lost (raft.db
// deleted, a disk replaced). Such a server must not take part again under
// its old ID: it has forgotten the votes it cast, and a vote cast twice in
// one term can elect two leaders. Open refuses it with ErrStateLost; the
// way back is to remove the server from the cluster, empty the directory
// and join as a new member.

// memberMarker is the file that records that the directory holds a
// member's Raft state.
const memberMarker = "member"

// peersFile is the file an operator writes, by hand and only during a
// lost-quorum recovery, to replace the Raft configuration.
const peersFile = "peers.json"

// ErrStateLost is returned by Open and Inspect when the data directory
// says its server was a member of a cluster but holds no Raft state.
var ErrStateLost = errors.New("data directory lost its Raft state")

// ErrOtherServer is returned by Open and Inspect when the data directory
// holds the Raft state of a server with another ID.
var ErrOtherServer = errors.New("data directory belongs to another server")

// member is the content of the member marker.
type member struct {
	Server  string `json:"server"`
	Cluster string `json:"cluster,omitempty"`
}

func readMember(dir string) (*member, error) {
	path := filepath.Join(dir, memberMarker)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read member marker: %w", err)
	}
	var m member
	if err := json.Unmarshal(data, &m); err != nil || m.Server == "" {
		return nil, fmt.Errorf("read member marker %s: not a member record: %q", path, data)
	}
	return &m, nil
}

func writeMember(dir string, m member) error {
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := writeAtomic(dir, memberMarker, append(data, '\n')); err != nil {
		return fmt.Errorf("write member marker: %w", err)
	}
	return nil
}

// checkMember compares the member marker of dir with the server id and
// whether the directory holds Raft state.
func checkMember(dir string, m *member, id string, hasState bool) error {
	if m == nil {
		return nil
	}
	path := filepath.Join(dir, memberMarker)
	if m.Server != id {
		return fmt.Errorf("%s says server %q, not %q: %w", path, m.Server, id, ErrOtherServer)
	}
	if !hasState {
		return fmt.Errorf("%s says server %q was a member of cluster %q, but %s holds no Raft state: %w",
			path, m.Server, m.Cluster, filepath.Join(dir, "raft"), ErrStateLost)
	}
	return nil
}

// stateMark writes the member marker once, the first time the server
// stores Raft state. The store wrappers call ensure after each successful
// write and before returning to Raft, so nothing Raft acknowledges (a vote,
// an appended entry) precedes the marker on disk.
type stateMark struct {
	written atomic.Bool
	mu      sync.Mutex
	write   func() error
}

func (m *stateMark) ensure() error {
	if m == nil || m.written.Load() {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.written.Load() {
		return nil
	}
	if err := m.write(); err != nil {
		return err
	}
	m.written.Store(true)
	return nil
}

// DirState is what a data directory holds, as Inspect reads it before
// Open: whether it belongs to a cluster and holds Raft state.
type DirState struct {
	// ClusterID is the cluster the directory is marked with, "" if none.
	ClusterID string
	// Member is the server ID the member marker records, "" if none.
	Member string
	// HasState reports whether the directory holds Raft state: a term or
	// vote, log entries, or a snapshot.
	HasState bool
}

// Inspect reads the data directory of server id without starting Raft,
// so that a server can decide how to take part in a cluster (bootstrap,
// join, restart) before it does. It fails like Open would with
// ErrStateLost or ErrOtherServer. It must not run while a Store has the
// directory open.
func Inspect(dataDir, id string) (DirState, error) {
	var st DirState
	raftDir := filepath.Join(dataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return st, err
	}
	cid, _, err := readClusterMarker(dataDir)
	if err != nil {
		return st, err
	}
	st.ClusterID = cid
	m, err := readMember(dataDir)
	if err != nil {
		return st, err
	}
	if m != nil {
		st.Member = m.Server
	}
	st.HasState, err = hasState(raftDir)
	if err != nil {
		return st, err
	}
	return st, checkMember(dataDir, m, id, st.HasState)
}

// hasState opens the Raft stores in raftDir and reports whether they hold
// any state.
func hasState(raftDir string) (bool, error) {
	path := filepath.Join(raftDir, "raft.db")
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer bolt.Close()
	snaps, err := raft.NewFileSnapshotStoreWithLogger(raftDir, 2, hclog.NewNullLogger())
	if err != nil {
		return false, err
	}
	return raft.HasExistingState(bolt, bolt, snaps)
}

// SetClusterID marks the data directory as belonging to cluster id before
// its server starts Raft: a server joining a cluster takes the cluster's
// ID first, so that it is never a voter under another. A directory that
// holds Raft state, or a member marker, keeps its cluster: SetClusterID
// fails with ErrClusterMismatch if that is not id. It must not run while a
// Store has the directory open.
func SetClusterID(dataDir, id string) error {
	if id == "" {
		return errors.New("set cluster id: id is empty")
	}
	if err := os.MkdirAll(filepath.Join(dataDir, "raft"), 0o700); err != nil {
		return err
	}
	cur, _, err := readClusterMarker(dataDir)
	if err != nil {
		return err
	}
	if cur == id {
		return nil
	}
	m, err := readMember(dataDir)
	if err != nil {
		return err
	}
	has, err := hasState(filepath.Join(dataDir, "raft"))
	if err != nil {
		return err
	}
	if has || m != nil {
		return fmt.Errorf("%s says cluster %q and the directory holds that cluster's Raft state, want %q: %w",
			filepath.Join(dataDir, clusterMarker), cur, id, ErrClusterMismatch)
	}
	return writeClusterID(dataDir, id, "")
}

// recoverPeers carries out a lost-quorum recovery if an operator wrote
// DataDir/raft/peers.json: the Raft configuration becomes the one the
// file lists (hashicorp/raft's RecoverCluster), the file is removed so the
// recovery happens once, and the cluster gets a new ID derived from the
// old one and the new configuration. Every survivor recovers with the same
// file and so derives the same ID, while servers left out keep the old one
// and are refused when they come back with their old state.
//
// Nothing in Stead writes peers.json: recovery commits entries that were
// never committed and must stay an operator's decision.
func (s *Store) recoverPeers(cfg Config, rc *raft.Config, logs raft.LogStore, stable raft.StableStore, snaps raft.SnapshotStore, has bool) error {
	if cfg.DataDir == "" {
		return nil
	}
	path := filepath.Join(cfg.DataDir, "raft", peersFile)
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return nil
	}
	conf, err := raft.ReadConfigJSON(path)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if !has {
		return fmt.Errorf("%s asks for a recovery but %s holds no Raft state to recover; remove the file", path, filepath.Dir(path))
	}
	listed := slices.ContainsFunc(conf.Servers, func(srv raft.Server) bool {
		return srv.ID == raft.ServerID(cfg.ID) && srv.Suffrage == raft.Voter
	})
	if !listed {
		return fmt.Errorf("%s does not list this server %q as a voter; list every surviving server, this one included", path, cfg.ID)
	}
	old, from, err := readClusterMarker(cfg.DataDir)
	if err != nil {
		return err
	}
	newID := recoveredClusterID(old, conf)
	if from != "" && recoveredClusterID(from, conf) == old {
		// An earlier start recovered with this file and stopped before
		// removing it.
		old, newID = from, old
	}
	s.logger.Warn("recovering the Raft configuration from peers.json; entries not yet committed become committed",
		"file", path, "servers", len(conf.Servers), "old_cluster", old, "cluster", newID)
	// RecoverCluster restores into the FSM it is given and leaves it
	// unusable; Raft restores the real one again when it starts.
	if err := raft.RecoverCluster(rc, NewFSM(), logs, stable, snaps, s.trans, conf); err != nil {
		return fmt.Errorf("recover from %s: %w", path, err)
	}
	if err := writeClusterID(cfg.DataDir, newID, old); err != nil {
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove %s after the recovery: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return err
	}
	s.clusterID = newID
	s.logger.Warn("recovered; the cluster has a new ID and servers left out of peers.json must join again with an empty data directory",
		"cluster", newID)
	return nil
}

// recoveredClusterID derives the ID of a cluster recovered from the
// configuration conf out of the cluster old.
func recoveredClusterID(old string, conf raft.Configuration) string {
	servers := slices.Clone(conf.Servers)
	slices.SortFunc(servers, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	h := sha256.New()
	fmt.Fprintf(h, "stead cluster recovered from %s\n", old)
	for _, srv := range servers {
		fmt.Fprintf(h, "%s %s %t\n", srv.ID, srv.Address, srv.Suffrage == raft.Voter)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}
