// Package clustertest runs a Stead cluster as real processes in network
// namespaces and injects faults into it: the harness of the fault tests of
// RELIABILITY.md section 6 (topology 6.1, checkers 6.2, tests 6.3).
//
// A Cluster is one switch namespace holding bridge br0 and one namespace
// per machine (servers s1..sN, agents a1..aM, and c0 from which the harness
// itself talks to the cluster), each with a veth into br0 and an address in
// a private /24 that exists only inside these namespaces. Servers and
// agents are `stead server` and `stead agent` processes entered into their
// namespace with nsenter (network namespace only, so that the mounts an
// agent makes stay visible to the agent that restarts after it); each
// agent runs its own containerd under its data directory, in a containerd
// namespace of its own.
//
// Faults: Kill9, Stop and Cont (SIGSTOP, SIGCONT), Restart, Partition and
// its one-way variants (an nftables table in the victim's namespace), Heal,
// LinkDown and LinkUp.
//
// Observation: a Sampler lists the live journal-writer processes of the
// workload every 100 ms from /proc; a History records the API operations
// of the test's clients (puts, and consistent gets through every server)
// with monotonic times. Checkers over what they recorded are pure
// functions (CheckJournals, CheckSamples, CheckLiveness, CheckLinearizable,
// CompareLogs, CompareFSM, ElectionsWon); the Cluster methods CheckC1,
// CheckC2, WaitLive, WaitFSMConverged, CheckAcked, CheckLogMatching and
// CheckLeadersPerTerm gather their input.
//
// The workload is a StatefulSet of journal-writer processes
// (volumes/journalwriter), each appending to its own volume's journal on
// a tmpfs that every agent sees (Cluster.SharedRoot). With Options.Claims
// the volumes are claims of a shared storage class on that root, which the
// agents create, attach and fence, writing mount, fence and unmount
// records; the pods see the volume's control directory through a hostPath
// volume of the root (clustertest/cmd/claimwriter finds it). Without, the
// harness creates the volumes with the volumes package and the pods reach
// them through the hostPath volume alone: no fence marker is raised, and a
// handover shows in a journal without the record CheckJournal wants (see
// CheckJournals' fenced argument).
//
// Everything needs root; Start skips the test otherwise. Every process,
// mount and namespace the harness made is removed when the test ends.
package clustertest
