package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/volumes"
)

// cleanup removes everything the cluster made: processes (servers,
// agents, containerd, shims, watchdogs, containers), mounts under Dir, the
// namespaces, runc's and libcni's state of the cluster's containers, and
// Dir. On failure it first prints the tails of the logs and keeps them.
func (c *Cluster) cleanup() {
	t := c.t
	if c.Sampler != nil {
		c.Sampler.stop()
	}
	if t.Failed() {
		c.report()
	}
	for _, name := range append(c.Agents(), c.Servers()...) {
		if p := c.procs[name]; p != nil {
			p.signal(syscall.SIGCONT)
			if err := p.kill(); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, a := range c.agents {
		killRuncContainers(ctx, c.ContainerdNamespace(a))
	}
	if left := c.killLeftovers(10 * time.Second); len(left) > 0 {
		t.Errorf("cleanup: processes still alive: %v", left)
	}
	for _, a := range c.agents {
		deleteRuncContainers(ctx, c.ContainerdNamespace(a))
	}
	if err := unmountUnder(c.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	c.removeCNICache()
	if c.topo != nil {
		if err := c.topo.delete(ctx); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if t.Failed() {
		keep := filepath.Join(os.TempDir(), c.ID+"-logs")
		if err := keepLogs(c.Dir, keep); err == nil {
			t.Logf("logs kept in %s", keep)
		}
	}
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

// removeCNICache removes libcni's cache entries of the cluster's pods
// (named by network, sandbox and interface), which a teardown would have
// removed.
func (c *Cluster) removeCNICache() {
	const dir = "/var/lib/cni/results"
	matches, _ := filepath.Glob(filepath.Join(dir, c.cniNetwork()+"-*"))
	for _, a := range c.agents {
		sandboxes, _ := os.ReadDir(filepath.Join(c.agentDir(a), "pods"))
		for _, sb := range sandboxes {
			matches = append(matches, filepath.Join(dir, "cni-loopback-"+sb.Name()+"-lo"))
		}
	}
	for _, m := range matches {
		os.Remove(m)
	}
}

// report prints the cluster's events and the tail of every log.
func (c *Cluster) report() {
	c.mu.Lock()
	events := strings.Join(c.events, "\n")
	c.mu.Unlock()
	c.t.Logf("cluster %s events:\n%s", c.ID, events)
	for _, name := range append(c.Servers(), c.Agents()...) {
		if p := c.procs[name]; p != nil {
			c.t.Logf("---- %s (%s), last lines:\n%s", name, p.logPath, p.tail(6000))
		}
	}
	for _, a := range c.agents {
		files := []string{watchdog.PathsIn(c.agentDir(a)).Log, filepath.Join(c.agentDir(a), "containerd", "containerd.log")}
		podLogs, _ := filepath.Glob(filepath.Join(c.agentDir(a), "logs", "*", "*"))
		for _, f := range append(files, podLogs...) {
			if _, err := os.Stat(f); err == nil {
				c.t.Logf("---- %s, last lines:\n%s", f, tailFile(f, 1500))
			}
		}
	}
}

// keepLogs copies the logs of a cluster directory (logs/, with C2's
// visualization, and each agent's watchdog and containerd logs) to dst.
func keepLogs(dir, dst string) error {
	var files []string
	for _, pat := range []string{"logs/*.log", "logs/*.html", "*/watchdog.log", "*/fenced", "*/containerd/containerd.log", "*/logs/*/*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		out := filepath.Join(dst, strings.ReplaceAll(rel, "/", "_"))
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runcRoot is where containerd's runc shim keeps runc's state of a
// containerd namespace.
func runcRoot(ns string) string { return filepath.Join("/run/containerd/runc", ns) }

type runcContainer struct {
	ID     string `json:"id"`
	Pid    int    `json:"pid"`
	Status string `json:"status"`
}

func runcList(ctx context.Context, ns string) []runcContainer {
	if _, err := os.Stat(runcRoot(ns)); err != nil {
		return nil
	}
	out, err := run(ctx, "runc", "--root", runcRoot(ns), "list", "--format", "json")
	if err != nil {
		return nil
	}
	var list []runcContainer
	json.Unmarshal([]byte(out), &list)
	return list
}

// killRuncContainers SIGKILLs every container of containerd namespace ns
// through runc.
func killRuncContainers(ctx context.Context, ns string) {
	for _, ct := range runcList(ctx, ns) {
		run(ctx, "runc", "--root", runcRoot(ns), "kill", "--all", ct.ID, "KILL")
		if ct.Pid > 0 {
			unix.Kill(ct.Pid, unix.SIGKILL)
		}
	}
}

// deleteRuncContainers removes runc's state of namespace ns.
func deleteRuncContainers(ctx context.Context, ns string) {
	for _, ct := range runcList(ctx, ns) {
		run(ctx, "runc", "--root", runcRoot(ns), "delete", "--force", ct.ID)
	}
	os.RemoveAll(runcRoot(ns))
}

// leftovers lists the processes the cluster started that still run: those
// whose command line names the cluster's directory (stead, containerd,
// shims, watchdogs) and those in a cgroup of the cluster's containerd
// namespaces (the containers).
func (c *Cluster) leftovers() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if len(cmdline) == 0 {
			continue // a kernel thread or a zombie
		}
		if strings.Contains(string(cmdline), c.Dir+"/") {
			out = append(out, pid)
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		if strings.Contains(string(cg), "/"+c.ID+"-") {
			out = append(out, pid)
		}
	}
	return out
}

// killLeftovers SIGKILLs the leftovers until none is left or within
// passes, and returns those still there.
func (c *Cluster) killLeftovers(within time.Duration) []int {
	deadline := time.Now().Add(within)
	// A kill takes effect asynchronously, and these are not children to
	// wait for: look again on a tick.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		left := c.leftovers()
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		for _, pid := range left {
			unix.Kill(pid, unix.SIGCONT)
			unix.Kill(pid, unix.SIGKILL)
		}
		<-tick.C
	}
}

// unmountUnder detaches every mount under dir (and dir itself).
func unmountUnder(dir string) error {
	for range 5 {
		mps, err := volumes.MountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmount %s: %w", mp, err)
			}
		}
	}
	mps, _ := volumes.MountsUnder(dir)
	if len(mps) > 0 {
		return fmt.Errorf("still mounted: %v", mps)
	}
	return nil
}

// tailFile returns the last n bytes of a file.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}
