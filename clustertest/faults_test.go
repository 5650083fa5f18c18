package clustertest

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler"
)

// checked is a test that counts its violations: each failed check
// (Errorf, Fatalf) is one.
type checked struct {
	*testing.T
	violations int
}

func newChecked(t *testing.T) *checked { return &checked{T: t} }

// Errorf records a violation and fails the test.
func (c *checked) Errorf(format string, args ...any) {
	c.Helper()
	c.violations++
	c.T.Errorf(format, args...)
}

// Fatalf records a violation and stops the test.
func (c *checked) Fatalf(format string, args ...any) {
	c.Helper()
	c.violations++
	c.T.Fatalf(format, args...)
}

// Fatal records a violation and stops the test.
func (c *checked) Fatal(args ...any) {
	c.Helper()
	c.violations++
	c.T.Fatal(args...)
}

// Lease timings the servers and agents run with.
const (
	leaseTTL   = scheduler.DefaultLeaseTTL
	margin     = scheduler.DefaultFenceMargin
	heartbeat  = scheduler.DefaultHeartbeat
	freeAfter  = leaseTTL + margin
	liveBound  = 3*leaseTTL + 10*time.Second // C4's bound after a heal
	rolloutMax = 60 * time.Second
)

// Volume kinds of the workload (Options.Claims).
const (
	claimVolumes    = true
	hostPathVolumes = false
)

// setup starts a cluster, deploys three journal writers, on claim volumes
// or on hostPath ones (see Options.Claims), and starts a client writing
// through every server.
func setup(t *checked, claims bool) (*Cluster, Workload, *History, func()) {
	t.Helper()
	c := startCluster(t.T, Options{Claims: claims})
	w := Workload{Name: "jw", Replicas: 3}
	if err := c.Deploy(w, rolloutMax); err != nil {
		t.Fatalf("deploy: %v", err)
	}
	p, _ := c.Placement(context.Background(), c.AnyServer(), w)
	c.Logf("workload %s deployed: %v", w.Name, p)
	h := &History{}
	stop := c.StartWriter(h, 100*time.Millisecond)
	t.Cleanup(stop)
	return c, w, h, stop
}

// checkWatchdogs reports the agents without a running watchdog: their
// pods outlive them unfenced (RELIABILITY R3).
func checkWatchdogs(t *checked, c *Cluster, agents ...string) {
	t.Helper()
	for _, a := range agents {
		pid, ok, err := watchdog.Running(watchdog.PathsIn(c.agentDir(a)).PidFile)
		switch {
		case err != nil:
			t.Errorf("watchdog of %s: %v", a, err)
		case !ok:
			t.Errorf("no watchdog runs for agent %s (nothing holds %s): the agent does not start `stead watchdog` "+
				"(agent/watchdog.EnsureRunning), so nothing stops its pods when its lease lapses", a, watchdog.PathsIn(c.agentDir(a)).PidFile)
		default:
			c.Logf("watchdog of %s runs as pid %d", a, pid)
		}
	}
}

// verify stops the writer and applies the checkers: C2 (the history),
// C4 (bounded), C1 (journals and samples), C3 (state hashes, acknowledged
// writes, then Log Matching, which stops the servers).
func verify(t *checked, c *Cluster, w Workload, h *History, stopWriter func()) {
	t.Helper()
	stopWriter()
	puts, gets := h.Counts(KindPut), h.Counts(KindGet)
	c.Logf("history: puts %d ok, %d fail, %d info; consistent gets %d ok, %d fail, %d info",
		puts[OK], puts[Fail], puts[Info], gets[OK], gets[Fail], gets[Info])
	if puts[OK] == 0 {
		t.Errorf("no write was acknowledged")
	}
	if gets[OK] == 0 {
		t.Errorf("no consistent read was answered")
	}
	if err := c.CheckC2(h); err != nil {
		t.Errorf("C2: %v", err)
	}
	if err := c.WaitLive(w, liveBound); err != nil {
		t.Errorf("C4: %v", err)
	}
	checkC1(t, c, w)
	if _, err := c.WaitFSMConverged(30 * time.Second); err != nil {
		t.Errorf("C3 state: %v", err)
	}
	if err := c.CheckAcked(h); err != nil {
		t.Errorf("C3 acknowledged writes: %v", err)
	}
	if err := c.CheckLogMatching(); err != nil {
		t.Errorf("C3 log matching: %v", err)
	}
	if err := c.CheckLeadersPerTerm(); err != nil {
		t.Errorf("C3: %v", err)
	}
}

// checkC1 fails the test on every C1 violation; strict-mode coexistences
// are only logged.
func checkC1(t *checked, c *Cluster, w Workload) C1Result {
	t.Helper()
	res, err := c.CheckC1(w)
	if err != nil {
		t.Errorf("C1: %v", err)
		return res
	}
	for ord := range w.Replicas {
		if res.Journal.Writes[ord] == 0 {
			t.Errorf("C1: ordinal %d wrote nothing", ord)
		}
	}
	v := res.Violations()
	if len(v) == 0 {
		return res
	}
	// A double writer breaks a rule at nearly every record: show the
	// first few and a count per rule.
	rules := map[string]int{}
	for _, s := range res.Journal.Violations {
		if f := strings.SplitN(s, ": ", 4); len(f) == 4 {
			rules[f[0]+": "+f[2]]++
		}
	}
	for i, s := range v {
		if i == 8 {
			break
		}
		t.T.Errorf("C1: %s", s)
	}
	t.violations += len(v)
	t.T.Errorf("C1: %d violations: journal %v, %d sampler", len(v), rules, len(res.Samples))
	return res
}

