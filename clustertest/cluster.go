package clustertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/image"
)

// Ports every server and agent listens on, at its host's address.
const (
	HTTPPort  = 7470
	RaftPort  = 7471
	AgentPort = 7472
	DNSPort   = 7453
)

// Options configure a Cluster. Zero fields take the defaults.
type Options struct {
	// Servers and Agents are how many of each run (default 3 each).
	Servers, Agents int
	// ServerArgs, when set, returns extra flags for a server.
	ServerArgs func(server string) []string
	// AgentArgs, when set, returns extra flags for an agent; sharedRoot
	// is the directory on the harness's tmpfs that every agent sees (for
	// a volume root shared by all nodes).
	AgentArgs func(agent, sharedRoot string) []string
	// LogLevel of the servers and agents (default "debug" for agents,
	// "info" for servers when empty).
	LogLevel string
	// SharedSize is the size of the shared tmpfs (default 64 MiB).
	SharedSize string
	// Claims gives the workload's ordinals claim volumes of a shared
	// storage class on the shared root (StorageClass), which the agents
	// attach and fence; otherwise the harness creates the volumes and the
	// pods reach them through a hostPath volume, unfenced.
	Claims bool
}

// StorageClass is the class of the workload's claims with Options.Claims:
// the shared driver on Cluster.SharedRoot.
const StorageClass = "clustertest"

// Binaries are the programs the cluster runs.
type Binaries struct {
	// Stead is the stead binary (server, agent, watchdog).
	Stead string
	// JournalWriter is the workload (volumes/journalwriter).
	JournalWriter string
	// ClaimWriter starts the workload on a claim volume
	// (clustertest/cmd/claimwriter).
	ClaimWriter string
	// Sources are the module's files the binaries were built from, and
	// go.mod and go.sum.
	Sources []string
}

// statSources stats b.Sources. The binaries are built by another process,
// whose reads go test cannot see; a test's stats it can, so that a change
// to any of the sources makes go test run the tests that started a
// cluster again instead of answering from its cache.
func (b Binaries) statSources() {
	for _, f := range b.Sources {
		os.Stat(f)
	}
}

