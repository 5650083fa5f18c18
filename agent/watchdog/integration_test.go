package watchdog_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/api"
)

// The "agent" of TestBinaryAgentFaults, run as a child of the test: it
// starts the watchdog with EnsureRunning, prints its pid, and renews a
// lease of leaseTTL every renewEvery until it is killed.
func init() {
	if os.Getenv("WATCHDOG_TEST_AGENT") != "1" {
		return
	}
	if dir := os.Getenv("WATCHDOG_TEST_FREEZER"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	interval, _ := time.ParseDuration(os.Getenv("WATCHDOG_TEST_INTERVAL"))
	c := watchdog.Command{
		Binary:              os.Getenv("WATCHDOG_TEST_BIN"),
		DataDir:             os.Getenv("WATCHDOG_TEST_DATA_DIR"),
		ContainerdSocket:    os.Getenv("WATCHDOG_TEST_SOCKET"),
		ContainerdNamespace: os.Getenv("WATCHDOG_TEST_NAMESPACE"),
		Interval:            interval,
	}
	lease := watchdog.PathsIn(c.DataDir).Lease
	renew := func() {
		if err := watchdog.WriteLease(lease, watchdog.Now().Add(leaseTTL), "test-node"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	renew()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	pid, err := watchdog.EnsureRunning(ctx, c)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("watchdog %d\n", pid)
	for {
		// A bounded life, should the test that started it not end it.
		if watchdog.Now() > startedAt.Add(2*time.Minute) {
			os.Exit(3)
		}
		time.Sleep(renewEvery)
		renew()
	}
}

var startedAt = watchdog.Now()

const (
	leaseTTL   = 1500 * time.Millisecond
	renewEvery = 200 * time.Millisecond
)

// waitFor polls cond until it holds or timeout passes; then it fails the
// test with cond's last explanation.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %s", timeout, what, why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pods are the containers every integration test runs: two pods' main
// containers that ignore SIGTERM, so only SIGKILL ends them.
var pods = []struct{ id, pod, gen string }{
	{"web-0-main", "default/web-0", "17"},
	{"web-1-main", "default/web-1", "23"},
}

func podIDs() []string {
	var ids []string
	for _, p := range pods {
		ids = append(ids, p.id)
	}
	return ids
}

// startPods runs pods on rt and returns their host pids by ID.
func startPods(t *testing.T, rt *containerd.Runtime) map[string]uint32 {
	t.Helper()
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()
	pids := make(map[string]uint32)
	for _, p := range pods {
		err := rt.Create(ctx, containerd.ContainerSpec{
			ID:      p.id,
			Image:   img,
			Args:    []string{"ignore-term"},
			Labels:  map[string]string{"stead.io/pod": p.pod, api.AnnotationGeneration: p.gen},
			LogPath: filepath.Join(t.TempDir(), p.id+".log"),
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := rt.Start(ctx, p.id); err != nil {
			t.Fatal(err)
		}
		st, err := rt.Inspect(ctx, p.id)
		if err != nil || st.State != containerd.StateRunning {
			t.Fatalf("%s: %+v, %v; want running", p.id, st, err)
		}
		pids[p.id] = st.Pid
	}
	return pids
}

// processGone reports whether pid has exited (gone, or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// watchKills polls the containers' pids until all are gone and returns
// when that was first seen. It fails the test if any is seen gone before
// expiry, or not all by deadline.
func watchKills(t *testing.T, pids map[string]uint32, expiry, deadline watchdog.MonoTime) watchdog.MonoTime {
	t.Helper()
	for {
		alive := 0
		for _, pid := range pids {
			if !processGone(int(pid)) {
				alive++
			}
		}
		now := watchdog.Now() // taken after looking, so a death seen happened before now
		if alive < len(pids) && now < expiry {
			t.Fatalf("a container died %v before the lease expired", expiry.Sub(now))
		}
		if alive == 0 {
			return now
		}
		if now > deadline {
			t.Fatalf("%d of %d containers still alive %v after the lease expired", alive, len(pids), now.Sub(expiry))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// checkFence checks the fence record lists exactly pods, killed at or after
// expiry, with their pod names and generations when withLabels. The record
// is written once the round of kills returns, so it is waited for.
func checkFence(t *testing.T, path string, expiry watchdog.MonoTime, withLabels bool) watchdog.Fence {
	t.Helper()
	var want []watchdog.KilledTask
	for _, p := range pods {
		k := watchdog.KilledTask{ID: p.id}
		if withLabels {
			k.Pod, k.Generation = p.pod, p.gen
		}
		want = append(want, k)
	}
	var f watchdog.Fence
	waitFor(t, 10*time.Second, "the fence record", func() (bool, string) {
		var err error
		f, err = watchdog.ReadFence(path)
		return err == nil && len(f.Killed) >= len(want), fmt.Sprintf("%+v, %v", f, err)
	})
	var got []watchdog.KilledTask
	for _, k := range f.Killed {
		if k.KilledMono < expiry {
			t.Errorf("%s killed %v before the expiry", k.ID, expiry.Sub(k.KilledMono))
		}
		got = append(got, watchdog.KilledTask{ID: k.ID, Pod: k.Pod, Generation: k.Generation})
	}
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fence record killed %+v, want %+v", got, want)
	}
	if f.Reason != "expired" || f.LeaseExpiresMono != expiry {
		t.Fatalf("fence record reason %q expiry %v, want expired at %v", f.Reason, f.LeaseExpiresMono, expiry)
	}
	return f
}

// checkExited checks every pod's container exited by SIGKILL.
func checkExited(t *testing.T, rt *containerd.Runtime) {
	t.Helper()
	for _, id := range podIDs() {
		var st containerd.Status
		waitFor(t, 10*time.Second, id+" reported exited", func() (bool, string) {
			var err error
			st, err = rt.Inspect(context.Background(), id)
			return err == nil && st.State == containerd.StateExited, fmt.Sprintf("%+v, %v", st, err)
		})
		if st.ExitCode != 128+uint32(syscall.SIGKILL) {
			t.Errorf("%s exited with %d, want %d (SIGKILL)", id, st.ExitCode, 128+int(syscall.SIGKILL))
		}
	}
}

// runWatchdog runs the watchdog loop in this process until the test ends.
func runWatchdog(t *testing.T, cfg watchdog.Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- watchdog.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watchdog: %v", err)
		}
	})
}

// TestFenceRealContainers (T3, in process): the lease runs out and the
// watchdog kills both containers — not before the expiry, and within two
// intervals after it.
func TestFenceRealContainers(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	pids := startPods(t, rt)
	paths := watchdog.PathsIn(t.TempDir())

	const interval = watchdog.DefaultInterval
	// The expiry falls anywhere between two reads of the lease.
	phase := rand.N(interval)
	expiry := watchdog.Now().Add(leaseTTL + phase)
	if err := watchdog.WriteLease(paths.Lease, expiry, "test-node"); err != nil {
		t.Fatal(err)
	}
	killer := &watchdog.Containerd{Socket: d.Socket, Namespace: d.Namespace}
	t.Cleanup(func() { killer.Close() })
	runWatchdog(t, watchdog.Config{
		LeasePath: paths.Lease,
		Interval:  interval,
		Runtime:   killer,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "watchdog", Output: testWriter{t}}),
	})

	dead := watchKills(t, pids, expiry, expiry.Add(2*interval))
	f := checkFence(t, paths.Fence, expiry, true)
	t.Logf("lease expiry → every task dead: %v = %v to notice + %v to kill (interval %v)",
		dead.Sub(expiry), f.DetectedMono.Sub(expiry), dead.Sub(f.DetectedMono), interval)
	checkExited(t, rt)
}

// TestKillAll: containerd.Runtime.KillAll signals the tasks that run, with
// their labels, and skips those that have exited.
func TestKillAll(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	pids := startPods(t, rt)
	ctx := context.Background()
	img := containerdtest.StubImage(t, rt)
	if err := rt.Create(ctx, containerd.ContainerSpec{ID: "done", Image: img, Args: []string{"exit", "0"}}); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, "done"); err != nil {
		t.Fatal(err)
	}
	if st, err := rt.Wait(ctx, "done"); err != nil || st.State != containerd.StateExited {
		t.Fatalf("done: %+v, %v", st, err)
	}

	killed, err := rt.KillAll(ctx, syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	var want []containerd.Killed
	for _, p := range pods {
		want = append(want, containerd.Killed{ID: p.id, Pid: pids[p.id],
			Labels: map[string]string{"stead.io/pod": p.pod, api.AnnotationGeneration: p.gen}})
	}
	if !reflect.DeepEqual(killed, want) {
		t.Fatalf("KillAll = %+v, want %+v", killed, want)
	}
	checkExited(t, rt)
	if killed, err := rt.KillAll(ctx, syscall.SIGKILL); err != nil || len(killed) != 0 {
		t.Fatalf("KillAll with nothing running = %+v, %v; want none", killed, err)
	}
	if killed, err := containerd.KillAllRunc(ctx, "", d.Namespace, syscall.SIGKILL); err != nil || len(killed) != 0 {
		t.Fatalf("KillAllRunc with nothing running = %v, %v; want none", killed, err)
	}
}

// TestFenceWithoutContainerd: containerd is gone (an agent-owned daemon dies
// with its agent) but the shims keep the containers running; the watchdog
// kills them through runc.
func TestFenceWithoutContainerd(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	pids := startPods(t, rt)
	paths := watchdog.PathsIn(t.TempDir())

	if err := syscall.Kill(d.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "containerd to exit", func() (bool, string) {
		return processGone(d.Pid), "still running"
	})
	for id, pid := range pids {
		if processGone(int(pid)) {
			t.Fatalf("%s died with containerd", id)
		}
	}

	const interval = 250 * time.Millisecond
	expiry := watchdog.Now().Add(leaseTTL)
	if err := watchdog.WriteLease(paths.Lease, expiry, "test-node"); err != nil {
		t.Fatal(err)
	}
	killer := &watchdog.Containerd{Socket: d.Socket, Namespace: d.Namespace}
	t.Cleanup(func() { killer.Close() })
	runWatchdog(t, watchdog.Config{
		LeasePath: paths.Lease,
		Interval:  interval,
		Runtime:   killer,
		Logger:    hclog.New(&hclog.LoggerOptions{Name: "watchdog", Output: testWriter{t}}),
	})
	dead := watchKills(t, pids, expiry, expiry.Add(2*interval+time.Second))
	t.Logf("without containerd: lease expiry → every task dead: %v (interval %v)", dead.Sub(expiry), interval)
	checkFence(t, paths.Fence, expiry, false)

	// A containerd started again finds the tasks exited by SIGKILL.
	d.Restart(t)
	checkExited(t, d.Connect(t))
}

// agentFault is what happens to the "agent" process in TestBinaryAgentFaults.
type agentFault struct {
	name string
	// setup runs before the agent starts and returns the environment the
	// agent needs (nil for none); skip the test if the machine cannot.
	setup func(t *testing.T) []string
	// inject stops the agent's lease renewals.
	inject func(t *testing.T, agentPid int)
	// resume lets a paused agent run again; nil for a dead one.
	resume func(t *testing.T, agentPid int)
}

// TestBinaryAgentFaults (T3, T4 with the real binary): an "agent" process
// starts `stead watchdog` with EnsureRunning and renews its lease. While it
// renews, nothing dies. Then the agent is killed with its whole process
// group, stopped, or frozen in its cgroup: the watchdog, in a session (and
// freezer cgroup) of its own, keeps running and, once the last lease runs
// out, kills both containers. A paused agent that resumes renews the lease
// and the fence is lifted.
func TestBinaryAgentFaults(t *testing.T) {
	containerdtest.Skip(t)
	bin := buildStead(t)
	var freezer string
	faults := []agentFault{{
		name: "kill -9 of the process group",
		inject: func(t *testing.T, pid int) {
			if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "SIGSTOP of the process group",
		inject: func(t *testing.T, pid int) {
			if err := syscall.Kill(-pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		},
		resume: func(t *testing.T, pid int) {
			if err := syscall.Kill(-pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		},
	}, {
		name: "freezer cgroup frozen",
		setup: func(t *testing.T) []string {
			freezer = makeFreezer(t)
			return []string{"WATCHDOG_TEST_FREEZER=" + freezer}
		},
		inject: func(t *testing.T, _ int) { setFreezer(t, freezer, "FROZEN") },
		resume: func(t *testing.T, _ int) { setFreezer(t, freezer, "THAWED") },
	}}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) { testAgentFault(t, bin, f) })
	}
}

func testAgentFault(t *testing.T, bin string, fault agentFault) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	var env []string
	if fault.setup != nil {
		env = fault.setup(t)
	}
	pids := startPods(t, rt)
	dataDir, err := os.MkdirTemp("", "wd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dataDir) })
	paths := watchdog.PathsIn(dataDir)
	const interval = 250 * time.Millisecond

	// The watchdog outlives the agent; as its nearest ancestor left, the
	// test becomes its parent and reaps it at the end.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })

	agent := exec.Command(os.Args[0], "-test.run=^$")
	agent.Env = append(append(os.Environ(),
		"WATCHDOG_TEST_AGENT=1",
		"WATCHDOG_TEST_BIN="+bin,
		"WATCHDOG_TEST_DATA_DIR="+dataDir,
		"WATCHDOG_TEST_SOCKET="+d.Socket,
		"WATCHDOG_TEST_NAMESPACE="+d.Namespace,
		"WATCHDOG_TEST_INTERVAL="+interval.String(),
	), env...)
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	agent.Stderr = testWriter{t}
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	agentDone := make(chan struct{})
	go func() { agent.Wait(); close(agentDone) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-agent.Process.Pid, syscall.SIGKILL)
		<-agentDone
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("agent: %v", err)
	}
	wdPid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "watchdog ")))
	if err != nil {
		t.Fatalf("agent printed %q", line)
	}
	t.Cleanup(func() {
		if fault.resume != nil {
			// Frozen or stopped processes cannot die until they run again.
			fault.resume(t, agent.Process.Pid)
		}
		stopProcess(t, wdPid)
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(paths.Log)
			t.Logf("watchdog log:\n%s", b)
		}
	})
	if sid, err := unix.Getsid(wdPid); err != nil || sid != wdPid {
		t.Fatalf("watchdog pid %d: session %d, %v; want a session of its own", wdPid, sid, err)
	}

	// One watchdog per data directory: asking again finds it, and a second
	// process exits at once.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if pid, err := watchdog.EnsureRunning(ctx, watchdog.Command{Binary: bin, DataDir: dataDir}); err != nil || pid != wdPid {
		t.Fatalf("EnsureRunning again = %d, %v; want %d", pid, err, wdPid)
	}
	second, err := exec.CommandContext(ctx, bin, "watchdog", "--data-dir", dataDir).CombinedOutput()
	if err != nil || !strings.Contains(string(second), "already runs") {
		t.Fatalf("second watchdog: %v: %s; want exit 0 saying one already runs", err, second)
	}

	// While the agent renews, a time well past the first lease's expiry
	// passes without a kill.
	first, err := watchdog.ReadLease(paths.Lease)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first lease to be outlived", func() (bool, string) {
		return watchdog.Now() > first.ExpiresMono.Add(2*interval), "not yet"
	})
	for id, pid := range pids {
		if processGone(int(pid)) {
			t.Fatalf("%s died while the agent renewed its lease", id)
		}
	}
	if _, err := os.Stat(paths.Fence); err == nil {
		t.Fatal("fence record written while the agent renewed its lease")
	}

	fault.inject(t, agent.Process.Pid)
	if fault.resume == nil {
		<-agentDone
	}
	// The lease file stops changing once the agent cannot run; the last
	// renewal may still land just after the fault.
	var last watchdog.Lease
	waitFor(t, 10*time.Second, "renewals to stop", func() (bool, string) {
		l, err := watchdog.ReadLease(paths.Lease)
		if err != nil {
			return false, err.Error()
		}
		stable := l == last && watchdog.Now() > l.ExpiresMono.Add(-leaseTTL+2*renewEvery)
		last = l
		return stable, fmt.Sprintf("lease %+v", l)
	})
	if processGone(wdPid) {
		t.Fatal("the watchdog died with the agent")
	}
	dead := watchKills(t, pids, last.ExpiresMono, last.ExpiresMono.Add(2*interval+time.Second))
	t.Logf("lease expiry → every task dead: %v (interval %v)", dead.Sub(last.ExpiresMono), interval)
	checkFence(t, paths.Fence, last.ExpiresMono, true)
	if processGone(wdPid) {
		t.Fatal("the watchdog exited after fencing")
	}
	checkExited(t, rt)

	if fault.resume != nil {
		fault.resume(t, agent.Process.Pid)
		waitFor(t, 10*time.Second, "the fence to be lifted after the agent resumed", func() (bool, string) {
			b, _ := os.ReadFile(paths.Log)
			return bytes.Contains(b, []byte("fence lifted")), string(b)
		})
	}
}

