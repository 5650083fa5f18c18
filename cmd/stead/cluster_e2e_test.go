package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/stead-io/stead/api"
)

// serverProc is one `stead server` process of a test cluster.
type serverProc struct {
	id, dataDir, httpAddr, raftAddr string
	cmd                             *exec.Cmd
	log                             *e2eLog
	exited                          chan struct{} // closed when the process has exited
	err                             error         // its exit status, once exited
}

// start runs `stead server` for p with args after the address flags. The
// process is killed when the test ends.
func (p *serverProc) start(t *testing.T, bin string, args ...string) {
	t.Helper()
	p.log = &e2eLog{}
	p.cmd = exec.Command(bin, append([]string{"server", "--node-id", p.id, "--data-dir", p.dataDir,
		"--http-addr", p.httpAddr, "--raft-addr", p.raftAddr}, args...)...)
	// Three servers share a small machine.
	p.cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	cmd, exited := p.cmd, p.exited
	go func() {
		p.err = cmd.Wait()
		close(exited)
	}()
	log := p.log
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("server %s (pid %d):\n%s", p.id, cmd.Process.Pid, log)
		}
	})
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *serverProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	<-p.exited
}

func (p *serverProc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitExit waits for the process to exit on its own and returns its log.
func (p *serverProc) waitExit(t *testing.T, within time.Duration) string {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("server %s still runs after %v; it should have refused to start:\n%s", p.id, within, p.log)
	}
	if p.err == nil {
		t.Fatalf("server %s exited with status 0; want a failure:\n%s", p.id, p.log)
	}
	return p.log.String()
}

func (p *serverProc) client(t *testing.T) *api.Client {
	t.Helper()
	c, err := api.NewClient(p.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// eventually retries cond, which returns nil when it holds, until it does
// or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v, still not %s: %v", within, what, err)
		}
		<-tick.C
	}
}

// waitLeader waits until every live server names the same live leader and
// returns it.
func waitLeader(t *testing.T, servers []*serverProc, not *serverProc) *serverProc {
	t.Helper()
	var leader *serverProc
	eventually(t, 30*time.Second, "one leader", func() error {
		leader = nil
		for _, s := range servers {
			if !s.alive() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := s.client(t).Status(ctx)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", s.id, err)
			}
			i := slices.IndexFunc(servers, func(o *serverProc) bool { return o.id == st.Leader })
			if i < 0 || !servers[i].alive() || servers[i] == not {
				return fmt.Errorf("%s names leader %q", s.id, st.Leader)
			}
			if leader != nil && leader != servers[i] {
				return fmt.Errorf("%s names leader %s, another %s", s.id, st.Leader, leader.id)
			}
			leader = servers[i]
		}
		return nil
	})
	return leader
}

// webOn reads statefulset web on server s once its state passes index
// after (a blocking query), and returns it.
func webOn(t *testing.T, s *serverProc, after uint64) (*appsv1.StatefulSet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	res, err := api.LookupResource("statefulsets")
	if err != nil {
		t.Fatal(err)
	}
	// The status answers once the state index passes after.
	q := url.Values{"index": {strconv.FormatUint(after, 10)}, "wait": {"10s"}}
	if _, err := s.client(t).Do(ctx, http.MethodGet, "/v1/status", q, nil, nil); err != nil {
		return nil, err
	}
	l, idx, err := s.client(t).List(ctx, res, "default", api.ListOptions{FieldSelector: "metadata.name=web"})
	if err != nil {
		return nil, err
	}
	if idx <= after {
		return nil, fmt.Errorf("%s answered at index %d, not past %d", s.id, idx, after)
	}
	if len(l.Items) != 1 {
		return nil, fmt.Errorf("%s lists %d sets named web", s.id, len(l.Items))
	}
	var set appsv1.StatefulSet
	if err := json.Unmarshal(l.Items[0], &set); err != nil {
		return nil, err
	}
	return &set, nil
}

// peersOf runs list-peers against s and returns its rows without the
// header, each as "NODE ID STATE VOTER".
func peersOf(t *testing.T, bin string, s *serverProc) []string {
	t.Helper()
	out, err := stead(t, bin, s.httpAddr, "operator", "raft", "list-peers")
	if err != nil {
		t.Fatalf("list-peers: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"NODE", "ID", "ADDRESS", "STATE", "VOTER"}) {
		t.Fatalf("list-peers header %q", lines[0])
	}
	var rows []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) != 5 {
			t.Fatalf("list-peers row %q", l)
		}
		rows = append(rows, strings.Join([]string{f[0], f[1], f[3], f[4]}, " "))
	}
	return rows
}

