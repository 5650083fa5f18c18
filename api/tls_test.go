package api_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/api/tlstest"
)

func TestIdentityOf(t *testing.T) {
	cases := []struct {
		name  string
		names []string
		want  api.CertIdentity
		ok    bool
	}{
		{"server", []string{"server.global.stead", "localhost"}, api.CertIdentity{Role: api.CertServer, Cluster: "global"}, true},
		{"agent", []string{"node-a.agent.prod.stead"}, api.CertIdentity{Role: api.CertAgent, Cluster: "prod", Node: "node-a"}, true},
		{"agent with a dotted node", []string{"rack1.node-a.agent.prod.stead"}, api.CertIdentity{Role: api.CertAgent, Cluster: "prod", Node: "rack1.node-a"}, true},
		{"client", []string{"client.global.stead"}, api.CertIdentity{Role: api.CertClient, Cluster: "global"}, true},
		{"server wins over client", []string{"client.global.stead", "server.global.stead"}, api.CertIdentity{Role: api.CertServer, Cluster: "global"}, true},
		{"agent without node", []string{"agent.global.stead"}, api.CertIdentity{}, false},
		{"empty node", []string{".agent.global.stead"}, api.CertIdentity{}, false},
		{"other domain", []string{"server.global.consul"}, api.CertIdentity{}, false},
		{"no cluster", []string{"server.stead"}, api.CertIdentity{}, false},
		{"none", []string{"example.com"}, api.CertIdentity{}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := api.IdentityOf(&x509.Certificate{DNSNames: tc.names})
			if got != tc.want || ok != tc.ok {
				t.Errorf("IdentityOf(%q) = %+v, %v; want %+v, %v", tc.names, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIssue(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	caPEM, caKey, err := api.NewCA(api.CAOptions{Cluster: "prod", Now: now, Validity: 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := api.ParseCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	if ca.Cluster() != "prod" {
		t.Errorf("CA of cluster %q", ca.Cluster())
	}
	caCert := parseCert(t, caPEM)
	if !caCert.IsCA || caCert.Subject.CommonName != "Stead CA prod" {
		t.Errorf("CA: IsCA %v, CN %q", caCert.IsCA, caCert.Subject.CommonName)
	}
	cases := []struct {
		name    string
		opts    api.CertOptions
		dns     []string
		ips     []string
		usages  []x509.ExtKeyUsage
		wantErr string
	}{
		{
			name: "server", opts: api.CertOptions{Role: api.CertServer, Name: "s1", IPs: []net.IP{net.ParseIP("10.0.0.1")}, DNSNames: []string{"s1.example.com"}},
			dns: []string{"server.prod.stead", "localhost", "s1.example.com"}, ips: []string{"10.0.0.1", "127.0.0.1"},
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name: "agent", opts: api.CertOptions{Role: api.CertAgent, Name: "node-a"},
			dns: []string{"node-a.agent.prod.stead", "localhost"}, ips: []string{"127.0.0.1"},
			usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		},
		{
			name: "client", opts: api.CertOptions{Role: api.CertClient, Name: "alice"},
			dns: []string{"client.prod.stead"}, usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		},
		{name: "client with an address", opts: api.CertOptions{Role: api.CertClient, Name: "alice", IPs: []net.IP{net.ParseIP("10.0.0.9")}}, wantErr: "takes no --ip"},
		{name: "role name smuggled as --dns", opts: api.CertOptions{Role: api.CertAgent, Name: "node-a", DNSNames: []string{"server.prod.stead"}}, wantErr: "is a role name"},
		{name: "unknown role", opts: api.CertOptions{Role: "admin", Name: "x"}, wantErr: "not server, agent or client"},
		{name: "bad name", opts: api.CertOptions{Role: api.CertAgent, Name: "Node_A"}, wantErr: `certificate name "Node_A"`},
		{name: "bad cluster", opts: api.CertOptions{Role: api.CertServer, Name: "s1", Cluster: "a.b"}, wantErr: `cluster name "a.b"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.Cluster == "" {
				o.Cluster = "prod"
			}
			o.Now, o.Validity = now, 30*24*time.Hour
			certPEM, keyPEM, err := ca.Issue(o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Issue: %v; want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				t.Fatalf("key does not match: %v", err)
			}
			c := parseCert(t, certPEM)
			var ips []string
			for _, ip := range c.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(c.DNSNames, tc.dns) || !slices.Equal(ips, tc.ips) || !slices.Equal(c.ExtKeyUsage, tc.usages) {
				t.Errorf("got DNS %q IPs %q usages %v; want %q %q %v", c.DNSNames, ips, c.ExtKeyUsage, tc.dns, tc.ips, tc.usages)
			}
			if c.Subject.CommonName != o.Name || !c.NotBefore.Equal(now.Add(-time.Minute)) || !c.NotAfter.Equal(now.Add(30*24*time.Hour)) {
				t.Errorf("CN %q, valid %v to %v", c.Subject.CommonName, c.NotBefore, c.NotAfter)
			}
			if c.IsCA {
				t.Error("a leaf certificate is a CA")
			}
			if err := c.CheckSignatureFrom(caCert); err != nil {
				t.Errorf("not signed by the CA: %v", err)
			}
		})
	}
	// A certificate never outlives its CA.
	certPEM, _, err := ca.Issue(api.CertOptions{Role: api.CertClient, Name: "long", Now: now, Validity: 10 * 365 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := parseCert(t, certPEM).NotAfter; !got.Equal(caCert.NotAfter) {
		t.Errorf("a certificate longer than its CA ends %v, the CA %v", got, caCert.NotAfter)
	}
}

func TestParseCARefusesAnotherKey(t *testing.T) {
	now := time.Now()
	caPEM, _, err := api.NewCA(api.CAOptions{Now: now, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := api.NewCA(api.CAOptions{Now: now, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ParseCA(caPEM, otherKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("ParseCA with another CA's key: %v", err)
	}
}

func TestLoadTLS(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	other := tlstest.NewCA(t, "")
	good := ca.Files(api.CertAgent, "node-a")
	ld, err := api.LoadTLS(good, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.CertIdentity{Role: api.CertAgent, Cluster: "global", Node: "node-a"}); ld.Identity != want {
		t.Errorf("identity %+v, want %+v", ld.Identity, want)
	}
	foreign := other.Files(api.CertServer, "s1")
	cases := []struct {
		name    string
		files   api.TLSFiles
		wantErr string
	}{
		{"no key", api.TLSFiles{CA: good.CA, Cert: good.Cert}, "--tls-key missing"},
		{"only a CA", api.TLSFiles{CA: good.CA}, "--tls-cert and --tls-key missing"},
		{"expired", ca.Files(api.CertClient, "old", tlstest.Expired), "expired on"},
		{"another CA's certificate", api.TLSFiles{CA: good.CA, Cert: foreign.Cert, Key: foreign.Key}, "is not valid under CA"},
		{"a key of another certificate", api.TLSFiles{CA: good.CA, Cert: good.Cert, Key: foreign.Key}, "load certificate"},
		{"CA file that is no certificate", api.TLSFiles{CA: good.Key, Cert: good.Cert, Key: good.Key}, "holds no PEM certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := api.LoadTLS(tc.files, time.Now())
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("LoadTLS: %v; want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// handshake serves one connection with srv on loopback, dials it with
// cli and reports whether both ends completed the handshake and the
// client read the server's greeting.
func handshake(t *testing.T, srv, cli *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.(*tls.Conn).Handshake(); err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte("ok"))
		served <- err
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), cli)
	if err != nil {
		<-served
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// With TLS 1.3 the server checks the client's certificate after the
	// client finished its side: a refusal shows on the first read.
	buf := make([]byte, 2)
	_, rerr := io.ReadFull(c, buf)
	if serr := <-served; serr != nil {
		return serr
	}
	return rerr
}

func TestHandshakes(t *testing.T) {
	ca := tlstest.NewCA(t, "")
	other := tlstest.NewCA(t, "")
	server := ca.TLS(api.CertServer, "s1")
	server2 := ca.TLS(api.CertServer, "s2")
	agent := ca.TLS(api.CertAgent, "node-a")
	client := ca.TLS(api.CertClient, "alice")
	expired := ca.TLS(api.CertServer, "s9", tlstest.Expired)
	otherCluster := ca.TLS(api.CertServer, "s8", tlstest.OfCluster("prod"))
	foreign := other.Foreign(ca, api.CertServer, "s7")
	noCert := client.ClientConfig()
	noCert.Certificates = nil

	cases := []struct {
		name     string
		srv, cli *tls.Config
		ok       bool
	}{
		// The API: any certificate of the CA.
		{"api: client", server.ServerConfig(), client.ClientConfig(), true},
		{"api: agent", server.ServerConfig(), agent.ClientConfig(), true},
		{"api: server", server.ServerConfig(), server2.ClientConfig(), true},
		{"api: no client certificate", server.ServerConfig(), noCert, false},
		{"api: certificate of an unknown CA", server.ServerConfig(), foreign.ClientConfig(), false},
		{"api: expired client certificate", server.ServerConfig(), expired.ClientConfig(), false},
		{"api: TLS 1.1", server.ServerConfig(), tlstest.ClientTLS11(client), false},
		// Clients and agents dial only servers of their cluster.
		{"dial an agent posing as a server", agent.ServerConfig(), client.ClientConfig(), false},
		{"dial a client posing as a server", client.ServerConfig(), agent.ClientConfig(), false},
		{"dial a server of another cluster", otherCluster.ServerConfig(), client.ClientConfig(), false},
		{"dial an expired server", expired.ServerConfig(), client.ClientConfig(), false},
		{"dial an agent's API by its name", agent.ServerConfig(), client.ClientConfigFor(api.AgentName("global", "node-a")), true},
		// Raft: servers of the cluster only, both ways.
		{"raft: server to server", server.PeerConfig(), server2.PeerConfig(), true},
		{"raft: agent dials", server.PeerConfig(), agent.ClientConfig(), false},
		{"raft: client dials", server.PeerConfig(), client.ClientConfig(), false},
		{"raft: agent accepts", agent.ServerConfig(), server.PeerConfig(), false},
		{"raft: server of another cluster", server.PeerConfig(), otherCluster.PeerConfig(), false},
		{"raft: expired server", server.PeerConfig(), expired.PeerConfig(), false},
		{"raft: unknown CA", server.PeerConfig(), foreign.PeerConfig(), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := handshake(t, tc.srv, tc.cli)
			if (err == nil) != tc.ok {
				t.Errorf("handshake: %v; want success %v", err, tc.ok)
			}
		})
	}
}

func TestTLSFilesCheck(t *testing.T) {
	if err := (api.TLSFiles{}).Check(); err != nil {
		t.Errorf("no TLS: %v", err)
	}
	if err := (api.TLSFiles{CA: "a", Cert: "b", Key: "c"}).Check(); err != nil {
		t.Errorf("all three: %v", err)
	}
	if _, err := os.Stat("/nonexistent"); err == nil {
		t.Skip("odd machine")
	}
	if _, err := api.LoadTLS(api.TLSFiles{CA: "/nonexistent", Cert: "b", Key: "c"}, time.Now()); err == nil || !strings.Contains(err.Error(), "read CA certificate") {
		t.Errorf("missing CA file: %v", err)
	}
}
