package dnsserver

import (
	"net/netip"
	"slices"
	"strconv"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

var testPodCIDRs = []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd10::/64")}

// bigInput is fixture plus headless Service "big" with n ready pods.
func bigInput(n int) ZoneInput {
	in := fixture()
	in.Services = append(in.Services, mkSvc("default", "big", selector("app=big"), port("web", "TCP", 80, "")))
	for i := range n {
		in.Pods = append(in.Pods, mkPod("default", "big-"+strconv.Itoa(i), "10.50."+strconv.Itoa(i/250)+"."+strconv.Itoa(i%250+1),
			labels("app=big"), member("big")))
	}
	return in
}

// newTestServer returns a server holding bigInput(100) that forwards
// nowhere.
func newTestServer(t testing.TB) *Server {
	s := NewServer(Config{Upstreams: []string{}, PodCIDRs: testPodCIDRs}, testLogger(t))
	s.Swap(BuildZone(bigInput(100)))
	return s
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg).SetQuestion(name, qtype)
	m.RecursionDesired = true
	return m
}

func withEDNS(m *dns.Msg, size uint16, do bool) *dns.Msg {
	m.SetEdns0(size, do)
	return m
}

// exchange serves m through the handler and returns the single reply
// written and its size on the wire.
func exchange(t *testing.T, s *Server, w *memWriter, m *dns.Msg) (*dns.Msg, int) {
	t.Helper()
	s.ServeDNS(w, m)
	if len(w.writes) != 1 {
		t.Fatalf("%d replies written, want 1", len(w.writes))
	}
	r := new(dns.Msg)
	if err := r.Unpack(w.writes[0]); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	return r, len(w.writes[0])
}

func TestServeDNSPolicy(t *testing.T) {
	s := newTestServer(t)
	tests := []struct {
		name   string
		w      *memWriter
		q      *dns.Msg
		rcode  int
		aa, ra bool
		answer []string
	}{
		{name: "cluster name from a pod", w: udpFrom("10.244.1.5"), q: query("web-0.nginx.default.", dns.TypeA),
			aa: true, answer: []string{"web-0.nginx.default. 30 IN A 10.1.2.10"}},
		// The cluster zone is answered to anyone who reaches the server.
		{name: "cluster name from outside", w: udpFrom("192.0.2.1"), q: query("web-0.nginx.default.", dns.TypeA),
			aa: true, answer: []string{"web-0.nginx.default. 30 IN A 10.1.2.10"}},
		{name: "cluster NXDOMAIN", w: tcpFrom("10.244.1.5"), q: query("web-9.nginx.default.", dns.TypeA),
			rcode: dns.RcodeNameError, aa: true},
		{name: "external from outside", w: udpFrom("192.0.2.1"), q: query("example.com.", dns.TypeA),
			rcode: dns.RcodeRefused},
		{name: "external from outside IPv6", w: tcpFrom("2001:db8::1"), q: query("example.com.", dns.TypeA),
			rcode: dns.RcodeRefused},
		{name: "external from a pod, no upstream", w: udpFrom("10.244.1.5"), q: query("example.com.", dns.TypeA),
			rcode: dns.RcodeServerFailure, ra: true},
		{name: "external from loopback, no upstream", w: udpFrom("127.0.0.1"), q: query("example.com.", dns.TypeA),
			rcode: dns.RcodeServerFailure, ra: true},
		{name: "external from IPv6 pod, no upstream", w: udpFrom("fd10::5"), q: query("example.com.", dns.TypeA),
			rcode: dns.RcodeServerFailure, ra: true},
		{name: "unknown reverse name from outside", w: udpFrom("192.0.2.1"), q: query("9.9.9.9.in-addr.arpa.", dns.TypePTR),
			rcode: dns.RcodeRefused},
		{name: "CHAOS class", w: udpFrom("127.0.0.1"), q: func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), rcode: dns.RcodeRefused},
		{name: "AXFR of the cluster zone", w: tcpFrom("127.0.0.1"), q: query("cluster.local.", dns.TypeAXFR),
			rcode: dns.RcodeRefused},
		{name: "ANY", w: udpFrom("192.0.2.1"), q: query("big.default.", dns.TypeANY),
			aa: true, answer: []string{`big.default. 30 IN HINFO "RFC8482" ""`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := exchange(t, s, tc.w, tc.q)
			if r.Rcode != tc.rcode || r.Authoritative != tc.aa || r.RecursionAvailable != tc.ra {
				t.Errorf("got %s aa=%v ra=%v, want %s aa=%v ra=%v", dns.RcodeToString[r.Rcode], r.Authoritative,
					r.RecursionAvailable, dns.RcodeToString[tc.rcode], tc.aa, tc.ra)
			}
			if r.Id != tc.q.Id || !r.Response || !r.RecursionDesired || len(r.Question) != 1 || r.Question[0] != tc.q.Question[0] {
				t.Errorf("reply header/question do not match the query: %v", r)
			}
			if got, want := texts(r.Answer), rrSet(t, tc.answer...); !slices.Equal(got, want) {
				t.Errorf("answer %q, want %q", got, want)
			}
		})
	}
}

