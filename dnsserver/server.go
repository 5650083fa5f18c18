package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// MaxUDPSize is the largest UDP reply the server sends and the EDNS payload
// size it advertises: the DNS Flag Day 2020 value, which avoids IP
// fragmentation on common paths.
const MaxUDPSize = 1232

// Defaults of Config.
const (
	DefaultResolvConf     = "/etc/resolv.conf"
	DefaultForwardTimeout = 2 * time.Second
	DefaultMaxForwards    = 256
	DefaultReadTimeout    = 2 * time.Second
	DefaultWriteTimeout   = 2 * time.Second
	DefaultTCPIdleTimeout = 8 * time.Second
	DefaultMaxTCPQueries  = 128
	DefaultMaxTCPConns    = 256
)

// Config configures a Server. Zero fields take the defaults above.
type Config struct {
	// Upstreams are the resolvers ("host:port", or a bare host for port 53)
	// that names outside the cluster zone are forwarded to. Nil means the
	// nameservers of ResolvConf. An empty, non-nil slice turns forwarding
	// off: such queries get SERVFAIL.
	Upstreams []string
	// ResolvConf is the file default upstreams are read from.
	ResolvConf string
	// PodCIDRs are the source ranges, besides loopback, whose queries for
	// names outside the cluster zone are forwarded. Anyone else gets
	// REFUSED, so the server is not an open resolver.
	PodCIDRs []netip.Prefix
	// ForwardTimeout bounds one exchange with one upstream.
	ForwardTimeout time.Duration
	// MaxForwards caps the forwarded queries in flight; beyond it queries
	// get SERVFAIL at once.
	MaxForwards int
	// ReadTimeout and WriteTimeout bound reading a query and writing its
	// reply. The read timeout is also how long a new TCP connection may stay
	// silent; a TCP connection whose reply cannot be written in time is
	// closed.
	ReadTimeout, WriteTimeout time.Duration
	// TCPIdleTimeout is how long a TCP connection may stay idle between
	// queries.
	TCPIdleTimeout time.Duration
	// MaxTCPQueries is the number of queries served on one TCP connection
	// before it is closed.
	MaxTCPQueries int
	// MaxTCPConns caps the TCP connections open at once, over all listening
	// addresses. Further connections wait in the kernel's accept queue until
	// one closes.
	MaxTCPConns int
}

// Counters count what a Server did with the messages it received. The
// fields are safe for concurrent use.
type Counters struct {
	// Replies by rcode, including those of forwarded queries and the
	// FORMERR and NOTIMP replies to messages rejected before parsing.
	NoError, FormErr, ServFail, NXDomain, NotImp, Refused, OtherRcode atomic.Uint64
	// Ignored counts messages dropped without a reply: responses, messages
	// shorter than a header.
	Ignored atomic.Uint64
	// Forwarded counts queries sent upstream; ForwardFailures those no
	// upstream answered (or that found MaxForwards reached).
	Forwarded, ForwardFailures atomic.Uint64
	// Truncated counts UDP replies cut to the client's size, with TC set.
	Truncated atomic.Uint64
	// TCPConns is the number of TCP connections open now.
	TCPConns atomic.Int64
}

// Server answers DNS queries from the Zone it holds and forwards names
// outside it for pods. Its methods are safe for concurrent use.
type Server struct {
	cfg       Config
	log       hclog.Logger
	zone      atomic.Pointer[Zone]
	counters  Counters
	latency   prometheus.Histogram
	upstreams []string
	// forwards is a semaphore of MaxForwards slots.
	forwards chan struct{}
	// fastReplies counts the replies written by the UDP fast path (udp.go).
	fastReplies atomic.Uint64

	// Set up by ListenAndServe.
	serving atomic.Bool
	ready   chan struct{}
	bound   []netip.AddrPort
}

// NewServer returns a Server that holds no zone yet: until the first Swap
// every query gets SERVFAIL. Upstreams are resolved now, from cfg or its
// resolv.conf; a missing file is logged and leaves forwarding off.
func NewServer(cfg Config, log hclog.Logger) *Server {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = DefaultResolvConf
	}
	cfg.ForwardTimeout = orDuration(cfg.ForwardTimeout, DefaultForwardTimeout)
	cfg.ReadTimeout = orDuration(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.WriteTimeout = orDuration(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.TCPIdleTimeout = orDuration(cfg.TCPIdleTimeout, DefaultTCPIdleTimeout)
	cfg.MaxForwards = orInt(cfg.MaxForwards, DefaultMaxForwards)
	cfg.MaxTCPQueries = orInt(cfg.MaxTCPQueries, DefaultMaxTCPQueries)
	cfg.MaxTCPConns = orInt(cfg.MaxTCPConns, DefaultMaxTCPConns)
	s := &Server{
		cfg:      cfg,
		log:      log,
		forwards: make(chan struct{}, cfg.MaxForwards),
		ready:    make(chan struct{}),
		latency:  newLatency(),
	}
	upstreams := cfg.Upstreams
	if upstreams == nil {
		rc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			log.Warn("no upstream resolvers, names outside the cluster will not resolve", "resolv_conf", cfg.ResolvConf, "error", err)
		} else {
			for _, ns := range rc.Servers {
				upstreams = append(upstreams, net.JoinHostPort(ns, rc.Port))
			}
		}
	}
	for _, u := range upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		s.upstreams = append(s.upstreams, u)
	}
	return s
}

