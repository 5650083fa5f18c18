package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
)

// TestAgentTLS runs an agent against a server that speaks only mutual TLS:
// it registers and runs a pod with its node's certificate, and its own API
// takes a client certificate of the cluster but refuses another agent's,
// one of another CA, none at all, and plain HTTP.
func TestAgentTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	e := newEnvWith(t, ca)
	cfg := e.agentConfig(t, "node-t")
	agentTLS := ca.TLS(api.CertAgent, "node-t")
	cfg.ServerTLS, cfg.APITLS = agentTLS.ClientConfig(), agentTLS.ServerConfig()
	node := e.startAgent(t, cfg)
	e.assign(t, "node-t", e.testPod("tls-0", []string{"hang"}))
	e.running(t, "tls-0")

	exec := func(ld *api.TLS, name string) (string, error) {
		o := api.ClientOptions{}
		if ld != nil {
			o.TLS = ld.ClientConfigFor(api.AgentName(ca.Cluster, name))
		}
		c, err := api.NewAgentClientWithOptions(node.APIAddr(), o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var out strings.Builder
		_, err = c.Exec(ctx, "default", "tls-0", api.ExecOptions{Command: []string{"/podtest", "echo", "over", "tls"}, Stdout: &out})
		return out.String(), err
	}
	if out, err := exec(ca.TLS(api.CertClient, "cli"), "node-t"); err != nil || out != "over tls\n" {
		t.Fatalf("exec with a client certificate: %q %v", out, err)
	}
	if _, err := exec(ca.TLS(api.CertAgent, "node-u"), "node-t"); !apierrors.IsForbidden(err) {
		t.Errorf("exec with another agent's certificate: %v, want forbidden", err)
	}
	if _, err := exec(tlstest.NewCA(t, "").Foreign(ca, api.CertClient, "cli"), "node-t"); err == nil {
		t.Error("exec with a certificate of another CA succeeded")
	}
	// A client that expects another node's agent does not talk to this one.
	if _, err := exec(ca.TLS(api.CertClient, "cli"), "node-u"); err == nil {
		t.Error("the agent of node-t passed for node-u's")
	}
	if _, err := exec(nil, "node-t"); err == nil {
		t.Error("exec over plain HTTP succeeded")
	}
	e.deletePod(t, "tls-0")
}
