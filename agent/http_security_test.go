package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/image"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
	"github.com/stead-io/stead/scheduler/httpapi"
	"github.com/stead-io/stead/volumes"
)

// aclServer serves e's store through an API with ACLs on, bootstraps it
// and returns its address and a management token's secret. With ca, it
// serves mutual TLS with a server certificate of ca, and clients holds
// the options of a client of ca.
func (e *testEnv) aclServer(t *testing.T, ca *tlstest.CA) (addr, management string, clients api.ClientOptions) {
	t.Helper()
	sec := httpapi.Security{ACL: true}
	if ca != nil {
		sec.Cluster = ca.Cluster
	}
	h := httpapi.New(httpapi.Config{ID: "s1", Version: "test", Store: e.store, Logger: e.log, ClusterCIDR: e.cluster}).Secure(sec)
	srv := httptest.NewUnstartedServer(h)
	if ca != nil {
		srv.TLS = ca.TLS(api.CertServer, "s1").ServerConfig()
		srv.StartTLS()
		clients.TLS = ca.TLS(api.CertClient, "test").ClientConfig()
	} else {
		srv.Start()
	}
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	c, err := api.NewClientWithOptions(srv.URL, clients)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var tok api.NewToken
	if _, err := c.Do(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, nil, &tok); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return srv.URL, tok.Secret, clients
}

