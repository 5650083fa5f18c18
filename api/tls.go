package api

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
)

// Stead's certificates carry their holder's role as a DNS name, in the
// style of Consul and Nomad:
//
//	server.<cluster>.stead        a server (its Raft transport and API)
//	<node>.agent.<cluster>.stead  the agent of node <node>
//	client.<cluster>.stead        a person or a script using the CLI
//
// Servers require the server name on every Raft connection, in both
// directions, and on POST /v1/join; agents, the CLI and servers forwarding
// to the leader dial servers with it as the TLS server name, so only a
// server certificate of the same cluster passes. Every party learns the
// cluster's name from its own certificate.

// CertRole is the role a certificate gives its holder.
type CertRole string

// The roles of certificates.
const (
	CertServer CertRole = "server"
	CertAgent  CertRole = "agent"
	CertClient CertRole = "client"
)

// DefaultCluster is the cluster name certificates carry unless told
// otherwise.
const DefaultCluster = "global"

// tlsDomain is the last label of every role name.
const tlsDomain = "stead"

// ServerName is the DNS name that makes a certificate a server's of
// cluster: "server.global.stead".
func ServerName(cluster string) string { return "server." + cluster + "." + tlsDomain }

// AgentName is the DNS name that makes a certificate the agent's of node
// in cluster: "node-a.agent.global.stead".
func AgentName(cluster, node string) string {
	return node + ".agent." + cluster + "." + tlsDomain
}

// ClientName is the DNS name of a CLI certificate of cluster:
// "client.global.stead".
func ClientName(cluster string) string { return "client." + cluster + "." + tlsDomain }

// CertIdentity is what a certificate says about its holder.
type CertIdentity struct {
	Role    CertRole
	Cluster string
	// Node is the agent's node; empty for other roles.
	Node string
}

// IdentityOf reads the role of a certificate from its DNS names. A
// certificate holding several role names counts as the most powerful one
// (server, then agent, then client); false means it has none.
func IdentityOf(cert *x509.Certificate) (CertIdentity, bool) {
	var found []CertIdentity
	for _, name := range cert.DNSNames {
		rest, ok := strings.CutSuffix(name, "."+tlsDomain)
		if !ok {
			continue
		}
		dot := strings.LastIndexByte(rest, '.')
		if dot <= 0 {
			continue
		}
		who, cluster := rest[:dot], rest[dot+1:]
		switch {
		case who == "server":
			found = append(found, CertIdentity{Role: CertServer, Cluster: cluster})
		case who == "client":
			found = append(found, CertIdentity{Role: CertClient, Cluster: cluster})
		case strings.HasSuffix(who, ".agent") && len(who) > len(".agent"):
			found = append(found, CertIdentity{Role: CertAgent, Cluster: cluster, Node: strings.TrimSuffix(who, ".agent")})
		}
	}
	for _, role := range []CertRole{CertServer, CertAgent, CertClient} {
		for _, id := range found {
			if id.Role == role {
				return id, true
			}
		}
	}
	return CertIdentity{}, false
}

// PeerIdentity returns the identity of the verified certificate the peer
// of a TLS connection presented; false when it presented none or it was
// not verified.
func PeerIdentity(cs *tls.ConnectionState) (CertIdentity, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.PeerCertificates) == 0 {
		return CertIdentity{}, false
	}
	return IdentityOf(cs.PeerCertificates[0])
}

// TLSFiles name the PEM files of a party's TLS setup: the cluster's CA
// certificate, and its own certificate and key.
type TLSFiles struct {
	CA, Cert, Key string
}

