package installtest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// unitSettings returns the unit file's settings, section.Key → values in
// order.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not key=value", path, line)
			}
			settings[section+"."+k] = append(settings[section+"."+k], v)
		}
	}
	return settings
}

// TestUnitSettings checks the settings the rest of Stead relies on: the
// notify protocol and watchdog that cmd/stead speaks, the settings file that
// install.sh writes, and the kill mode that lets pods outlive the agent.
func TestUnitSettings(t *testing.T) {
	repo := repoRoot(t)
	common := map[string]string{
		"Service.Type":               "notify",
		"Service.NotifyAccess":       "main",
		"Service.WatchdogSec":        "30s",
		"Service.Restart":            "on-failure",
		"Service.RestartSec":         "2s",
		"Service.LimitNOFILE":        "1048576",
		"Install.WantedBy":           "multi-user.target",
		"Unit.StartLimitIntervalSec": "0",
	}
	tests := []struct {
		unit string
		want map[string]string
	}{
		{"stead-server.service", map[string]string{
			"Service.EnvironmentFile": "-/etc/stead/server.env",
			"Service.ExecStart":       "/usr/local/bin/stead server --config /etc/stead/server.yaml $STEAD_SERVER_ARGS",
			"Service.StateDirectory":  "stead",
		}},
		{"stead-agent.service", map[string]string{
			"Service.EnvironmentFile": "-/etc/stead/agent.env",
			"Service.ExecStart":       "/usr/local/bin/stead agent --config /etc/stead/agent.yaml $STEAD_AGENT_ARGS",
			"Service.StateDirectory":  "stead-agent",
			"Service.KillMode":        "process",
			"Service.Delegate":        "yes",
			"Service.TasksMax":        "infinity",
			"Unit.Wants":              "network-online.target containerd.service",
			"Unit.After":              "network-online.target containerd.service",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			got := unitSettings(t, filepath.Join(repo, "deploy/systemd", tt.unit))
			for k, v := range common {
				if _, ok := tt.want[k]; !ok {
					tt.want[k] = v
				}
			}
			for k, want := range tt.want {
				if !slices.Equal(got[k], []string{want}) {
					t.Errorf("%s = %q, want %q", k, got[k], want)
				}
			}
		})
	}
}

// TestUnitsVerify runs systemd-analyze verify over the units, in a root
// directory that holds them, a stand-in binary and the host's system
// units; systemd need not be running. A unit with a mistake is checked
// too, to show that the check finds mistakes.
func TestUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is missing (Debian package systemd)")
	}
	const systemUnits = "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(systemUnits, "sysinit.target")); err != nil {
		t.Skipf("no system units in %s to verify against", systemUnits)
	}
	repo := repoRoot(t)
	root := t.TempDir()
	run(t, "mkdir", "-p", filepath.Join(root, "usr/lib/systemd"), filepath.Join(root, "usr/local/bin"), filepath.Join(root, "etc/systemd/system"))
	run(t, "cp", "-a", systemUnits, filepath.Join(root, "usr/lib/systemd/"))
	writeFile(t, filepath.Join(root, "usr/local/bin/stead"), []byte("#!/bin/sh\n"), 0o755)

	verify := func(units ...string) (string, error) {
		args := []string{"--root=" + root, "verify", "--man=no", "--generators=no"}
		for _, u := range units {
			args = append(args, filepath.Join(root, "etc/systemd/system", u))
		}
		out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
		return string(out), err
	}

	for _, u := range []string{"stead-server.service", "stead-agent.service"} {
		writeFile(t, filepath.Join(root, "etc/systemd/system", u), []byte(readFile(t, filepath.Join(repo, "deploy/systemd", u))), 0o644)
	}
	// systemd-analyze exits 0 on settings it ignores, so any output is a
	// failure.
	if out, err := verify("stead-server.service", "stead-agent.service"); err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	broken := strings.Replace(readFile(t, filepath.Join(repo, "deploy/systemd/stead-agent.service")), "KillMode=process", "KillMode=shims", 1)
	writeFile(t, filepath.Join(root, "etc/systemd/system/broken.service"), []byte(broken), 0o644)
	if out, _ := verify("broken.service"); !strings.Contains(out, "kill mode") || !strings.Contains(out, "shims") {
		t.Errorf("systemd-analyze verify does not report KillMode=shims: %q", out)
	}
}

// TestConfigExamples checks that every key of the example configurations
// is a flag of its command.
func TestConfigExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/stead; skipped with -short")
	}
	repo := repoRoot(t)
	stead := steadBinary(t)
	for _, role := range []string{"server", "agent"} {
		t.Run(role, func(t *testing.T) {
			if _, ok := roleFlags(t, stead, role); !ok {
				t.Skipf("stead has no %s command yet", role)
			}
			path := filepath.Join(repo, "deploy/config", role+".yaml")
			checkYAMLKeys(t, stead, role, path)
			var m map[string]any
			if err := yaml.Unmarshal([]byte(readFile(t, path)), &m); err != nil {
				t.Fatal(err)
			}
			if len(m) < 5 {
				t.Errorf("%s has %d keys; an example should show the main settings", path, len(m))
			}
		})
	}
}
