package raftstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// handshakeTimeout bounds the TLS handshake of an accepted Raft
// connection, so that a peer that connects and stays silent holds no
// goroutine for long.
const handshakeTimeout = 10 * time.Second

// tlsStreamLayer is a raft.StreamLayer over TLS: it accepts and dials
// with one configuration, which (api.TLS.PeerConfig) requires both ends to
// present a server certificate of the cluster. A peer refused at the
// handshake never reaches Raft: its connection fails on the first read.
type tlsStreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	config    *tls.Config
}

// newTLSTransport listens on bindAddr and returns a Raft transport whose
// connections all go over TLS with config.
func newTLSTransport(bindAddr string, advertise net.Addr, config *tls.Config, logger hclog.Logger) (*raft.NetworkTransport, error) {
	if config.MinVersion < tls.VersionTLS12 {
		return nil, errors.New("the Raft transport's TLS configuration allows versions before TLS 1.2")
	}
	if config.ClientAuth != tls.RequireAndVerifyClientCert {
		return nil, errors.New("the Raft transport's TLS configuration does not require client certificates")
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, err
	}
	layer := &tlsStreamLayer{ln: ln, advertise: advertise, config: config}
	addr, ok := layer.Addr().(*net.TCPAddr)
	if !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("address %s is not one other servers can reach: set an advertise address", layer.Addr())
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  layer,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), nil
}

// Accept returns the next connection; its TLS handshake happens on its
// first read or write, in the goroutine Raft serves it from.
func (l *tlsStreamLayer) Accept() (net.Conn, error) {
	c, err := l.ln.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, l.config)}, nil
}

func (l *tlsStreamLayer) Close() error { return l.ln.Close() }

func (l *tlsStreamLayer) Addr() net.Addr {
	if l.advertise != nil {
		return l.advertise
	}
	return l.ln.Addr()
}

// Dial connects to another server and completes the handshake, which
// checks that it holds a server certificate of the cluster.
func (l *tlsStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	c, err := tls.DialWithDialer(d, "tcp", string(address), l.config)
	if err != nil {
		return nil, fmt.Errorf("dial raft peer %s over TLS: %w", address, err)
	}
	return c, nil
}

// serverConn is an accepted connection that completes its handshake,
// under handshakeTimeout, before its first read or write.
type serverConn struct {
	*tls.Conn
	once sync.Once
	err  error
}

func (c *serverConn) handshake() error {
	c.once.Do(func() {
		c.Conn.SetDeadline(time.Now().Add(handshakeTimeout))
		if c.err = c.Conn.Handshake(); c.err != nil {
			c.err = fmt.Errorf("raft peer %s refused at the TLS handshake: %w", c.RemoteAddr(), c.err)
			return
		}
		c.Conn.SetDeadline(time.Time{})
	})
	return c.err
}

func (c *serverConn) Read(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *serverConn) Write(b []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
