package watchdog

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLock(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "sub", "watchdog.pid")
	if pid, ok, err := Running(pidFile); err != nil || ok || pid != 0 {
		t.Fatalf("before any watchdog: Running = %d, %v, %v", pid, ok, err)
	}
	unlock, err := Lock(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(pidFile)
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Fatalf("pid file holds %q, want %d", b, os.Getpid())
	}
	if pid, ok, err := Running(pidFile); err != nil || !ok || pid != os.Getpid() {
		t.Fatalf("while locked: Running = %d, %v, %v; want %d, true", pid, ok, err, os.Getpid())
	}
	// A second watchdog, even in the same process, is refused and does not
	// clobber the pid.
	if _, err := Lock(pidFile); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Lock = %v, want ErrRunning", err)
	}
	if b2, _ := os.ReadFile(pidFile); string(b2) != string(b) {
		t.Fatalf("refused Lock changed the pid file from %q to %q", b, b2)
	}
	unlock()
	// The stale pid stays; the lock says nobody runs.
	if pid, ok, err := Running(pidFile); err != nil || ok {
		t.Fatalf("after unlock: Running = %d, %v, %v; want not running", pid, ok, err)
	}
	unlock2, err := Lock(pidFile)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock2()
}

func TestRunningIgnoresPidOfGoneProcess(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "watchdog.pid")
	unlock, err := Lock(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	// As between a new holder's lock and its write: the file still names a
	// process that is gone (pid_max is at most 2^22).
	if err := os.WriteFile(pidFile, []byte("99999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid, ok, err := Running(pidFile); err != nil || !ok || pid != 0 {
		t.Fatalf("Running = %d, %v, %v; want 0, true", pid, ok, err)
	}
}

func TestCommandArgs(t *testing.T) {
	got := Command{DataDir: "/var/lib/stead", ContainerdSocket: "/run/c.sock", ContainerdNamespace: "stead", Interval: 250e6}.Args()
	want := "watchdog --data-dir /var/lib/stead --containerd-socket /run/c.sock --containerd-namespace stead --interval 250ms"
	if strings.Join(got, " ") != want {
		t.Fatalf("Args = %q, want %q", got, want)
	}
}

func TestFreezerLookup(t *testing.T) {
	cgroups := []byte("9:name=systemd:/\n6:freezer:/agents/a1\n4:memory:/m\n3:cpu,cpuacct:/c\n0::/\n")
	mountinfo := []byte(`31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/my\040freezer rw,relatime - cgroup cgroup rw,freezer
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`)
	for _, tt := range []struct {
		controller, path, mount string
		ok                      bool
	}{
		{"freezer", "/agents/a1", "/sys/fs/cgroup/my freezer", true},
		{"cpuacct", "/c", "/sys/fs/cgroup/cpu,cpuacct", true},
		{"pids", "", "", false},
	} {
		t.Run(tt.controller, func(t *testing.T) {
			path, ok := v1Cgroup(cgroups, tt.controller)
			mnt, mok := v1Mount(mountinfo, tt.controller)
			if path != tt.path || ok != tt.ok || mnt != tt.mount || mok != tt.ok {
				t.Fatalf("cgroup %q %v, mount %q %v; want %q %q %v", path, ok, mnt, mok, tt.path, tt.mount, tt.ok)
			}
		})
	}
}
