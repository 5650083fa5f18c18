// Package tlstest makes a throwaway cluster CA and certificates for tests
// of Stead's TLS: servers, agents and clients of one CA, and the
// certificates that must be refused (expired, from another CA, of
// another cluster).
package tlstest

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
)

// CA is a cluster CA whose files live in a test's temporary directory.
type CA struct {
	t       testing.TB
	ca      *api.CA
	dir     string
	Cluster string
	// File is the CA certificate's PEM file (--tls-ca).
	File string
}

// NewCA makes a CA for cluster (api.DefaultCluster when empty).
func NewCA(t testing.TB, cluster string) *CA {
	t.Helper()
	if cluster == "" {
		cluster = api.DefaultCluster
	}
	// Valid since a day ago, so that certificates made in the past (Expired)
	// chain to it.
	certPEM, keyPEM, err := api.NewCA(api.CAOptions{Cluster: cluster, Now: time.Now().Add(-24 * time.Hour), Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := api.ParseCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(file, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return &CA{t: t, ca: ca, dir: dir, Cluster: cluster, File: file}
}

// Option changes how a certificate is made.
type Option func(*api.CertOptions)

// Expired makes a certificate whose validity ended an hour ago.
func Expired(o *api.CertOptions) {
	o.Now = time.Now().Add(-3 * time.Hour)
	o.Validity = 2 * time.Hour
}

// OfCluster puts another cluster's name in the certificate.
func OfCluster(cluster string) Option {
	return func(o *api.CertOptions) { o.Cluster = cluster }
}

// Files issues a certificate of role for name and returns the files of
// a party that holds it, with this CA.
func (c *CA) Files(role api.CertRole, name string, opts ...Option) api.TLSFiles {
	c.t.Helper()
	files, _ := c.issue(role, name, opts)
	return files
}

func (c *CA) issue(role api.CertRole, name string, opts []Option) (api.TLSFiles, time.Time) {
	c.t.Helper()
	o := api.CertOptions{Role: role, Cluster: c.Cluster, Name: name, Now: time.Now(), Validity: time.Hour}
	for _, f := range opts {
		f(&o)
	}
	certPEM, keyPEM, err := c.ca.Issue(o)
	if err != nil {
		c.t.Fatal(err)
	}
	base := filepath.Join(c.dir, string(role)+"-"+name+"-"+o.Cluster)
	if err := os.WriteFile(base+".pem", certPEM, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(base+"-key.pem", keyPEM, 0o600); err != nil {
		c.t.Fatal(err)
	}
	return api.TLSFiles{CA: c.File, Cert: base + ".pem", Key: base + "-key.pem"}, o.Now
}

// TLS issues a certificate of role for name and loads it. An expired
// certificate is loaded as of when it was valid, so that tests can
// present it.
func (c *CA) TLS(role api.CertRole, name string, opts ...Option) *api.TLS {
	c.t.Helper()
	files, at := c.issue(role, name, opts)
	ld, err := api.LoadTLS(files, at)
	if err != nil {
		c.t.Fatal(err)
	}
	return ld
}

// Foreign returns the material of a party whose certificate comes from
// this CA, but which trusts the CA of other: it presents this CA's
// certificate to other's servers.
func (c *CA) Foreign(other *CA, role api.CertRole, name string) *api.TLS {
	c.t.Helper()
	ld := c.TLS(role, name)
	ld.CAs = other.TLS(api.CertClient, "trust").CAs
	return ld
}

// ClientTLS11 is a client configuration limited to TLS 1.1, which servers
// must refuse.
func ClientTLS11(ld *api.TLS) *tls.Config {
	c := ld.ClientConfig()
	c.MinVersion = tls.VersionTLS10
	c.MaxVersion = tls.VersionTLS11
	return c
}
