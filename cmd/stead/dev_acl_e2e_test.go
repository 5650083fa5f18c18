package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
)

// TestDevACL runs `stead dev --acl`: its first start writes the management
// token to DATA_DIR/management.token (0600); without a token the server
// and the agent refuse requests, with it they answer, also after a restart;
// `stead logs` and `stead exec` reach the agent with the user's token,
// exec only with a management token; the agent's /metrics needs a token
// as the server's does and counts what the agent did.
func TestDevACL(t *testing.T) {
	skipUnlessPods(t)
	e := newE2ECluster(t)
	t.Cleanup(func() { e.teardown(t) })
	e.raft = freePort(t)
	args := append([]string{"dev", "--acl", "--data-dir", e.dir, "--http-addr", e.addr, "--raft-addr", e.raft}, e.agentFlags()...)
	start := func() {
		e.server = startProc(t, e.bin, "stead dev --acl", args...)
		e.server.waitOutput(t, "runs pods (subnet", "no agent, pods will not run", 90*time.Second)
	}
	start()

	path := filepath.Join(e.dir, "management.token")
	if !strings.Contains(e.server.log.String(), "ACLs on; the management token is in "+path) {
		t.Errorf("stead dev does not say where the management token is:\n%s", e.server.log)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	management := strings.TrimSpace(string(data))

	// The server: refused without a token, answered with it.
	if out, err := e.run(t, 30*time.Second, "get", "pods"); err == nil || !strings.Contains(out, "no token") {
		t.Errorf("stead get pods without a token: %v\n%s", err, out)
	}
	if out, err := e.run(t, 30*time.Second, "--token", management, "get", "pods"); err != nil {
		t.Errorf("stead get pods with the management token: %v\n%s", err, out)
	}

	// A restart keeps the token and says where it is.
	e.server.stop(t, 30*time.Second)
	start()
	if !strings.Contains(e.server.log.String(), "ACLs on; the management token is in "+path) {
		t.Errorf("stead dev restarted does not say where the management token is:\n%s", e.server.log)
	}
	if out, err := e.run(t, 30*time.Second, "--token", management, "get", "nodes"); err != nil {
		t.Errorf("stead get nodes with the management token after a restart: %v\n%s", err, out)
	}

	// Everything else acts with the management token.
	t.Setenv("STEAD_TOKEN", management)
	e.c.Token = management
	readOnly := strings.TrimSpace(e.must(t, "acl", "token", "create", "--role", "read-only", "-q"))
	e.createReady(t, e2eSet{Name: "acl", Replicas: 1}, headlessService("acl", "acl"))

	if out, err := e.run(t, 30*time.Second, "--token", readOnly, "logs", "acl-0"); err != nil {
		t.Errorf("stead logs with a read-only token: %v\n%s", err, out)
	}
	if out, err := e.run(t, 30*time.Second, "--token", readOnly, "exec", "acl-0", "--", "/e2eapp", "ready"); err == nil || !strings.Contains(out, "read-only") {
		t.Errorf("stead exec with a read-only token: %v\n%s", err, out)
	}
	if out, err := e.run(t, 30*time.Second, "exec", "acl-0", "--", "/e2eapp", "ready"); err != nil {
		t.Errorf("stead exec with the management token: %v\n%s", err, out)
	}

	// The agent's metrics: refused without a token, counted with one.
	if code, _ := scrapeMetrics(t, e.agent, ""); code != http.StatusUnauthorized {
		t.Errorf("the agent's /metrics without a token answered %d, want 401", code)
	}
	code, metrics := scrapeMetrics(t, e.agent, readOnly)
	if code != http.StatusOK {
		t.Fatalf("the agent's /metrics with a read-only token answered %d:\n%s", code, metrics)
	}
	for _, series := range []string{
		`stead_agent_containerd_duration_seconds_count{operation="create",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="start",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="exec",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="import",result="ok"}`,
		`stead_agent_pods{phase="Running"}`,
		`stead_agent_lease_ttl_seconds`,
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
		m := re.FindStringSubmatch(metrics)
		if m == nil {
			t.Errorf("the agent's /metrics lacks %s", series)
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || v <= 0 {
			t.Errorf("the agent's /metrics: %s = %s, want > 0", series, m[1])
		}
	}
}

// scrapeMetrics reads GET /metrics at addr with token and returns the
// answer's code and body.
func scrapeMetrics(t *testing.T, addr, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := api.NewAgentClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.Addr()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
