package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// testBackup returns a backup of a small state.
func testBackup(t *testing.T) []byte {
	t.Helper()
	s := raftstoretest.NewStore(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0"}}
	raftstoretest.Apply(t, s, raftstoretest.Put(t, ns), raftstoretest.Put(t, pod))
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.SaveSnapshot(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSaveSnapshotFile(t *testing.T) {
	good := testBackup(t)
	info, err := raftstore.InspectBackup(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	damaged := bytes.Clone(good)
	damaged[len(damaged)-10] ^= 1

	tests := []struct {
		name     string
		data     []byte
		announce string
		want     string // error; "" for success
	}{
		{"whole", good, info.SHA256, ""},
		{"no checksum announced", good, "", ""},
		{"damaged", damaged, info.SHA256, "the server sent a damaged snapshot (not a valid Stead snapshot: checksum mismatch"},
		{"truncated", good[:len(good)/2], info.SHA256, "the server sent a damaged snapshot (not a valid Stead snapshot: truncated"},
		{"another checksum announced", good, strings.Repeat("0", 64), "the server announced a snapshot with sha256 0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "backup.snap")
			// An older backup stays until a whole new one replaces it.
			if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
				t.Fatal(err)
			}
			got, size, err := saveSnapshotFile(path, bytes.NewReader(tt.data), tt.announce)
			if _, terr := os.Stat(path + ".tmp"); !os.IsNotExist(terr) {
				t.Errorf("%s.tmp left behind: %v", path, terr)
			}
			data, _ := os.ReadFile(path)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want one saying %q", err, tt.want)
				}
				if string(data) != "old" {
					t.Errorf("the older backup was replaced")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(path)
			if !bytes.Equal(data, good) || size != int64(len(good)) || got.SHA256 != info.SHA256 || st.Mode().Perm() != 0o600 {
				t.Errorf("saved %d bytes (reported %d), sha256 %s, mode %v; want %d bytes, %s, 0600",
					len(data), size, got.SHA256, st.Mode().Perm(), len(good), info.SHA256)
			}
		})
	}
}

// TestRestoreChecksBeforeSending runs `stead operator snapshot restore`
// against a server that counts requests: a damaged file or a missing
// confirmation sends nothing.
func TestRestoreChecksBeforeSending(t *testing.T) {
	good := testBackup(t)
	damaged := bytes.Clone(good)
	damaged[len(damaged)/2] ^= 1
	dir := t.TempDir()
	goodPath, damagedPath := filepath.Join(dir, "good.snap"), filepath.Join(dir, "damaged.snap")
	os.WriteFile(goodPath, good, 0o600)
	os.WriteFile(damagedPath, damaged, 0o600)

	var requests atomic.Int32
	var received atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		received.Store(&body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"savedIndex":3,"savedClusterID":"test","index":1030}`)
	}))
	defer srv.Close()

	tests := []struct {
		name     string
		args     []string
		terminal bool
		input    string
		want     string
		sent     bool
	}{
		{"damaged", []string{damagedPath, "--yes"}, false, "", "damaged.snap: not a valid Stead snapshot: checksum mismatch", false},
		{"missing", []string{filepath.Join(dir, "nope.snap"), "--yes"}, false, "", "no such file or directory; nothing was sent", false},
		{"no terminal, no --yes", []string{goodPath}, false, "yes\n", "confirm with --yes", false},
		{"answered no", []string{goodPath}, true, "no\n", "not confirmed; nothing was sent", false},
		{"no answer", []string{goodPath}, true, "", "not confirmed; nothing was sent", false},
		{"answered yes", []string{goodPath}, true, "yes\n", "", true},
		{"--yes", []string{goodPath, "--yes"}, false, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requests.Store(0)
			old := inputIsTerminal
			inputIsTerminal = func(io.Reader) bool { return tt.terminal }
			defer func() { inputIsTerminal = old }()

			root := newRootCmd()
			var out, errOut bytes.Buffer
			root.SetOut(&out)
			root.SetErr(&errOut)
			root.SetIn(strings.NewReader(tt.input))
			root.SetArgs(append([]string{"--server", srv.URL, "operator", "snapshot", "restore"}, tt.args...))
			err := root.Execute()
			switch {
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			case tt.want == "" && err != nil:
				t.Errorf("error %v", err)
			}
			if got := requests.Load() > 0; got != tt.sent {
				t.Fatalf("sent a request: %v, want %v", got, tt.sent)
			}
			if tt.sent {
				if !bytes.Equal(*received.Load(), good) {
					t.Errorf("the server received another file")
				}
				if want := "Restored the snapshot of index 3 (2 objects); the cluster state is now at index 1030\n"; out.String() != want {
					t.Errorf("printed %q, want %q", out.String(), want)
				}
			}
			if tt.terminal && !strings.Contains(errOut.String(), "Type yes to go on") {
				t.Errorf("no question asked: %q", errOut.String())
			}
		})
	}
}

// devState is what must survive a restore of a set: its identity, spec
// and generation. The controller rewrites its status.
func devState(t *testing.T, bin, addr string) string {
	t.Helper()
	out, err := stead(t, bin, addr, "get", "sts", "web", "-o", "json")
	if err != nil {
		t.Fatalf("get sts web: %v\n%s", err, out)
	}
	var set struct {
		Metadata struct {
			UID        string `json:"uid"`
			Generation int64  `json:"generation"`
		} `json:"metadata"`
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &set); err != nil {
		t.Fatal(err)
	}
	svc := "none"
	if out, err := stead(t, bin, addr, "get", "svc", "nginx", "-o", "json"); err == nil {
		var s struct {
			Metadata struct {
				UID string `json:"uid"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		svc = s.Metadata.UID
	}
	return fmt.Sprintf("set uid=%s generation=%d spec=%s; service uid=%s", set.Metadata.UID, set.Metadata.Generation, set.Spec, svc)
}

// startDevServer starts `stead dev` without an agent: the test is about
// the state, and leaves this machine's containers and network alone.
func startDevServer(t *testing.T, bin, dataDir, httpAddr, raftAddr string) *devProcess {
	t.Helper()
	var log bytes.Buffer
	cmd := exec.Command(bin, "dev", "--agent=false", "--data-dir", dataDir, "--http-addr", httpAddr, "--raft-addr", raftAddr)
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

// steadUntil runs the CLI until it succeeds (a new server may have no
// leader yet), failing t after 30 s.
func steadUntil(t *testing.T, bin, addr string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := stead(t, bin, addr, args...)
		if err == nil {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("stead %v never succeeded: %v\n%s", args, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSnapshotDisasterRecovery follows docs/operations/backup.md: save a
// snapshot of a running cluster, restore it over later changes, then
// lose the whole data directory and restore the snapshot into a new
// cluster.
func TestSnapshotDisasterRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := steadBinary(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	httpAddr, raftAddr := freePort(t), freePort(t)
	example, _ := filepath.Abs("../../examples/web.yaml")
	file := filepath.Join(t.TempDir(), "backup.snap")

	dev := startDevServer(t, bin, dataDir, httpAddr, raftAddr)
	applyWhenReady(t, bin, httpAddr, example)
	saved := devState(t, bin, httpAddr)

	// Step 1: save.
	out, err := stead(t, bin, httpAddr, "operator", "snapshot", "save", file)
	if err != nil || !regexp.MustCompile(`^Saved the snapshot of index \d+ \(\d+ objects\) to .*backup.snap: \d+ bytes, sha256 [0-9a-f]{64}\n$`).MatchString(out) {
		t.Fatalf("save: %v\n%s", err, out)
	}
	out, err = stead(t, bin, httpAddr, "operator", "snapshot", "inspect", file)
	if err != nil || !strings.Contains(out, "statefulsets") || !strings.Contains(out, "services") {
		t.Fatalf("inspect: %v\n%s", err, out)
	}

	// Changes after the snapshot, undone by restoring it.
	if out, err := stead(t, bin, httpAddr, "scale", "sts/web", "--replicas=5"); err != nil {
		t.Fatalf("scale: %v\n%s", err, out)
	}
	if out, err := stead(t, bin, httpAddr, "delete", "svc", "nginx"); err != nil {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	if changed := devState(t, bin, httpAddr); changed == saved {
		t.Fatalf("the changes changed nothing: %s", changed)
	}
	out, err = stead(t, bin, httpAddr, "operator", "snapshot", "restore", "--yes", file)
	if err != nil || !strings.HasPrefix(out, "Restored the snapshot of index") {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	if got := devState(t, bin, httpAddr); got != saved {
		t.Fatalf("after restore:\n got %s\nwant %s", got, saved)
	}
	// The restored cluster takes writes.
	if out, err := stead(t, bin, httpAddr, "scale", "sts/web", "--replicas=3"); err != nil {
		t.Fatalf("scale after restore: %v\n%s", err, out)
	}

	// The disaster: the server and its data directory are gone.
	if err := dev.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	dev.cmd.Wait()
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}

	// Recovery: a new cluster, the snapshot restored into it.
	startDevServer(t, bin, dataDir, httpAddr, raftAddr)
	if out := steadUntil(t, bin, httpAddr, "get", "sts"); !strings.Contains(out, "No resources found") {
		t.Fatalf("a new cluster holds sets:\n%s", out)
	}
	out = steadUntil(t, bin, httpAddr, "operator", "snapshot", "restore", "--yes", file)
	if !strings.HasPrefix(out, "Restored the snapshot of index") {
		t.Fatalf("restore into the new cluster: %s", out)
	}
	if got := devState(t, bin, httpAddr); got != saved {
		t.Fatalf("after recovery:\n got %s\nwant %s", got, saved)
	}
	if out, err := stead(t, bin, httpAddr, "scale", "sts/web", "--replicas=2"); err != nil {
		t.Fatalf("scale after recovery: %v\n%s", err, out)
	}
}
