package dnsserver

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
)

// serveRaw takes raw through what miekg/dns v1.1.73's Server.serveDNS does
// between reading a message and calling the handler, with this server's
// accept and invalid hooks: drop what is shorter than a header, ask the
// accept function, unpack, and answer a rejected or unparseable message
// with a FORMERR/NOTIMP reply built the way miekg builds it (the request's
// header bits, any question unpacked before the error, no records).
// TestMalformedOverUDP checks the real server behaves the same.
func serveRaw(s *Server, w dns.ResponseWriter, raw []byte) {
	if len(raw) < 12 {
		s.invalid(raw, dns.ErrShortRead)
		return
	}
	be := func(i int) uint16 { return binary.BigEndian.Uint16(raw[i:]) }
	dh := dns.Header{Id: be(0), Bits: be(2), Qdcount: be(4), Ancount: be(6), Nscount: be(8), Arcount: be(10)}
	req := new(dns.Msg)
	req.Id = dh.Id
	req.Response = dh.Bits&(1<<15) != 0
	req.Opcode = int(dh.Bits>>11) & 0xF
	req.Authoritative = dh.Bits&(1<<10) != 0
	req.Truncated = dh.Bits&(1<<9) != 0
	req.RecursionDesired = dh.Bits&(1<<8) != 0
	req.RecursionAvailable = dh.Bits&(1<<7) != 0
	req.Zero = dh.Bits&(1<<6) != 0
	req.AuthenticatedData = dh.Bits&(1<<5) != 0
	req.CheckingDisabled = dh.Bits&(1<<4) != 0
	req.Rcode = int(dh.Bits & 0xF)

	action := s.accept(dh)
	switch action {
	case dns.MsgIgnore:
		return
	case dns.MsgAccept:
		err := req.Unpack(raw)
		if err == nil {
			s.ServeDNS(w, req)
			return
		}
		s.invalid(raw, err)
	}
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	if action == dns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = dns.RcodeNotImplemented
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	w.WriteMsg(req)
}

// withCookie adds a client cookie to m's OPT record.
func withCookie(m *dns.Msg) *dns.Msg {
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	return m
}

// fuzzSources are the client addresses a fuzz input picks from; the first
// three may have names outside the zone resolved for them.
var fuzzSources = []net.IP{
	net.ParseIP("127.0.0.1"),
	net.ParseIP("10.244.3.4"),
	net.ParseIP("fd10::4"),
	net.ParseIP("192.0.2.1"),
	net.ParseIP("2001:db8::1"),
	net.ParseIP("10.245.0.1"),
}

