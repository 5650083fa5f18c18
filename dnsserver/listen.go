package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// ListenAndServe serves DNS over UDP and TCP on each address until ctx is
// done, then shuts down gracefully: listeners close and queries in progress
// finish. All sockets are bound before it starts serving and before it
// returns on a bind error, on the calling goroutine. An address with port 0
// gets a free port, the same for UDP and TCP; Addrs tells which once Ready
// is closed. A Server serves once.
func (s *Server) ListenAndServe(ctx context.Context, addrs ...string) error {
	if len(addrs) == 0 {
		return errors.New("dnsserver: no address to listen on")
	}
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("dnsserver: already serving")
	}
	var (
		servers []*dns.Server
		closers []func() error
		bound   []netip.AddrPort
	)
	conns := &connLimit{sem: make(chan struct{}, s.cfg.MaxTCPConns), open: &s.counters.TCPConns, writeTimeout: s.cfg.WriteTimeout}
	for _, addr := range addrs {
		pc, l, err := listenPair(addr)
		if err != nil {
			for _, c := range closers {
				c()
			}
			return fmt.Errorf("dnsserver: listen %s: %w", addr, err)
		}
		closers = append(closers, pc.Close, l.Close)
		bound = append(bound, pc.LocalAddr().(*net.UDPAddr).AddrPort())
		servers = append(servers,
			s.dnsServer(&dns.Server{PacketConn: pc, UDPSize: MaxUDPSize, DecorateReader: s.decorateUDP}),
			s.dnsServer(&dns.Server{Listener: conns.wrap(l)}))
	}
	s.bound = bound
	// A resolver that is this server would forward to itself forever.
	s.upstreams = slices.DeleteFunc(s.upstreams, func(u string) bool {
		ap, err := netip.ParseAddrPort(u)
		return err == nil && slices.Contains(bound, ap)
	})

	started := make(chan struct{}, len(servers))
	done := make(chan error, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { done <- srv.ActivateAndServe() }()
	}
	// Each server either starts or fails to; shut down only started ones.
	var err error
	running := 0
	for range servers {
		select {
		case <-started:
			running++
		case e := <-done:
			err = errors.Join(err, e)
		}
	}
	if err == nil {
		close(s.ready)
		s.log.Info("serving DNS", "addrs", bound, "upstreams", s.upstreams)
		select {
		case <-ctx.Done():
		case err = <-done:
			running--
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ForwardTimeout+s.cfg.WriteTimeout)
	defer cancel()
	for _, srv := range servers {
		srv.ShutdownContext(sctx) // "server not started" for one that failed
	}
	for ; running > 0; running-- {
		if e := <-done; e != nil {
			err = errors.Join(err, e)
		}
	}
	for _, c := range closers {
		c()
	}
	if err != nil {
		return fmt.Errorf("dnsserver: %w", err)
	}
	s.log.Info("stopped serving DNS", "addrs", bound)
	return nil
}

// Ready is closed once ListenAndServe serves on all its addresses.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the addresses served on, UDP and TCP alike, once Ready is
// closed; nil before.
func (s *Server) Addrs() []netip.AddrPort {
	select {
	case <-s.ready:
		return slices.Clone(s.bound)
	default:
		return nil
	}
}

// dnsServer applies the server's limits and policy hooks to srv.
func (s *Server) dnsServer(srv *dns.Server) *dns.Server {
	srv.Handler = s
	srv.ReadTimeout = s.cfg.ReadTimeout
	srv.WriteTimeout = s.cfg.WriteTimeout
	idle := s.cfg.TCPIdleTimeout
	srv.IdleTimeout = func() time.Duration { return idle }
	srv.MaxTCPQueries = s.cfg.MaxTCPQueries
	srv.MsgAcceptFunc = s.accept
	srv.MsgInvalidFunc = s.invalid
	return srv
}

// udpReadBuffer is the receive buffer asked for UDP sockets. The fast path
// answers on the read loop, so queries wait in the socket while a reply is
// written or the server is not scheduled; the default buffer (208 KiB)
// overflows with a few hundred queries outstanding, and those are lost.
const udpReadBuffer = 4 << 20

// listenPair binds UDP and TCP on addr. For port 0 it retries until UDP's
// free port is free for TCP too.
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		// Best effort: the kernel caps it at net.core.rmem_max.
		pc.(*net.UDPConn).SetReadBuffer(udpReadBuffer)
		p := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		l, err := net.Listen("tcp", net.JoinHostPort(host, p))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) || attempt == 10 {
			return nil, nil, err
		}
	}
}

// connLimit caps the TCP connections open at once over any number of
// listeners: Accept takes a slot before accepting, so connections beyond
// the cap wait in the kernel's queue, and closing a connection frees its
// slot. It also bounds every write on the connections it accepts, which
// miekg/dns v1 does not do itself (its Server.WriteTimeout is unused), so a
// client that stops reading cannot hold a slot forever.
type connLimit struct {
	sem chan struct{}
	// open is the gauge of open connections.
	open         *atomic.Int64
	writeTimeout time.Duration
}

func (c *connLimit) wrap(l net.Listener) net.Listener {
	return &limitListener{Listener: l, limit: c, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	limit     *connLimit
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.limit.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.limit.sem
		return nil, err
	}
	l.limit.open.Add(1)
	return &limitConn{Conn: c, writeTimeout: l.limit.writeTimeout, release: func() {
		l.limit.open.Add(-1)
		<-l.limit.sem
	}}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	writeTimeout time.Duration
	releaseOnce  sync.Once
	release      func()
}

// Write writes b within the write timeout.
func (c *limitConn) Write(b []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.releaseOnce.Do(c.release)
	return err
}
