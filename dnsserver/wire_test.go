package dnsserver

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// slowReply returns what the handler path writes for raw from a UDP pod
// client.
func slowReply(t *testing.T, s *Server, raw []byte) []byte {
	t.Helper()
	w := udpFrom("10.244.0.9")
	serveRaw(s, w, raw)
	if len(w.writes) != 1 {
		t.Fatalf("%d replies written by the handler path, want 1", len(w.writes))
	}
	return w.writes[0]
}

func pack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The fast path answers plain UDP queries for every kind of name in the zone
// with exactly the bytes the handler path writes, and leaves every other
// message to the handler.
func TestFastReplyMatchesSlowPath(t *testing.T) {
	s := newTestServer(t)
	web1PTR, err := dns.ReverseAddr("fd00::11")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		q     *dns.Msg
		fast  bool
		rcode int
		an    int // answer records of a fast reply
	}{
		{name: "pod A", q: query(web0, dns.TypeA), fast: true, an: 1},
		{name: "pod A short", q: query("web-0.nginx.default.", dns.TypeA), fast: true, an: 1},
		{name: "pod A mixed case", q: query("WEB-0.Nginx.DEFAULT.svc.Cluster.Local.", dns.TypeA), fast: true, an: 1},
		{name: "pod AAAA", q: query(web1, dns.TypeAAAA), fast: true, an: 1},
		{name: "service A set", q: query("nginx.default.", dns.TypeA), fast: true, an: 4},
		{name: "cluster IP A", q: query("api.default.svc.cluster.local.", dns.TypeA), fast: true, an: 1},
		{name: "SRV with additional addresses", q: query("_web._tcp.nginx.default.", dns.TypeSRV), fast: true, an: 2},
		{name: "SRV of a cluster IP", q: query("_https._tcp.api.default.", dns.TypeSRV), fast: true, an: 1},
		{name: "PTR IPv4", q: query("10.2.1.10.in-addr.arpa.", dns.TypePTR), fast: true, an: 1},
		{name: "PTR IPv6", q: query(web1PTR, dns.TypePTR), fast: true, an: 1},
		{name: "PTR of a cluster IP", q: query("10.0.96.10.in-addr.arpa.", dns.TypePTR), fast: true, an: 1},
		{name: "apex SOA", q: query("cluster.local.", dns.TypeSOA), fast: true, an: 1},
		{name: "NXDOMAIN long", q: query("web-9.nginx.default.svc.cluster.local.", dns.TypeA), fast: true, rcode: dns.RcodeNameError},
		{name: "NXDOMAIN short", q: query("nope.default.", dns.TypeA), fast: true, rcode: dns.RcodeNameError},
		{name: "NXDOMAIN in a namespace with nothing", q: query("x.staging.", dns.TypeA), fast: true, rcode: dns.RcodeNameError},
		{name: "NODATA other type", q: query(web0, dns.TypeTXT), fast: true},
		{name: "NODATA AAAA of an IPv4 pod", q: query("web-0.nginx.default.", dns.TypeAAAA), fast: true},
		{name: "NODATA empty non-terminal", q: query("default.svc.cluster.local.", dns.TypeA), fast: true},
		{name: "NODATA short namespace", q: query("default.", dns.TypeA), fast: true},
		{name: "ANY", q: query("nginx.default.", dns.TypeANY), fast: true, an: 1},
		{name: "ANY of an empty non-terminal", q: query("svc.cluster.local.", dns.TypeANY), fast: true},
		{name: "EDNS", q: withEDNS(query(web0, dns.TypeA), 4096, false), fast: true, an: 1},
		{name: "EDNS DO", q: withEDNS(query("_web._tcp.nginx.default.", dns.TypeSRV), 1232, true), fast: true, an: 2},
		{name: "EDNS client cookie", q: with(withEDNS(query(web0, dns.TypeA), 1232, false), func(m *dns.Msg) {
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}), fast: true, an: 1},
		{name: "EDNS cookies and padding", q: with(withEDNS(query("nope.default.", dns.TypeA), 1232, true), func(m *dns.Msg) {
			m.IsEdns0().Option = append(m.IsEdns0().Option,
				&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708aabbccddeeff0011"},
				&dns.EDNS0_PADDING{Padding: make([]byte, 40)})
		}), fast: true, rcode: dns.RcodeNameError},
		{name: "EDNS below minimum", q: withEDNS(query("nope.default.", dns.TypeA), 100, false), fast: true, rcode: dns.RcodeNameError},
		{name: "RD clear, CD and AD set", q: with(query(web0, dns.TypeA), func(m *dns.Msg) {
			m.RecursionDesired, m.CheckingDisabled, m.AuthenticatedData = false, true, true
		}), fast: true, an: 1},
		{name: "TC, Z and RA set in the query", q: with(query(web0, dns.TypeA), func(m *dns.Msg) {
			m.Truncated, m.Zero, m.RecursionAvailable = true, true, true
		}), fast: true, an: 1},
		{name: "underscore and digits", q: query("_9._udp.x1.default.", dns.TypeSRV), fast: true, rcode: dns.RcodeNameError},

		// Left to the handler.
		{name: "truncated without EDNS", q: query("big.default.", dns.TypeA)},
		{name: "truncated with EDNS", q: withEDNS(query("big.default.", dns.TypeA), 4096, false)},
		{name: "SRV truncated", q: query("_web._tcp.big.default.", dns.TypeSRV)},
		{name: "outside the zone", q: query("example.com.", dns.TypeA)},
		{name: "reverse name without PTR", q: query("9.9.9.9.in-addr.arpa.", dns.TypePTR)},
		{name: "class CH", q: with(query(web0, dns.TypeA), func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })},
		{name: "AXFR", q: query("cluster.local.", dns.TypeAXFR)},
		{name: "IXFR", q: query("cluster.local.", dns.TypeIXFR)},
		{name: "EDNS version 1", q: with(withEDNS(query(web0, dns.TypeA), 1232, false), func(m *dns.Msg) { m.IsEdns0().SetVersion(1) })},
		{name: "EDNS other option", q: with(withEDNS(query(web0, dns.TypeA), 1232, false), func(m *dns.Msg) {
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		})},
		{name: "EDNS cookie and other option", q: with(withEDNS(query(web0, dns.TypeA), 1232, false), func(m *dns.Msg) {
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
				&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0)})
		})},
		{name: "escaped character", q: query(`web\.0.nginx.default.`, dns.TypeA)},
		{name: "root", q: query(".", dns.TypeNS)},
		{name: "opcode NOTIFY", q: with(query(web0, dns.TypeA), func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })},
		{name: "two questions", q: with(query(web0, dns.TypeA), func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })},
		{name: "an answer record", q: with(query(web0, dns.TypeA), func(m *dns.Msg) {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: web0, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := pack(t, tc.q)
			want := slowReply(t, s, raw)
			got, rcode, ok := s.fastReply([]byte("prefix"), raw, make([]byte, 0, 8))
			if ok != tc.fast {
				t.Fatalf("fast path taken = %v, want %v", ok, tc.fast)
			}
			if !ok {
				if string(got) != "prefix" {
					t.Errorf("fast path declined but changed dst to %q", got)
				}
				return
			}
			if !bytes.HasPrefix(got, []byte("prefix")) {
				t.Fatalf("reply does not extend dst: %q", got)
			}
			got = got[len("prefix"):]
			if !bytes.Equal(got, want) {
				g, w := new(dns.Msg), new(dns.Msg)
				g.Unpack(got)
				w.Unpack(want)
				t.Fatalf("fast reply differs from the handler's:\n got %x\n%v\nwant %x\n%v", got, g, want, w)
			}
			r := new(dns.Msg)
			if err := r.Unpack(got); err != nil {
				t.Fatal(err)
			}
			if rcode != tc.rcode || r.Rcode != tc.rcode || len(r.Answer) != tc.an {
				t.Errorf("rcode %s (reported %s), %d answers; want %s, %d", dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode],
					len(r.Answer), dns.RcodeToString[tc.rcode], tc.an)
			}
		})
	}
}