// makeToken makes a token through the API at addr.
func makeToken(t *testing.T, addr string, o api.ClientOptions, req api.TokenRequest) api.NewToken {
	t.Helper()
	c, err := api.NewClientWithOptions(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok api.NewToken
	if _, err := c.Do(ctx, http.MethodPost, "/v1/acl/tokens", nil, body, &tok); err != nil {
		t.Fatalf("make %s token: %v", req.Role, err)
	}
	return tok
}

// TestAgentAPITokens runs an agent of a cluster with ACLs on and sends
// its API every request with every kind of token: its own and management
// tokens may do everything, read-only ones read logs, images and metrics,
// and nothing else gets through; a refused exec runs nothing. Then it
// scrapes the agent's metrics for the operations that happened.
func TestAgentAPITokens(t *testing.T) {
	e := newEnv(t)
	addr, management, _ := e.aclServer(t, nil)
	const node = "tokens-node"
	mo := api.ClientOptions{Token: management}
	own := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenAgent, Node: node}).Secret
	readOnly := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenReadOnly}).Secret
	otherAgent := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenAgent, Node: "other-node"}).Secret
	revoked := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenManagement})
	mc, _ := api.NewClientWithOptions(addr, api.ClientOptions{Token: management})
	if _, err := mc.Do(context.Background(), http.MethodDelete, "/v1/acl/tokens/"+revoked.ID, nil, nil, nil); err != nil {
		t.Fatalf("revoke: %v", err)
	}

	cfg := e.agentConfig(t, node)
	cfg.Servers = []string{addr}
	cfg.Token = own
	classes, err := volumes.ParseClasses([]string{"local=local,default"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.StorageClasses = classes
	a := e.startAgent(t, cfg)

	e.putClaim(t, "data-tok-0", "", "1Mi")
	pod := e.testPod("tok-0", []string{"hang"}, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-tok-0"}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	})
	e.assign(t, node, pod)
	e.running(t, "tok-0")

	var archive bytes.Buffer
	if _, err := image.BuildFromBinary(&archive, image.BuildOptions{Binary: containerdtest.BuildProgram(t, "testdata/podtest"), Tag: "stead-test/imported:1"}); err != nil {
		t.Fatal(err)
	}

	client := func(token string) *api.AgentClient {
		c, err := api.NewAgentClientWithOptions(a.APIAddr(), api.ClientOptions{Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Each request returns the HTTP code of its answer (200 for a
	// successful one).
	requests := []struct {
		name string
		do   func(c *api.AgentClient, token, marker string) error
	}{
		{"logs", func(c *api.AgentClient, _, _ string) error {
			r, err := c.Logs(ctx, "default", "tok-0", api.LogOptions{Tail: 1})
			if err == nil {
				r.Close()
			}
			return err
		}},
		{"list images", func(c *api.AgentClient, _, _ string) error {
			_, err := c.ListImages(ctx)
			return err
		}},
		{"metrics", func(_ *api.AgentClient, token, _ string) error {
			_, err := scrape(ctx, a.APIAddr(), token)
			return err
		}},
		{"exec", func(c *api.AgentClient, _, marker string) error {
			code, err := c.Exec(ctx, "default", "tok-0", api.ExecOptions{Command: []string{"/podtest", "touch", marker}})
			if err == nil && code != 0 {
				return fmt.Errorf("exec exited %d", code)
			}
			return err
		}},
		{"import image", func(c *api.AgentClient, _, _ string) error {
			_, err := c.ImportImage(ctx, bytes.NewReader(archive.Bytes()))
			return err
		}},
	}
	const ok = 200
	for _, tc := range []struct {
		name  string
		token string
		// want is the code of each request above, in order.
		want []int
	}{
		{"no token", "", []int{401, 401, 401, 401, 401}},
		{"malformed token", "not-a-token", []int{401, 401, 401, 401, 401}},
		{"unknown token", "00000000000000ff." + strings.Repeat("ab", 32), []int{401, 401, 401, 401, 401}},
		{"revoked token", revoked.Secret, []int{401, 401, 401, 401, 401}},
		{"agent token of another node", otherAgent, []int{403, 403, 403, 403, 403}},
		{"read-only token", readOnly, []int{ok, ok, ok, 403, 403}},
		{"management token", management, []int{ok, ok, ok, ok, ok}},
		{"the agent's own token", own, []int{ok, ok, ok, ok, ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, req := range requests {
				marker := "/tmp/" + strings.ReplaceAll(tc.name, " ", "-")
				err := req.do(client(tc.token), tc.token, marker)
				if got := httpCode(err); got != tc.want[i] {
					t.Errorf("%s: answered %d (%v), want %d", req.name, got, err, tc.want[i])
				}
				if req.name != "exec" {
					continue
				}
				// What ran is checked with the management token.
				code, err := client(management).Exec(ctx, "default", "tok-0", api.ExecOptions{Command: []string{"/podtest", "test", marker}})
				if err != nil {
					t.Fatalf("check marker: %v", err)
				}
				if ran := code == 0; ran != (tc.want[i] == ok) {
					t.Errorf("exec: %s exists = %v, want %v", marker, ran, tc.want[i] == ok)
				}
			}
		})
	}

	// A question to the node's cluster DNS.
	q := new(dns.Msg)
	q.SetQuestion("tok-0.default.pod.cluster.local.", dns.TypeA)
	dnsAddrs := a.DNSAddrs()
	if _, err := dns.Exchange(q, dnsAddrs[len(dnsAddrs)-1].String()); err != nil {
		t.Errorf("ask the agent's DNS: %v", err)
	}
	e.deletePod(t, "tok-0")
	metrics, err := scrape(ctx, a.APIAddr(), readOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{
		`stead_agent_containerd_duration_seconds_count{operation="create",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="start",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="exec",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="import",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="list_images",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="list",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="image_status",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="stop",result="ok"}`,
		`stead_agent_containerd_duration_seconds_count{operation="delete",result="ok"}`,
		`stead_agent_volume_attach_duration_seconds_count{driver="local",result="ok"}`,
		`stead_agent_volume_mount_duration_seconds_count{result="ok"}`,
		`stead_agent_lease_ttl_seconds`,
		`stead_agent_lease_remaining_seconds`,
		`stead_dns_request_duration_seconds_count`,
		`go_goroutines`,
	} {
		if v, found := sample(metrics, series); !found || v <= 0 {
			t.Errorf("/metrics: %s = %v (found %v), want > 0", series, v, found)
		}
	}
	if _, found := sample(metrics, `stead_agent_heartbeat_age_seconds`); !found {
		t.Errorf("/metrics lacks stead_agent_heartbeat_age_seconds")
	}
	// The pod is gone: once its worker has retired, a moment after it
	// confirmed the deletion, none is counted in any phase.
	waitFor(t, 10*time.Second, "no pod counted in /metrics", func() (bool, string) {
		metrics, err := scrape(ctx, a.APIAddr(), readOnly)
		if err != nil {
			return false, err.Error()
		}
		for _, phase := range []string{"Pending", "Running", "Succeeded", "Failed", "Unknown"} {
			series := `stead_agent_pods{phase="` + phase + `"}`
			if v, found := sample(metrics, series); !found || v != 0 {
				return false, fmt.Sprintf("%s = %v (found %v), want 0", series, v, found)
			}
		}
		return true, ""
	})
}

// TestAgentAPITokensOverTLS checks the tokens of the agent's callers over
// mutual TLS, where the agent asks the servers about them with its node's
// certificate: a management token execs, a read-only one reads logs but
// does not exec.
func TestAgentAPITokensOverTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	e := newEnvWith(t, ca)
	addr, management, o := e.aclServer(t, ca)
	const node = "tls-tokens"
	mo := o
	mo.Token = management
	own := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenAgent, Node: node}).Secret
	readOnly := makeToken(t, addr, mo, api.TokenRequest{Role: api.TokenReadOnly}).Secret
	cfg := e.agentConfig(t, node)
	cfg.Servers, cfg.Token = []string{addr}, own
	agentTLS := ca.TLS(api.CertAgent, node)
	cfg.ServerTLS, cfg.APITLS = agentTLS.ClientConfig(), agentTLS.ServerConfig()
	a := e.startAgent(t, cfg)
	e.assign(t, node, e.testPod("tlstok-0", []string{"hang"}))
	e.running(t, "tlstok-0")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client := func(token string) *api.AgentClient {
		c, err := api.NewAgentClientWithOptions(a.APIAddr(), api.ClientOptions{
			TLS: ca.TLS(api.CertClient, "cli").ClientConfigFor(api.AgentName(ca.Cluster, node)), Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	exec := func(token string) (string, error) {
		var out strings.Builder
		_, err := client(token).Exec(ctx, "default", "tlstok-0", api.ExecOptions{Command: []string{"/podtest", "echo", "over", "tls"}, Stdout: &out})
		return out.String(), err
	}
	if out, err := exec(management); err != nil || out != "over tls\n" {
		t.Errorf("exec with a management token: %q %v", out, err)
	}
	if out, err := exec(readOnly); httpCode(err) != 403 || out != "" {
		t.Errorf("exec with a read-only token: %q %v, want 403", out, err)
	}
	if r, err := client(readOnly).Logs(ctx, "default", "tlstok-0", api.LogOptions{Tail: 1}); err != nil {
		t.Errorf("logs with a read-only token: %v", err)
	} else {
		r.Close()
	}
	if _, err := exec(""); httpCode(err) != 401 {
		t.Errorf("exec without a token: %v, want 401", err)
	}
	e.deletePod(t, "tlstok-0")
}

// TestAgentPodsMetric counts a running pod by phase in the agent's
// metrics, on an agent without a token, whose metrics need none.
func TestAgentPodsMetric(t *testing.T) {
	e := newEnv(t)
	a := e.startAgent(t, e.agentConfig(t, "phase-node"))
	e.assign(t, "phase-node", e.testPod("phase-0", []string{"hang"}))
	e.running(t, "phase-0")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	metrics, err := scrape(ctx, a.APIAddr(), "")
	if err != nil {
		t.Fatal(err)
	}
	for series, want := range map[string]float64{`stead_agent_pods{phase="Running"}`: 1, `stead_agent_pods{phase="Pending"}`: 0} {
		if v, found := sample(metrics, series); !found || v != want {
			t.Errorf("/metrics: %s = %v (found %v), want %v", series, v, found, want)
		}
	}
	e.deletePod(t, "phase-0")
}

// scrape reads the agent's /metrics with token.
func scrape(ctx context.Context, addr, token string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: int32(resp.StatusCode), Message: string(body)}}
	}
	return string(body), nil
}

// sample returns the value of one series of a Prometheus text exposition.
func sample(metrics, series string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(metrics)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// httpCode is the HTTP code of an API error; 200 for none.
func httpCode(err error) int {
	if err == nil {
		return 200
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return int(se.Status().Code)
	}
	return -1
}