// BuildBinaries builds stead, journal-writer and claimwriter, static, into
// dir. It runs
// `go build` in the module that holds the current directory.
func BuildBinaries(ctx context.Context, dir string) (Binaries, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	gomod, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("find the module: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(gomod)))
	b := Binaries{Stead: filepath.Join(dir, "stead"), JournalWriter: filepath.Join(dir, "journal-writer"), ClaimWriter: filepath.Join(dir, "claimwriter")}
	pkgs := map[string]string{b.Stead: "./cmd/stead", b.JournalWriter: "./volumes/journalwriter", b.ClaimWriter: "./clustertest/cmd/claimwriter"}
	if b.Sources, err = moduleSources(ctx, goBin, root, slices.Collect(maps.Values(pkgs))); err != nil {
		return Binaries{}, err
	}
	for out, pkg := range pkgs {
		cmd := exec.CommandContext(ctx, goBin, "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
	}
	return b, nil
}

// moduleSources lists the files of the module under root that the
// packages are built from, and its go.mod and go.sum.
func moduleSources(ctx context.Context, goBin, root string, pkgs []string) ([]string, error) {
	cmd := exec.CommandContext(ctx, goBin, append([]string{"list", "-deps", "-f",
		"{{if not .Standard}}{{$dir := .Dir}}{{range .GoFiles}}{{$dir}}/{{.}}\n{{end}}{{range .EmbedFiles}}{{$dir}}/{{.}}\n{{end}}{{end}}"}, pkgs...)...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("list the sources of %v: %w", pkgs, err)
	}
	files := []string{filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum")}
	for _, f := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(f, root+string(filepath.Separator)) {
			files = append(files, f)
		}
	}
	return files, nil
}

// Cluster is a running cluster of server and agent processes in network
// namespaces. Its methods are safe for concurrent use, except that faults
// against one process should come from one goroutine.
type Cluster struct {
	// ID is random and names everything the cluster made: namespaces,
	// containerd namespaces, the CNI network.
	ID string
	// Dir holds every data directory and log.
	Dir string
	// SharedRoot is a directory on a tmpfs the harness mounted, seen by
	// every agent: the shared storage of the workload's volumes.
	SharedRoot string
	// Subnet is the switch's private /24.
	Subnet netip.Prefix

	t       testing.TB
	opts    Options
	bins    Binaries
	start   time.Time
	topo    *topology
	client  *Host
	servers []string
	agents  []string
	procs   map[string]*proc
	clients map[string]*Client

	// Sampler records the workload's live processes from Start on.
	Sampler *Sampler

	mu     sync.Mutex
	events []string
}

// Start makes the topology, starts the servers and the agents and waits
// until the servers elected a leader and every agent's node is Ready. It
// skips the test when not run as root or when a program it needs is
// missing. Everything is removed when the test ends; on failure the logs'
// tails are printed and the logs kept.
func Start(t testing.TB, bins Binaries, opts Options) *Cluster {
	t.Helper()
	bins.statSources()
	if os.Geteuid() != 0 {
		t.Skip("the cluster harness needs root (network namespaces, mounts, containerd)")
	}
	for _, prog := range []string{"ip", "nsenter", "nft", "containerd", "runc", "dig"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("the cluster harness needs %s: %v", prog, err)
		}
	}
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	if opts.Agents == 0 {
		opts.Agents = 3
	}
	if opts.SharedSize == "" {
		opts.SharedSize = "64m"
	}
	var idb [3]byte
	rand.Read(idb[:])
	id := "ct" + hex.EncodeToString(idb[:])
	// A short path: the agents' containerd sockets live under it.
	dir, err := os.MkdirTemp("", id+"-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{ID: id, Dir: dir, t: t, opts: opts, bins: bins, start: time.Now(),
		procs: map[string]*proc{}, clients: map[string]*Client{}}
	t.Cleanup(c.cleanup)
	for _, sub := range []string{"logs", "images", "shared"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c.SharedRoot = filepath.Join(dir, "shared")
	if err := unix.Mount("tmpfs", c.SharedRoot, "tmpfs", 0, "size="+opts.SharedSize+",mode=0755"); err != nil {
		t.Fatalf("mount the shared tmpfs: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	subnet, err := pickSubnet(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Subnet = subnet
	addrs := map[string]byte{"c0": 5}
	for i := range opts.Servers {
		name := "s" + strconv.Itoa(i+1)
		c.servers = append(c.servers, name)
		addrs[name] = byte(11 + i)
	}
	for i := range opts.Agents {
		name := "a" + strconv.Itoa(i+1)
		c.agents = append(c.agents, name)
		addrs[name] = byte(21 + i)
	}
	c.topo, err = newTopology(ctx, id, subnet, addrs)
	if err != nil {
		t.Fatal(err)
	}
	c.client = c.topo.hosts["c0"]
	c.Logf("topology %s: switch %s, servers %v, agents %v, logs in %s", subnet, c.topo.swNS, c.servers, c.agents, filepath.Join(dir, "logs"))

	if _, err := image.BuildFile(filepath.Join(dir, "images", "journal-writer.tar"), image.BuildOptions{
		Binary: bins.JournalWriter, Tag: WorkloadImage, ExtraFiles: map[string]string{"/claimwriter": bins.ClaimWriter},
	}); err != nil {
		t.Fatalf("build the workload image: %v", err)
	}

	for _, s := range c.servers {
		c.procs[s] = &proc{name: s, host: c.topo.hosts[s], bin: bins.Stead, args: c.serverArgs(s), logPath: c.logPath(s)}
		c.clients[s] = newClient(s, c.httpAddr(s), c.client)
	}
	for _, a := range c.agents {
		c.procs[a] = &proc{name: a, host: c.topo.hosts[a], bin: bins.Stead, args: c.agentArgs(a), logPath: c.logPath(a)}
		for _, d := range []string{"images", "netns"} {
			if err := os.MkdirAll(filepath.Join(c.agentDir(a), d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Link(filepath.Join(dir, "images", "journal-writer.tar"), filepath.Join(c.agentDir(a), "images", "journal-writer.tar")); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.servers {
		if err := c.procs[s].start(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.WaitLeader(60*time.Second, ""); err != nil {
		t.Fatalf("servers: %v", err)
	}
	for _, a := range c.agents {
		if err := c.procs[a].start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitNodesReady(90*time.Second, c.agents...); err != nil {
		t.Fatalf("agents: %v", err)
	}
	c.Sampler = newSampler(id)
	c.Sampler.start()
	c.Logf("cluster up in %v", time.Since(c.start).Round(time.Millisecond))
	return c
}

func (c *Cluster) logPath(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

// agentDir is an agent's data directory.
func (c *Cluster) agentDir(a string) string { return filepath.Join(c.Dir, a) }

// ContainerdNamespace is the containerd namespace of agent a's pods. Each
// agent has its own, so that runc's state of one (under
// /run/containerd/runc/NAMESPACE, which every containerd on the machine
// shares) is not another's: the self-fence kills through it.
func (c *Cluster) ContainerdNamespace(a string) string { return c.ID + "-" + a }

// cniNetwork names the pods' CNI network, so that libcni's cache entries
// (under /var/lib/cni) are the cluster's own.
func (c *Cluster) cniNetwork() string { return c.ID }

func (c *Cluster) httpAddr(s string) string {
	return netip.AddrPortFrom(c.topo.hosts[s].Addr, HTTPPort).String()
}

func (c *Cluster) serverArgs(s string) []string {
	h := c.topo.hosts[s]
	var join []string
	for _, o := range c.servers {
		if o != s {
			join = append(join, c.httpAddr(o))
		}
	}
	level := c.opts.LogLevel
	if level == "" {
		level = "info"
	}
	args := []string{"server", "--node-id", s, "--data-dir", filepath.Join(c.Dir, s),
		"--http-addr", c.httpAddr(s), "--raft-addr", netip.AddrPortFrom(h.Addr, RaftPort).String(),
		"--log-level", level}
	if len(c.servers) > 1 {
		args = append(args, "--bootstrap-expect", strconv.Itoa(len(c.servers)), "--join", strings.Join(join, ","))
	} else {
		args = append(args, "--bootstrap")
	}
	if c.opts.ServerArgs != nil {
		args = append(args, c.opts.ServerArgs(s)...)
	}
	return args
}

func (c *Cluster) agentArgs(a string) []string {
	h := c.topo.hosts[a]
	var servers []string
	for _, s := range c.servers {
		servers = append(servers, c.httpAddr(s))
	}
	dir := c.agentDir(a)
	level := c.opts.LogLevel
	if level == "" {
		level = "debug"
	}
	args := []string{"agent", "--servers", strings.Join(servers, ","), "--node-name", a, "--data-dir", dir,
		"--node-ip", h.Addr.String(),
		// The socket of the agent's own containerd: nothing answers there
		// before the agent starts it, and an agent that restarts finds it.
		"--containerd-socket", filepath.Join(dir, "containerd", "containerd.sock"),
		"--containerd-namespace", c.ContainerdNamespace(a),
		"--agent-addr", netip.AddrPortFrom(h.Addr, AgentPort).String(),
		"--dns-addr", netip.AddrPortFrom(h.Addr, DNSPort).String(),
		"--netns-dir", filepath.Join(dir, "netns"),
		"--cni-network", c.cniNetwork(),
		"--log-level", level}
	if c.opts.Claims {
		args = append(args, "--storage-class", StorageClass+"=shared:"+c.SharedRoot)
	}
	if c.opts.AgentArgs != nil {
		args = append(args, c.opts.AgentArgs(a, c.SharedRoot)...)
	}
	return args
}

// Logf logs a line with the time since the cluster started, and keeps it
// for the failure report.
func (c *Cluster) Logf(format string, args ...any) {
	c.t.Helper()
	msg := fmt.Sprintf("[%6.2fs] ", time.Since(c.start).Seconds()) + fmt.Sprintf(format, args...)
	c.mu.Lock()
	c.events = append(c.events, msg)
	c.mu.Unlock()
	c.t.Log(msg)
}

// Servers and Agents are the names of the servers and agents.
func (c *Cluster) Servers() []string { return slices.Clone(c.servers) }

// Agents returns the names of the agents.
func (c *Cluster) Agents() []string { return slices.Clone(c.agents) }

// Host returns a machine of the topology by name.
func (c *Cluster) Host(name string) *Host { return c.topo.hosts[name] }

// Client returns the client of server s.
func (c *Cluster) Client(s string) *Client { return c.clients[s] }

func (c *Cluster) proc(name string) *proc {
	p, ok := c.procs[name]
	if !ok {
		c.t.Fatalf("no process %q in the cluster", name)
	}
	return p
}

// Running reports whether the process name runs (paused counts).
func (c *Cluster) Running(name string) bool { return c.proc(name).running() }

// Pid is the process id of name, 0 when it does not run.
func (c *Cluster) Pid(name string) int { return c.proc(name).pid() }

// Kill9 kills a server or an agent with SIGKILL and waits for it to exit.
// An agent's containers, their shims and its watchdog live on.
func (c *Cluster) Kill9(name string) {
	c.t.Helper()
	c.Logf("fault: kill -9 %s (pid %d)", name, c.Pid(name))
	if err := c.proc(name).kill(); err != nil {
		c.t.Fatal(err)
	}
}

// Stop pauses a server or an agent with SIGSTOP.
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	c.Logf("fault: SIGSTOP %s (pid %d)", name, c.Pid(name))
	if err := c.proc(name).signal(syscall.SIGSTOP); err != nil {
		c.t.Fatal(err)
	}
}

// Cont resumes a paused process with SIGCONT.
func (c *Cluster) Cont(name string) {
	c.t.Helper()
	c.Logf("heal: SIGCONT %s", name)
	if err := c.proc(name).signal(syscall.SIGCONT); err != nil {
		c.t.Fatal(err)
	}
}

// Restart starts a server or an agent again on its data directory, killing
// it first if it still runs.
func (c *Cluster) Restart(name string) {
	c.t.Helper()
	p := c.proc(name)
	if p.running() {
		c.Kill9(name)
	}
	if err := p.start(); err != nil {
		c.t.Fatal(err)
	}
	c.Logf("restarted %s (pid %d)", name, p.pid())
}

// addrsOf returns the addresses of the named machines.
func (c *Cluster) addrsOf(names []string) []netip.Addr {
	var out []netip.Addr
	for _, n := range names {
		h, ok := c.topo.hosts[n]
		if !ok {
			c.t.Fatalf("no machine %q in the cluster", n)
		}
		out = append(out, h.Addr)
	}
	return out
}

// Partition cuts name off from peers in both directions: an nftables table
// in name's namespace drops what comes from them and what goes to them.
func (c *Cluster) Partition(name string, peers ...string) { c.cut(name, peers, true, true) }

// PartitionIn drops only what name receives from peers.
func (c *Cluster) PartitionIn(name string, peers ...string) { c.cut(name, peers, true, false) }

// PartitionOut drops only what name sends to peers.
func (c *Cluster) PartitionOut(name string, peers ...string) { c.cut(name, peers, false, true) }

func (c *Cluster) cut(name string, peers []string, in, out bool) {
	c.t.Helper()
	h := c.Host(name)
	if h == nil {
		c.t.Fatalf("no machine %q", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := healIn(ctx, h); err != nil {
		c.t.Fatal(err)
	}
	if err := nftIn(ctx, h, cutRules(c.addrsOf(peers), in, out)); err != nil {
		c.t.Fatal(err)
	}
	c.Logf("fault: partition %s from %v (in %v, out %v)", name, peers, in, out)
}

// Heal removes the partition around name.
func (c *Cluster) Heal(name string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if err := healIn(ctx, c.Host(name)); err != nil {
		c.t.Fatal(err)
	}
	c.Logf("heal: partition around %s removed", name)
}

// LinkDown pulls name's cable: its veth goes down.
func (c *Cluster) LinkDown(name string) {
	c.t.Helper()
	c.link(name, "down")
}

// LinkUp plugs it back.
func (c *Cluster) LinkUp(name string) {
	c.t.Helper()
	c.link(name, "up")
}

func (c *Cluster) link(name, state string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if _, err := run(ctx, "ip", "-n", c.Host(name).NS, "link", "set", "eth0", state); err != nil {
		c.t.Fatal(err)
	}
	c.Logf("fault: link of %s %s", name, state)
}

// ExecIn runs a command in machine name's network namespace and returns
// its output.
func (c *Cluster) ExecIn(ctx context.Context, name string, prog string, args ...string) (string, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", c.Host(name).NS, prog}, args...)...)
}

// Leader asks every running server who leads and returns the leader when
// every answering server names the same running one; an error otherwise.
// Servers in except are not asked.
func (c *Cluster) Leader(ctx context.Context, except ...string) (string, error) {
	leader := ""
	asked := 0
	for _, s := range c.servers {
		if slices.Contains(except, s) || !c.Running(s) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.clients[s].Status(rctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("%s: %w", s, err)
		}
		asked++
		if st.Leader == "" {
			return "", fmt.Errorf("%s knows no leader", s)
		}
		if leader != "" && st.Leader != leader {
			return "", fmt.Errorf("%s names leader %s, another server %s", s, st.Leader, leader)
		}
		leader = st.Leader
	}
	if asked == 0 {
		return "", errors.New("no server runs")
	}
	if slices.Contains(except, leader) || !c.Running(leader) {
		return "", fmt.Errorf("leader %s is excluded or not running", leader)
	}
	return leader, nil
}

// WaitLeader waits until the running servers (but except) agree on a
// leader other than not, and returns it.
func (c *Cluster) WaitLeader(within time.Duration, not string, except ...string) (string, error) {
	var leader string
	err := Eventually(within, func() error {
		var err error
		leader, err = c.Leader(context.Background(), except...)
		if err == nil && leader == not {
			err = fmt.Errorf("%s still leads", not)
		}
		return err
	})
	return leader, err
}

// AnyServer returns a running server that answers, preferring the leader.
func (c *Cluster) AnyServer() string {
	if l, err := c.Leader(context.Background()); err == nil {
		return l
	}
	for _, s := range c.servers {
		if c.Running(s) {
			return s
		}
	}
	return c.servers[0]
}

// WaitNodesReady waits until the nodes of agents are Ready in the state of
// a running server.
func (c *Cluster) WaitNodesReady(within time.Duration, agents ...string) error {
	return Eventually(within, func() error {
		for _, a := range agents {
			if err := c.proc(a).exitErr(); err != nil {
				return Permanent(fmt.Errorf("agent %s exited: %v", a, err))
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var nodes []*corev1.Node
		if _, err := c.clients[c.AnyServer()].List(ctx, "nodes", "", &nodes); err != nil {
			return err
		}
		ready := map[string]bool{}
		for _, n := range nodes {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready[n.Name] = true
				}
			}
		}
		for _, a := range agents {
			if !ready[a] {
				return fmt.Errorf("node %s is not Ready", a)
			}
		}
		return nil
	})
}

// permanentError stops Eventually at once.
type permanentError struct{ error }

// Permanent wraps err so that Eventually gives up at once.
func Permanent(err error) error { return permanentError{err} }

// Eventually calls cond every 200 ms until it returns nil, returns a
// Permanent error, or within passes; it returns the last error.
func Eventually(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) {
			return perm.error
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", within, err)
		}
		<-tick.C
	}
}
