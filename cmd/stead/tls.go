package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// addTLSFlags registers the TLS flags every part of the binary shares:
// the CLI, the server and the agent each present their own certificate.
func (g *globals) addTLSFlags(f *pflag.FlagSet) {
	f.StringVar(&g.tls.CA, "tls-ca", "", "CA certificate of the cluster (PEM file); with --tls-cert and --tls-key, talk (or serve) mutual TLS")
	f.StringVar(&g.tls.Cert, "tls-cert", "", "this party's certificate (PEM file), signed by --tls-ca")
	f.StringVar(&g.tls.Key, "tls-key", "", "the key of --tls-cert (PEM file)")
}

// tlsMaterial loads the TLS flags; nil when TLS is off.
func (g *globals) tlsMaterial() (*api.TLS, error) {
	if !g.tls.Enabled() {
		return nil, nil
	}
	return api.LoadTLS(g.tls, time.Now())
}

// clientOptions are how the CLI, and an agent, reach servers: over TLS
// with the flags' certificate, checking the server's role, and with the
// token.
func (g *globals) clientOptions() (api.ClientOptions, error) {
	o := api.ClientOptions{Token: g.token}
	ld, err := g.tlsMaterial()
	if err != nil {
		return o, err
	}
	if ld != nil {
		o.TLS = ld.ClientConfig()
	}
	return o, nil
}

// checkAgentCert refuses a certificate that is not node's agent
// certificate: an agent presents what its node is, and its token must be
// that node's.
func checkAgentCert(ld *api.TLS, node string) error {
	if ld == nil {
		return nil
	}
	if id := ld.Identity; id.Role != api.CertAgent || id.Node != node {
		return fmt.Errorf("--tls-cert is not the agent certificate of node %s (it is %s); make one with 'stead tls cert create --agent --name %s'",
			node, describeIdentity(id), node)
	}
	return nil
}

// checkServerCert refuses a certificate a server must not serve with.
func checkServerCert(ld *api.TLS) error {
	if ld.Identity.Role != api.CertServer {
		return fmt.Errorf("--tls-cert is %s: a server needs a server certificate, made with 'stead tls cert create --server'",
			describeIdentity(ld.Identity))
	}
	return nil
}

func describeIdentity(id api.CertIdentity) string {
	if id.Role == api.CertAgent {
		return fmt.Sprintf("the agent certificate of node %s in cluster %q", id.Node, id.Cluster)
	}
	return fmt.Sprintf("a %s certificate of cluster %q", id.Role, id.Cluster)
}

// addSecurityFlags registers a server's ACL and rate flags; its TLS
// flags are the global --tls-ca, --tls-cert and --tls-key.
func (o *serverOptions) addSecurityFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.acl, "acl", false, "refuse every request without a token whose role allows it (default deny); 'stead acl bootstrap' makes the first token")
	f.Float64Var(&o.rateLimit, "api-rate-limit", 200, "requests per second each token, or each address without one, may send to the API on average (0: no limit)")
	f.IntVar(&o.rateBurst, "api-rate-burst", 400, "requests each token or address may send at once, above --api-rate-limit")
}

// serverSecurity is a server's TLS and ACL setup, from its options.
type serverSecurity struct {
	// tls is nil without TLS.
	tls *api.TLS
	// cluster is the cluster its server certificates name.
	cluster string
	peers   peerClients
	api     httpapi.Security
}

// security loads and checks the server's TLS material and ACL settings.
func (o *serverOptions) security(log hclog.Logger) (serverSecurity, error) {
	var sec serverSecurity
	if err := o.tls.Check(); err != nil {
		return sec, err
	}
	if o.tls.Enabled() {
		ld, err := api.LoadTLS(o.tls, time.Now())
		if err != nil {
			return sec, err
		}
		if err := checkServerCert(ld); err != nil {
			return sec, err
		}
		sec.tls, sec.cluster, sec.peers = ld, ld.Identity.Cluster, peerClients{tls: ld}
	}
	if o.acl && sec.tls == nil && (len(o.join) > 0 || o.bootstrapExpect > 1) {
		return sec, errors.New("--acl on a cluster of several servers needs TLS (--tls-ca, --tls-cert, --tls-key): " +
			"servers recognise each other by their server certificates, and tokens must not cross the network in the clear")
	}
	switch {
	case sec.tls == nil && !isLoopback(o.httpAddr):
		log.Warn("the API is served without TLS on a non-loopback address: anyone who reaches it can read and change the cluster; see docs/security.md", "http", o.httpAddr)
	case !o.acl && !isLoopback(o.httpAddr):
		log.Warn("ACLs are off: every client with a certificate of the CA can change the cluster; start servers with --acl", "http", o.httpAddr)
	}
	sec.api = httpapi.Security{
		ACL: o.acl, Cluster: sec.cluster, RateLimit: o.rateLimit, RateBurst: o.rateBurst,
		BootstrapResetFile: filepath.Join(o.dataDir, "acl-bootstrap-reset"),
	}
	return sec, nil
}