// TestServerCluster runs three `stead server` processes that form a
// cluster with --bootstrap-expect, and checks failover, restarts, the
// guard against a member that lost its state, the operator commands and
// the refusal of another cluster's data directory.
func TestServerCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	example, err := filepath.Abs("../../examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var servers []*serverProc
	for i := range 3 {
		servers = append(servers, &serverProc{
			id: fmt.Sprintf("s%d", i+1), dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t),
		})
	}
	// Each server lists the others.
	argsOf := func(s *serverProc) []string {
		var join []string
		for _, o := range servers {
			if o != s {
				join = append(join, o.httpAddr)
			}
		}
		return []string{"--bootstrap-expect", "3", "--join", strings.Join(join, ",")}
	}
	for _, s := range servers {
		s.start(t, bin, argsOf(s)...)
	}
	leader := waitLeader(t, servers, nil)
	t.Logf("formed; %s leads", leader.id)
	var follower *serverProc
	for _, s := range servers {
		if s != leader {
			follower = s
			break
		}
	}

	// A write through a follower reaches every server.
	var applied *api.ApplyResult
	eventually(t, 30*time.Second, "applied through a follower", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		applied, err = follower.client(t).Apply(ctx, manifest, "")
		return err
	})
	var uid string
	for _, s := range servers {
		set, err := webOn(t, s, applied.Index-1)
		if err != nil {
			t.Fatalf("read web on %s: %v", s.id, err)
		}
		if uid != "" && string(set.UID) != uid {
			t.Fatalf("%s has web with uid %s, another has %s", s.id, set.UID, uid)
		}
		uid = string(set.UID)
	}
	if rows := peersOf(t, bin, follower); len(rows) != 3 || strings.Count(strings.Join(rows, "\n"), " leader true") != 1 ||
		strings.Count(strings.Join(rows, "\n"), " true") != 3 {
		t.Fatalf("list-peers: %q, want three voters, one leader", rows)
	}

	// T1: kill -9 the leader. Another is elected and takes writes.
	old := leader
	old.kill9(t)
	leader = waitLeader(t, servers, old)
	t.Logf("killed leader %s; %s leads", old.id, leader.id)
	var survivor *serverProc
	for _, s := range servers {
		if s != old && s != leader {
			survivor = s
		}
	}
	eventually(t, 30*time.Second, "scaled through a survivor", func() error {
		out, err := stead(t, bin, survivor.httpAddr, "scale", "sts/web", "--replicas=5")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := leader.client(t).Status(ctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}

	// The old leader restarts on its data directory and catches up.
	old.start(t, bin, argsOf(old)...)
	eventually(t, 30*time.Second, "the old leader caught up", func() error {
		set, err := webOn(t, old, st.Index-1)
		if err != nil {
			return err
		}
		if string(set.UID) != uid || set.Spec.Replicas == nil || *set.Spec.Replicas != 5 {
			return fmt.Errorf("web on %s: uid %s replicas %v", old.id, set.UID, set.Spec.Replicas)
		}
		return nil
	})

	t.Logf("%s restarted and caught up to index %d", old.id, st.Index)

	// T2: a follower whose Raft state is gone must not vote again.
	leader = waitLeader(t, servers, nil)
	var victim *serverProc
	for _, s := range servers {
		if s != leader {
			victim = s
		}
	}
	victim.kill9(t)
	// Its raft.db goes, the markers stay: refused on its own.
	if err := os.RemoveAll(filepath.Join(victim.dataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	victim.start(t, bin, argsOf(victim)...)
	out := victim.waitExit(t, 20*time.Second)
	for _, want := range []string{"data directory lost its Raft state", "operator raft remove-peer --id " + victim.id} {
		if !strings.Contains(out, want) {
			t.Errorf("start without raft.db: output lacks %q:\n%s", want, out)
		}
	}
	// The whole directory goes: the leader says it is a member.
	if err := os.RemoveAll(victim.dataDir); err != nil {
		t.Fatal(err)
	}
	victim.start(t, bin, argsOf(victim)...)
	out = victim.waitExit(t, 30*time.Second)
	for _, want := range []string{"server " + victim.id + " is a member of the cluster", "operator raft remove-peer --id " + victim.id} {
		if !strings.Contains(out, want) {
			t.Errorf("start with an empty data dir: output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("%s refused to start without its state", victim.id)
	rows := peersOf(t, bin, leader)
	if len(rows) != 3 || !slices.Contains(rows, victim.id+" "+victim.id+" follower true") {
		t.Fatalf("list-peers with %s down: %q", victim.id, rows)
	}

	// remove-peer through any server; the list shrinks.
	out, err = stead(t, bin, survivorOf(servers, leader, victim).httpAddr, "operator", "raft", "remove-peer", "--id", victim.id)
	if err != nil || out != fmt.Sprintf("Removed peer with id %q\n", victim.id) {
		t.Fatalf("remove-peer: %v %q", err, out)
	}
	rows = peersOf(t, bin, leader)
	var ids []string
	for _, r := range rows {
		ids = append(ids, strings.Fields(r)[0])
	}
	want := []string{}
	for _, s := range servers {
		if s != victim {
			want = append(want, s.id)
		}
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("list-peers after remove-peer: %q, want %v", rows, want)
	}
	// Now it may join again as a new member.
	victim.start(t, bin, argsOf(victim)...)
	eventually(t, 30*time.Second, victim.id+" back as a member", func() error {
		if !victim.alive() {
			t.Fatalf("%s stopped:\n%s", victim.id, victim.log)
		}
		rows := peersOf(t, bin, leader)
		if !slices.Contains(rows, victim.id+" "+victim.id+" follower true") {
			return fmt.Errorf("peers %q", rows)
		}
		_, err := webOn(t, victim, 0)
		return err
	})

	t.Logf("%s removed and joined again", victim.id)

	// A data directory of another cluster is refused.
	other := &serverProc{id: "s9", dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t)}
	other.start(t, bin, "--bootstrap")
	eventually(t, 20*time.Second, "the other cluster has a leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := other.client(t).Status(ctx)
		if err == nil && st.Leader != "s9" {
			err = fmt.Errorf("leader %q", st.Leader)
		}
		return err
	})
	other.kill9(t)
	other.start(t, bin, "--join", leader.httpAddr)
	out = other.waitExit(t, 20*time.Second)
	if !strings.Contains(out, "this data directory is from another cluster") {
		t.Errorf("another cluster's data dir: output lacks the refusal:\n%s", out)
	}
	if rows := peersOf(t, bin, leader); len(rows) != 3 || slices.ContainsFunc(rows, func(r string) bool { return strings.HasPrefix(r, "s9 ") }) {
		t.Errorf("list-peers after the refusal: %q", rows)
	}
}

// survivorOf returns a server of servers that is neither a nor b.
func survivorOf(servers []*serverProc, a, b *serverProc) *serverProc {
	for _, s := range servers {
		if s != a && s != b {
			return s
		}
	}
	return nil
}

// TestLostQuorumDrill follows docs/operations/lost-quorum.md: two of three
// servers are lost for good; the survivor is stopped, given a peers.json
// listing itself, and started again. It serves the state it had, under a
// new cluster ID, and a lost server's old data directory is refused.
func TestLostQuorumDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	manifest, err := os.ReadFile("../../examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var servers []*serverProc
	for i := range 3 {
		servers = append(servers, &serverProc{
			id: fmt.Sprintf("s%d", i+1), dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t),
		})
	}
	argsOf := func(s *serverProc) []string {
		var join []string
		for _, o := range servers {
			if o != s {
				join = append(join, o.httpAddr)
			}
		}
		return []string{"--bootstrap-expect", "3", "--join", strings.Join(join, ",")}
	}
	for _, s := range servers {
		s.start(t, bin, argsOf(s)...)
	}
	leader := waitLeader(t, servers, nil)
	var applied *api.ApplyResult
	eventually(t, 30*time.Second, "applied", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		applied, err = leader.client(t).Apply(ctx, manifest, "")
		return err
	})
	survivor, lost := servers[0], servers[1:]
	before, err := webOn(t, survivor, applied.Index-1)
	if err != nil {
		t.Fatal(err)
	}
	oldCluster := strings.TrimSpace(readFileT(t, filepath.Join(survivor.dataDir, "cluster-id")))

	// Two servers are lost for good.
	for _, s := range lost {
		s.kill9(t)
	}
	// The survivor still tells its view of the configuration.
	out, err := stead(t, bin, survivor.httpAddr, "operator", "raft", "list-peers", "--stale")
	if err != nil || strings.Count(out, " true\n") != 3 {
		t.Fatalf("list-peers --stale: %v\n%s", err, out)
	}

	// Stop the survivor, write peers.json, start it again.
	if err := survivor.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-survivor.exited
	peers := fmt.Sprintf(`[{"id": %q, "address": %q, "non_voter": false}]`, survivor.id, survivor.raftAddr)
	if err := os.WriteFile(filepath.Join(survivor.dataDir, "raft", "peers.json"), []byte(peers), 0o600); err != nil {
		t.Fatal(err)
	}
	survivor.start(t, bin, argsOf(survivor)...)
	if leader := waitLeader(t, []*serverProc{survivor}, nil); leader != survivor {
		t.Fatalf("leader %s", leader.id)
	}
	after, err := webOn(t, survivor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID {
		t.Errorf("web after recovery has uid %s, before %s", after.UID, before.UID)
	}
	eventually(t, 30*time.Second, "a write after recovery", func() error {
		out, err := stead(t, bin, survivor.httpAddr, "scale", "sts/web", "--replicas=2")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(survivor.dataDir, "raft", "peers.json")); !os.IsNotExist(err) {
		t.Errorf("peers.json is still there: %v", err)
	}
	marker := readFileT(t, filepath.Join(survivor.dataDir, "cluster-id"))
	if lines := strings.Split(strings.TrimSpace(marker), "\n"); len(lines) != 2 || lines[0] == oldCluster || lines[1] != "recovered-from "+oldCluster {
		t.Errorf("cluster-id after recovery %q, old %s", marker, oldCluster)
	}
	if rows := peersOf(t, bin, survivor); !slices.Equal(rows, []string{survivor.id + " " + survivor.id + " leader true"}) {
		t.Errorf("list-peers after recovery: %q", rows)
	}

	// A lost server comes back with its old data directory: refused.
	back := lost[0]
	back.start(t, bin, "--join", survivor.httpAddr)
	out = back.waitExit(t, 20*time.Second)
	if !strings.Contains(out, "from another cluster, or from before a lost-quorum recovery") {
		t.Errorf("old data dir after recovery: output lacks the refusal:\n%s", out)
	}
	// Emptied, it joins as a new member.
	if err := os.RemoveAll(back.dataDir); err != nil {
		t.Fatal(err)
	}
	back.start(t, bin, "--join", survivor.httpAddr)
	eventually(t, 30*time.Second, back.id+" joined", func() error {
		if !back.alive() {
			t.Fatalf("%s stopped:\n%s", back.id, back.log)
		}
		rows := peersOf(t, bin, survivor)
		if !slices.Equal(rows, []string{survivor.id + " " + survivor.id + " leader true", back.id + " " + back.id + " follower true"}) {
			return fmt.Errorf("peers %q", rows)
		}
		_, err := webOn(t, back, 0)
		return err
	})
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestServerFlags checks that settings which cannot form or join a cluster
// stop the server with a message saying what to do, before it starts Raft.
func TestServerFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"nothing to start from", nil, "holds no cluster state: start this server with --bootstrap"},
		{"two ways to bootstrap", []string{"--bootstrap", "--bootstrap-expect", "3", "--join", "127.0.0.1:1"}, "--bootstrap starts a cluster of one server and --bootstrap-expect 3 one of 3: choose one"},
		{"expect without join", []string{"--bootstrap-expect", "3"}, "--bootstrap-expect 3 needs --join"},
		{"negative expect", []string{"--bootstrap-expect", "-1"}, "--bootstrap-expect -1: want the number of servers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			args := append([]string{"server", "--node-id", "s1", "--data-dir", dir, "--http-addr", freePort(t), "--raft-addr", freePort(t)}, tt.args...)
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			if err == nil || ctx.Err() != nil {
				t.Fatalf("exit %v (ctx %v), want a failure:\n%s", err, ctx.Err(), out)
			}
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "member")); err == nil {
				t.Errorf("a refused server took part in Raft: %s has a member marker", dir)
			}
		})
	}
}
