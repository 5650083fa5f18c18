package installtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"sigs.k8s.io/yaml"
)

// installer runs deploy/install.sh against one sshd.
type installer struct {
	script string
	sshd   *sshd
	// tmp is install.sh's TMPDIR, which it must leave empty.
	tmp string
}

// run runs install.sh with args and the options that reach the test's
// sshd, and returns its output and exit code.
func (in *installer) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	full := slices.Clone(args)
	for _, o := range in.sshd.opts {
		full = append(full, "--ssh-opt", o)
	}
	full = append(full, "--port", in.sshd.port, "root@"+in.sshd.addr)
	cmd := exec.Command(in.script, full...)
	cmd.Env = append(os.Environ(), "TMPDIR="+in.tmp)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	left, _ := os.ReadDir(in.tmp)
	for _, e := range left {
		t.Errorf("install.sh left %s in its TMPDIR", e.Name())
	}
	return string(out), code
}

// mustRun is run that fails the test unless install.sh succeeds.
func (in *installer) mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, code := in.run(t, args...)
	if code != 0 {
		t.Fatalf("install.sh %s: exit %d\n%s", strings.Join(args, " "), code, out)
	}
	t.Logf("install.sh %s:\n%s", strings.Join(args, " "), out)
	return out
}

// fakeSystemctl is a systemctl stand-in for a host without systemd: it
// records every call and keeps each unit's enabled and active state in
// files beside it.
const fakeSystemctl = `#!/bin/sh
d=$(dirname "$0")
echo "$*" >>"$d/calls"
case $1 in
is-enabled) cat "$d/$2.enabled" 2>/dev/null || { echo disabled; exit 1; } ;;
is-active) cat "$d/$2.active" 2>/dev/null || { echo inactive; exit 3; } ;;
enable) echo enabled >"$d/$2.enabled" ;;
start | restart) echo active >"$d/$2.active" ;;
daemon-reload) ;;
*) echo "unexpected: $*" >&2; exit 1 ;;
esac
`

// systemctlCalls returns the calls made to the fake systemctl in dir since
// the last look, leaving out the queries.
func systemctlCalls(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "calls"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "calls"))
	var changes []string
	for _, c := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if !strings.HasPrefix(c, "is-") {
			changes = append(changes, c)
		}
	}
	return changes
}

