package containerd_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
)

func TestDaemonConfig(t *testing.T) {
	p := containerd.DaemonOptions{Dir: "/var/lib/stead/containerd"}.Paths()
	conf := containerd.DaemonConfig(p)
	for _, want := range []string{
		`root = "/var/lib/stead/containerd/root"`,
		`state = "/var/lib/stead/containerd/state"`,
		`"io.containerd.grpc.v1.cri",`,
		"[grpc]\n  address = \"/var/lib/stead/containerd/containerd.sock\"\n  tcp_address = \"\"\n  uid = 0\n  gid = 0",
		"[ttrpc]\n  address = \"/var/lib/stead/containerd/containerd.sock.ttrpc\"",
		"[debug]\n  address = \"\"",
		"[metrics]\n  address = \"\"",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
}

// TestSocketPosture is S7: the agent's containerd socket is root:root and
// at most 0660, there is no TCP listener, and the agent's containers live
// in its own namespace only.
func TestSocketPosture(t *testing.T) {
	d := containerdtest.Start(t)
	for _, sock := range []string{d.Socket, d.Socket + ".ttrpc"} {
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm()&^0o660 != 0 || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: mode %v owner %d:%d; want a socket, mode ≤ 0660, root:root", sock, fi.Mode(), st.Uid, st.Gid)
		}
	}
	if l := tcpListeners(t, d.Pid); len(l) != 0 {
		t.Errorf("containerd pid %d listens on TCP: %v", d.Pid, l)
	}

	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	run(t, rt, containerd.ContainerSpec{ID: "mine", Image: img, Args: []string{"ignore-term"}})
	other, err := containerd.Connect(context.Background(), containerd.Options{Socket: d.Socket, Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if list, err := other.List(context.Background()); err != nil || len(list) != 0 {
		t.Errorf("namespace default holds %+v (%v); want nothing", list, err)
	}
	if list, err := rt.List(context.Background()); err != nil || len(list) != 1 || list[0].ID != "mine" {
		t.Errorf("namespace %s holds %+v (%v); want [mine]", d.Namespace, list, err)
	}
}

// tcpListeners returns the local addresses of listening TCP sockets held
// by pid.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, f := range []string{"tcp", "tcp6"} {
		fh, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local rem st tx:rx tr:tm retr uid timeout inode
			if len(fs) > 9 && fs[3] == "0A" && inodes[fs[9]] {
				out = append(out, f+" "+fs[1])
			}
		}
		fh.Close()
	}
	return out
}

// TestEnsureDaemon: with nothing on the socket, EnsureDaemon starts a
// containerd under its directory (stopping one left by an earlier agent),
// restarts it when it dies, and stop ends it.
func TestEnsureDaemon(t *testing.T) {
	containerdtest.Skip(t)
	dir, err := os.MkdirTemp("/tmp", "ctd-ensure-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, mp := range containerdtest.MountsUnder(dir) {
			syscall.Unmount(mp, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nothing := filepath.Join(dir, "nothing.sock")
	immediately := func(time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		ch <- time.Now()
		return ch
	}
	opts := containerd.DaemonOptions{Dir: filepath.Join(dir, "c"), After: immediately}

	// A daemon left by an earlier agent process on the same directory.
	left, err := containerd.StartDaemon(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { left.Stop(5 * time.Second) })

	addr, stop, err := containerd.EnsureDaemon(ctx, nothing, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	if want := opts.Paths().Socket; addr != want {
		t.Fatalf("EnsureDaemon = %s, want its own socket %s", addr, want)
	}
	select {
	case <-left.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("the earlier daemon (pid %d) was not stopped", left.Pid)
	}
	first := pidFromFile(t, opts.Paths().PidFile)
	if first == left.Pid || !containerd.Answers(ctx, addr, time.Second) {
		t.Fatalf("no new daemon answers (pid file says %d, earlier pid %d)", first, left.Pid)
	}

	// A second agent-side call finds the running daemon and adds nothing.
	addr2, stop2, err := containerd.EnsureDaemon(ctx, addr, opts)
	if err != nil || addr2 != addr {
		t.Fatalf("EnsureDaemon on a serving socket = %s %v; want %s", addr2, err, addr)
	}
	stop2()
	if !containerd.Answers(ctx, addr, time.Second) {
		t.Fatal("the no-op stop stopped the daemon")
	}

	// The supervisor restarts a daemon that dies.
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "a restarted daemon", func() (bool, string) {
		p := pidFromFile(t, opts.Paths().PidFile)
		return p != first && containerd.Answers(ctx, addr, time.Second), fmt.Sprintf("pid file says %d", p)
	})
	second := pidFromFile(t, opts.Paths().PidFile)

	stop()
	if containerd.Answers(ctx, addr, time.Second) {
		t.Fatal("daemon answers after stop")
	}
	if err := syscall.Kill(second, 0); err == nil {
		t.Fatalf("daemon pid %d alive after stop", second)
	}
}

func pidFromFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}
