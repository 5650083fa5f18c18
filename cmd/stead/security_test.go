package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/api"
)

// runStead runs the CLI in this process with args and returns its output.
func runStead(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := filepath.Join(dir, "stead-ca.pem"), filepath.Join(dir, "stead-ca-key.pem")
	if out, err := runStead(t, "tls", "ca", "create", "--dir", dir, "--cluster", "prod", "--days", "30"); err != nil {
		t.Fatalf("ca create: %v\n%s", err, out)
	}
	if out, err := runStead(t, "tls", "ca", "create", "--dir", dir); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Errorf("a second ca create: %v\n%s", err, out)
	}
	cases := []struct {
		args []string
		file string
		dns  []string
	}{
		{[]string{"--server", "--name", "s1", "--ip", "10.0.0.1", "--dns", "s1.example.com"}, "s1", []string{"server.prod.stead", "localhost", "s1.example.com"}},
		{[]string{"--agent", "--name", "node-a"}, "node-a", []string{"node-a.agent.prod.stead", "localhost"}},
		{[]string{"--client", "--name", "alice"}, "alice", []string{"client.prod.stead"}},
		{[]string{"--client", "--name", "bob", "--cluster", "other"}, "bob", []string{"client.other.stead"}},
	}
	for _, tc := range cases {
		args := append([]string{"tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", caKey}, tc.args...)
		if out, err := runStead(t, args...); err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, out)
		}
		data, err := os.ReadFile(filepath.Join(dir, tc.file+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cert.DNSNames, tc.dns) {
			t.Errorf("%s: DNS names %q, want %q", tc.file, cert.DNSNames, tc.dns)
		}
		if d := cert.NotAfter.Sub(cert.NotBefore); d > 31*24*time.Hour {
			t.Errorf("%s outlives its CA of 30 days: %v", tc.file, d)
		}
		st, err := os.Stat(filepath.Join(dir, tc.file+"-key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s's key has mode %v", tc.file, st.Mode().Perm())
		}
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--name", "x"}, "exactly one of --server, --agent and --client"},
		{[]string{"--server", "--agent", "--name", "x"}, "exactly one of"},
		{[]string{"--server"}, "--name is required"},
		{[]string{"--server", "--name", "s1"}, "exists already"},
		{[]string{"--client", "--name", "carol", "--ip", "10.0.0.3"}, "takes no --ip"},
	} {
		args := append([]string{"tls", "cert", "create", "--dir", dir, "--ca", ca, "--ca-key", caKey}, bad.args...)
		if out, err := runStead(t, args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want %q\n%s", bad.args, err, bad.want, out)
		}
	}

	// A server refuses a certificate that is not a server's.
	agent := api.TLSFiles{CA: ca, Cert: filepath.Join(dir, "node-a.pem"), Key: filepath.Join(dir, "node-a-key.pem")}
	o := serverOptions{tls: agent, dataDir: dir, httpAddr: "127.0.0.1:0"}
	if _, err := o.security(hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "a server needs a server certificate") {
		t.Errorf("a server with an agent certificate: %v", err)
	}
	o = serverOptions{tls: api.TLSFiles{CA: ca, Cert: agent.Cert}, httpAddr: "127.0.0.1:0"}
	if _, err := o.security(hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "--tls-key missing") {
		t.Errorf("a server without --tls-key: %v", err)
	}
	o = serverOptions{acl: true, join: []string{"10.0.0.2:7470"}, httpAddr: "127.0.0.1:0"}
	if _, err := o.security(hclog.NewNullLogger()); err == nil || !strings.Contains(err.Error(), "needs TLS") {
		t.Errorf("ACLs on several servers without TLS: %v", err)
	}
}

// secureCluster is a cluster of servers with TLS and ACLs, and the
// directory of its CA and certificates.
type secureCluster struct {
	t       *testing.T
	bin     string
	dir     string
	servers []*serverProc
}

// files returns the TLS flags of the party whose certificate is name.
func (c *secureCluster) files(name string) api.TLSFiles {
	return api.TLSFiles{CA: filepath.Join(c.dir, "stead-ca.pem"), Cert: filepath.Join(c.dir, name+".pem"), Key: filepath.Join(c.dir, name+"-key.pem")}
}

func tlsArgs(f api.TLSFiles) []string {
	return []string{"--tls-ca", f.CA, "--tls-cert", f.Cert, "--tls-key", f.Key}
}

// cli runs the binary as name (its certificate) with token against the
// server at addr.
func (c *secureCluster) cli(name, token, addr string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string{"--server", addr, "--token", token}, tlsArgs(c.files(name))...), args...)
	cmd := exec.CommandContext(ctx, c.bin, full...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnv is the test's environment without Stead's variables, so that
// nothing but the test's flags configures the processes.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STEAD_") {
			env = append(env, kv)
		}
	}
	return append(env, "GOMAXPROCS=1")
}