// Enabled reports whether any file is named.
func (f TLSFiles) Enabled() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// Check says what is missing when some but not all files are named.
func (f TLSFiles) Check() error {
	if !f.Enabled() || (f.CA != "" && f.Cert != "" && f.Key != "") {
		return nil
	}
	var missing []string
	for _, m := range []struct{ flag, v string }{{"--tls-ca", f.CA}, {"--tls-cert", f.Cert}, {"--tls-key", f.Key}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	return fmt.Errorf("TLS needs --tls-ca, --tls-cert and --tls-key together; %s missing (make them with 'stead tls ca create' and 'stead tls cert create')",
		strings.Join(missing, " and "))
}

// TLS is a party's loaded TLS material. Its methods return a new
// *tls.Config each time; all of them require TLS 1.2 or later.
type TLS struct {
	// CAs holds the cluster's CA certificates.
	CAs *x509.CertPool
	// Cert is this party's certificate, with its Leaf parsed.
	Cert tls.Certificate
	// Identity is what Cert says this party is.
	Identity CertIdentity
}

// LoadTLS reads the files, and checks that the certificate is signed by
// the CA, is valid at now, and carries a Stead role.
func LoadTLS(f TLSFiles, now time.Time) (*TLS, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	if !f.Enabled() {
		return nil, errors.New("no TLS files named")
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA certificate %s holds no PEM certificate", f.CA)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s and key %s: %w", f.Cert, f.Key, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
		}
	}
	leaf := pair.Leaf
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate %s expired on %s: make a new one with 'stead tls cert create'", f.Cert, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, fmt.Errorf("certificate %s is not valid under CA %s: %w", f.Cert, f.CA, err)
	}
	id, ok := IdentityOf(leaf)
	if !ok {
		return nil, fmt.Errorf("certificate %s carries no Stead role (server.CLUSTER.stead, NODE.agent.CLUSTER.stead or client.CLUSTER.stead); make one with 'stead tls cert create'", f.Cert)
	}
	return &TLS{CAs: pool, Cert: pair, Identity: id}, nil
}

func (t *TLS) base() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{t.Cert},
	}
}

// ServerConfig is the configuration of a listener that serves the HTTP
// API: every client must present a certificate the cluster's CA signed.
// What the certificate's role allows is for the API to decide.
func (t *TLS) ServerConfig() *tls.Config {
	c := t.base()
	c.ClientCAs = t.CAs
	c.ClientAuth = tls.RequireAndVerifyClientCert
	return c
}

// ClientConfig is the configuration to dial a server of this party's
// cluster: the server must present a server certificate of the cluster.
func (t *TLS) ClientConfig() *tls.Config {
	return t.ClientConfigFor(ServerName(t.Identity.Cluster))
}

// ClientConfigFor is the configuration to dial a peer whose certificate
// must carry name, such as AgentName(cluster, node) for an agent's API.
func (t *TLS) ClientConfigFor(name string) *tls.Config {
	c := t.base()
	c.RootCAs = t.CAs
	c.ServerName = name
	return c
}

// PeerConfig is the configuration of the Raft transport, used both to
// accept and to dial: both ends must present a server certificate of this
// party's cluster, checked at the handshake.
func (t *TLS) PeerConfig() *tls.Config {
	c := t.ServerConfig()
	c.RootCAs = t.CAs
	c.ServerName = ServerName(t.Identity.Cluster)
	cluster := t.Identity.Cluster
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("the peer presented no certificate")
		}
		id, ok := IdentityOf(cs.PeerCertificates[0])
		if !ok || id.Role != CertServer || id.Cluster != cluster {
			return fmt.Errorf("peer certificate %q is not a server certificate of cluster %q (it lacks %s): refused on the Raft transport",
				cs.PeerCertificates[0].Subject.CommonName, cluster, ServerName(cluster))
		}
		return nil
	}
	return c
}

// Transport returns an HTTP transport that reaches servers of this
// party's cluster over TLS (ClientConfig). Servers record each other's API
// addresses as host:port, and forward writes to the leader at http://
// URLs; this transport sends those over TLS too, so that nothing between
// servers travels in the clear. It keeps up to idlePerHost idle
// connections to each server (http.DefaultTransport's 2 when 0), so that
// requests sent at once need not each open, and handshake, a connection.
func (t *TLS) Transport(idlePerHost int) http.RoundTripper {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = t.ClientConfig()
	if idlePerHost > 0 {
		tr.MaxIdleConnsPerHost = idlePerHost
		tr.MaxIdleConns = max(tr.MaxIdleConns, idlePerHost)
	}
	return httpsOnly{tr}
}

// httpsOnly sends every request over TLS.
type httpsOnly struct{ next http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" {
		r = r.Clone(r.Context())
		r.URL.Scheme = "https"
	}
	return h.next.RoundTrip(r)
}
