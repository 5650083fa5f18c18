package dnsserver

import (
	"errors"
	"net"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// fastReader is the reader of a UDP dns.Server. It answers plain queries
// for names in the zone itself, from the packed records (wire.go), on the
// dns.Server's read loop: no goroutine, no dns.Msg and no allocation of
// its own per query. Every other message it returns to the dns.Server,
// which parses it and calls ServeDNS on a goroutine of its own.
//
// It sets no read deadline: UDP reads need none, and the dns.Server's
// shutdown unblocks a read by setting one in the past.
type fastReader struct {
	dns.Reader // the dns.Server's own
	s          *Server
	// buf is the message read; out is the reply; name is the canonical
	// query name. The read loop is one goroutine, so they are reused.
	buf, out, name []byte
	// bound is set once the socket's address is known; specific when it is
	// not a wildcard address, so that replies leave from it without asking
	// the kernel for the query's destination address.
	bound, specific bool
}

// decorateUDP is the UDP dns.Server's DecorateReader.
func (s *Server) decorateUDP(r dns.Reader) dns.Reader {
	return &fastReader{
		Reader: r,
		s:      s,
		buf:    make([]byte, MaxUDPSize),
		out:    make([]byte, 0, MaxUDPSize),
		name:   make([]byte, 0, 512),
	}
}

// ReadUDP reads messages from conn, answers those it can and returns the
// first it cannot, in a buffer of its own.
func (r *fastReader) ReadUDP(conn *net.UDPConn, _ time.Duration) ([]byte, *dns.SessionUDP, error) {
	if !r.bound {
		la, ok := conn.LocalAddr().(*net.UDPAddr)
		r.specific = ok && !la.IP.IsUnspecified()
		r.bound = true
	}
	for {
		n, sess, err := dns.ReadFromSessionUDP(conn, r.buf)
		if err != nil {
			return nil, nil, err
		}
		if !r.serve(conn, r.buf[:n], sess) {
			return slices.Clone(r.buf[:n]), sess, nil
		}
	}
}

// ReadPacketConn reads from a PacketConn that is not a *net.UDPConn
// through the dns.Server's reader, without a fast path.
func (r *fastReader) ReadPacketConn(conn net.PacketConn, timeout time.Duration) ([]byte, net.Addr, error) {
	pr, ok := r.Reader.(dns.PacketConnReader)
	if !ok {
		return nil, nil, errors.New("dnsserver: the dns.Server's reader cannot read a net.PacketConn")
	}
	return pr.ReadPacketConn(conn, timeout)
}

// serve answers raw if it is a plain query for a name in the zone whose
// reply fits, and reports whether it did.
func (r *fastReader) serve(conn *net.UDPConn, raw []byte, sess *dns.SessionUDP) bool {
	start := time.Now()
	out, rcode, ok := r.s.fastReply(r.out[:0], raw, r.name)
	if !ok {
		return false
	}
	r.out = out
	r.s.countRcode(rcode)
	r.s.fastReplies.Add(1)
	var err error
	if ra, ok := sess.RemoteAddr().(*net.UDPAddr); ok && r.specific {
		_, err = conn.WriteToUDP(out, ra)
	} else {
		_, err = dns.WriteToSessionUDP(conn, out, sess)
	}
	if err != nil {
		r.s.log.Debug("write reply", "client", sess.RemoteAddr(), "error", err)
	}
	r.s.latency.Observe(time.Since(start).Seconds())
	return true
}

// fastReply appends to dst the UDP reply to raw if raw is a plain query
// for a name in the current zone whose reply fits the client's size, with
// its rcode. name is a buffer for the query name. ok is false for any
// other message.
func (s *Server) fastReply(dst, raw, name []byte) (reply []byte, rcode int, ok bool) {
	z := s.zone.Load()
	if z == nil {
		return dst, 0, false
	}
	q, ok := parseQuery(raw, name)
	if !ok {
		return dst, 0, false
	}
	return z.appendReply(dst, uint16(raw[0])<<8|uint16(raw[1]), uint16(raw[2])<<8|uint16(raw[3]), &q)
}