func TestServeDNSBeforeFirstZone(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
	r, _ := exchange(t, s, udpFrom("127.0.0.1"), query("web-0.nginx.default.", dns.TypeA))
	if r.Rcode != dns.RcodeServerFailure || r.RecursionAvailable || r.Authoritative {
		t.Errorf("before Swap: %s aa=%v ra=%v, want SERVFAIL without AA and RA", dns.RcodeToString[r.Rcode], r.Authoritative, r.RecursionAvailable)
	}
	s.Swap(BuildZone(fixture()))
	if r, _ := exchange(t, s, udpFrom("127.0.0.1"), query("web-0.nginx.default.", dns.TypeA)); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		t.Errorf("after Swap: %v", r)
	}
}

// Messages that are not a QUERY with one question, handed to the handler
// directly, get what the accept function would have given them.
func TestServeDNSRejects(t *testing.T) {
	s := newTestServer(t)
	resp := query("web-0.nginx.default.", dns.TypeA)
	resp.Response = true
	w := udpFrom("127.0.0.1")
	s.ServeDNS(w, resp)
	if len(w.writes) != 0 {
		t.Errorf("a response got a reply")
	}

	notify := query("cluster.local.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	two := query("web-0.nginx.default.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	none := query("web-0.nginx.default.", dns.TypeA)
	none.Question = nil
	for _, tc := range []struct {
		name  string
		q     *dns.Msg
		rcode int
	}{
		{"NOTIFY", notify, dns.RcodeNotImplemented},
		{"two questions", two, dns.RcodeFormatError},
		{"no question", none, dns.RcodeFormatError},
	} {
		r, n := exchange(t, s, udpFrom("127.0.0.1"), tc.q)
		if r.Rcode != tc.rcode || n != 12 {
			t.Errorf("%s: %s in %d bytes, want %s header only", tc.name, dns.RcodeToString[r.Rcode], n, dns.RcodeToString[tc.rcode])
		}
	}
}

func TestServeDNSEDNSAndTruncation(t *testing.T) {
	s := newTestServer(t)
	big := "big.default.svc.cluster.local."
	tests := []struct {
		name    string
		w       *memWriter
		q       *dns.Msg
		maxSize int
		tc      bool
		answers int // -1: fewer than 100
		optSize uint16
		do      bool
		noOPT   bool
	}{
		{name: "UDP without EDNS", w: udpFrom("10.244.0.9"), q: query(big, dns.TypeA), maxSize: 512, tc: true, answers: -1, noOPT: true},
		{name: "UDP EDNS 4096 capped", w: udpFrom("10.244.0.9"), q: withEDNS(query(big, dns.TypeA), 4096, false), maxSize: MaxUDPSize, tc: true, answers: -1, optSize: MaxUDPSize},
		{name: "UDP EDNS 700", w: udpFrom("10.244.0.9"), q: withEDNS(query(big, dns.TypeA), 700, true), maxSize: 700, tc: true, answers: -1, optSize: MaxUDPSize, do: true},
		{name: "UDP EDNS below minimum", w: udpFrom("10.244.0.9"), q: withEDNS(query(big, dns.TypeA), 100, false), maxSize: 512, tc: true, answers: -1, optSize: MaxUDPSize},
		{name: "TCP", w: tcpFrom("10.244.0.9"), q: query(big, dns.TypeA), maxSize: dns.MaxMsgSize, answers: 100, noOPT: true},
		{name: "TCP EDNS 512", w: tcpFrom("10.244.0.9"), q: withEDNS(query(big, dns.TypeA), 512, false), maxSize: dns.MaxMsgSize, answers: 100, optSize: MaxUDPSize},
		{name: "UDP small answer", w: udpFrom("10.244.0.9"), q: withEDNS(query("web-0.nginx.default.", dns.TypeA), 512, false), maxSize: 512, answers: 1, optSize: MaxUDPSize},
		{name: "UDP SRV extras cut", w: udpFrom("10.244.0.9"), q: query("_web._tcp.big.default.", dns.TypeSRV), maxSize: 512, tc: true, answers: -1, noOPT: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, n := exchange(t, s, tc.w, tc.q)
			if n > tc.maxSize {
				t.Errorf("reply is %d bytes, max %d", n, tc.maxSize)
			}
			if r.Truncated != tc.tc {
				t.Errorf("TC = %v, want %v", r.Truncated, tc.tc)
			}
			if tc.answers >= 0 && len(r.Answer) != tc.answers || tc.answers < 0 && len(r.Answer) >= 100 {
				t.Errorf("%d answers, want %d", len(r.Answer), tc.answers)
			}
			for i, rr := range r.Answer {
				if i < len(r.Answer)-1 && rr.Header().Rrtype != r.Answer[i+1].Header().Rrtype {
					t.Errorf("mixed answer types")
				}
			}
			opt := r.IsEdns0()
			if tc.noOPT {
				if opt != nil {
					t.Errorf("OPT in reply to a query without EDNS")
				}
				return
			}
			if opt == nil || opt.UDPSize() != tc.optSize || opt.Do() != tc.do || opt.Version() != 0 {
				t.Errorf("reply OPT = %v, want size %d do=%v", opt, tc.optSize, tc.do)
			}
		})
	}
}

