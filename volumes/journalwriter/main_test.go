package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/volumes"
)

// TestMain lets the tests run this program as a real process: the test
// binary re-executed with JOURNAL_WRITER_MAIN=1 is journal-writer.
func TestMain(m *testing.M) {
	if os.Getenv("JOURNAL_WRITER_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// start runs journal-writer as a process with env.
func start(t *testing.T, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"JOURNAL_WRITER_MAIN=1"}, env...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, &stderr
}

// wait waits for cmd to exit within d and returns its exit status.
func wait(t *testing.T, cmd *exec.Cmd, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(d):
		t.Fatalf("journal-writer still running after %v", d)
		return -1
	}
}

func readJournal(t *testing.T, dir string) []volumes.Record {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "journal"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []volumes.Record
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if l == "" {
			continue
		}
		var r volumes.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("journal line %q: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// waitRecords waits until the journal holds n records of kind from pid.
func waitRecords(t *testing.T, dir string, pid, n int, kind volumes.Kind) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		got := 0
		for _, r := range readJournal(t, dir) {
			if r.PID == pid && r.Kind == kind {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s records from pid %d after 10s, want %d", got, kind, pid, n)
		}
		<-tick.C
	}
}

// TestWriterStopsWhenFenced: the writer appends records under generation
// 5 until a node attaches the volume at generation 7; then it appends a
// reject and exits 3, and the journal passes CheckJournal.
func TestWriterStopsWhenFenced(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a1, err := volumes.NewManager(volumes.Options{Node: "a1", Dir: filepath.Join(dir, "a1")})
	if err != nil {
		t.Fatal(err)
	}
	a2, err := volumes.NewManager(volumes.Options{Node: "a2", Dir: filepath.Join(dir, "a2")})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "shared")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	v := volumes.Volume{Namespace: "default", Name: "www-web-1", UID: "uid-1", Class: volumes.Class{Name: "nfs", Driver: volumes.DriverShared, Root: root, Shared: true}}
	if err := a1.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := a1.Attach(ctx, v, 5); err != nil {
		t.Fatal(err)
	}
	ctl := a1.ControlDir(v)
	cmd, stderr := start(t, "ORDINAL=1", "GENERATION=5", "NODE=a1", "CONTROL_DIR="+ctl)
	waitRecords(t, ctl, cmd.Process.Pid, 5, volumes.KindWrite)

	if _, err := a2.Attach(ctx, v, 7); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, cmd, 10*time.Second); code != exitFenced {
		t.Fatalf("exit status %d, want %d; stderr: %s", code, exitFenced, stderr)
	}
	if !strings.Contains(stderr.String(), "fenced") {
		t.Errorf("stderr = %q, want it to say fenced", stderr)
	}

	recs := readJournal(t, ctl)
	last := recs[len(recs)-1]
	if last.Kind != volumes.KindReject || last.Gen != 5 || last.Node != "a1" || last.PID != cmd.Process.Pid || last.Ord != 1 {
		t.Errorf("last record = %+v, want a1's reject at generation 5", last)
	}
	var kinds []string
	var seq uint64
	for _, r := range recs {
		if r.PID == cmd.Process.Pid {
			if r.Seq <= seq {
				t.Errorf("seq %d after %d", r.Seq, seq)
			}
			seq = r.Seq
		}
		// Runs of writes show as one.
		k := string(r.Kind) + ":" + r.Node
		if r.Kind == volumes.KindWrite && len(kinds) > 0 && kinds[len(kinds)-1] == k {
			continue
		}
		kinds = append(kinds, k)
	}
	want := []string{"fence:a1", "mount:a1", "write:a1", "fence:a2", "mount:a2", "reject:a1"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("journal = %v, want %v", kinds, want)
	}
	f, err := os.Open(filepath.Join(ctl, "journal"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if vs := volumes.CheckJournal(f); len(vs) != 0 {
		t.Errorf("CheckJournal: %v", vs)
	}
}

// TestWriterStaleAtStart: a writer whose generation is already fenced
// writes nothing but its reject.
func TestWriterStaleAtStart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := volumes.NewManager(volumes.Options{Node: "a2", Dir: filepath.Join(dir, "a2")})
	if err != nil {
		t.Fatal(err)
	}
	v := volumes.Volume{Namespace: "default", Name: "www-web-0", UID: "uid-0", Class: volumes.Class{Name: "fast", Driver: volumes.DriverLocal}}
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := m.Fence(ctx, v, 9); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := start(t, "ORDINAL=0", "GENERATION=8", "NODE=a1", "CONTROL_DIR="+m.ControlDir(v))
	if code := wait(t, cmd, 10*time.Second); code != exitFenced {
		t.Fatalf("exit status %d, want %d; stderr: %s", code, exitFenced, stderr)
	}
	var got []string
	for _, r := range readJournal(t, m.ControlDir(v)) {
		got = append(got, string(r.Kind)+":"+r.Node)
	}
	if want := []string{"fence:a2", "reject:a1"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("journal = %v, want %v", got, want)
	}
}

// TestWriterStopsOnSIGTERM: a stop signal ends the writer with status 0.
func TestWriterStopsOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	m, err := volumes.NewManager(volumes.Options{Node: "a1", Dir: filepath.Join(dir, "a1")})
	if err != nil {
		t.Fatal(err)
	}
	v := volumes.Volume{Namespace: "default", Name: "www-web-0", UID: "uid-0", Class: volumes.Class{Name: "fast", Driver: volumes.DriverLocal}}
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	cmd, stderr := start(t, "ORDINAL=0", "GENERATION=1", "NODE=a1", "CONTROL_DIR="+m.ControlDir(v))
	waitRecords(t, m.ControlDir(v), cmd.Process.Pid, 2, volumes.KindWrite)
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if code := wait(t, cmd, 10*time.Second); code != exitOK {
		t.Fatalf("exit status %d after SIGINT, want 0; stderr: %s", code, stderr)
	}
}

func TestParseEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name    string
		env     func(string) string
		want    config
		wantErr string
	}{
		{name: "all set", env: env("GENERATION", "12", "NODE", "a3", "CONTROL_DIR", "/c", "ORDINAL", "2"), want: config{ord: 2, gen: 12, node: "a3", dir: "/c"}},
		{name: "no generation", env: env("NODE", "a3", "CONTROL_DIR", "/c", "ORDINAL", "2"), wantErr: "GENERATION: "},
		{name: "bad generation", env: env("GENERATION", "-1", "NODE", "a3", "CONTROL_DIR", "/c", "ORDINAL", "2"), wantErr: "GENERATION: "},
		{name: "no node", env: env("GENERATION", "1", "CONTROL_DIR", "/c", "ORDINAL", "2"), wantErr: "NODE is empty"},
		{name: "no dir", env: env("GENERATION", "1", "NODE", "a3", "ORDINAL", "2"), wantErr: "CONTROL_DIR is empty"},
		{name: "bad ordinal", env: env("GENERATION", "1", "NODE", "a3", "CONTROL_DIR", "/c", "ORDINAL", "x"), wantErr: "ORDINAL: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseEnv(tt.env)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("parseEnv = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c != tt.want {
				t.Fatalf("parseEnv = %+v, %v; want %+v", c, err, tt.want)
			}
		})
	}
}