// peerTLS is the Raft transport's TLS configuration; nil without TLS.
func (s serverSecurity) peerTLS() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.PeerConfig()
}

// forwardClient sends writes to the leader over TLS when TLS is on; nil
// leaves the API's default.
func (s serverSecurity) forwardClient() *http.Client {
	if s.tls == nil {
		return nil
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: s.tls.Transport(httpapi.ForwardIdleConns)}
}

// peerClients make clients for other servers' APIs: over TLS with this
// server's certificate when TLS is on.
type peerClients struct{ tls *api.TLS }

func (p peerClients) client(addr string) (*api.Client, error) {
	if p.tls == nil {
		return api.NewClient(addr)
	}
	return api.NewClientWithOptions(addr, api.ClientOptions{TLS: p.tls.ClientConfig()})
}

// healthCheck returns a check of whether the HTTP API at addr answers
// within 5 s, with one client for every call.
func (p peerClients) healthCheck(ctx context.Context, addr string) func() bool {
	c, err := p.client(addr)
	return func() bool {
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.Do(ctx, http.MethodGet, "/v1/health", nil, nil, nil)
		return err == nil
	}
}

// startingGuard keeps a server's answers while it waits to form or join a
// cluster (httpapi.Starting) for other servers when ACLs are on: with TLS,
// only a server certificate of the cluster may ask who it is. Without
// ACLs, or without TLS (a single server), it lets everything through.
func startingGuard(h http.Handler, aclOn bool, cluster string) http.Handler {
	if !aclOn {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.URL.Path != "/v1/health" {
			if id, ok := api.PeerIdentity(r.TLS); !ok || id.Role != api.CertServer || id.Cluster != cluster {
				st := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
					Message: "this server is starting and answers only the servers of its cluster"}
				writeStatus(w, st)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func writeStatus(w http.ResponseWriter, st metav1.Status) {
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	data, _ := json.Marshal(st)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	w.Write(append(data, '\n'))
}

// isLoopback reports whether addr (host:port) listens on loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the cluster's CA and the certificates of servers, agents and clients",
		Long: `Stead's servers, agents and CLI authenticate each other with certificates
of the cluster's own CA (mutual TLS, TLS 1.2 or later). A certificate's role
is one of its DNS names: server.CLUSTER.stead, NODE.agent.CLUSTER.stead or
client.CLUSTER.stead. Servers admit only server certificates to Raft and to
a join; agents and the CLI talk only to servers. See docs/security.md.`,
	}
	ca := &cobra.Command{Use: "ca", Short: "Make the cluster's CA"}
	ca.AddCommand(newTLSCACreateCmd())
	cert := &cobra.Command{Use: "cert", Short: "Make certificates signed by the cluster's CA"}
	cert.AddCommand(newTLSCertCreateCmd())
	cmd.AddCommand(ca, cert)
	return cmd
}

func newTLSCACreateCmd() *cobra.Command {
	var dir, cluster string
	var days int
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a new CA: stead-ca.pem and its key stead-ca-key.pem",
		Long: `create makes the cluster's CA in --dir: stead-ca.pem, which every server,
agent and client is given with --tls-ca, and stead-ca-key.pem, which signs
certificates and should stay on the machine that makes them. It refuses to
overwrite existing files.`,
		Example: `  stead tls ca create --dir /etc/stead/tls`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return fmt.Errorf("--days %d: want at least 1", days)
			}
			certPEM, keyPEM, err := api.NewCA(api.CAOptions{Cluster: cluster, Now: time.Now(), Validity: time.Duration(days) * 24 * time.Hour})
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, "stead-ca.pem"), filepath.Join(dir, "stead-ca-key.pem")
			if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
				return err
			}
			if err := writeNew(certFile, certPEM, 0o644); err != nil {
				os.Remove(keyFile)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "made CA of cluster %q valid for %d days:\n  %s (give it to every server, agent and client: --tls-ca)\n  %s (keep it private: it signs certificates)\n",
				clusterOr(cluster), days, certFile, keyFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", ".", "directory to write the CA's files to")
	f.IntVar(&days, "days", 1825, "how many days the CA is valid")
	f.StringVar(&cluster, "cluster", api.DefaultCluster, "name of the cluster, which certificates carry in their role names")
	return cmd
}