// Swap makes z the zone answered from, from the next query on, and returns
// the previous one.
func (s *Server) Swap(z *Zone) *Zone { return s.zone.Swap(z) }

// Zone returns the zone currently answered from, nil before the first Swap.
func (s *Server) Zone() *Zone { return s.zone.Load() }

// Counters returns the server's live counters.
func (s *Server) Counters() *Counters { return &s.counters }

// ServeDNS implements dns.Handler: it answers r and writes the reply to w,
// or writes nothing for a message that deserves no reply.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	start := time.Now()
	defer func() { s.latency.Observe(time.Since(start).Seconds()) }()
	src, tcp := client(w)
	m := s.reply(r, src, tcp)
	if m == nil {
		s.counters.Ignored.Add(1)
		return
	}
	s.countRcode(m.Rcode)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("write reply", "client", src, "error", err)
		if tcp {
			// A TCP client that does not take its replies in time loses
			// its connection, and with it its slot.
			w.Close()
		}
	}
}

// client returns the source address of the query w answers and whether it
// came over TCP. Anything that is not TCP is treated as UDP.
func client(w dns.ResponseWriter) (netip.Addr, bool) {
	switch a := w.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap(), true
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap(), false
	}
	return netip.Addr{}, false
}

// reply returns the reply to r from src, or nil when there is to be none.
func (s *Server) reply(r *dns.Msg, src netip.Addr, tcp bool) *dns.Msg {
	// The same rules as the accept function, for messages that reach the
	// handler some other way.
	switch {
	case r.Response:
		return nil
	case r.Opcode != dns.OpcodeQuery:
		return headerReply(r, dns.RcodeNotImplemented)
	case len(r.Question) != 1:
		return headerReply(r, dns.RcodeFormatError)
	}
	opt := r.IsEdns0()
	size := dns.MinMsgSize
	if opt != nil {
		if opt.Version() != 0 {
			m := new(dns.Msg).SetReply(r)
			m.Rcode = dns.RcodeBadVers
			m.SetEdns0(MaxUDPSize, false)
			return m
		}
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
	}

	m := s.answer(r, src, tcp)
	if m.Rcode > 0xF && opt == nil {
		// An extended rcode from upstream cannot be expressed without EDNS.
		m = rcodeReply(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
	}

	var extra []dns.RR
	for _, rr := range m.Extra {
		if t := rr.Header().Rrtype; t != dns.TypeOPT && t != dns.TypeTSIG && t != dns.TypeSIG {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	if opt != nil {
		m.SetEdns0(MaxUDPSize, opt.Do())
	}
	if tcp {
		m.Truncate(dns.MaxMsgSize)
	} else {
		m.Truncate(size)
		if m.Truncated {
			s.counters.Truncated.Add(1)
		}
	}
	return m
}

// answer returns the reply to a well-formed query: authoritative from the
// zone, forwarded, or refused.
func (s *Server) answer(r *dns.Msg, src netip.Addr, tcp bool) *dns.Msg {
	q := r.Question[0]
	z := s.zone.Load()
	switch {
	case z == nil:
		return rcodeReply(r, dns.RcodeServerFailure)
	case q.Qclass != dns.ClassINET:
		return rcodeReply(r, dns.RcodeRefused)
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// Zone transfers are not served, for the cluster zone or any other.
		return rcodeReply(r, dns.RcodeRefused)
	}
	res := z.Lookup(q.Name, q.Qtype)
	if res.InZone {
		m := rcodeReply(r, res.Rcode)
		m.Authoritative = true
		m.Answer, m.Ns, m.Extra = res.Answer, res.Ns, res.Extra
		return m
	}
	if !s.mayForward(src) {
		return rcodeReply(r, dns.RcodeRefused)
	}
	return s.forward(r, tcp)
}

// mayForward reports whether names outside the zone are resolved for src:
// loopback and pod sources only.
func (s *Server) mayForward(src netip.Addr) bool {
	if !src.IsValid() {
		return false
	}
	src = src.Unmap()
	if src.IsLoopback() {
		return true
	}
	for _, p := range s.cfg.PodCIDRs {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

// forward resolves r through the upstreams, in order, over the transport the
// client used. The reply has RA set and AA clear; SERVFAIL if no upstream
// answered.
func (s *Server) forward(r *dns.Msg, tcp bool) *dns.Msg {
	fail := func() *dns.Msg {
		s.counters.ForwardFailures.Add(1)
		m := rcodeReply(r, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	if len(s.upstreams) == 0 {
		return fail()
	}
	select {
	case s.forwards <- struct{}{}:
		defer func() { <-s.forwards }()
	default:
		return fail()
	}
	s.counters.Forwarded.Add(1)

	// Only the question and our own EDNS go upstream: no client options, no
	// TSIG, a fresh ID.
	req := new(dns.Msg)
	req.Id = dns.Id()
	req.RecursionDesired = r.RecursionDesired
	req.CheckingDisabled = r.CheckingDisabled
	req.AuthenticatedData = r.AuthenticatedData
	req.Question = []dns.Question{r.Question[0]}
	if opt := r.IsEdns0(); opt != nil {
		req.SetEdns0(MaxUDPSize, opt.Do())
	}
	c := &dns.Client{Net: "udp", Timeout: s.cfg.ForwardTimeout, UDPSize: MaxUDPSize}
	if tcp {
		c.Net = "tcp"
	}
	for _, up := range s.upstreams {
		resp, _, err := c.Exchange(req, up)
		if err == nil {
			err = matchQuestion(req, resp)
		}
		if err != nil {
			s.log.Debug("forward", "upstream", up, "name", r.Question[0].Name, "error", err)
			continue
		}
		resp.Id = r.Id
		resp.Question = []dns.Question{r.Question[0]}
		resp.Authoritative = false
		resp.RecursionAvailable = true
		return resp
	}
	return fail()
}

// matchQuestion checks that an upstream's reply answers req's question.
func matchQuestion(req, resp *dns.Msg) error {
	if !resp.Response || len(resp.Question) != 1 {
		return errors.New("reply without exactly one question")
	}
	q, got := req.Question[0], resp.Question[0]
	if !strings.EqualFold(q.Name, got.Name) || q.Qtype != got.Qtype || q.Qclass != got.Qclass {
		return fmt.Errorf("reply for %s, asked %s", got.String(), q.String())
	}
	return nil
}

// rcodeReply returns a reply to r with its question and rcode, AA and RA
// clear.
func rcodeReply(r *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg).SetReply(r)
	m.Rcode = rcode
	return m
}

// headerReply returns a reply to r that holds nothing but a header with
// rcode, as miekg/dns writes for messages its accept function rejects.
func headerReply(r *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.Id = r.Id
	m.Response = true
	m.Opcode = r.Opcode
	m.Rcode = rcode
	return m
}

// acceptMsg decides, from the header alone, what the dns.Server does with a
// message: responses are dropped (no reflection loops), opcodes other than
// QUERY get NOTIMP, anything but exactly one question FORMERR, as do
// messages with records a query does not carry (answers, authority, more
// than an OPT and a TSIG). Both rejections are a bare header, never larger
// than the message.
func acceptMsg(dh dns.Header) dns.MsgAcceptAction {
	const qr = 1 << 15
	if dh.Bits&qr != 0 {
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// accept is the dns.Server's MsgAcceptFunc: acceptMsg, counted.
func (s *Server) accept(dh dns.Header) dns.MsgAcceptAction {
	a := acceptMsg(dh)
	switch a {
	case dns.MsgIgnore:
		s.counters.Ignored.Add(1)
	case dns.MsgReject:
		s.counters.FormErr.Add(1)
	case dns.MsgRejectNotImplemented:
		s.counters.NotImp.Add(1)
	}
	return a
}

// invalid is the dns.Server's MsgInvalidFunc. Messages shorter than a header
// are dropped; the others were accepted but failed to parse and get FORMERR.
func (s *Server) invalid(m []byte, err error) {
	if len(m) < 12 {
		s.counters.Ignored.Add(1)
		return
	}
	s.counters.FormErr.Add(1)
}

func (s *Server) countRcode(rcode int) {
	switch rcode {
	case dns.RcodeSuccess:
		s.counters.NoError.Add(1)
	case dns.RcodeFormatError:
		s.counters.FormErr.Add(1)
	case dns.RcodeServerFailure:
		s.counters.ServFail.Add(1)
	case dns.RcodeNameError:
		s.counters.NXDomain.Add(1)
	case dns.RcodeNotImplemented:
		s.counters.NotImp.Add(1)
	case dns.RcodeRefused:
		s.counters.Refused.Add(1)
	default:
		s.counters.OtherRcode.Add(1)
	}
}

func orDuration(v, def time.Duration) time.Duration {
	if v <= 0 {
		return def
	}
	return v
}

func orInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}
