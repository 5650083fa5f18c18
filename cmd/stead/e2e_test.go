package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// builtDir holds the stead binary the tests build; TestMain removes it.
var builtDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

// steadBinary builds the stead binary once per test binary run.
var steadBinary = func() func(t testing.TB) string {
	var path string
	var err error
	var built bool
	return func(t testing.TB) string {
		t.Helper()
		if !built {
			built = true
			dir, derr := os.MkdirTemp("", "stead-e2e-bin")
			if derr != nil {
				t.Fatal(derr)
			}
			builtDir = dir
			path = filepath.Join(dir, "stead")
			cmd := exec.Command("go", "build", "-o", path, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, berr := cmd.CombinedOutput(); berr != nil {
				err = fmt.Errorf("build stead: %v\n%s", berr, out)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
}()

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// devProcess is a `stead dev` process the test started.
type devProcess struct {
	cmd  *exec.Cmd
	addr string
	log  *bytes.Buffer
}

func startDev(t testing.TB, bin, dataDir, httpAddr, raftAddr string) *devProcess {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.Command(bin, "dev", "--data-dir", dataDir, "--http-addr", httpAddr, "--raft-addr", raftAddr)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, addr: httpAddr, log: &log}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// stead runs the CLI against addr and returns its output and exit error.
func stead(t testing.TB, bin, addr string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"--server", addr}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// applyWhenReady applies a manifest, retrying while the new server has no leader yet.
func applyWhenReady(t testing.TB, bin, addr, file string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := stead(t, bin, addr, "apply", "-f", file)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("apply never succeeded: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDevSurvivesKill9 applies the example, kills `stead dev` with SIGKILL
// and starts it again on the same data directory: everything acknowledged
// is still there.
func TestDevSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	dataDir := t.TempDir()
	httpAddr, raftAddr := freePort(t), freePort(t)
	example, err := filepath.Abs("../../examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}

	dev := startDev(t, bin, dataDir, httpAddr, raftAddr)
	out := applyWhenReady(t, bin, httpAddr, example)
	if want := "service/nginx created\nstatefulset.apps/web created\n"; out != want {
		t.Fatalf("apply printed %q, want %q", out, want)
	}
	if out, err := stead(t, bin, httpAddr, "scale", "sts/web", "--replicas=5"); err != nil {
		t.Fatalf("scale: %v\n%s", err, out)
	}
	before, err := stead(t, bin, httpAddr, "get", "sts", "web", "-o", "json")
	if err != nil {
		t.Fatalf("get: %v\n%s", err, before)
	}

	if err := dev.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	dev.cmd.Wait()

	startDev(t, bin, dataDir, httpAddr, raftAddr)
	var after string
	deadline := time.Now().Add(30 * time.Second)
	for {
		after, err = stead(t, bin, httpAddr, "get", "sts", "web", "-o", "json")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("get after restart: %v\n%s", err, after)
	}
	type setJSON struct {
		Metadata struct {
			UID        string `json:"uid"`
			Generation int64  `json:"generation"`
		} `json:"metadata"`
		Spec struct {
			Replicas int `json:"replicas"`
		} `json:"spec"`
	}
	var b, a setJSON
	if err := json.Unmarshal([]byte(before), &b); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(after), &a); err != nil {
		t.Fatal(err)
	}
	if a.Metadata.UID != b.Metadata.UID || a.Metadata.Generation != 2 || a.Spec.Replicas != 5 {
		t.Fatalf("after kill -9: uid %s generation %d replicas %d; before: uid %s generation %d",
			a.Metadata.UID, a.Metadata.Generation, a.Spec.Replicas, b.Metadata.UID, b.Metadata.Generation)
	}
	out, err = stead(t, bin, httpAddr, "apply", "-f", example)
	if err != nil || out != "service/nginx unchanged\nstatefulset.apps/web configured\n" {
		// The file says 3 replicas and the set has 5: apply sets it back.
		t.Fatalf("re-apply after restart: %v %q", err, out)
	}
}

// TestCLIBadInput checks that bad input exits non-zero with an error that
// names the problem, and changes nothing.
func TestCLIBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	httpAddr := freePort(t)
	startDev(t, bin, t.TempDir(), httpAddr, freePort(t))
	example, _ := filepath.Abs("../../examples/web.yaml")
	applyWhenReady(t, bin, httpAddr, example)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	data, _ := os.ReadFile(example)
	os.WriteFile(bad, []byte(strings.Replace(string(data), "replicas: 3", "replicas: -1", 1)), 0o644)

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"negative replicas", []string{"apply", "-f", bad}, "spec.replicas"},
		{"missing file", []string{"apply", "-f", "/nonexistent.yaml"}, `the path "/nonexistent.yaml" does not exist`},
		{"unknown type", []string{"get", "deployments"}, `doesn't have a resource type "deployments"`},
		{"missing object", []string{"get", "sts", "nope"}, `statefulsets.apps "nope" not found`},
		{"scale without replicas", []string{"scale", "sts/web"}, "--replicas is required"},
		{"no server", []string{"--server", "127.0.0.1:1", "get", "pods"}, "is 'stead dev' or 'stead server' running?"},
	}
	// The controller writes the set's status meanwhile; what bad input must
	// not change is the spec and its generation.
	specOf := func() string {
		out, err := stead(t, bin, httpAddr, "get", "sts", "web", "-o", "json")
		if err != nil {
			t.Fatalf("get: %v\n%s", err, out)
		}
		var set struct {
			Metadata struct {
				Generation int64 `json:"generation"`
			} `json:"metadata"`
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal([]byte(out), &set); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(set.Metadata.Generation, string(set.Spec))
	}
	before := specOf()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := stead(t, bin, httpAddr, tt.args...)
			if err == nil {
				t.Fatalf("exit status 0, want failure; output %q", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output %q does not contain %q", out, tt.want)
			}
		})
	}
	if after := specOf(); before != after {
		t.Errorf("bad input changed the set:\n%s\n%s", before, after)
	}
}

// TestDevMetrics checks that the server's /metrics serves Stead's own
// metrics next to Go's.
func TestDevMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	httpAddr := freePort(t)
	startDev(t, bin, t.TempDir(), httpAddr, freePort(t))
	example, _ := filepath.Abs("../../examples/web.yaml")
	applyWhenReady(t, bin, httpAddr, example)
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"stead_raft_leader 1",
		"stead_raft_apply_duration_seconds_count",
		"stead_controller_sync_duration_seconds_count",
		`stead_pods{phase="Pending"}`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