// fileState is what identifies a file's version: replacing it makes a new
// inode, writing it in place changes the modification time.
type fileState struct {
	ino   uint64
	mtime int64
	mode  os.FileMode
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return fileState{ino: st.Ino, mtime: fi.ModTime().UnixNano(), mode: fi.Mode()}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestInstallOverSSH installs a server and an agent with install.sh through
// a real sshd, under a --root directory so that the host's own
// /usr/local/bin, /etc and services are never touched, and checks that a
// second run changes nothing and that a new binary replaces a running one
// atomically.
func TestInstallOverSSH(t *testing.T) {
	needRoot(t, "ip", "/usr/sbin/sshd", "ssh", "ssh-keygen", "sha256sum")
	repo := repoRoot(t)
	stead := steadBinary(t)
	ns := newNetns(t)
	sshd := startSSHD(t, ns)
	in := &installer{script: filepath.Join(repo, "deploy", "install.sh"), sshd: sshd, tmp: t.TempDir()}

	work := t.TempDir()
	root := filepath.Join(work, "root")
	sc := filepath.Join(work, "systemctl.d")
	if err := os.Mkdir(sc, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(sc, "systemctl"), []byte(fakeSystemctl), 0o755)

	// The binaries installed are copies of sleep(1), so that one can be
	// running while the other replaces it; the second differs by bytes
	// past the end of the ELF file.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep(1) is missing")
	}
	v1 := readFile(t, sleep)
	v2 := v1 + "\x00stead v2"
	bin1, bin2 := filepath.Join(work, "stead-v1"), filepath.Join(work, "stead-v2")
	writeFile(t, bin1, []byte(v1), 0o755)
	writeFile(t, bin2, []byte(v2), 0o755)

	serverArgs := []string{
		"--role", "server", "--node-name", "s1", "--bootstrap-expect", "3",
		"--servers", "10.0.0.1," + sshd.addr + ",10.0.0.3:7570",
		"--arg", "--dns-addr=127.0.0.1:53", "--arg", "--log-json",
		"--root", root, "--systemctl", filepath.Join(sc, "systemctl"),
	}
	binDst := filepath.Join(root, "usr/local/bin/stead")
	envDst := filepath.Join(root, "etc/stead/server.env")
	yamlDst := filepath.Join(root, "etc/stead/server.yaml")
	unitDst := filepath.Join(root, "etc/systemd/system/stead-server.service")
	all := []string{binDst, envDst, yamlDst, unitDst}

	wantEnv := "# Flags of `stead server` that override /etc/stead/server.yaml, read by\n" +
		"# stead-server.service. Written by deploy/install.sh; the next run replaces it.\n" +
		`STEAD_SERVER_ARGS=""` + "\n"
	wantYAML := "# The settings of `stead server`, keyed by flag name, read by\n" +
		"# stead-server.service (--config /etc/stead/server.yaml).\n" +
		"# Written by deploy/install.sh; the next run replaces it.\n" +
		"node-id: \"s1\"\n" +
		"data-dir: \"/var/lib/stead\"\n" +
		"http-addr: \"" + sshd.addr + ":7470\"\n" +
		"raft-addr: \"" + sshd.addr + ":7471\"\n" +
		"bootstrap-expect: 3\n" +
		"join:\n  - \"10.0.0.1:7470\"\n  - \"10.0.0.3:7570\"\n" +
		"retry-join: true\n" +
		"dns-addr: \"127.0.0.1:53\"\n" +
		"log-json: true\n"

	t.Run("dry run changes nothing", func(t *testing.T) {
		out := in.mustRun(t, append(serverArgs, "--dry-run", "--binary", bin1)...)
		for _, p := range all {
			if !strings.Contains(out, "would update "+p) {
				t.Errorf("output does not say it would update %s", p)
			}
			if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dry run made %s", p)
			}
		}
		for _, want := range []string{"would run: systemctl daemon-reload", "would run: systemctl enable stead-server.service", "would run: systemctl start stead-server.service", "7 changes to make (dry run"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q", want)
			}
		}
		if got := systemctlCalls(t, sc); got != nil {
			t.Errorf("dry run ran systemctl %q", got)
		}
	})

	t.Run("first install", func(t *testing.T) {
		out := in.mustRun(t, append(serverArgs, "--binary", bin1)...)
		files := []struct {
			path, content string
			mode          os.FileMode
		}{
			{binDst, v1, 0o755},
			{envDst, wantEnv, 0o600},
			{yamlDst, wantYAML, 0o600},
			{unitDst, readFile(t, filepath.Join(repo, "deploy/systemd/stead-server.service")), 0o644},
		}
		for _, f := range files {
			if got := readFile(t, f.path); got != f.content {
				if len(got) > 1000 {
					t.Errorf("%s: %d bytes differ from what was to be installed", f.path, len(got))
				} else {
					t.Errorf("%s:\n%s\nwant:\n%s", f.path, got, f.content)
				}
			}
			if got := stateOf(t, f.path).mode; got != f.mode {
				t.Errorf("%s: mode %v, want %v", f.path, got, f.mode)
			}
			if !strings.Contains(out, "updated "+f.path) {
				t.Errorf("output does not say it updated %s", f.path)
			}
		}
		want := []string{"daemon-reload", "enable stead-server.service", "start stead-server.service"}
		if got := systemctlCalls(t, sc); !slices.Equal(got, want) {
			t.Errorf("systemctl calls %q, want %q", got, want)
		}
		if !strings.Contains(out, "7 changes made") {
			t.Errorf("output does not count 7 changes")
		}
		checkYAMLKeys(t, stead, "server", yamlDst)
	})

	t.Run("second install changes nothing", func(t *testing.T) {
		before := map[string]fileState{}
		for _, p := range all {
			before[p] = stateOf(t, p)
		}
		out := in.mustRun(t, append(serverArgs, "--binary", bin1)...)
		if !strings.Contains(out, "root@"+sshd.addr+": no changes") {
			t.Errorf("output does not say there were no changes")
		}
		for _, p := range all {
			if !strings.Contains(out, "unchanged "+p) {
				t.Errorf("output does not say %s is unchanged", p)
			}
			if got := stateOf(t, p); got != before[p] {
				t.Errorf("%s was rewritten: %+v, before %+v", p, got, before[p])
			}
		}
		if got := systemctlCalls(t, sc); got != nil {
			t.Errorf("systemctl calls %q, want none", got)
		}
	})

	t.Run("new binary replaces the running one atomically", func(t *testing.T) {
		// A running executable cannot be written in place (ETXTBSY), and
		// a reader of the old file must keep reading the old version.
		running := exec.Command(binDst, "600")
		if err := running.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			running.Process.Kill()
			running.Wait()
		}()
		old, err := os.Open(binDst)
		if err != nil {
			t.Fatal(err)
		}
		defer old.Close()
		before := map[string]fileState{}
		for _, p := range all {
			before[p] = stateOf(t, p)
		}

		out := in.mustRun(t, append(serverArgs, "--binary", bin2)...)
		if got := readFile(t, binDst); got != v2 {
			t.Errorf("%s holds %d bytes, want the %d of the new binary", binDst, len(got), len(v2))
		}
		if got := stateOf(t, binDst); got.ino == before[binDst].ino || got.mode != 0o755 {
			t.Errorf("%s: inode %d mode %v, want a new inode (was %d) with mode 0755", binDst, got.ino, got.mode, before[binDst].ino)
		}
		if data, err := io.ReadAll(old); err != nil || string(data) != v1 {
			t.Errorf("the file open before the install reads %d bytes (%v), want the old binary's %d", len(data), err, len(v1))
		}
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", running.Process.Pid)); err != nil || !strings.HasSuffix(exe, " (deleted)") {
			t.Errorf("the running binary is %q (%v), want the replaced file", exe, err)
		}
		for _, p := range all[1:] {
			if got := stateOf(t, p); got != before[p] {
				t.Errorf("%s was rewritten although it did not change", p)
			}
		}
		entries, err := os.ReadDir(filepath.Dir(binDst))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 {
			t.Errorf("%s holds %d entries, want stead alone", filepath.Dir(binDst), len(entries))
		}
		want := []string{"restart stead-server.service"}
		if got := systemctlCalls(t, sc); !slices.Equal(got, want) {
			t.Errorf("systemctl calls %q, want %q", got, want)
		}
		if !strings.Contains(out, "2 changes made") {
			t.Errorf("output does not count 2 changes (the binary and the restart)")
		}
	})

	t.Run("changed settings restart the service", func(t *testing.T) {
		before := map[string]fileState{}
		for _, p := range all {
			before[p] = stateOf(t, p)
		}
		out := in.mustRun(t, append(serverArgs, "--binary", bin2, "--arg", "--log-level=debug")...)
		if got := readFile(t, yamlDst); got != wantYAML+"log-level: \"debug\"\n" {
			t.Errorf("%s:\n%s\nwant the settings before and log-level debug", yamlDst, got)
		}
		for _, p := range []string{binDst, envDst, unitDst} {
			if got := stateOf(t, p); got != before[p] {
				t.Errorf("%s was rewritten although it did not change", p)
			}
		}
		// The unit reads the file: a change to it alone restarts the service.
		want := []string{"restart stead-server.service"}
		if got := systemctlCalls(t, sc); !slices.Equal(got, want) {
			t.Errorf("systemctl calls %q, want %q", got, want)
		}
		if !strings.Contains(out, "2 changes made") {
			t.Errorf("output does not count 2 changes (the settings and the restart)")
		}
		checkYAMLKeys(t, stead, "server", yamlDst)
	})

	t.Run("agent without systemd", func(t *testing.T) {
		host, err := os.Hostname()
		if err != nil {
			t.Fatal(err)
		}
		node := strings.ToLower(host)
		out := in.mustRun(t, "--role", "agent", "--servers", "10.0.0.1,10.0.0.2:8000,[fd00::3]",
			"--addr", sshd.addr, "--arg", "--node-label=zone=a", "--arg", "--node-label=disk=ssd",
			"--root", root, "--binary", bin2)
		wantEnv := "# Flags of `stead agent` that override /etc/stead/agent.yaml, read by\n" +
			"# stead-agent.service. Written by deploy/install.sh; the next run replaces it.\n" +
			`STEAD_AGENT_ARGS=""` + "\n"
		if got := readFile(t, filepath.Join(root, "etc/stead/agent.env")); got != wantEnv {
			t.Errorf("agent.env:\n%s\nwant:\n%s", got, wantEnv)
		}
		wantYAML := "# The settings of `stead agent`, keyed by flag name, read by\n" +
			"# stead-agent.service (--config /etc/stead/agent.yaml).\n" +
			"# Written by deploy/install.sh; the next run replaces it.\n" +
			"servers:\n  - \"10.0.0.1:7470\"\n  - \"10.0.0.2:8000\"\n  - \"[fd00::3]:7470\"\n" +
			"node-name: \"" + node + "\"\n" +
			"data-dir: \"/var/lib/stead-agent\"\n" +
			"agent-addr: \"" + sshd.addr + ":7472\"\n" +
			"node-label:\n  - \"zone=a\"\n  - \"disk=ssd\"\n"
		agentYAML := filepath.Join(root, "etc/stead/agent.yaml")
		if got := readFile(t, agentYAML); got != wantYAML {
			t.Errorf("agent.yaml:\n%s\nwant:\n%s", got, wantYAML)
		}
		wantUnit := readFile(t, filepath.Join(repo, "deploy/systemd/stead-agent.service"))
		if got := readFile(t, filepath.Join(root, "etc/systemd/system/stead-agent.service")); got != wantUnit {
			t.Errorf("stead-agent.service differs from deploy/systemd/stead-agent.service")
		}
		if !strings.Contains(out, "unchanged "+binDst) {
			t.Errorf("output does not say the binary, already installed, is unchanged")
		}
		if !strings.Contains(out, "installing under --root "+root+", so nothing was started") {
			t.Errorf("output does not say why nothing was started")
		}
		if got := systemctlCalls(t, sc); got != nil {
			t.Errorf("systemctl calls %q without --systemctl", got)
		}
		if _, ok := roleFlags(t, stead, "agent"); ok {
			checkYAMLKeys(t, stead, "agent", agentYAML)
		}

		out = in.mustRun(t, "--role", "agent", "--servers", "10.0.0.1,10.0.0.2:8000,[fd00::3]",
			"--addr", sshd.addr, "--arg", "--node-label=zone=a", "--arg", "--node-label=disk=ssd",
			"--root", root, "--binary", bin2)
		if !strings.Contains(out, "no changes") || strings.Contains(out, "nothing was started") {
			t.Errorf("second agent install: want no changes and no note about starting")
		}
	})
}

