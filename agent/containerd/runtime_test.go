package containerd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/image"
)

func ptr[T any](v T) *T { return &v }

// TestProcessSpec runs the stub's "info" mode under each spec and checks
// what the process saw: Kubernetes' command/args rules, env, working
// directory, user, hostname and a read-only root.
func TestProcessSpec(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)

	cases := []struct {
		name string
		spec containerd.ContainerSpec
		want []string // lines the log must hold
		not  []string // lines it must not hold
	}{
		{
			name: "image entrypoint and cmd",
			spec: containerd.ContainerSpec{},
			want: []string{"args=info", "env STUB_IMAGE_ENV=from-image", "cwd=/", "uid=0", "gid=0", "rootfs=rw"},
		},
		{
			name: "args replace cmd, keep entrypoint",
			spec: containerd.ContainerSpec{Args: []string{"info", "a1", "a2"}},
			want: []string{"args=info,a1,a2"},
		},
		{
			name: "command replaces entrypoint and cmd",
			spec: containerd.ContainerSpec{Command: []string{"/stub", "info"}},
			want: []string{"args=info"},
		},
		{
			name: "command with args",
			spec: containerd.ContainerSpec{Command: []string{"/stub"}, Args: []string{"info", "x"}},
			want: []string{"args=info,x"},
		},
		{
			name: "env overrides the image's and adds",
			spec: containerd.ContainerSpec{Env: []string{"STUB_IMAGE_ENV=mine", "EXTRA=1"}},
			want: []string{"env STUB_IMAGE_ENV=mine", "env EXTRA=1"},
			not:  []string{"env STUB_IMAGE_ENV=from-image"},
		},
		{
			name: "working dir",
			spec: containerd.ContainerSpec{WorkingDir: "/tmp"},
			want: []string{"cwd=/tmp"},
		},
		{
			name: "hostname",
			spec: containerd.ContainerSpec{Hostname: "web-3"},
			want: []string{"hostname=web-3"},
		},
		{
			name: "run as user and group",
			spec: containerd.ContainerSpec{RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(2000))},
			want: []string{"uid=1000", "gid=2000"},
		},
		{
			name: "run as group only",
			spec: containerd.ContainerSpec{RunAsGroup: ptr(int64(3000))},
			want: []string{"uid=0", "gid=3000"},
		},
		{
			name: "read-only root",
			spec: containerd.ContainerSpec{ReadOnlyRootfs: true},
			want: []string{"rootfs=ro"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.ID = fmt.Sprintf("spec-%d", i)
			spec.Image = img
			if spec.Hostname == "" {
				spec.Hostname = "pod-" + strconv.Itoa(i)
			}
			spec = run(t, rt, spec)
			st, err := rt.Wait(context.Background(), spec.ID)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(spec.LogPath)
			if st.State != containerd.StateExited || st.ExitCode != 0 {
				t.Fatalf("status = %+v, want exited 0; log:\n%s", st, b)
			}
			lines := strings.Split(string(b), "\n")
			has := func(l string) bool {
				for _, x := range lines {
					if x == l {
						return true
					}
				}
				return false
			}
			for _, w := range tc.want {
				if !has(w) {
					t.Errorf("log lacks %q; log:\n%s", w, b)
				}
			}
			for _, w := range tc.not {
				if has(w) {
					t.Errorf("log has %q; log:\n%s", w, b)
				}
			}
		})
	}
}

