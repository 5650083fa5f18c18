// Command journal-writer is the workload of Stead's fault tests: the
// at-most-one oracle (RELIABILITY 6.2, C1). Every 20 ms it appends a
// record to its volume's journal, each under a check of the volume's fence
// marker: while holding the fence lock shared it reads the marker and, if
// the marker's generation is above its own, appends a "reject" record and
// exits with status 3; otherwise it appends a "write" record (O_APPEND,
// fsync). volumes.CheckJournal over the journal then shows whether two
// writers ever shared the volume.
//
// Environment:
//
//	GENERATION   the generation of the pod's assignment (required)
//	NODE         the node it runs on (required)
//	CONTROL_DIR  the volume's control directory: fence, lock, journal (required)
//	ORDINAL      the pod's ordinal; if unset, read from the hostname (web-1 → 1)
//
// Build it static: CGO_ENABLED=0 go build ./volumes/journalwriter.
// SIGTERM and SIGINT stop it with status 0. In a container whose PID
// namespace makes it process 1, the "pid" of its records is a random
// number instead, so that two incarnations on one node stay distinct.
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// interval is the time between two records.
const interval = 20 * time.Millisecond

// Exit statuses.
const (
	exitOK     = 0
	exitUsage  = 2
	exitFenced = 3
	exitIO     = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Getenv, os.Stderr))
}

type config struct {
	ord  int
	gen  uint64
	node string
	dir  string
}

func parseEnv(getenv func(string) string) (config, error) {
	var c config
	var err error
	if c.gen, err = strconv.ParseUint(getenv("GENERATION"), 10, 64); err != nil {
		return c, fmt.Errorf("GENERATION: %w", err)
	}
	if c.node = getenv("NODE"); c.node == "" {
		return c, errors.New("NODE is empty")
	}
	if c.dir = getenv("CONTROL_DIR"); c.dir == "" {
		return c, errors.New("CONTROL_DIR is empty")
	}
	if s := getenv("ORDINAL"); s != "" {
		if c.ord, err = strconv.Atoi(s); err != nil {
			return c, fmt.Errorf("ORDINAL: %w", err)
		}
	} else {
		host, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("ORDINAL unset and no hostname: %w", err)
		}
		var ok bool
		if _, c.ord, ok = api.ParseOrdinal(host); !ok {
			return c, fmt.Errorf("ORDINAL unset and hostname %q has no ordinal", host)
		}
	}
	return c, nil
}

// writerPID is the process id, or a random positive number for process 1.
func writerPID() int {
	pid := os.Getpid()
	if pid != 1 {
		return pid
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return int(binary.BigEndian.Uint32(b[:])>>1) | 2
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

func run(ctx context.Context, getenv func(string) string, stderr io.Writer) int {
	c, err := parseEnv(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "journal-writer: %v\n", err)
		return exitUsage
	}
	journal, err := os.OpenFile(filepath.Join(c.dir, "journal"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintf(stderr, "journal-writer: %v\n", err)
		return exitIO
	}
	defer journal.Close()
	rec := volumes.Record{Ord: c.ord, Gen: c.gen, Node: c.node, PID: writerPID()}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		fenced, err := step(ctx, c, journal, &rec)
		if fenced {
			fmt.Fprintf(stderr, "journal-writer: fenced: the volume's marker is above generation %d\n", c.gen)
			return exitFenced
		}
		if err != nil {
			// A full disk or a marker being replaced: try again next tick.
			fmt.Fprintf(stderr, "journal-writer: %v\n", err)
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// step checks the marker and appends one record under the shared fence
// lock. It reports fenced once it has appended a reject.
func step(ctx context.Context, c config, journal *os.File, rec *volumes.Record) (fenced bool, err error) {
	unlock, err := volumes.LockShared(ctx, c.dir)
	if err != nil {
		return false, err
	}
	defer unlock()
	marker, err := volumes.ReadFence(c.dir)
	if err != nil {
		return false, err
	}
	rec.Seq++
	rec.Mono = monotonic()
	rec.Kind = volumes.KindWrite
	if marker > c.gen {
		rec.Kind = volumes.KindReject
	}
	if err := volumes.AppendRecord(journal, *rec); err != nil {
		return false, err
	}
	return rec.Kind == volumes.KindReject, nil
}