func (c *secureCluster) client(name, token, addr string) *api.Client {
	c.t.Helper()
	ld, err := api.LoadTLS(c.files(name), time.Now())
	if err != nil {
		c.t.Fatal(err)
	}
	cl, err := api.NewClientWithOptions(addr, api.ClientOptions{TLS: ld.ClientConfig(), Token: token})
	if err != nil {
		c.t.Fatal(err)
	}
	return cl
}

// index is the state index server s answers at, read with a server's
// certificate.
func (c *secureCluster) index(s *serverProc) uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.client("s1", "", s.httpAddr).Status(ctx)
	if err != nil {
		c.t.Fatalf("status of %s: %v", s.id, err)
	}
	return st.Index
}

// TestSecureCluster forms a cluster of three `stead server` processes
// with mutual TLS and ACLs on, made with the binary's own tls and acl
// commands: it forms, bootstraps its ACLs once, takes writes through a
// follower with a management token and replicates them, and refuses
// plain HTTP, callers without a valid token or with a read-only one, and
// a server started with an agent's certificate, without a write.
func TestSecureCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	c := &secureCluster{t: t, bin: steadBinary(t), dir: t.TempDir()}
	mk := func(args ...string) {
		t.Helper()
		cmd := exec.Command(c.bin, append(args, "--dir", c.dir)...)
		cmd.Dir = c.dir
		cmd.Env = cleanEnv()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("stead %v: %v\n%s", args, err, out)
		}
	}
	mk("tls", "ca", "create")
	for _, s := range []string{"s1", "s2", "s3", "s4"} {
		mk("tls", "cert", "create", "--server", "--name", s)
	}
	mk("tls", "cert", "create", "--client", "--name", "alice")
	mk("tls", "cert", "create", "--agent", "--name", "node-a")

	for i := range 3 {
		c.servers = append(c.servers, &serverProc{id: fmt.Sprintf("s%d", i+1), dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t)})
	}
	for _, s := range c.servers {
		var join []string
		for _, o := range c.servers {
			if o != s {
				join = append(join, o.httpAddr)
			}
		}
		s.start(t, c.bin, append([]string{"--bootstrap-expect", "3", "--join", strings.Join(join, ","), "--acl"}, tlsArgs(c.files(s.id))...)...)
	}

	// Bootstrap once, through any server, as soon as a leader is elected.
	var mgmt string
	eventually(t, 60*time.Second, "ACLs bootstrapped", func() error {
		out, err := c.cli("alice", "", c.servers[0].httpAddr, "acl", "bootstrap", "-q")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		mgmt = strings.TrimSpace(out)
		return nil
	})
	if out, err := c.cli("alice", "", c.servers[1].httpAddr, "acl", "bootstrap"); err == nil || !strings.Contains(out, "bootstrap was already done") {
		t.Errorf("a second bootstrap: %v\n%s", err, out)
	}

	// The leader, and a follower to write through.
	var leader, follower *serverProc
	eventually(t, 30*time.Second, "one leader", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := c.client("alice", mgmt, c.servers[0].httpAddr).Status(ctx)
		if err != nil {
			return err
		}
		for _, s := range c.servers {
			if s.id == st.Leader {
				leader = s
			} else if follower == nil {
				follower = s
			}
		}
		if leader == nil {
			return fmt.Errorf("leader %q is none of the servers", st.Leader)
		}
		return nil
	})
	// The watchdog's health check reaches the API over TLS, and only so.
	s1, err := api.LoadTLS(c.files("s1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !(peerClients{tls: s1}).healthCheck(context.Background(), leader.httpAddr)() {
		t.Error("the health check over TLS fails")
	}
	if (peerClients{}).healthCheck(context.Background(), leader.httpAddr)() {
		t.Error("a health check in plain HTTP passes against the TLS port")
	}
	peers := peersOverTLS(t, c, mgmt, follower)
	if len(peers) != 3 {
		t.Fatalf("peers %q, want three", peers)
	}

	// A write through a follower, with the management token, reaches
	// every server; the same read-only token reads it on each.
	example, err := filepath.Abs("../../examples/web.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.cli("alice", mgmt, "https://"+follower.httpAddr, "apply", "-f", example); err != nil {
		t.Fatalf("apply through follower %s: %v\n%s", follower.id, err, out)
	}
	out, err := c.cli("alice", mgmt, follower.httpAddr, "acl", "token", "create", "--role", "read-only", "--description", "e2e", "-q")
	if err != nil {
		t.Fatalf("token create: %v\n%s", err, out)
	}
	ro := strings.TrimSpace(out)
	for _, s := range c.servers {
		eventually(t, 30*time.Second, "web on "+s.id, func() error {
			out, err := c.cli("alice", ro, s.httpAddr, "get", "statefulsets")
			if err != nil || !strings.Contains(out, "web") {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	}
	if out, err := c.cli("alice", mgmt, leader.httpAddr, "acl", "token", "list"); err != nil || !strings.Contains(out, "read-only") || !strings.Contains(out, "bootstrap") || strings.Contains(out, ro) {
		t.Errorf("token list: %v\n%s", err, out)
	}

	// Refusals: none may write.
	before := c.index(leader)
	refusals := []struct {
		name string
		run  func() error
		want string
	}{
		{"no token", func() error {
			_, err := c.client("alice", "", follower.httpAddr).Apply(context.Background(), []byte(webManifest), "")
			return err
		}, "401"},
		{"malformed token", func() error {
			_, err := c.client("alice", "abc", leader.httpAddr).Apply(context.Background(), []byte(webManifest), "")
			return err
		}, "401"},
		{"read-only token writing", func() error {
			_, err := c.client("alice", ro, leader.httpAddr).Apply(context.Background(), []byte(webManifest), "")
			return err
		}, "403"},
		{"read-only token scaling through the CLI", func() error {
			out, err := c.cli("alice", ro, leader.httpAddr, "scale", "sts/web", "--replicas=1")
			if err != nil {
				return fmt.Errorf("%w: %s", err, out)
			}
			return nil
		}, "read-only"},
		{"plain HTTP", func() error {
			resp, err := http.Post("http://"+leader.httpAddr+"/v1/apply", "application/yaml", strings.NewReader(webManifest))
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			data, _ := io.ReadAll(resp.Body)
			return fmt.Errorf("%s: %s", resp.Status, data)
		}, "400"},
	}
	for _, r := range refusals {
		err := r.run()
		if err == nil || !strings.Contains(fmt.Sprint(codeString(err), " ", err), r.want) {
			t.Errorf("%s: %v; want %q", r.name, err, r.want)
		}
	}

	// A server started with an agent's certificate refuses to start, and
	// the cluster does not hear of it.
	intruder := &serverProc{id: "s4", dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t)}
	intruder.start(t, c.bin, append([]string{"--join", leader.httpAddr, "--retry-join"}, tlsArgs(c.files("node-a"))...)...)
	if log := intruder.waitExit(t, 30*time.Second); !strings.Contains(log, "a server needs a server certificate") {
		t.Errorf("the intruder's log does not say why it stopped:\n%s", log)
	}
	if after := c.index(leader); after != before {
		t.Errorf("the refused requests moved the state index from %d to %d", before, after)
	}
	if got := peersOverTLS(t, c, mgmt, leader); !slices.Equal(got, peers) {
		t.Errorf("peers %q after the refusals, want %q", got, peers)
	}

	// A fourth server with a server certificate joins.
	s4 := &serverProc{id: "s4", dataDir: t.TempDir(), httpAddr: freePort(t), raftAddr: freePort(t)}
	s4.start(t, c.bin, append([]string{"--join", follower.httpAddr, "--retry-join", "--acl"}, tlsArgs(c.files("s4"))...)...)
	eventually(t, 60*time.Second, "s4 a member", func() error {
		if got := peersOverTLS(t, c, mgmt, leader); len(got) != 4 {
			return fmt.Errorf("peers %q", got)
		}
		return nil
	})
	eventually(t, 30*time.Second, "web on s4", func() error {
		out, err := c.cli("alice", ro, s4.httpAddr, "get", "statefulsets")
		if err != nil || !strings.Contains(out, "web") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

const webManifest = `apiVersion: v1
kind: Service
metadata:
  name: other
spec:
  clusterIP: None
  selector:
    app: other
`

func codeString(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return fmt.Sprint(se.Status().Code)
	}
	return ""
}

// peersOverTLS lists the Raft peers through s, as "ID VOTER".
func peersOverTLS(t *testing.T, c *secureCluster, token string, s *serverProc) []string {
	t.Helper()
	out, err := c.cli("alice", token, s.httpAddr, "operator", "raft", "list-peers")
	if err != nil {
		t.Fatalf("list-peers through %s: %v\n%s", s.id, err, out)
	}
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := strings.Fields(l)
		rows = append(rows, f[1]+" "+f[len(f)-1])
	}
	slices.Sort(rows)
	return rows
}

// TestAgentTokenOfOwnAgent makes the agent token a server hands the agent
// in its own process (stead dev --acl): it acts for its node only, and
// making another revokes the one before.
func TestAgentTokenOfOwnAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	o := serverOptions{id: "dev", dataDir: t.TempDir(), httpAddr: "127.0.0.1:0", raftAddr: "127.0.0.1:0", bootstrap: true, acl: true,
		clusterCIDR: "10.244.0.0/16", clusterDomain: api.DefaultClusterDomain}
	rs, err := startServer(ctx, o, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	first, err := rs.agentToken(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	second, err := rs.agentToken(ctx, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	node := func(secret, name string) error {
		c, err := api.NewClientWithOptions(rs.addr, api.ClientOptions{Token: secret})
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(`{"apiVersion":"v1","kind":"Node","metadata":{"name":"` + name + `"}}`)
		_, err = c.Do(ctx, http.MethodPut, "/v1/nodes/"+name, nil, body, nil)
		return err
	}
	if err := node(second, "node-a"); err != nil {
		t.Errorf("the agent registers its node: %v", err)
	}
	if err := node(second, "node-b"); codeString(err) != "403" {
		t.Errorf("the agent registers another node: %v", err)
	}
	if err := node(first, "node-a"); codeString(err) != "401" || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("the agent token made before: %v", err)
	}
}