func clusterOr(c string) string {
	if c == "" {
		return api.DefaultCluster
	}
	return c
}

func newTLSCertCreateCmd() *cobra.Command {
	var server, agent, client bool
	var name, dir, caFile, caKeyFile, cluster string
	var days int
	var ips []net.IP
	var dnsNames []string
	cmd := &cobra.Command{
		Use:   "create (--server | --agent | --client) --name NAME",
		Short: "Make a server's, an agent's or a client's certificate: NAME.pem and NAME-key.pem",
		Long: `create makes a certificate and its key in --dir, signed by the CA of
--ca and --ca-key, with the role's name among its DNS names:

  --server   server.CLUSTER.stead, localhost and 127.0.0.1: a server's
             certificate, for its API and its Raft transport
  --agent    NAME.agent.CLUSTER.stead, localhost and 127.0.0.1: the agent
             of node NAME (--name is the node's name)
  --client   client.CLUSTER.stead: a person or a script using the CLI

--ip and --dns add addresses tools like curl check when they dial a server
or an agent; Stead itself checks the role name. The cluster is the CA's
unless --cluster says otherwise.`,
		Example: `  stead tls cert create --server --name s1 --ip 10.0.0.1
  stead tls cert create --agent --name node-a
  stead tls cert create --client --name alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var role api.CertRole
			n := 0
			for r, on := range map[api.CertRole]bool{api.CertServer: server, api.CertAgent: agent, api.CertClient: client} {
				if on {
					role, n = r, n+1
				}
			}
			if n != 1 {
				return errors.New("say which certificate to make: exactly one of --server, --agent and --client")
			}
			if name == "" {
				return errors.New("--name is required: the server's or the client's name, or the agent's node name")
			}
			if days < 1 {
				return fmt.Errorf("--days %d: want at least 1", days)
			}
			caPEM, err := os.ReadFile(caFile)
			if err != nil {
				return fmt.Errorf("read the CA certificate: %w (make one with 'stead tls ca create')", err)
			}
			caKey, err := os.ReadFile(caKeyFile)
			if err != nil {
				return fmt.Errorf("read the CA key: %w", err)
			}
			ca, err := api.ParseCA(caPEM, caKey)
			if err != nil {
				return fmt.Errorf("%s: %w", caFile, err)
			}
			if cluster == "" {
				cluster = clusterOr(ca.Cluster())
			}
			certPEM, keyPEM, err := ca.Issue(api.CertOptions{
				Role: role, Cluster: cluster, Name: name, IPs: ips, DNSNames: dnsNames,
				Now: time.Now(), Validity: time.Duration(days) * 24 * time.Hour,
			})
			if err != nil {
				return err
			}
			certFile, keyFile := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
			if err := writeNew(keyFile, keyPEM, 0o600); err != nil {
				return err
			}
			if err := writeNew(certFile, certPEM, 0o644); err != nil {
				os.Remove(keyFile)
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "made the %s certificate of %s in cluster %q:\n  %s (--tls-cert)\n  %s (--tls-key)\n",
				role, name, cluster, certFile, keyFile)
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&server, "server", false, "a server's certificate")
	f.BoolVar(&agent, "agent", false, "an agent's certificate; --name is its node")
	f.BoolVar(&client, "client", false, "a CLI user's certificate")
	f.StringVar(&name, "name", "", "the certificate's name: server or client name, or the agent's node")
	f.StringVar(&dir, "dir", ".", "directory to write the certificate and key to")
	f.StringVar(&caFile, "ca", "stead-ca.pem", "the CA certificate")
	f.StringVar(&caKeyFile, "ca-key", "stead-ca-key.pem", "the CA key")
	f.StringVar(&cluster, "cluster", "", "cluster name in the role name (default: the CA's)")
	f.IntVar(&days, "days", 365, "how many days the certificate is valid (at most as long as the CA)")
	f.IPSliceVar(&ips, "ip", nil, "an IP address to add (repeatable)")
	f.StringArrayVar(&dnsNames, "dns", nil, "a DNS name to add (repeatable)")
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists already: remove it or choose another --dir", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