// Every record set of the zone, in every spelling Lookup accepts, gets the
// handler's bytes from the fast path.
func TestFastReplyEveryName(t *testing.T) {
	s := newTestServer(t)
	z := s.Zone()
	n := 0
	for name, nd := range z.nodes {
		spellings := []string{name}
		if short, ok := cutSuffix(name, "svc."+z.domain); ok {
			spellings = append(spellings, short)
		}
		types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypePTR, dns.TypeSOA, dns.TypeANY, dns.TypeMX}
		for _, set := range nd.sets {
			types = append(types, set.rrtype)
		}
		for _, sp := range spellings {
			for _, qt := range types {
				for _, edns := range []bool{false, true} {
					q := query(sp, qt)
					if edns {
						withEDNS(q, 1232, true)
					}
					raw := pack(t, q)
					want := slowReply(t, s, raw)
					got, _, ok := s.fastReply(nil, raw, nil)
					if !ok {
						// Only a reply that needs truncation is left out.
						if r := new(dns.Msg); r.Unpack(want) != nil || !r.Truncated {
							t.Errorf("%s %s edns=%v: not on the fast path", sp, dns.TypeToString[qt], edns)
						}
						continue
					}
					n++
					if !bytes.Equal(got, want) {
						t.Errorf("%s %s edns=%v: fast reply %x, handler %x", sp, dns.TypeToString[qt], edns, got, want)
					}
				}
			}
		}
	}
	if n < 1000 {
		t.Errorf("only %d queries on the fast path", n)
	}
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return "", false
}

// Over a real UDP socket, a cluster name is answered by the fast path with
// the handler's bytes, and counted; a message it does not take still gets
// the handler's reply.
func TestFastPathOverUDP(t *testing.T) {
	s := newTestServer(t)
	addr := serve(t, s)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 65535)
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		count func() uint64
		fast  bool
	}{
		{"fast A", query("web-0.nginx.default.", dns.TypeA), s.counters.NoError.Load, true},
		{"fast NXDOMAIN", query("nope.default.", dns.TypeA), s.counters.NXDomain.Load, true},
		{"handler truncates", query("big.default.", dns.TypeA), s.counters.Truncated.Load, false},
		{"handler refuses class CH", with(query(web0, dns.TypeA), func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), s.counters.Refused.Load, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := pack(t, tc.q)
			want := slowReply(t, newTestServer(t), raw)
			before, fastBefore := tc.count(), s.fastReplies.Load()
			if _, err := conn.Write(raw); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf[:n], want) {
				t.Errorf("reply %x, want the handler's %x", buf[:n], want)
			}
			if got := tc.count(); got != before+1 {
				t.Errorf("counter went from %d to %d, want +1", before, got)
			}
			if fast := s.fastReplies.Load() == fastBefore+1; fast != tc.fast {
				t.Errorf("answered on the fast path = %v, want %v", fast, tc.fast)
			}
		})
	}
}

func with(m *dns.Msg, f func(*dns.Msg)) *dns.Msg { f(m); return m }
