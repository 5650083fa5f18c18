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

// fatalLogStore reports write errors of a raft.LogStore to onFatal. After
// a successful write of entries it makes sure the member marker is on
// disk.
type fatalLogStore struct {
	raft.LogStore
	onFatal func(error)
	mark    *stateMark
}

func (s *fatalLogStore) StoreLog(l *raft.Log) error {
	return s.check("store log", s.LogStore.StoreLog(l), true)
}

func (s *fatalLogStore) StoreLogs(logs []*raft.Log) error {
	return s.check("store logs", s.LogStore.StoreLogs(logs), len(logs) > 0)
}

func (s *fatalLogStore) DeleteRange(lo, hi uint64) error {
	return s.check("delete logs", s.LogStore.DeleteRange(lo, hi), false)
}

// IsMonotonic passes the optional raft.MonotonicLogStore through.
func (s *fatalLogStore) IsMonotonic() bool {
	m, ok := s.LogStore.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (s *fatalLogStore) check(what string, err error, stored bool) error {
	if err == nil && stored {
		err = s.mark.ensure()
	}
	if err != nil {
		s.onFatal(fmt.Errorf("raft log store: %s: %w", what, err))
	}
	return err
}

// fatalStableStore reports write errors of a raft.StableStore to
// onFatal. After a successful write of a term or a vote it makes sure the
// member marker is on disk. (Raft also writes term 0 when it starts, which
// is no state.)
type fatalStableStore struct {
	raft.StableStore
	onFatal func(error)
	mark    *stateMark
}

func (s *fatalStableStore) Set(k, v []byte) error {
	return s.check(k, s.StableStore.Set(k, v), len(v) > 0)
}

func (s *fatalStableStore) SetUint64(k []byte, v uint64) error {
	return s.check(k, s.StableStore.SetUint64(k, v), v != 0)
}

func (s *fatalStableStore) check(k []byte, err error, stored bool) error {
	if err == nil && stored {
		err = s.mark.ensure()
	}
	if err != nil {
		s.onFatal(fmt.Errorf("raft stable store: set %q: %w", k, err))
	}
	return err
}

// clusterMarker is the file in the data directory that names the cluster
// the directory belongs to, on its first line. A cluster recovered from
// peers.json has a second line, "recovered-from OLD-ID".
const clusterMarker = "cluster-id"

// readClusterID returns the cluster ID recorded in dir, or "" if there
// is none.
func readClusterID(dir string) (string, error) {
	id, _, err := readClusterMarker(dir)
	return id, err
}

// readClusterMarker returns the cluster ID recorded in dir and the ID of
// the cluster it was recovered from, or "" for either.
func readClusterMarker(dir string) (id, recoveredFrom string, err error) {
	path := filepath.Join(dir, clusterMarker)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read cluster id: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	id = strings.TrimSpace(lines[0])
	if id == "" {
		return "", "", fmt.Errorf("read cluster id: %s is empty", path)
	}
	for _, l := range lines[1:] {
		if from, ok := strings.CutPrefix(strings.TrimSpace(l), "recovered-from "); ok {
			recoveredFrom = strings.TrimSpace(from)
		}
	}
	return id, recoveredFrom, nil
}

// writeClusterID records id in dir atomically, with the cluster it was
// recovered from unless that is empty.
func writeClusterID(dir, id, recoveredFrom string) error {
	data := id + "\n"
	if recoveredFrom != "" {
		data += "recovered-from " + recoveredFrom + "\n"
	}
	if err := writeAtomic(dir, clusterMarker, []byte(data)); err != nil {
		return fmt.Errorf("write cluster id: %w", err)
	}
	return nil
}

// writeAtomic replaces dir/name with data: a temporary file, fsync,
// rename, fsync of the directory. A crash leaves the old file or the new
// one, never a torn one.
func writeAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
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
