// Package watchdog is the node's self-fence, outside the agent.
//
// Containers outlive a killed agent: containerd's shims own them. So the
// promise that an ordinal runs at most once (DESIGN.md, invariant 2;
// RELIABILITY.md R2, R3) cannot rest on the agent process. The agent
// records its lease in a file after every successful heartbeat (WriteLease);
// the watchdog, a separate process started by the agent in a session of its
// own (EnsureRunning, `stead watchdog`), reads that file every Interval and,
// once the lease has expired, SIGKILLs every task in Stead's containerd
// namespace, and keeps killing whatever starts until a new lease is written.
// The agent is then dead, paused or cut off from the servers; whichever, the
// servers free its ordinals only after the lease plus a margin that covers
// the watchdog's Interval and the kill.
//
// Leases are measured on CLOCK_MONOTONIC only (MonoTime), never on the wall
// clock: the agent reads it before sending the heartbeat and adds the TTL
// the server answered, so the node's lease always ends before the
// server's.
//
// What counts as expired, failing safe:
//   - the expiry has passed;
//   - the lease was written in an earlier boot of the machine;
//   - the file is corrupt or unreadable;
//   - the file is gone after the watchdog has seen it.
//
// A lease file that has never existed while the watchdog runs means no
// lease has been granted yet (a fresh node, or an agent that has not yet
// heartbeated since its data directory was made): nothing is killed. The
// agent covers that case itself with FenceOnStart, which treats a missing
// lease as expired.
//
// The watchdog kills and never deletes: the containers, their exit codes
// and their logs stay for the agent, which reconciles them when it returns.
// Each expiry is recorded in the fence file (ReadFence): which lease ended
// and which tasks were killed. It kills through containerd and, at the same
// time, through runc's own state (Containerd), because an agent-owned
// containerd dies with its agent while the shims keep the containers
// running. It leaves the agent's freezer cgroup (LeaveFreezer) and the OOM
// killer's reach (ProtectFromOOMKiller), so that nothing that stops the
// agent stops it.
//
// How the agent uses it, with p := PathsIn(dataDir):
//
//  1. At start, before it reports anything: FenceOnStart(ctx, rt,
//     p.Lease, Now()), then EnsureRunning(ctx, Command{...}).
//  2. For each heartbeat: t0 := Now() before sending; on success
//     WriteLease(p.Lease, t0.Add(ttl), node) before acting on the answer,
//     and EnsureRunning again (cheap), so a watchdog that died is replaced.
//  3. Before starting a container or sending a report, and whenever its
//     loop finds that more monotonic time passed than expected: if
//     Now() >= its own copy of the expiry, FenceOnStart, forget the
//     assignments it had, and start nothing until a heartbeat succeeds and
//     the assignments are read again (RELIABILITY.md R7).
//  4. Never remove the lease file: that reads as an expiry.
//
// The watchdog outlives the agent on purpose. It stops on SIGTERM; a node
// taken out of service stops it by the pid in p.PidFile.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultInterval is how often the watchdog reads the lease.
const DefaultInterval = 500 * time.Millisecond

// DefaultKillTimeout bounds one round of kills.
const DefaultKillTimeout = 5 * time.Second

// KilledTask is a container task the fence killed.
type KilledTask struct {
	// ID is the container's ID.
	ID string `json:"id"`
	// Pid of its init process on the host; 0 when unknown.
	Pid uint32 `json:"pid,omitempty"`
	// Pod is "<namespace>/<name>" of the pod it belonged to; empty when
	// unknown (containerd did not answer and runc was used).
	Pod string `json:"pod,omitempty"`
	// Generation of the pod's assignment (the stead.io/generation label);
	// empty when unknown.
	Generation string `json:"generation,omitempty"`
	// KilledMono is when the kill was sent.
	KilledMono MonoTime `json:"killedMono"`
}

// Runtime kills the node's containers.
//
// Concurrency: the watchdog calls KillAll from one goroutine at a time.
type Runtime interface {
	// KillAll sends SIGKILL to every process of every task of Stead's
	// containers that has not exited, without waiting for the exits and
	// without deleting anything, and returns the tasks it signalled. A task
	// killed before and not yet exited may be returned again. When some
	// kills fail it returns the others together with the error.
	KillAll(ctx context.Context) ([]KilledTask, error)
}