func TestLifecycleAndStop(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()

	t.Run("inspect created, running, exited", func(t *testing.T) {
		spec := containerd.ContainerSpec{ID: "life", Image: img, Args: []string{"serve", "127.0.0.1:0"}, Hostname: "life"}
		spec.LogPath = filepath.Join(t.TempDir(), "life.log")
		if err := rt.Create(ctx, spec); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rt.Delete(ctx, "life") })
		st, err := rt.Inspect(ctx, "life")
		if err != nil || st.State != containerd.StateCreated {
			t.Fatalf("before start: %+v %v; want created", st, err)
		}
		before := time.Now()
		if err := rt.Start(ctx, "life"); err != nil {
			t.Fatal(err)
		}
		t.Logf("start latency (new task, started): %s", time.Since(before))
		st, err = rt.Inspect(ctx, "life")
		if err != nil || st.State != containerd.StateRunning || st.Pid == 0 {
			t.Fatalf("after start: %+v %v; want running with a pid", st, err)
		}
		if st.StartedAt.Before(before.Add(-time.Second)) || st.StartedAt.After(time.Now()) {
			t.Errorf("StartedAt %s not within the Start call (began %s)", st.StartedAt, before)
		}
		// Start is idempotent while running.
		if err := rt.Start(ctx, "life"); err != nil {
			t.Fatalf("second start: %v", err)
		}
		if st2, _ := rt.Inspect(ctx, "life"); st2.Pid != st.Pid {
			t.Fatalf("second start changed pid %d → %d", st.Pid, st2.Pid)
		}
		waitLog(t, spec.LogPath, "serving on")
		start := time.Now()
		if err := rt.Stop(ctx, "life", 10*time.Second, 0); err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("stop of a SIGTERM-handling process took %s", el)
		}
		st, err = rt.Inspect(ctx, "life")
		if err != nil || st.State != containerd.StateExited || st.ExitCode != 0 || st.FinishedAt.IsZero() {
			t.Fatalf("after stop: %+v %v; want exited 0 with FinishedAt", st, err)
		}
		waitLog(t, spec.LogPath, "got SIGTERM")
		// Stop of a stopped container does nothing.
		if err := rt.Stop(ctx, "life", time.Second, 0); err != nil {
			t.Fatalf("second stop: %v", err)
		}
		// Start again replaces the exited task; the log is appended to.
		if err := rt.Start(ctx, "life"); err != nil {
			t.Fatal(err)
		}
		st3, _ := rt.Inspect(ctx, "life")
		if st3.State != containerd.StateRunning || st3.Pid == st.Pid {
			t.Fatalf("restart in place: %+v", st3)
		}
		log := waitLog(t, spec.LogPath, "got SIGTERM")
		if n := strings.Count(log, "serving on"); n < 1 {
			t.Fatalf("log lost its first run:\n%s", log)
		}
	})

	t.Run("SIGTERM ignored: SIGKILL after grace", func(t *testing.T) {
		spec := run(t, rt, containerd.ContainerSpec{ID: "stubborn", Image: img, Args: []string{"ignore-term"}, Hostname: "stubborn"})
		waitLog(t, spec.LogPath, "ignoring SIGTERM")
		const grace = 1500 * time.Millisecond
		start := time.Now()
		if err := rt.Stop(ctx, "stubborn", grace, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		el := time.Since(start)
		t.Logf("stop with grace %s took %s", grace, el)
		if el < grace {
			t.Errorf("stop returned after %s, before the grace period %s", el, grace)
		}
		if el > grace+5*time.Second {
			t.Errorf("stop took %s, far beyond the grace period %s", el, grace)
		}
		st, err := rt.Inspect(ctx, "stubborn")
		if err != nil || st.State != containerd.StateExited || st.ExitCode != 128+uint32(syscall.SIGKILL) {
			t.Fatalf("after stop: %+v %v; want exited %d (SIGKILL)", st, err, 128+int(syscall.SIGKILL))
		}
		if d := st.FinishedAt.Sub(st.StartedAt); d < grace {
			t.Errorf("process lived %s, less than the grace period %s", d, grace)
		}
	})

	t.Run("exit events", func(t *testing.T) {
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		exits, errs := rt.Exits(ectx)
		run(t, rt, containerd.ContainerSpec{ID: "exit7", Image: img, Args: []string{"exit", "7"}})
		for {
			select {
			case e, ok := <-exits:
				if !ok {
					t.Fatalf("exit stream closed: %v", <-errs)
				}
				if e.ID != "exit7" {
					continue
				}
				if e.ExitCode != 7 || e.ExitedAt.IsZero() {
					t.Fatalf("exit = %+v, want code 7 with a time", e)
				}
				return
			case <-ectx.Done():
				t.Fatal("no exit event for exit7")
			}
		}
	})
}

func TestErrors(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	ctx := context.Background()

	err := rt.Create(ctx, containerd.ContainerSpec{ID: "noimg", Image: "nowhere/none:1"})
	if !errors.Is(err, containerd.ErrImageNotFound) {
		t.Errorf("create with a missing image: %v, want ErrImageNotFound", err)
	}
	var pe *containerd.PullError
	// A registry on a closed loopback port: no lookup, no traffic.
	if err := rt.Pull(ctx, "127.0.0.1:1/none:1"); !errors.As(err, &pe) || pe.Ref != "127.0.0.1:1/none:1" {
		t.Errorf("pull without a registry: %v, want *PullError for 127.0.0.1:1/none:1", err)
	}
	run(t, rt, containerd.ContainerSpec{ID: "dup", Image: img})
	if err := rt.Create(ctx, containerd.ContainerSpec{ID: "dup", Image: img}); !errors.Is(err, containerd.ErrAlreadyExists) {
		t.Errorf("create of an existing ID: %v, want ErrAlreadyExists", err)
	}
	for name, call := range map[string]func() error{
		"inspect": func() error { _, err := rt.Inspect(ctx, "ghost"); return err },
		"start":   func() error { return rt.Start(ctx, "ghost") },
		"stop":    func() error { return rt.Stop(ctx, "ghost", time.Second, 0) },
		"exec": func() error {
			_, err := rt.Exec(ctx, "ghost", containerd.ExecOptions{Cmd: []string{"/stub"}})
			return err
		},
	} {
		if err := call(); !errors.Is(err, containerd.ErrNotFound) {
			t.Errorf("%s of a missing container: %v, want ErrNotFound", name, err)
		}
	}
	if err := rt.Delete(ctx, "ghost"); err != nil {
		t.Errorf("delete of a missing container: %v, want nil", err)
	}
	if err := rt.Create(ctx, containerd.ContainerSpec{ID: "reserved", Image: img, Labels: map[string]string{containerd.LabelLogPath: "/x"}}); err == nil {
		t.Errorf("create with a reserved label succeeded")
	}
	if err := rt.Create(ctx, containerd.ContainerSpec{ID: "badcmd", Image: img, Command: []string{"/no-such-binary"}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Delete(ctx, "badcmd") })
	if err := rt.Start(ctx, "badcmd"); err == nil || !strings.Contains(err.Error(), "no-such-binary") {
		t.Errorf("start of a missing executable: %v, want an error naming it", err)
	}
	if ok, _ := containerd.TaskExists(ctx, rt, "badcmd"); ok {
		t.Errorf("failed start left a task behind")
	}
}