// rollout changes the workload's revision and waits until the controller
// has seen it (the update revision differs from the current one).
func rollout(t *checked, c *Cluster, w *Workload) {
	t.Helper()
	w.Revision++
	if err := c.ApplyWorkload(*w); err != nil {
		t.Fatalf("apply revision %d: %v", w.Revision, err)
	}
	err := Eventually(15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		set, err := c.Set(ctx, c.AnyServer(), *w)
		if err != nil {
			return err
		}
		if set.Status.UpdateRevision == "" || set.Status.UpdateRevision == set.Status.CurrentRevision {
			return fmt.Errorf("rollout of revision %d not started: update revision %q, current %q", w.Revision, set.Status.UpdateRevision, set.Status.CurrentRevision)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Logf("rollout to revision %d started", w.Revision)
}

// killLeaderDuringRollout is one round of T1: start a rollout, kill -9 the
// leader while it runs, restart it after down, wait for the rollout to
// complete.
func killLeaderDuringRollout(t *checked, c *Cluster, w *Workload, down time.Duration) {
	t.Helper()
	rollout(t, c, w)
	leader, err := c.WaitLeader(30*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	c.Kill9(leader)
	next, err := c.WaitLeader(30*time.Second, leader, leader)
	if err != nil {
		t.Fatalf("no new leader after killing %s: %v", leader, err)
	}
	c.Logf("%s leads", next)
	<-time.After(down) // the fault's schedule: the server stays down this long
	c.Restart(leader)
	start := time.Now()
	if err := c.WaitRolledOut(*w, rolloutMax); err != nil {
		t.Fatalf("rollout to revision %d after killing leader %s: %v", w.Revision, leader, err)
	}
	c.Logf("rollout to revision %d complete %v after the restart", w.Revision, time.Since(start).Round(100*time.Millisecond))
}

// killFollower is T2 (normal): kill -9 a follower, keep it down while the
// writes go on, restart it; it must catch up (state hash at the same
// index as the others).
func killFollower(t *checked, c *Cluster, down time.Duration) {
	t.Helper()
	leader, err := c.WaitLeader(30*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	var follower string
	for _, s := range c.Servers() {
		if s != leader {
			follower = s
			break
		}
	}
	c.Kill9(follower)
	<-time.After(down) // the fault's schedule
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := c.Client(leader).Status(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	c.Restart(follower)
	start := time.Now()
	err = Eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := c.Client(follower).StateHash(ctx)
		if err != nil {
			return err
		}
		if h.Index < st.Index {
			return fmt.Errorf("%s at index %d, the leader was at %d", follower, h.Index, st.Index)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s did not catch up: %v", follower, err)
	}
	c.Logf("%s caught up past index %d in %v", follower, st.Index, time.Since(start).Round(100*time.Millisecond))
}

// busiestAgent is the agent the sampler last saw running most ordinals
// (the first by name among equals), and those ordinals.
func busiestAgent(c *Cluster) (string, []int) {
	best, ords := "", []int(nil)
	for _, a := range c.Agents() {
		if o := c.OrdinalsOn(a); len(o) > len(ords) {
			best, ords = a, o
		}
	}
	return best, ords
}

// failover is what waitMoved observed after a fault at t0 against an
// agent.
type failover struct {
	// fenced is when the sampler first saw none of the victim's writers
	// (0: never within the wait).
	fenced time.Duration
	// bound and running are, per ordinal, when its pod was first seen
	// bound to another node, and Running and Ready there.
	bound, running map[int]time.Duration
}

func (f failover) String() string {
	var parts []string
	ords := make([]int, 0, len(f.running))
	for o := range f.bound {
		ords = append(ords, o)
	}
	sort.Ints(ords)
	for _, o := range ords {
		parts = append(parts, fmt.Sprintf("ordinal %d bound elsewhere at +%v, running at +%v", o, f.bound[o].Round(100*time.Millisecond), f.running[o].Round(100*time.Millisecond)))
	}
	fenced := "never"
	if f.fenced > 0 {
		fenced = "+" + f.fenced.Round(100*time.Millisecond).String()
	}
	return fmt.Sprintf("victim's writers gone at %s; %s", fenced, strings.Join(parts, "; "))
}

// waitMoved watches, from t0 until within has passed or until every
// ordinal of ords runs on another node than victim and (when wantFenced)
// the victim's writers are gone, and records when each happened.
func waitMoved(c *Cluster, w Workload, victim string, ords []int, t0 time.Time, within time.Duration, wantFenced bool) (failover, error) {
	f := failover{bound: map[int]time.Duration{}, running: map[int]time.Duration{}}
	err := Eventually(within, func() error {
		now := time.Since(t0)
		if f.fenced == 0 && len(c.OrdinalsOn(victim)) == 0 {
			f.fenced = now
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pods, err := c.Pods(ctx, c.AnyServer(), w)
		if err != nil {
			return err
		}
		for _, p := range pods {
			_, ord, _ := api.ParseOrdinal(p.Name)
			if !slices.Contains(ords, ord) || p.Spec.NodeName == "" || p.Spec.NodeName == victim {
				continue
			}
			if _, ok := f.bound[ord]; !ok {
				f.bound[ord] = now
			}
			if _, ok := f.running[ord]; !ok && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && isReady(p) {
				f.running[ord] = now
			}
		}
		if len(f.running) < len(ords) {
			return fmt.Errorf("moved: %v", f)
		}
		if wantFenced && f.fenced == 0 {
			return fmt.Errorf("the victim's writers still run: %v", f)
		}
		return nil
	})
	return f, err
}

// checkNotEarly fails the test for every ordinal bound elsewhere earlier
// than R2 allows: the lease and the fence margin after the victim's last
// heartbeat, which came at most one heartbeat interval before t0.
func checkNotEarly(t *checked, f failover) {
	t.Helper()
	earliest := freeAfter - heartbeat
	for ord, at := range f.bound {
		if at < earliest {
			t.Errorf("R2: ordinal %d bound elsewhere %v after the fault, before the lease (%v) and fence margin (%v) could pass (%v)",
				ord, at.Round(100*time.Millisecond), leaseTTL, margin, earliest)
		}
	}
}

// killAgent is T3: kill -9 an agent that runs ordinals. Its pods outlive
// it (the shims own them) until its watchdog stops them once the lease
// lapses; the leader frees them only after the lease and the fence margin,
// and they start elsewhere. Then the agent restarts and must run nothing
// stale.
func killAgent(t *checked, c *Cluster, w Workload, victim string) failover {
	t.Helper()
	ords := c.OrdinalsOn(victim)
	t0 := time.Now()
	c.Kill9(victim)
	f, err := waitMoved(c, w, victim, ords, t0, freeAfter+20*time.Second, true)
	c.Logf("T3 kill -9 %s running ordinals %v: %v", victim, ords, f)
	if err != nil {
		t.Errorf("T3: after kill -9 of agent %s: %v", victim, err)
	}
	checkNotEarly(t, f)
	c.Restart(victim)
	if err := c.WaitNodesReady(60*time.Second, victim); err != nil {
		t.Errorf("agent %s after its restart: %v", victim, err)
	}
	return f
}

// isolateAgent pauses (SIGSTOP) or cuts off (nft, from every server) an
// agent for d, watching its ordinals move meanwhile, then resumes or heals
// it.
func isolateAgent(t *checked, c *Cluster, w Workload, victim string, d time.Duration, pause bool) failover {
	t.Helper()
	ords := c.OrdinalsOn(victim)
	t0 := time.Now()
	if pause {
		c.Stop(victim)
	} else {
		c.Partition(victim, c.Servers()...)
	}
	f, err := waitMoved(c, w, victim, ords, t0, d, true)
	if err != nil {
		c.Logf("during the fault: %v", err)
	}
	<-time.After(time.Until(t0.Add(d))) // the fault's schedule
	if pause {
		c.Cont(victim)
	} else {
		c.Heal(victim)
	}
	c.Logf("isolated %s (running ordinals %v) for %v: %v", victim, ords, d, f)
	checkNotEarly(t, f)
	return f
}

// partitionLeader is T6: cut the leader off from the other servers for at
// least cut and until they elected another leader; the old one must step
// down meanwhile. Then heal.
func partitionLeader(t *checked, c *Cluster, cut time.Duration) {
	t.Helper()
	leader, err := c.WaitLeader(30*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, s := range c.Servers() {
		if s != leader {
			others = append(others, s)
		}
	}
	t0 := time.Now()
	c.Partition(leader, others...)
	next, err := c.WaitLeader(30*time.Second, leader, leader)
	if err != nil {
		c.Heal(leader)
		t.Fatalf("the majority %v elected no leader while %s was cut off: %v", others, leader, err)
	}
	elected := time.Since(t0)
	c.Logf("%v elected %s %v after the cut", others, next, elected.Round(100*time.Millisecond))
	<-time.After(max(time.Until(t0.Add(cut)), 2*time.Second)) // the fault's schedule
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	st, err := c.Client(leader).Status(ctx)
	cancel()
	switch {
	case err != nil:
		t.Errorf("the cut-off leader %s does not answer its status: %v", leader, err)
	case st.Leader == leader:
		t.Errorf("%s still names itself leader %v after being cut off from %v, which elected %s", leader, time.Since(t0).Round(100*time.Millisecond), others, next)
	}
	c.Heal(leader)
	if _, err := c.WaitLeader(30*time.Second, ""); err != nil {
		t.Errorf("after the heal: %v", err)
	}
}