// Clock is where the watchdog reads the time and waits. Tests pass a clock
// they advance by hand.
type Clock interface {
	// Now reads the monotonic clock.
	Now() MonoTime
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the machine's monotonic clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() MonoTime { return Now() }

// After implements Clock.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures a Watchdog.
type Config struct {
	// LeasePath is the lease file the agent writes (Paths.Lease).
	LeasePath string
	// FencePath receives the record of each expiry; empty means "fenced"
	// beside LeasePath.
	FencePath string
	// Interval between two reads of the lease; zero means DefaultInterval.
	// Tasks are dead at most Interval plus the kill's latency after the
	// lease expires.
	Interval time.Duration
	// KillTimeout bounds one call of Runtime.KillAll; zero means
	// DefaultKillTimeout.
	KillTimeout time.Duration
	// Runtime kills the tasks.
	Runtime Runtime
	// Logger; nil discards.
	Logger hclog.Logger
	// Clock; nil means SystemClock.
	Clock Clock
	// Boot is the current boot's ID; empty means BootID().
	Boot string
}

// State is what one Step found.
type State int

// States returned by Step.
const (
	// StateNoLease: no lease file has existed since the watchdog started.
	StateNoLease State = iota
	// StateValid: the lease holds; nothing was killed.
	StateValid
	// StateFencing: the lease is void; every task was sent SIGKILL.
	StateFencing
)

func (s State) String() string {
	switch s {
	case StateNoLease:
		return "no lease"
	case StateValid:
		return "valid"
	case StateFencing:
		return "fencing"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Watchdog checks the lease and fences the node. Step does one check; Run
// steps every Interval until its context ends.
//
// Concurrency: a Watchdog is used by one goroutine.
type Watchdog struct {
	cfg  Config
	log  hclog.Logger
	seen bool // a lease file has existed since the start

	// The current expiry, nil while the lease holds.
	fence   *Fence
	killed  map[KilledTask]bool // keyed by ID and Pid only
	lastErr string
}

// New checks cfg and returns a Watchdog.
func New(cfg Config) (*Watchdog, error) {
	if cfg.LeasePath == "" {
		return nil, errors.New("watchdog: no lease path")
	}
	if cfg.Runtime == nil {
		return nil, errors.New("watchdog: no runtime")
	}
	if cfg.FencePath == "" {
		cfg.FencePath = filepath.Join(filepath.Dir(cfg.LeasePath), "fenced")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.KillTimeout <= 0 {
		cfg.KillTimeout = DefaultKillTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Boot == "" {
		b, err := BootID()
		if err != nil {
			return nil, fmt.Errorf("watchdog: %w", err)
		}
		cfg.Boot = b
	}
	return &Watchdog{cfg: cfg, log: cfg.Logger}, nil
}

// Run steps the watchdog every Interval until ctx ends, then returns nil.
func Run(ctx context.Context, cfg Config) error {
	w, err := New(cfg)
	if err != nil {
		return err
	}
	w.log.Info("watching lease", "lease", w.cfg.LeasePath, "interval", w.cfg.Interval)
	for {
		w.Step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-w.cfg.Clock.After(w.cfg.Interval):
		}
	}
}

// Step reads the lease once and, if it is void, kills every task.
func (w *Watchdog) Step(ctx context.Context) State {
	now := w.cfg.Clock.Now()
	l, err := ReadLease(w.cfg.LeasePath)
	v := Judge(l, err, now, w.cfg.Boot)
	if v == VerdictMissing && !w.seen {
		return StateNoLease
	}
	w.seen = true
	if v == VerdictValid {
		if w.fence != nil {
			w.log.Info("lease renewed; fence lifted", "node", l.Node, "expires", l.ExpiresMono, "now", now,
				"fenced_for", now.Sub(w.fence.DetectedMono), "killed", len(w.fence.Killed))
			w.fence, w.killed, w.lastErr = nil, nil, ""
		}
		return StateValid
	}

	if w.fence == nil {
		w.fence = &Fence{
			Reason:           v.String(),
			Node:             l.Node,
			LeaseExpiresMono: l.ExpiresMono,
			DetectedMono:     now,
			Boot:             w.cfg.Boot,
		}
		w.killed = make(map[KilledTask]bool)
		args := []interface{}{"lease", w.cfg.LeasePath, "reason", w.fence.Reason, "now", now}
		if err != nil {
			args = append(args, "error", err)
		}
		if l.Node != "" {
			args = append(args, "node", l.Node, "expired", l.ExpiresMono, "late_by", now.Sub(l.ExpiresMono), "agent_pid", l.Pid)
		}
		w.log.Error("NODE LEASE NOT RENEWED: killing every Stead container on this node", args...)
	}

	kctx, cancel := context.WithTimeout(ctx, w.cfg.KillTimeout)
	tasks, kerr := w.cfg.Runtime.KillAll(kctx)
	cancel()
	changed := w.fence.Killed == nil
	for _, t := range tasks {
		key := KilledTask{ID: t.ID, Pid: t.Pid}
		if w.killed[key] {
			continue
		}
		w.killed[key] = true
		if t.KilledMono == 0 {
			t.KilledMono = w.cfg.Clock.Now()
		}
		w.fence.Killed = append(w.fence.Killed, t)
		changed = true
		w.log.Warn("killed task", "container", t.ID, "pod", t.Pod, "gen", t.Generation, "pid", t.Pid,
			"after_expiry", t.KilledMono.Sub(w.fence.LeaseExpiresMono))
	}
	if w.fence.Killed == nil {
		w.fence.Killed = []KilledTask{}
	}
	if kerr != nil {
		// Logged when it changes, not every Interval.
		if msg := kerr.Error(); msg != w.lastErr {
			w.lastErr = msg
			w.log.Error("kill tasks", "error", kerr)
		}
	} else {
		w.lastErr = ""
	}
	if changed {
		if err := WriteFence(w.cfg.FencePath, *w.fence); err != nil {
			w.log.Error("record fence", "error", err)
		}
	}
	return StateFencing
}

// Fencing returns the record of the current expiry, or false while the
// lease holds.
func (w *Watchdog) Fencing() (Fence, bool) {
	if w.fence == nil {
		return Fence{}, false
	}
	f := *w.fence
	f.Killed = append([]KilledTask(nil), f.Killed...)
	return f, true
}

// Paths are the watchdog's files in the agent's data directory.
type Paths struct {
	// Lease is written by the agent, read by the watchdog.
	Lease string
	// Fence is written by the watchdog at each expiry.
	Fence string
	// PidFile holds the running watchdog's pid and its lock.
	PidFile string
	// Log receives a spawned watchdog's output.
	Log string
}

// PathsIn returns the watchdog's files under the agent's data directory.
func PathsIn(dataDir string) Paths {
	return Paths{
		Lease:   filepath.Join(dataDir, "lease"),
		Fence:   filepath.Join(dataDir, "fenced"),
		PidFile: filepath.Join(dataDir, "watchdog.pid"),
		Log:     filepath.Join(dataDir, "watchdog.log"),
	}
}

// ensureDir makes the directory of path.
func ensureDir(path string) error {
	return os.MkdirAll(filepath.Dir(path), 0o755)
}