func TestImages(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	ctx := context.Background()
	bin := containerdtest.StubBinary(t)

	var oci bytes.Buffer
	name, err := image.BuildFromBinary(&oci, image.BuildOptions{Binary: bin, Tag: "web:1"})
	if err != nil {
		t.Fatal(err)
	}
	if name != "docker.io/library/web:1" {
		t.Fatalf("built name %q", name)
	}
	names, err := rt.ImportArchive(ctx, bytes.NewReader(oci.Bytes()))
	if err != nil || len(names) != 1 || names[0] != "docker.io/library/web:1" {
		t.Fatalf("import OCI layout: %v %v; want [docker.io/library/web:1]", names, err)
	}

	// The same archive without oci-layout and index.json is a Docker
	// archive, named from manifest.json's RepoTags.
	docker := dockerOnly(t, oci.Bytes(), "web:1", "app:2")
	names, err = rt.ImportArchive(ctx, bytes.NewReader(docker))
	if err != nil || len(names) != 1 || names[0] != "docker.io/library/app:2" {
		t.Fatalf("import Docker archive: %v %v; want [docker.io/library/app:2]", names, err)
	}

	for ref, want := range map[string]bool{"web:1": true, "docker.io/library/web:1": true, "app:2": true, "web:2": false, "web": false} {
		if got, err := rt.HasImage(ctx, ref); err != nil || got != want {
			t.Errorf("HasImage(%s) = %v %v, want %v", ref, got, err, want)
		}
	}
	list, err := rt.ListImages(ctx)
	if err != nil || strings.Join(list, ",") != "docker.io/library/app:2,docker.io/library/web:1" {
		t.Errorf("ListImages = %v %v", list, err)
	}

	// containerd's own CLI accepts the archive and names it the same.
	if _, err := exec.LookPath("ctr"); err == nil {
		f := filepath.Join(t.TempDir(), "web.tar")
		if _, err := image.BuildFile(f, image.BuildOptions{Binary: bin, Tag: "ctr-web:3"}); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ctr", "-a", d.Socket, "-n", d.Namespace, "images", "import", f).CombinedOutput()
		if err != nil {
			t.Fatalf("ctr images import: %v\n%s", err, out)
		}
		if ok, err := rt.HasImage(ctx, "ctr-web:3"); err != nil || !ok {
			t.Fatalf("after ctr import: HasImage(ctr-web:3) = %v %v\nctr said: %s", ok, err, out)
		}
	}

	// An imported image runs.
	spec := run(t, rt, containerd.ContainerSpec{ID: "fromweb", Image: "web:1", Args: []string{"info"}})
	waitLog(t, spec.LogPath, "args=info")
}

// TestImageStopSignal: Stop with no signal uses the image's STOPSIGNAL.
func TestImageStopSignal(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	ctx := context.Background()
	var buf bytes.Buffer
	if _, err := image.BuildFromBinary(&buf, image.BuildOptions{Binary: containerdtest.StubBinary(t), Tag: "int-stop:1", StopSignal: "SIGINT"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.ImportArchive(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	img := containerdtest.StubImage(t, rt)
	cases := []struct {
		name, image string
		sig         syscall.Signal
		want        string
	}{
		{"image STOPSIGNAL", "int-stop:1", 0, "got SIGINT"},
		{"default SIGTERM", img, 0, "got SIGTERM"},
		{"explicit signal wins", "int-stop:1", syscall.SIGTERM, "got SIGTERM"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := run(t, rt, containerd.ContainerSpec{ID: fmt.Sprintf("sig-%d", i), Image: tc.image, Args: []string{"serve", "127.0.0.1:0"}})
			waitLog(t, spec.LogPath, "serving on")
			if err := rt.Stop(ctx, spec.ID, 10*time.Second, tc.sig); err != nil {
				t.Fatal(err)
			}
			waitLog(t, spec.LogPath, tc.want)
		})
	}
}
