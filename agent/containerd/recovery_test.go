package containerd_test

import (
	"bytes"
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

// TestAdoptAfterRestart drops the Runtime as a killed agent would, connects
// again, and finds the running container with its labels, same pid, and a
// log that kept growing meanwhile.
func TestAdoptAfterRestart(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()

	labels := map[string]string{"stead.io/pod": "web-0", "stead.io/generation": "17", "stead.io/container": "nginx"}
	// Not run(): its cleanup would use the Runtime this test closes; the
	// daemon's cleanup removes the container.
	spec := containerd.ContainerSpec{ID: "web-0-nginx", Image: img, Args: []string{"tick"}, Labels: labels, LogPath: filepath.Join(t.TempDir(), "web-0-nginx.log")}
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	waitLog(t, spec.LogPath, "tick 1\n")
	before, err := rt.Inspect(ctx, spec.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	sizeAtClose := fileSize(spec.LogPath)

	// Output keeps flowing with no client connected: the shim writes it.
	waitFor(t, 10*time.Second, "log growth with no client", func() (bool, string) {
		s := fileSize(spec.LogPath)
		return s > sizeAtClose+200, fmt.Sprintf("size %d, was %d at close", s, sizeAtClose)
	})

	rt2 := d.Connect(t)
	list, err := rt2.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("List after restart = %+v, want only %s", list, spec.ID)
	}
	c := list[0]
	if c.ID != spec.ID || c.Image != img || c.LogPath != spec.LogPath {
		t.Errorf("adopted %+v, want ID %s image %s log %s", c, spec.ID, img, spec.LogPath)
	}
	if fmt.Sprint(c.Labels) != fmt.Sprint(labels) {
		t.Errorf("labels = %v, want %v", c.Labels, labels)
	}
	if c.Status.State != containerd.StateRunning || c.Status.Pid != before.Pid || !c.Status.StartedAt.Equal(before.StartedAt) {
		t.Errorf("status after restart = %+v, want running pid %d started %s", c.Status, before.Pid, before.StartedAt)
	}
	// The adopted container is fully manageable.
	if err := rt2.Stop(ctx, spec.ID, 5*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if st, _ := rt2.Inspect(ctx, spec.ID); st.State != containerd.StateExited {
		t.Fatalf("after stop: %+v", st)
	}
}

// TestDaemonRestartKeepsContainers stops the private containerd (as when
// the agent that owns it dies) and starts a new one on the same
// directories: the container ran on, and the new daemon reports it.
func TestDaemonRestartKeepsContainers(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()
	spec := run(t, rt, containerd.ContainerSpec{ID: "survivor", Image: img, Args: []string{"tick"}})
	waitLog(t, spec.LogPath, "tick 1\n")
	st, _ := rt.Inspect(ctx, spec.ID)

	d2 := d.Restart(t)
	rt2 := d2.Connect(t)
	st2, err := rt2.Inspect(ctx, spec.ID)
	if err != nil || st2.State != containerd.StateRunning || st2.Pid != st.Pid {
		t.Fatalf("after daemon restart: %+v %v; want running pid %d", st2, err, st.Pid)
	}
	if err := rt2.Stop(ctx, spec.ID, 5*time.Second, 0); err != nil {
		t.Fatal(err)
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func TestExec(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()
	run(t, rt, containerd.ContainerSpec{ID: "execme", Image: img, Args: []string{"ignore-term"}, Hostname: "execme", Env: []string{"FROM_SPEC=1"}})

	cases := []struct {
		name     string
		opts     containerd.ExecOptions
		wantCode int
		wantOut  []string
		wantErr  string
	}{
		{"output and zero exit", containerd.ExecOptions{Cmd: []string{"/stub", "info", "e"}}, 0, []string{"args=info,e", "hostname=execme", "env FROM_SPEC=1"}, ""},
		{"extra env", containerd.ExecOptions{Cmd: []string{"/stub", "info"}, Env: []string{"EXEC_ENV=x"}}, 0, []string{"env EXEC_ENV=x", "env FROM_SPEC=1"}, ""},
		{"exit code and stderr", containerd.ExecOptions{Cmd: []string{"/stub", "exit", "3"}}, 3, nil, "exiting with 3"},
		{"stdin", containerd.ExecOptions{Cmd: []string{"/stub", "cat", "/dev/stdin"}, Stdin: strings.NewReader("hello from stdin")}, 0, []string{"hello from stdin"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			tc.opts.Stdout, tc.opts.Stderr = &out, &errb
			ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			code, err := rt.Exec(ectx, "execme", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q lacks %q", errb.String(), tc.wantErr)
			}
		})
	}
	t.Run("tty", func(t *testing.T) {
		var out bytes.Buffer
		code, err := rt.Exec(ctx, "execme", containerd.ExecOptions{Cmd: []string{"/stub", "info"}, Stdout: &out, TTY: true})
		if err != nil || code != 0 || !strings.Contains(out.String(), "args=info") {
			t.Fatalf("tty exec = %d %v, output %q", code, err, out.String())
		}
	})
	t.Run("context ends the process", func(t *testing.T) {
		ectx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := rt.Exec(ectx, "execme", containerd.ExecOptions{Cmd: []string{"/stub", "ignore-term"}})
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("exec with an ended context = %v after %s; want an error soon", err, time.Since(start))
		}
	})
}

// TestResourcesAndPrivilege checks the cgroup limits and capabilities the
// kernel applied to the container's process.
func TestResourcesAndPrivilege(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()

	run(t, rt, containerd.ContainerSpec{ID: "limited", Image: img, Args: []string{"ignore-term"}, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20})
	run(t, rt, containerd.ContainerSpec{ID: "plain", Image: img, Args: []string{"ignore-term"}})
	run(t, rt, containerd.ContainerSpec{ID: "priv", Image: img, Args: []string{"ignore-term"}, Privileged: true})

	cgroup := func(id, controller, file string) string {
		st, err := rt.Inspect(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(l, ":", 3)
			if len(parts) == 3 && strings.Contains(","+parts[1]+",", ","+controller+",") {
				v, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, parts[2], file))
				if err != nil {
					t.Fatal(err)
				}
				return strings.TrimSpace(string(v))
			}
		}
		t.Fatalf("no %s cgroup for %s:\n%s", controller, id, b)
		return ""
	}
	if got := cgroup("limited", "memory", "memory.limit_in_bytes"); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit = %s, want %d", got, 64<<20)
	}
	if got := cgroup("limited", "cpu", "cpu.cfs_quota_us"); got != "50000" {
		t.Errorf("cpu quota = %s, want 50000", got)
	}
	if got := cgroup("plain", "cpu", "cpu.cfs_quota_us"); got != "-1" {
		t.Errorf("cpu quota without a limit = %s, want -1", got)
	}

	capEff := func(id string) uint64 {
		st, _ := rt.Inspect(ctx, id)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				return n
			}
		}
		t.Fatal("no CapEff")
		return 0
	}
	const capSysAdmin = 21
	if c := capEff("plain"); c&(1<<capSysAdmin) != 0 {
		t.Errorf("unprivileged container has CAP_SYS_ADMIN (CapEff %x)", c)
	}
	if c := capEff("priv"); c&(1<<capSysAdmin) == 0 {
		t.Errorf("privileged container lacks CAP_SYS_ADMIN (CapEff %x)", c)
	}
}

