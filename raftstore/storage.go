package raftstore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/raft"
)

// hashicorp/raft does not stop on a failed log write: a leader steps
// down and a follower answers the append with a failure, and both carry
// on with whatever the disk now holds. After a failed fsync the kernel
// may have dropped the unsynced pages, so carrying on risks acknowledging
// state that is not on disk. These wrappers hand every write error to a
// fatal handler first (by default: panic, which ends the process).

// fatalLogStore reports write errors of a raft.LogStore to onFatal.
type fatalLogStore struct {
	raft.LogStore
	onFatal func(error)
}

func (s *fatalLogStore) StoreLog(l *raft.Log) error {
	return s.check("store log", s.LogStore.StoreLog(l))
}

func (s *fatalLogStore) StoreLogs(logs []*raft.Log) error {
	return s.check("store logs", s.LogStore.StoreLogs(logs))
}

func (s *fatalLogStore) DeleteRange(lo, hi uint64) error {
	return s.check("delete logs", s.LogStore.DeleteRange(lo, hi))
}

// IsMonotonic passes the optional raft.MonotonicLogStore through.
func (s *fatalLogStore) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s *fatalLogStore) check(what string, err error) error {
	if err != nil {
		s.onFatal(fmt.Errorf("raft log store: %s: %w", what, err))
	}
	return err
}

// fatalStableStore reports write errors of a raft.StableStore to onFatal.
type fatalStableStore struct {
	raft.StableStore
	onFatal func(error)
}

func (s *fatalStableStore) Set(k, v []byte) error {
	return s.check(k, s.StableStore.Set(k, v))
}

func (s *fatalStableStore) SetUint64(k []byte, v uint64) error {
	return s.check(k, s.StableStore.SetUint64(k, v))
}

func (s *fatalStableStore) check(k []byte, err error) error {
	if err != nil {
		s.onFatal(fmt.Errorf("raft stable store: set %q: %w", k, err))
	}
	return err
}

// clusterMarker is the file in the data directory that names the cluster
// the directory belongs to.
const clusterMarker = "cluster-id"

// readClusterID returns the cluster ID recorded in dir, or "" if there
// is none.
func readClusterID(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, clusterMarker))
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read cluster id: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if id == "" {
		return "", fmt.Errorf("read cluster id: %s is empty", filepath.Join(dir, clusterMarker))
	}
	return id, nil
}

// writeClusterID records id in dir atomically: a temporary file, fsync,
// rename, fsync of the directory.
func writeClusterID(dir, id string) error {
	tmp, err := os.CreateTemp(dir, "."+clusterMarker+"-*")
	if err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(id + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write cluster id: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write cluster id: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, clusterMarker)); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