// FuzzServeDNS feeds raw messages through the server's handler path
// (RELIABILITY S2). Properties:
//   - no panic, at most one reply;
//   - a reply to anything but a parseable QUERY with one question is a bare
//     FORMERR/NOTIMP header (plus any question miekg had unpacked), never
//     larger than the message; responses and runts get none;
//   - a reply to a query echoes its ID and question;
//   - names in the cluster zone get AA and never RA;
//   - names outside it from a non-pod source get REFUSED without RA;
//   - a UDP reply fits min(max(client EDNS size, 512), 1232) bytes;
//   - over UDP, the fast path either declines or writes exactly the bytes
//     the handler path writes.
func FuzzServeDNS(f *testing.F) {
	for _, q := range []struct {
		m   *dns.Msg
		src uint8
		tcp bool
	}{
		{query("web-0.nginx.default.", dns.TypeA), 1, false},
		{withEDNS(query("big.default.svc.cluster.local.", dns.TypeA), 4096, true), 3, false},
		{query("_web._tcp.nginx.default.", dns.TypeSRV), 0, true},
		{query("example.com.", dns.TypeA), 3, false},
		{query("10.2.1.10.in-addr.arpa.", dns.TypePTR), 4, false},
		{query("nginx.default.", dns.TypeANY), 2, false},
		{withEDNS(query("WEB-1.nginx.default.svc.cluster.local.", dns.TypeAAAA), 1232, true), 5, false},
		{withEDNS(query("nope.default.", dns.TypeMX), 512, false), 3, false},
		{query("_web._tcp.nginx.default.", dns.TypeSRV), 1, false},
		{withCookie(withEDNS(query("web-0.nginx.default.", dns.TypeA), 1232, false)), 0, false},
	} {
		b, err := q.m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, q.src, q.tcp)
	}

	s := NewServer(Config{Upstreams: []string{}, PodCIDRs: testPodCIDRs}, hclog.NewNullLogger())
	z := BuildZone(bigInput(100))
	s.Swap(z)

	f.Fuzz(func(t *testing.T, raw []byte, src uint8, tcp bool) {
		ip := fuzzSources[int(src)%len(fuzzSources)]
		podOrLoopback := int(src)%len(fuzzSources) < 3
		w := &memWriter{remote: &net.UDPAddr{IP: ip, Port: 5353}}
		if tcp {
			w.remote = &net.TCPAddr{IP: ip, Port: 5353}
		}
		serveRaw(s, w, raw)

		if len(w.writes) > 1 {
			t.Fatalf("%d replies", len(w.writes))
		}
		if fast, _, ok := s.fastReply(nil, raw, nil); ok && !tcp {
			if len(w.writes) != 1 || !bytes.Equal(fast, w.writes[0]) {
				t.Fatalf("fast path wrote %x, the handler %x", fast, w.writes)
			}
		}
		if len(raw) < 12 || raw[2]&0x80 != 0 {
			if len(w.writes) != 0 {
				t.Fatalf("reply to a runt or a response")
			}
			return
		}
		q := new(dns.Msg)
		parsed := q.Unpack(raw) == nil
		if len(w.writes) == 0 {
			// Only responses and runts go unanswered.
			t.Fatalf("no reply to %v", q)
		}
		out := w.writes[0]
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if r.Id != binary.BigEndian.Uint16(raw) || !r.Response {
			t.Fatalf("reply header %v does not answer id %d", r.MsgHdr, binary.BigEndian.Uint16(raw))
		}

		// A query as the header announces it: one question, no answer or
		// authority records, at most an OPT and a TSIG.
		counts := func(i int) uint16 { return binary.BigEndian.Uint16(raw[4+2*i:]) }
		query := counts(0) == 1 && counts(1) == 0 && counts(2) == 0 && counts(3) <= 2
		if !parsed || !query || q.Opcode != dns.OpcodeQuery || len(q.Question) != 1 {
			if r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeNotImplemented {
				t.Fatalf("rcode %s for a message that is not a QUERY with one question", dns.RcodeToString[r.Rcode])
			}
			if len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 || r.Authoritative || len(out) > len(raw) {
				t.Fatalf("reply of %d bytes to a %d-byte malformed message: %v", len(out), len(raw), r)
			}
			return
		}

		if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
			t.Fatalf("reply question %v, asked %v", r.Question, q.Question)
		}
		if r.Authoritative && r.RecursionAvailable {
			t.Fatalf("authoritative reply with RA")
		}
		if !tcp {
			limit := dns.MinMsgSize
			if opt := q.IsEdns0(); opt != nil {
				limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), MaxUDPSize)
			}
			if len(out) > limit {
				t.Fatalf("UDP reply of %d bytes, limit %d", len(out), limit)
			}
		}
		if opt := q.IsEdns0(); opt != nil && opt.Version() != 0 {
			if r.Rcode != dns.RcodeBadVers {
				t.Fatalf("EDNS version %d: %s", opt.Version(), dns.RcodeToString[r.Rcode])
			}
			return
		}
		qq := q.Question[0]
		if qq.Qclass != dns.ClassINET || qq.Qtype == dns.TypeAXFR || qq.Qtype == dns.TypeIXFR {
			if r.Rcode != dns.RcodeRefused || r.Authoritative || r.RecursionAvailable {
				t.Fatalf("class %d type %d: %s aa=%v ra=%v, want REFUSED", qq.Qclass, qq.Qtype, dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
			}
			return
		}
		res := z.Lookup(qq.Name, qq.Qtype)
		switch {
		case res.InZone:
			if !r.Authoritative || r.RecursionAvailable || r.Rcode != res.Rcode {
				t.Fatalf("in-zone %s: %s aa=%v ra=%v, want %s aa only", qq.Name, dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable, dns.RcodeToString[res.Rcode])
			}
		case !podOrLoopback:
			if r.Rcode != dns.RcodeRefused || r.RecursionAvailable || r.Authoritative || len(r.Answer) != 0 {
				t.Fatalf("out-of-zone %s from %s: %s aa=%v ra=%v, want REFUSED", qq.Name, ip, dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
			}
		default:
			// Forwarding is off in this server.
			if r.Rcode != dns.RcodeServerFailure || !r.RecursionAvailable || r.Authoritative {
				t.Fatalf("out-of-zone %s from %s: %s aa=%v ra=%v, want SERVFAIL with RA", qq.Name, ip, dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
			}
		}
	})
}
