package api

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Certificates are ECDSA P-256 keys signed by the cluster's own CA, made
// with crypto/x509 alone.

// clockSkew backdates every certificate, so that a machine whose clock
// runs a little behind the one that made it accepts it at once.
const clockSkew = time.Minute

// CAOptions say how to make a cluster's CA.
type CAOptions struct {
	// Cluster names the cluster in the CA's subject; DefaultCluster when
	// empty.
	Cluster string
	// Now is when the CA is made; Validity how long it is valid from then.
	Now      time.Time
	Validity time.Duration
	// Rand is the source of keys and serial numbers; crypto/rand when nil.
	Rand io.Reader
}

// NewCA makes a CA certificate and its key, both PEM-encoded.
func NewCA(o CAOptions) (certPEM, keyPEM []byte, err error) {
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	if err := checkCluster(o.Cluster); err != nil {
		return nil, nil, err
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("make CA key: %w", err)
	}
	serial, err := newSerial(o.Rand)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Stead CA " + o.Cluster, Organization: []string{"Stead"}},
		NotBefore:             o.Now.Add(-clockSkew),
		NotAfter:              o.Now.Add(o.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(o.Rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("make CA certificate: %w", err)
	}
	return encodePair(der, key)
}

// CA signs certificates.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// ParseCA reads a CA certificate and its key from PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("the CA certificate is not a PEM CERTIFICATE")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("the CA key does not belong to CA certificate %q", cert.Subject.CommonName)
	}
	return &CA{cert: cert, key: key}, nil
}

// Cluster is the cluster name NewCA put in the CA's subject; "" for a CA
// made otherwise.
func (ca *CA) Cluster() string {
	c, ok := strings.CutPrefix(ca.cert.Subject.CommonName, "Stead CA ")
	if !ok || checkCluster(c) != nil {
		return ""
	}
	return c
}

// CertOptions say what certificate to issue.
type CertOptions struct {
	// Role is what the holder is.
	Role CertRole
	// Cluster is the cluster's name, a DNS label; DefaultCluster when
	// empty.
	Cluster string
	// Name is the certificate's common name; for an agent, its node's
	// name. A DNS subdomain.
	Name string
	// IPs and DNSNames are added to the certificate, so that tools that
	// check the address they dial (curl, browsers) accept a server or an
	// agent. Servers and agents always get localhost and 127.0.0.1.
	IPs      []net.IP
	DNSNames []string
	// Now is when the certificate is made; Validity how long it is valid
	// from then.
	Now      time.Time
	Validity time.Duration
	// Rand is the source of keys and serial numbers; crypto/rand when nil.
	Rand io.Reader
}

// Issue makes a certificate for o, signed by ca, and its key, both
// PEM-encoded.
func (ca *CA) Issue(o CertOptions) (certPEM, keyPEM []byte, err error) {
	if o.Cluster == "" {
		o.Cluster = DefaultCluster
	}
	if err := checkCluster(o.Cluster); err != nil {
		return nil, nil, err
	}
	if errs := validation.IsDNS1123Subdomain(o.Name); len(errs) > 0 {
		return nil, nil, fmt.Errorf("certificate name %q: %s", o.Name, errs[0])
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: o.Name, Organization: []string{"Stead"}},
		NotBefore:   o.Now.Add(-clockSkew),
		NotAfter:    o.Now.Add(o.Validity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		IPAddresses: o.IPs,
	}
	switch o.Role {
	case CertServer:
		tmpl.DNSNames = []string{ServerName(o.Cluster), "localhost"}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
		// A server accepts connections and dials other servers.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case CertAgent:
		tmpl.DNSNames = []string{AgentName(o.Cluster, o.Name), "localhost"}
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.IPv4(127, 0, 0, 1))
		// An agent dials servers and serves its own API.
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	case CertClient:
		if len(o.IPs) > 0 || len(o.DNSNames) > 0 {
			return nil, nil, errors.New("a client certificate takes no --ip or --dns: nobody dials a client")
		}
		tmpl.DNSNames = []string{ClientName(o.Cluster)}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	default:
		return nil, nil, fmt.Errorf("certificate role %q is not server, agent or client", o.Role)
	}
	for _, n := range o.DNSNames {
		if _, ok := IdentityOf(&x509.Certificate{DNSNames: []string{n}}); ok {
			return nil, nil, fmt.Errorf("DNS name %q is a role name; roles come from --server, --agent or --client", n)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), o.Rand)
	if err != nil {
		return nil, nil, fmt.Errorf("make key of %s: %w", o.Name, err)
	}
	if tmpl.SerialNumber, err = newSerial(o.Rand); err != nil {
		return nil, nil, err
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		// A certificate outliving its CA would be refused from then on
		// anyway; better to see it now.
		tmpl.NotAfter = ca.cert.NotAfter
	}
	der, err := x509.CreateCertificate(o.Rand, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign certificate of %s: %w", o.Name, err)
	}
	return encodePair(der, key)
}

func checkCluster(cluster string) error {
	if errs := validation.IsDNS1123Label(cluster); len(errs) > 0 {
		return fmt.Errorf("cluster name %q: %s", cluster, errs[0])
	}
	return nil
}

func newSerial(r io.Reader) (*big.Int, error) {
	serial, err := rand.Int(r, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("make serial number: %w", err)
	}
	return serial, nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	return certPEM, keyPEM, nil
}

func parseKey(keyPEM []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return nil, errors.New("not PEM")
	}
	switch b.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("key of type %T cannot sign", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", b.Type)
}