// makeFreezer makes a cgroup v1 freezer cgroup for the agent and removes it
// at the end of the test; it skips the test without a v1 freezer.
func makeFreezer(t *testing.T) string {
	t.Helper()
	root := "/sys/fs/cgroup/freezer"
	if _, err := os.Stat(filepath.Join(root, "cgroup.procs")); err != nil {
		t.Skipf("no cgroup v1 freezer at %s", root)
	}
	dir := filepath.Join(root, fmt.Sprintf("stead-watchdog-test-%d-%d", os.Getpid(), rand.Uint32()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("cannot make a freezer cgroup: %v", err)
	}
	t.Cleanup(func() {
		// Runs after the agent is thawed and dead: the cgroup is empty.
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove freezer cgroup: %v", err)
		}
	})
	return dir
}

// setFreezer freezes or thaws the cgroup and waits until it is so.
func setFreezer(t *testing.T, dir, state string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "freezer.state"), []byte(state), 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "freezer "+state, func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(dir, "freezer.state"))
		return err == nil && strings.TrimSpace(string(b)) == state, string(b)
	})
}

// buildStead builds the stead binary into a temporary directory.
func buildStead(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stead")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/stead")
	cmd.Dir = filepath.Join("..", "..")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build ./cmd/stead: %v\n%s", err, out.String())
	}
	return bin
}

// stopProcess ends a process the test started, by pid: SIGTERM, then
// SIGKILL if it lingers; and reaps it if it became the test's child.
func stopProcess(t *testing.T, pid int) {
	defer func() {
		var ws unix.WaitStatus
		_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	}()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		if processGone(pid) {
			return
		}
		_ = syscall.Kill(pid, sig)
		deadline := time.Now().Add(10 * time.Second)
		for !processGone(pid) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !processGone(pid) {
		t.Errorf("pid %d survived SIGKILL for 10s", pid)
	}
}

// testWriter sends a logger's lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