// TestLogRotationLosesNothing rotates the log of a container printing a
// numbered line every 20ms, many times, and checks that the kept copies and
// the live file hold an unbroken run of lines.
func TestLogRotationLosesNothing(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()
	spec := run(t, rt, containerd.ContainerSpec{ID: "chatty", Image: img, Args: []string{"tick", "500us"}})

	const max, keep = 4096, 3
	rotations := 0
	waitFor(t, 30*time.Second, "three rotations", func() (bool, string) {
		ids, err := rt.RotateLogs(ctx, max, keep)
		if err != nil {
			return false, err.Error()
		}
		if len(ids) == 1 && ids[0] == "chatty" {
			rotations++
		} else if len(ids) != 0 {
			return false, fmt.Sprintf("rotated %v, want only chatty", ids)
		}
		return rotations >= 3, fmt.Sprintf("%d rotations", rotations)
	})
	if err := rt.Stop(ctx, spec.ID, time.Second, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var all []byte
	for i := keep; i >= 1; i-- {
		b, err := os.ReadFile(spec.LogPath + "." + strconv.Itoa(i))
		if err != nil {
			t.Fatalf("rotated copy %d: %v", i, err)
		}
		all = append(all, b...)
	}
	live, _ := os.ReadFile(spec.LogPath)
	if int64(len(live)) > max+4096 {
		t.Errorf("live log is %d bytes after rotation to %d", len(live), max)
	}
	all = append(all, live...)
	lines := strings.Split(strings.TrimSuffix(string(all), "\n"), "\n")
	// The oldest copy may start mid-line; skip to the first whole line.
	first := -1
	for i, l := range lines {
		var n int
		if _, err := fmt.Sscanf(l, "tick %d", &n); err == nil && l == fmt.Sprintf("tick %d", n) {
			if first < 0 {
				first = n - i
			}
			if n != first+i {
				t.Fatalf("line %d is %q, want tick %d: output was lost or reordered", i, l, first+i)
			}
		} else if i != 0 {
			t.Fatalf("line %d is %q, not a whole tick line", i, l)
		}
	}
	if _, err := os.Stat(spec.LogPath + "." + strconv.Itoa(keep+1)); !os.IsNotExist(err) {
		t.Errorf("more than %d copies kept", keep)
	}
	t.Logf("%d rotations, %d lines kept unbroken", rotations, len(lines))
}

func TestRotateLogFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.log")
	var want bytes.Buffer
	for i := 0; want.Len() < 10000; i++ {
		fmt.Fprintf(&want, "line %05d\n", i)
	}
	if err := os.WriteFile(p, want.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if ok, err := containerd.RotateLog(p, 20000, 2); ok || err != nil {
		t.Fatalf("rotate under the limit = %v %v, want no rotation", ok, err)
	}
	ok, err := containerd.RotateLog(p, 4096, 2)
	if !ok || err != nil {
		t.Fatalf("rotate = %v %v", ok, err)
	}
	head, _ := os.ReadFile(p + ".1")
	tail, _ := os.ReadFile(p)
	if got := string(head) + string(tail); got != want.String() {
		t.Fatalf(".1 + live = %d bytes, want the original %d bytes", len(got), want.Len())
	}
	if len(tail) >= want.Len() || len(tail) > 8192 {
		t.Fatalf("live file kept %d of %d bytes", len(tail), want.Len())
	}
	if ok, err := containerd.RotateLog(filepath.Join(t.TempDir(), "missing.log"), 1, 1); ok || err != nil {
		t.Fatalf("rotate of a missing file = %v %v", ok, err)
	}
}
