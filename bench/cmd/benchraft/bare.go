package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// The baseline is hashicorp/raft with the storage and transport Stead's
// raftstore gives it (raft-boltdb with fsync on every write, a 512-entry log
// cache, file snapshots, the TCP transport with a pool of 3), the default
// Raft configuration, and an FSM that does nothing.

// nopFSM applies nothing and snapshots nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (nopFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (nopSnapshot) Release()                             {}

// bareNode is one member of the baseline group.
type bareNode struct {
	raft    *raft.Raft
	closers []io.Closer
}

// openBare starts a baseline node storing under dir and listening on bind.
// A bootstrapping node starts a group of one (itself); the others are
// added with AddVoter.
func openBare(id, dir, bind string, bootstrap bool, log hclog.Logger) (*bareNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	n := &bareNode{}
	bolt, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		return nil, fmt.Errorf("bare node %s: %w", id, err)
	}
	n.closers = append(n.closers, bolt)
	cache, err := raft.NewLogCache(512, bolt)
	if err != nil {
		n.close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, log)
	if err != nil {
		n.close()
		return nil, err
	}
	trans, err := raft.NewTCPTransportWithLogger(bind, nil, 3, 10*time.Second, log)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("bare node %s: %w", id, err)
	}
	n.closers = append(n.closers, trans)
	cfg := raft.DefaultConfig()
	cfg.LocalID = raft.ServerID(id)
	cfg.Logger = log
	if bootstrap {
		err := raft.BootstrapCluster(cfg, cache, bolt, snaps, trans, raft.Configuration{
			Servers: []raft.Server{{Suffrage: raft.Voter, ID: cfg.LocalID, Address: trans.LocalAddr()}},
		})
		if err != nil {
			n.close()
			return nil, fmt.Errorf("bare node %s: bootstrap: %w", id, err)
		}
	}
	if n.raft, err = raft.NewRaft(cfg, nopFSM{}, cache, bolt, snaps, trans); err != nil {
		n.close()
		return nil, fmt.Errorf("bare node %s: %w", id, err)
	}
	return n, nil
}

func (n *bareNode) close() {
	if n.raft != nil {
		n.raft.Shutdown().Error()
	}
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i].Close()
	}
}

// runBareNode is the `bare-node` subcommand: a follower of the baseline
// group, in its own process as each Stead server is, until SIGTERM.
func runBareNode(args []string) error {
	fs := flag.NewFlagSet("bare-node", flag.ExitOnError)
	id := fs.String("id", "", "Raft ID")
	dir := fs.String("dir", "", "data directory")
	bind := fs.String("raft-addr", "", "Raft address")
	fs.Parse(args)
	log := hclog.New(&hclog.LoggerOptions{Name: "bare-" + *id, Level: hclog.Info, Output: os.Stderr})
	n, err := openBare(*id, *dir, *bind, false, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	n.close()
	return nil
}
