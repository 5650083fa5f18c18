package clustertest

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	chaosDuration = flag.Duration("chaos.duration", 0, "TestChaos: run clusters with random gate faults for this long (0 with -chaos.runs 0: skip)")
	chaosSeed     = flag.Uint64("chaos.seed", 0, "TestChaos: seed of the first run, run i uses seed+i (0: from the clock); replay a run with its seed and -chaos.runs 1")
	chaosRuns     = flag.Int("chaos.runs", 0, "TestChaos: stop after this many runs (0: when -chaos.duration is over)")
	chaosFaults   = flag.Int("chaos.faults", 4, "TestChaos: faults per run; each run is one cluster")
)

// chaosFault is one kind of fault of the gate, with its parameters drawn
// from the run's random source.
type chaosFault struct {
	name string
	// apply injects the fault, waits for its effects and heals it; it
	// returns a description of what it did, for the schedule.
	apply func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string
}

// leaseMultiples are the lengths of agent pauses and cuts, as multiples of
// the lease (RELIABILITY T4, T8: below the lease, beyond it, well beyond).
var leaseMultiples = []float64{0.5, 1.5, 3}

func pickAgent(c *Cluster, rng *rand.Rand) string {
	agents := c.Agents()
	return agents[rng.IntN(len(agents))]
}

func pickDuration(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

var chaosFaultKinds = []chaosFault{
	{"kill-leader-during-rollout", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		down := pickDuration(rng, time.Second, 3*time.Second)
		killLeaderDuringRollout(t, c, w, down)
		return fmt.Sprintf("down %v", down.Round(time.Millisecond))
	}},
	{"kill-follower", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		down := pickDuration(rng, time.Second, 5*time.Second)
		killFollower(t, c, down)
		return fmt.Sprintf("down %v", down.Round(time.Millisecond))
	}},
	{"kill-agent", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		victim := pickAgent(c, rng)
		f := killAgent(t, c, *w, victim)
		return fmt.Sprintf("%s: %v", victim, f)
	}},
	{"pause-agent", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		victim := pickAgent(c, rng)
		d := time.Duration(leaseMultiples[rng.IntN(len(leaseMultiples))] * float64(leaseTTL))
		f := isolateAgent(t, c, *w, victim, d, true)
		return fmt.Sprintf("%s for %v: %v", victim, d, f)
	}},
	{"partition-agent", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		victim := pickAgent(c, rng)
		d := time.Duration(leaseMultiples[rng.IntN(len(leaseMultiples))] * float64(leaseTTL))
		f := isolateAgent(t, c, *w, victim, d, false)
		return fmt.Sprintf("%s for %v: %v", victim, d, f)
	}},
	{"partition-leader", func(t *checked, c *Cluster, w *Workload, rng *rand.Rand) string {
		cut := pickDuration(rng, 2*time.Second, 8*time.Second)
		partitionLeader(t, c, cut)
		return fmt.Sprintf("at least %v", cut.Round(time.Millisecond))
	}},
}

// chaosStats counts what TestChaos did.
type chaosStats struct {
	mu         sync.Mutex
	runs       int
	faults     map[string]int
	violations int
	failed     []uint64 // seeds of the runs with violations
}

// TestChaos repeats the gate's faults at random on fresh clusters until
// -chaos.duration is over (or -chaos.runs have run): each run starts a
// cluster (its workload on claim or hostPath volumes, drawn from its seed),
// injects -chaos.faults faults drawn from its seed, checks C4
// after each and every checker at the end. It prints the seed of every
// run and, at the end, the counts of runs, faults and violations and how
// to replay each failed run. make chaos runs it.
func TestChaos(t *testing.T) {
	if *chaosDuration == 0 && *chaosRuns == 0 {
		t.Skip("set -chaos.duration or -chaos.runs (make chaos)")
	}
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	deadline := time.Now().Add(*chaosDuration)
	st := &chaosStats{faults: map[string]int{}}
	t.Logf("chaos: seed %d, %d faults per run, for %v", seed, *chaosFaults, *chaosDuration)
	for i := 0; ; i++ {
		if *chaosRuns > 0 && i >= *chaosRuns || *chaosRuns == 0 && time.Now().After(deadline) {
			break
		}
		runSeed := seed + uint64(i)
		t.Run(fmt.Sprintf("run%d-seed%d", i, runSeed), func(tt *testing.T) {
			chaosRun(newChecked(tt), runSeed, st)
		})
	}
	var kinds []string
	for k, n := range st.faults {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	total := 0
	for _, n := range st.faults {
		total += n
	}
	summary := fmt.Sprintf("chaos: seed %d: %d runs, %d faults (%s), %d violations in %d runs",
		seed, st.runs, total, strings.Join(kinds, ", "), st.violations, len(st.failed))
	for _, s := range st.failed {
		summary += fmt.Sprintf("\n  replay: go test ./clustertest -run '^TestChaos$' -v -count=1 -timeout 0 -chaos.seed=%d -chaos.runs=1 -chaos.faults=%d", s, *chaosFaults)
	}
	fmt.Println(summary)
	t.Log(summary)
}

// chaosRun is one run: a cluster, its faults, the checks.
func chaosRun(t *checked, seed uint64, st *chaosStats) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	defer func() {
		st.mu.Lock()
		st.runs++
		st.violations += t.violations
		if t.violations > 0 || t.Failed() {
			st.failed = append(st.failed, seed)
		}
		st.mu.Unlock()
	}()
	claims := rng.IntN(2) == 0
	c, w, h, stop := setup(t, claims)
	c.Logf("chaos seed %d: %s volumes", seed, volumeKind(claims))
	var schedule []string
	for i := range *chaosFaults {
		f := chaosFaultKinds[rng.IntN(len(chaosFaultKinds))]
		c.Logf("chaos seed %d fault %d: %s", seed, i, f.name)
		st.mu.Lock()
		st.faults[f.name]++
		st.mu.Unlock()
		what := f.apply(t, c, &w, rng)
		schedule = append(schedule, f.name+" "+what)
		if err := c.WaitLive(w, liveBound); err != nil {
			t.Errorf("C4 after %s: %v", f.name, err)
		}
	}
	c.Logf("chaos seed %d schedule:\n  %s", seed, strings.Join(schedule, "\n  "))
	verify(t, c, w, h, stop)
}
