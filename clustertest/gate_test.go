package clustertest

import (
	"testing"
	"time"
)

// The gate's fault tests (RELIABILITY 6.3, 6.5), each on a cluster of its
// own: three servers, three agents, three journal writers on claim
// volumes of a shared root (T4 and T8 also on hostPath volumes), a client
// writing through every server.

// TestT1KillLeaderDuringRollout kills -9 the leader during each of three
// rollouts and restarts it after 1, 2 and 3 s: every rollout completes,
// no acknowledged write is lost, no ordinal runs twice, the servers'
// logs and states agree.
func TestT1KillLeaderDuringRollout(tt *testing.T) {
	t := newChecked(tt)
	c, w, h, stop := setup(t, claimVolumes)
	for _, down := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second} {
		killLeaderDuringRollout(t, c, &w, down)
	}
	verify(t, c, w, h, stop)
}

// TestT2KillFollower kills -9 a follower and restarts it after 5 s of
// writes: it catches up, and the checkers hold.
func TestT2KillFollower(tt *testing.T) {
	t := newChecked(tt)
	c, w, h, stop := setup(t, claimVolumes)
	killFollower(t, c, 5*time.Second)
	verify(t, c, w, h, stop)
}

// TestT3KillAgent kills -9 the agent that runs most ordinals. Its pods run
// on until its lease lapses, when its watchdog stops them; only then, after
// the fence margin, are they freed and started elsewhere (the time from
// the kill to Running elsewhere is logged). Restarted, the agent runs
// nothing stale. No ordinal ever runs twice.
func TestT3KillAgent(tt *testing.T) {
	t := newChecked(tt)
	c, w, h, stop := setup(t, claimVolumes)
	checkWatchdogs(t, c, c.Agents()...)
	victim, ords := busiestAgent(c)
	if len(ords) == 0 {
		t.Fatal("no agent runs an ordinal")
	}
	killAgent(t, c, w, victim)
	verify(t, c, w, h, stop)
}

// TestT4PauseAgent pauses (SIGSTOP) the agent that runs most ordinals for
// three leases, then resumes it (SIGCONT). The pause outlasts the lease
// and fence margin, so its ordinals move meanwhile, and the watchdog's
// kill plus the restart back-off of the killed container (10 s), so that
// an agent that restarts what its watchdog killed before it re-reads its
// assignments is caught. No ordinal may ever run twice; resumed, the agent
// runs nothing stale. It runs with claim volumes, whose fence marker is a
// second line of defence, and with hostPath volumes, where the self-fence
// stands alone (DESIGN invariant 1 holds for any pod).
func TestT4PauseAgent(tt *testing.T) { isolateBusiestAgent(tt, true) }

// TestT8PartitionAgent cuts the agent that runs most ordinals off from
// every server (nft) for three leases: it fences itself, its ordinals move
// after the margin, and once healed it runs nothing stale. The cut, like
// T4's pause, outlasts the watchdog's kill plus the restart back-off of
// the killed container, so that an agent that restarts what its watchdog
// killed while its lease is out is caught. With claim volumes and with
// hostPath ones, as T4.
func TestT8PartitionAgent(tt *testing.T) { isolateBusiestAgent(tt, false) }

// isolateBusiestAgent is T4 (pause) or T8 (partition) with claim volumes,
// then with hostPath ones: the agent that runs most ordinals is cut off for
// three leases, then comes back.
func isolateBusiestAgent(tt *testing.T, pause bool) {
	for _, claims := range []bool{claimVolumes, hostPathVolumes} {
		tt.Run(volumeKind(claims), func(tt *testing.T) {
			t := newChecked(tt)
			c, w, h, stop := setup(t, claims)
			checkWatchdogs(t, c, c.Agents()...)
			victim, _ := busiestAgent(c)
			isolateAgent(t, c, w, victim, 3*leaseTTL, pause)
			verify(t, c, w, h, stop)
		})
	}
}

func volumeKind(claims bool) string {
	if claims {
		return "claims"
	}
	return "hostpath"
}

// TestT6PartitionLeader cuts the leader off from the other servers for at
// least twice the election timeout (and until they elect another leader),
// then heals: the old leader stepped down, no acknowledged write is lost,
// the logs and states agree, the workload is untouched.
func TestT6PartitionLeader(tt *testing.T) {
	t := newChecked(tt)
	c, w, h, stop := setup(t, claimVolumes)
	partitionLeader(t, c, 5*time.Second)
	verify(t, c, w, h, stop)
}