func TestServeDNSBadEDNSVersion(t *testing.T) {
	s := newTestServer(t)
	q := withEDNS(query("web-0.nginx.default.", dns.TypeA), 1232, false)
	q.IsEdns0().SetVersion(1)
	r, _ := exchange(t, s, udpFrom("127.0.0.1"), q)
	if r.Rcode != dns.RcodeBadVers || len(r.Answer) != 0 || r.IsEdns0() == nil {
		t.Errorf("EDNS version 1: rcode %s, %d answers, OPT %v; want BADVERS with OPT", dns.RcodeToString[r.Rcode], len(r.Answer), r.IsEdns0())
	}
}

func TestMayForward(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}, PodCIDRs: testPodCIDRs}, nil)
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.3.4.5", true},
		{"::1", true},
		{"::ffff:127.0.0.1", true},
		{"10.244.0.1", true},
		{"10.244.255.254", true},
		{"::ffff:10.244.3.3", true},
		{"fd10::1234", true},
		{"10.245.0.1", false},
		{"192.168.1.10", false},
		{"fd11::1", false},
		{"0.0.0.0", false},
		{"", false},
	} {
		var a netip.Addr
		if tc.src != "" {
			a = netip.MustParseAddr(tc.src)
		}
		if got := s.mayForward(a); got != tc.want {
			t.Errorf("mayForward(%s) = %v, want %v", tc.src, got, tc.want)
		}
	}
}

func TestAcceptMsg(t *testing.T) {
	const qr = 1 << 15
	opcode := func(op int) uint16 { return uint16(op) << 11 }
	for _, tc := range []struct {
		name string
		h    dns.Header
		want dns.MsgAcceptAction
	}{
		{"query", dns.Header{Qdcount: 1}, dns.MsgAccept},
		{"query with OPT and TSIG", dns.Header{Qdcount: 1, Arcount: 2}, dns.MsgAccept},
		{"response", dns.Header{Bits: qr, Qdcount: 1}, dns.MsgIgnore},
		{"response of other opcode", dns.Header{Bits: qr | opcode(dns.OpcodeUpdate), Qdcount: 1}, dns.MsgIgnore},
		{"NOTIFY", dns.Header{Bits: opcode(dns.OpcodeNotify), Qdcount: 1}, dns.MsgRejectNotImplemented},
		{"UPDATE", dns.Header{Bits: opcode(dns.OpcodeUpdate), Qdcount: 1, Nscount: 5}, dns.MsgRejectNotImplemented},
		{"IQUERY", dns.Header{Bits: opcode(dns.OpcodeIQuery), Qdcount: 1}, dns.MsgRejectNotImplemented},
		{"no question", dns.Header{}, dns.MsgReject},
		{"two questions", dns.Header{Qdcount: 2}, dns.MsgReject},
		{"answers", dns.Header{Qdcount: 1, Ancount: 1}, dns.MsgReject},
		{"authority", dns.Header{Qdcount: 1, Nscount: 1}, dns.MsgReject},
		{"three additional", dns.Header{Qdcount: 1, Arcount: 3}, dns.MsgReject},
	} {
		if got := acceptMsg(tc.h); got != tc.want {
			t.Errorf("%s: acceptMsg = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestCounters(t *testing.T) {
	s := newTestServer(t)
	for _, q := range []struct {
		w *memWriter
		m *dns.Msg
	}{
		{udpFrom("10.244.0.2"), query("web-0.nginx.default.", dns.TypeA)},
		{udpFrom("10.244.0.2"), query("web-0.nginx.default.", dns.TypeAAAA)},
		{udpFrom("10.244.0.2"), query("web-9.nginx.default.", dns.TypeA)},
		{udpFrom("192.0.2.1"), query("example.com.", dns.TypeA)},
		{udpFrom("10.244.0.2"), query("example.com.", dns.TypeA)},
		{udpFrom("10.244.0.2"), query("big.default.", dns.TypeA)},
	} {
		s.ServeDNS(q.w, q.m)
	}
	c := s.Counters()
	got := []uint64{c.NoError.Load(), c.NXDomain.Load(), c.Refused.Load(), c.ServFail.Load(), c.Forwarded.Load(), c.ForwardFailures.Load(), c.Truncated.Load()}
	want := []uint64{3, 1, 1, 1, 0, 1, 1}
	if !slices.Equal(got, want) {
		t.Errorf("noerror, nxdomain, refused, servfail, forwarded, forward failures, truncated = %v, want %v", got, want)
	}
}

// The zone the server holds is replaced whole; the old one is returned.
func TestSwap(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, nil)
	a, b := BuildZone(fixture()), BuildZone(ZoneInput{Pods: []*corev1.Pod{}})
	if old := s.Swap(a); old != nil {
		t.Errorf("first Swap returned %p", old)
	}
	if old := s.Swap(b); old != a {
		t.Errorf("second Swap returned %p, want %p", old, a)
	}
	if s.Zone() != b {
		t.Errorf("Zone() is not the last swapped in")
	}
}