// checkYAMLKeys checks that the YAML file parses and that each key is a
// flag of `stead ROLE`.
func checkYAMLKeys(t *testing.T, stead, role, path string) {
	t.Helper()
	flags, ok := roleFlags(t, stead, role)
	if !ok {
		t.Fatalf("stead has no %s command", role)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for k := range m {
		if !flags[k] {
			t.Errorf("%s: key %q is not a flag of stead %s", path, k, role)
		}
	}
}

// TestInstallRefusesBadInput checks the errors given before any connection
// is made: no sshd is needed.
func TestInstallRefusesBadInput(t *testing.T) {
	script := filepath.Join(repoRoot(t), "deploy", "install.sh")
	bin := filepath.Join(t.TempDir(), "stead")
	writeFile(t, bin, []byte("binary"), 0o755)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no host", []string{"--role", "agent", "--servers", "s1"}, 2, "no host given"},
		{"no role", []string{"h"}, 2, "--role server|agent is required"},
		{"unknown role", []string{"--role", "client", "h"}, 2, "--role is server or agent, not 'client'"},
		{"unknown option", []string{"--role", "agent", "--force", "h"}, 2, "unknown option --force"},
		{"option without value", []string{"h", "--role"}, 2, "--role needs a value"},
		{"two hosts", []string{"--role", "agent", "--servers", "s1", "h1", "h2"}, 2, "one host at a time"},
		{"agent without servers", []string{"--role", "agent", "h"}, 2, "an agent needs --servers"},
		{"agent with bootstrap", []string{"--role", "agent", "--servers", "s1", "--bootstrap", "h"}, 2, "--bootstrap is for servers"},
		{"server with nothing to form or join", []string{"--role", "server", "10.0.0.1"}, 2, "a server needs --bootstrap"},
		{"server whose --servers is itself", []string{"--role", "server", "--servers", "10.0.0.1:7470", "root@10.0.0.1"}, 2, "or other --servers to join"},
		{"server on a host name without --addr", []string{"--role", "server", "--bootstrap", "root@db1"}, 2, "--addr is required when the host ('db1') is not an IP address"},
		{"bootstrap and bootstrap-expect", []string{"--role", "server", "--bootstrap", "--bootstrap-expect", "3", "10.0.0.1"}, 2, "exclude each other"},
		{"bootstrap-expect not a number", []string{"--role", "server", "--bootstrap-expect", "three", "10.0.0.1"}, 2, "--bootstrap-expect 'three' is not a positive number"},
		{"space in a value", []string{"--role", "agent", "--servers", "s1", "--node-name", "a b", "h"}, 2, "--node-name 'a b' may hold only"},
		{"shell in an arg", []string{"--role", "agent", "--servers", "s1", "--arg", "--x=$(reboot)", "h"}, 2, "--arg '--x=$(reboot)' may hold only"},
		{"arg that is not a flag", []string{"--role", "agent", "--servers", "s1", "--arg", "x=1", "h"}, 2, "--arg 'x=1' is not a flag"},
		{"port not a number", []string{"--role", "agent", "--servers", "s1", "--port", "ssh", "h"}, 2, "--port 'ssh' is not a port number"},
		{"missing binary", []string{"--role", "agent", "--servers", "s1", "--binary", "/nonexistent/stead", "h"}, 1, "binary /nonexistent/stead not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !slices.Contains(args, "--binary") {
				args = append([]string{"--binary", bin}, args...)
			}
			cmd := exec.Command(script, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), tt.wantCode, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}
