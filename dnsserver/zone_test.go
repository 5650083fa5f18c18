package dnsserver

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// fixture is a cluster with one of everything section C talks about. TTL 30
// and negative TTL 7 tell the two apart.
func fixture() ZoneInput {
	web := func(name, ip string, opts ...podOpt) *corev1.Pod {
		return mkPod("default", name, ip, append([]podOpt{member("nginx"), containerPort("http", 8080)}, opts...)...)
	}
	db := func(name, ip string, opts ...podOpt) *corev1.Pod {
		return mkPod("default", name, ip, append([]podOpt{member("peers"), labels("app=db")}, opts...)...)
	}
	return ZoneInput{
		Namespaces:  []string{"default", "prod", "staging"},
		TTL:         30,
		NegativeTTL: 7,
		Serial:      42,
		Services: []*corev1.Service{
			// Headless, ready endpoints only; two named ports (one with a
			// named target port), one unnamed.
			mkSvc("default", "nginx",
				port("web", "TCP", 80, "http"),
				port("metrics", "UDP", 9100, ""),
				port("", "TCP", 8081, "")),
			// Headless, publishNotReadyAddresses.
			mkSvc("default", "peers", selector("app=db"), publishNotReady, port("raft", "TCP", 7000, "7001")),
			// Headless without endpoints.
			mkSvc("default", "empty", selector("app=none"), port("web", "TCP", 80, "")),
			// Cluster IP.
			mkSvc("default", "api", clusterIP("10.96.0.10"), selector("app=api"), port("https", "TCP", 443, "")),
			// Headless, selecting nothing of what claims it as subdomain.
			mkSvc("default", "other", selector("app=other")),
			// The same Service name in another namespace.
			mkSvc("prod", "nginx"),
		},
		Pods: []*corev1.Pod{
			web("web-0", "10.1.2.10"),
			web("web-1", "10.1.2.11", ips("10.1.2.11", "fd00::11")),
			web("web-2", "10.1.2.12", notReady),
			web("web-3", "10.1.2.13", terminating),
			web("web-4", "10.1.2.14", phase(corev1.PodPending)),
			// C.28: selected, ready, no hostname: only the Service's A set.
			mkPod("default", "nohost", "10.1.2.20", host("", "nginx")),
			// Selected, ready, hostname, but its subdomain is another
			// Service: in nginx's A set, no per-pod name.
			mkPod("default", "elsewhere", "10.1.2.21", host("elsewhere", "other")),
			// Subdomain names a Service that does not select it.
			mkPod("default", "stray", "10.1.2.22", labels("app=stray"), host("stray", "other")),
			// Subdomain names a cluster-IP Service.
			mkPod("default", "x", "10.1.2.23", labels("app=api"), host("x", "api")),
			db("db-0", "10.1.3.10"),
			db("db-1", "10.1.3.11", notReady),
			db("db-2", "10.1.3.12", terminating),
			db("db-3", "10.1.3.13", phase(corev1.PodFailed)),
			db("db-4", ""),
			mkPod("prod", "web-0", "10.9.0.10", member("nginx")),
		},
	}
}

const (
	soa      = "cluster.local. 7 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 7"
	web0     = "web-0.nginx.default.svc.cluster.local."
	web1     = "web-1.nginx.default.svc.cluster.local."
	web0A    = web0 + " 30 IN A 10.1.2.10"
	web1A    = web1 + " 30 IN A 10.1.2.11"
	web1AAAA = web1 + " 30 IN AAAA fd00::11"
)

func TestLookup(t *testing.T) {
	z := BuildZone(fixture())
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		ns     []string
		extra  []string
		out    bool // not in the zone
	}{
		// C.19, C.20: per-pod records, long and short forms.
		{name: "pod A", qname: web0, qtype: dns.TypeA,
			answer: []string{web0A}},
		{name: "pod A short", qname: "web-0.nginx.default.", qtype: dns.TypeA,
			answer: []string{"web-0.nginx.default. 30 IN A 10.1.2.10"}},
		{name: "pod A short without dot", qname: "web-0.nginx.default", qtype: dns.TypeA,
			answer: []string{"web-0.nginx.default. 30 IN A 10.1.2.10"}},
		{name: "pod AAAA dual stack", qname: web1, qtype: dns.TypeAAAA,
			answer: []string{web1AAAA}},
		{name: "pod A dual stack", qname: web1, qtype: dns.TypeA,
			answer: []string{web1A}},
		// C.24: case-insensitive, the answer keeps the query's spelling.
		{name: "mixed case", qname: "WEB-0.Nginx.DEFAULT.svc.Cluster.Local.", qtype: dns.TypeA,
			answer: []string{"WEB-0.Nginx.DEFAULT.svc.Cluster.Local. 30 IN A 10.1.2.10"}},
		{name: "mixed case short", qname: "Web-1.NGINX.Default.", qtype: dns.TypeAAAA,
			answer: []string{"Web-1.NGINX.Default. 30 IN AAAA fd00::11"}},
		{name: "namespaces are separate", qname: "web-0.nginx.prod.", qtype: dns.TypeA,
			answer: []string{"web-0.nginx.prod. 30 IN A 10.9.0.10"}},

		// C.20: only ready, non-terminating pods.
		{name: "not ready pod", qname: "web-2.nginx.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "terminating pod", qname: "web-3.nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "pending pod", qname: "web-4.nginx.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "unknown pod", qname: "web-9.nginx.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		// C.28: no hostname, no name of its own.
		{name: "pod without hostname", qname: "nohost.nginx.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		// C.20 (a): the subdomain Service must be headless and select the pod.
		{name: "subdomain of other service", qname: "elsewhere.nginx.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "subdomain not selecting", qname: "stray.other.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "subdomain not headless", qname: "x.api.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		// NODATA: the name exists with other types.
		{name: "AAAA of IPv4-only pod", qname: web0, qtype: dns.TypeAAAA,
			ns: []string{soa}},
		{name: "TXT of pod", qname: "web-0.nginx.default.", qtype: dns.TypeTXT,
			ns: []string{soa}},

		// C.21: the Service's A set is every ready endpoint, hostname or not.
		{name: "service A", qname: "nginx.default.svc.cluster.local.", qtype: dns.TypeA,
			answer: []string{
				"nginx.default.svc.cluster.local. 30 IN A 10.1.2.10",
				"nginx.default.svc.cluster.local. 30 IN A 10.1.2.11",
				"nginx.default.svc.cluster.local. 30 IN A 10.1.2.20",
				"nginx.default.svc.cluster.local. 30 IN A 10.1.2.21",
			}},
		{name: "service AAAA", qname: "nginx.default.", qtype: dns.TypeAAAA,
			answer: []string{"nginx.default. 30 IN AAAA fd00::11"}},
		{name: "headless service without ready endpoints", qname: "empty.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "no SRV without endpoints", qname: "_web._tcp.empty.default.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "service selecting nobody ready", qname: "other.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "unknown service", qname: "nope.default.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},

		// C.26: publishNotReadyAddresses publishes unready and terminating
		// pods, never finished ones or ones without an IP.
		{name: "publishNotReady service A", qname: "peers.default.", qtype: dns.TypeA,
			answer: []string{
				"peers.default. 30 IN A 10.1.3.10",
				"peers.default. 30 IN A 10.1.3.11",
				"peers.default. 30 IN A 10.1.3.12",
			}},
		{name: "publishNotReady unready pod", qname: "db-1.peers.default.", qtype: dns.TypeA,
			answer: []string{"db-1.peers.default. 30 IN A 10.1.3.11"}},
		{name: "publishNotReady terminating pod", qname: "db-2.peers.default.", qtype: dns.TypeA,
			answer: []string{"db-2.peers.default. 30 IN A 10.1.3.12"}},
		{name: "publishNotReady failed pod", qname: "db-3.peers.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "publishNotReady pod without IP", qname: "db-4.peers.default.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "publishNotReady SRV", qname: "_raft._tcp.peers.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{
				"_raft._tcp.peers.default.svc.cluster.local. 30 IN SRV 0 100 7001 db-0.peers.default.svc.cluster.local.",
				"_raft._tcp.peers.default.svc.cluster.local. 30 IN SRV 0 100 7001 db-1.peers.default.svc.cluster.local.",
				"_raft._tcp.peers.default.svc.cluster.local. 30 IN SRV 0 100 7001 db-2.peers.default.svc.cluster.local.",
			},
			extra: []string{
				"db-0.peers.default.svc.cluster.local. 30 IN A 10.1.3.10",
				"db-1.peers.default.svc.cluster.local. 30 IN A 10.1.3.11",
				"db-2.peers.default.svc.cluster.local. 30 IN A 10.1.3.12",
			}},

		// C.22: SRV per named port × ready endpoint with hostname; the port
		// is the endpoint's (named target port resolved on the pod).
		{name: "SRV named target port", qname: "_web._tcp.nginx.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{
				"_web._tcp.nginx.default.svc.cluster.local. 30 IN SRV 0 100 8080 " + web0,
				"_web._tcp.nginx.default.svc.cluster.local. 30 IN SRV 0 100 8080 " + web1,
			},
			extra: []string{web0A, web1A, web1AAAA}},
		{name: "SRV second port short form", qname: "_metrics._udp.nginx.default.", qtype: dns.TypeSRV,
			answer: []string{
				"_metrics._udp.nginx.default. 30 IN SRV 0 100 9100 " + web0,
				"_metrics._udp.nginx.default. 30 IN SRV 0 100 9100 " + web1,
			},
			extra: []string{web0A, web1A, web1AAAA}},
		{name: "SRV wrong protocol", qname: "_web._udp.nginx.default.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "SRV of the container port name", qname: "_http._tcp.nginx.default.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "SRV of unnamed port", qname: "_8081._tcp.nginx.default.", qtype: dns.TypeSRV,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "A of SRV name", qname: "_web._tcp.nginx.default.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "SRV of service name is NODATA", qname: "nginx.default.svc.cluster.local.", qtype: dns.TypeSRV,
			ns: []string{soa}},

		// Empty non-terminals exist: NODATA, not NXDOMAIN.
		{name: "proto label", qname: "_tcp.nginx.default.svc.cluster.local.", qtype: dns.TypeSRV,
			ns: []string{soa}},
		{name: "namespace", qname: "default.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "namespace short", qname: "default.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "namespace without objects", qname: "staging.svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "name in namespace without objects", qname: "db.staging.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "svc", qname: "svc.cluster.local.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "unknown namespace", qname: "web-0.nginx.nope.svc.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},
		{name: "pod subtree", qname: "10-1-2-10.default.pod.cluster.local.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, ns: []string{soa}},

		// The apex.
		{name: "SOA", qname: "cluster.local.", qtype: dns.TypeSOA,
			answer: []string{"cluster.local. 30 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 7"}},
		{name: "apex NS", qname: "Cluster.Local.", qtype: dns.TypeNS,
			ns: []string{soa}},

		// Cluster-IP Service.
		{name: "cluster IP", qname: "api.default.", qtype: dns.TypeA,
			answer: []string{"api.default. 30 IN A 10.96.0.10"}},
		{name: "cluster IP SRV", qname: "_https._tcp.api.default.svc.cluster.local.", qtype: dns.TypeSRV,
			answer: []string{"_https._tcp.api.default.svc.cluster.local. 30 IN SRV 0 100 443 api.default.svc.cluster.local."},
			extra:  []string{"api.default.svc.cluster.local. 30 IN A 10.96.0.10"}},

		// C.23: PTR.
		{name: "PTR", qname: "10.2.1.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.2.1.10.in-addr.arpa. 30 IN PTR " + web0}},
		{name: "PTR IPv6", qname: "1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", qtype: dns.TypePTR,
			answer: []string{"1.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR " + web1}},
		{name: "PTR upper case", qname: "10.2.1.10.IN-ADDR.ARPA.", qtype: dns.TypePTR,
			answer: []string{"10.2.1.10.IN-ADDR.ARPA. 30 IN PTR " + web0}},
		{name: "PTR publishNotReady", qname: "11.3.1.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"11.3.1.10.in-addr.arpa. 30 IN PTR db-1.peers.default.svc.cluster.local."}},
		{name: "PTR cluster IP", qname: "10.0.96.10.in-addr.arpa.", qtype: dns.TypePTR,
			answer: []string{"10.0.96.10.in-addr.arpa. 30 IN PTR api.default.svc.cluster.local."}},
		{name: "A of PTR name", qname: "10.2.1.10.in-addr.arpa.", qtype: dns.TypeA,
			ns: []string{soa}},
		{name: "PTR of pod without hostname", qname: "20.2.1.10.in-addr.arpa.", qtype: dns.TypePTR,
			out: true},
		{name: "PTR of unready pod", qname: "12.2.1.10.in-addr.arpa.", qtype: dns.TypePTR,
			out: true},

		// ANY: one HINFO (RFC 8482).
		{name: "ANY", qname: "nginx.default.", qtype: dns.TypeANY,
			answer: []string{`nginx.default. 30 IN HINFO "RFC8482" ""`}},
		{name: "ANY of empty non-terminal", qname: "default.svc.cluster.local.", qtype: dns.TypeANY,
			ns: []string{soa}},
		{name: "ANY of missing name", qname: "web-9.nginx.default.", qtype: dns.TypeANY,
			rcode: dns.RcodeNameError, ns: []string{soa}},

		// Outside the zone.
		{name: "external", qname: "example.com.", qtype: dns.TypeA, out: true},
		{name: "external under a namespace-like label", qname: "default.example.", qtype: dns.TypeA, out: true},
		{name: "cluster name under another domain", qname: "nginx.default.svc.cluster.local.example.", qtype: dns.TypeA, out: true},
		{name: "similar domain", qname: "xcluster.local.", qtype: dns.TypeA, out: true},
		{name: "root", qname: ".", qtype: dns.TypeNS, out: true},
		{name: "empty", qname: "", qtype: dns.TypeA, out: true},
		{name: "escaped dot", qname: `web-0.nginx\.default.`, qtype: dns.TypeA, out: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := z.Lookup(tc.qname, tc.qtype)
			if tc.out {
				if got.InZone || got.Rcode != dns.RcodeRefused || len(got.Answer)+len(got.Ns)+len(got.Extra) != 0 {
					t.Fatalf("Lookup(%q) = %+v, want not in zone", tc.qname, got)
				}
				return
			}
			if !got.InZone {
				t.Fatalf("Lookup(%q) not in zone", tc.qname)
			}
			if got.Rcode != tc.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[got.Rcode], dns.RcodeToString[tc.rcode])
			}
			for _, sec := range []struct {
				name      string
				got, want []string
			}{
				{"answer", texts(got.Answer), rrSet(t, tc.answer...)},
				{"authority", texts(got.Ns), rrSet(t, tc.ns...)},
				{"additional", texts(got.Extra), rrSet(t, tc.extra...)},
			} {
				if !slices.Equal(sec.got, sec.want) {
					t.Errorf("%s:\n got %q\nwant %q", sec.name, sec.got, sec.want)
				}
			}
		})
	}
}

func TestBuildZoneDefaults(t *testing.T) {
	z := BuildZone(ZoneInput{
		Services: []*corev1.Service{mkSvc("default", "nginx")},
		Pods:     []*corev1.Pod{mkPod("default", "web-0", "10.0.0.1", member("nginx"))},
	})
	if z.Domain() != "cluster.local." {
		t.Errorf("Domain() = %q, want cluster.local.", z.Domain())
	}
	got := z.Lookup("web-0.nginx.default.svc.cluster.local.", dns.TypeA)
	want := rrSet(t, "web-0.nginx.default.svc.cluster.local. 5 IN A 10.0.0.1")
	if !slices.Equal(texts(got.Answer), want) {
		t.Errorf("answer = %q, want %q", texts(got.Answer), want)
	}
	neg := z.Lookup("web-1.nginx.default.", dns.TypeA)
	wantNS := rrSet(t, "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5")
	if neg.Rcode != dns.RcodeNameError || !slices.Equal(texts(neg.Ns), wantNS) {
		t.Errorf("negative = %s %q, want NXDOMAIN %q", dns.RcodeToString[neg.Rcode], texts(neg.Ns), wantNS)
	}
}

func TestBuildZoneCustomDomain(t *testing.T) {
	z := BuildZone(ZoneInput{
		Domain:   "Corp.Internal.",
		Services: []*corev1.Service{mkSvc("default", "nginx")},
		Pods:     []*corev1.Pod{mkPod("default", "web-0", "10.0.0.1", member("nginx"))},
	})
	if got := z.Lookup("web-0.nginx.default.svc.corp.internal.", dns.TypeA); len(got.Answer) != 1 {
		t.Errorf("long name under custom domain: %+v", got)
	}
	if got := z.Lookup("web-0.nginx.default.svc.cluster.local.", dns.TypeA); got.InZone {
		t.Errorf("cluster.local is not this zone's domain, got %+v", got)
	}
	got := z.Lookup("web-0.nginx.default.", dns.TypeSRV)
	want := rrSet(t, "corp.internal. 5 IN SOA ns.dns.corp.internal. hostmaster.corp.internal. 0 7200 1800 86400 5")
	if !slices.Equal(texts(got.Ns), want) {
		t.Errorf("NODATA authority = %q, want %q", texts(got.Ns), want)
	}
}

// Objects whose names cannot be record labels are left out rather than
// producing odd names.
func TestBuildZoneSkipsInvalidNames(t *testing.T) {
	z := BuildZone(ZoneInput{
		Services: []*corev1.Service{
			mkSvc("default", "nginx", port("Bad_Name", "TCP", 80, ""), port("ok", "TCP", 81, "")),
			mkSvc("default", "a.b"),
			mkSvc("Bad NS", "nginx"),
		},
		Pods: []*corev1.Pod{
			mkPod("default", "p1", "10.0.0.1", host("has.dot", "nginx")),
			mkPod("default", "p2", "10.0.0.2", host("UPPER", "nginx")),
			mkPod("default", "p3", "not-an-ip", member("nginx")),
			mkPod("default", "web-0", "10.0.0.3", member("nginx")),
		},
	})
	if got := texts(z.Lookup("_ok._tcp.nginx.default.", dns.TypeSRV).Answer); !slices.Equal(got,
		rrSet(t, "_ok._tcp.nginx.default. 5 IN SRV 0 100 81 web-0.nginx.default.svc.cluster.local.")) {
		t.Errorf("SRV = %q, want only web-0", got)
	}
	// The pods with bad hostnames still count for the Service's A set (C.28);
	// the one without a valid IP does not.
	if got := texts(z.Lookup("nginx.default.", dns.TypeA).Answer); !slices.Equal(got, rrSet(t,
		"nginx.default. 5 IN A 10.0.0.1", "nginx.default. 5 IN A 10.0.0.2", "nginx.default. 5 IN A 10.0.0.3")) {
		t.Errorf("A = %q", got)
	}
	for _, name := range []string{"has.dot.nginx.default.", "upper.nginx.default.", "a.b.default.", "nginx.bad ns."} {
		if got := z.Lookup(name, dns.TypeA); len(got.Answer) != 0 {
			t.Errorf("Lookup(%q) = %q, want no answer", name, texts(got.Answer))
		}
	}
}

// Lookup hands out copies: changing them does not change the zone.
func TestLookupReturnsCopies(t *testing.T) {
	z := BuildZone(fixture())
	r := z.Lookup("_web._tcp.nginx.default.", dns.TypeSRV)
	r.Answer[0].Header().Ttl = 1
	r.Extra[0].(*dns.A).A[0] = 99
	again := z.Lookup("_web._tcp.nginx.default.", dns.TypeSRV)
	if again.Answer[0].Header().Ttl != 30 || again.Extra[0].(*dns.A).A[0] == 99 {
		t.Errorf("zone changed through a lookup result: %q %q", texts(again.Answer), texts(again.Extra))
	}
	neg := z.Lookup("nope.default.", dns.TypeA)
	neg.Ns[0].Header().Ttl = 1000
	if z.Lookup("nope.default.", dns.TypeA).Ns[0].Header().Ttl != 7 {
		t.Error("zone SOA changed through a lookup result")
	}
}

// BuildZone does not depend on the order of its input.
func TestBuildZoneDeterministic(t *testing.T) {
	in := fixture()
	a := BuildZone(in)
	slices.Reverse(in.Pods)
	slices.Reverse(in.Services)
	b := BuildZone(in)
	for _, q := range []struct {
		name string
		t    uint16
	}{{"nginx.default.", dns.TypeA}, {"_web._tcp.nginx.default.", dns.TypeSRV}, {"peers.default.", dns.TypeA}} {
		ra, rb := a.Lookup(q.name, q.t), b.Lookup(q.name, q.t)
		var sa, sb []string
		for _, rr := range append(ra.Answer, ra.Extra...) {
			sa = append(sa, rr.String())
		}
		for _, rr := range append(rb.Answer, rb.Extra...) {
			sb = append(sb, rr.String())
		}
		if !slices.Equal(sa, sb) {
			t.Errorf("%s: order depends on input order:\n%q\n%q", q.name, sa, sb)
		}
	}
}

// A record that two objects both produce is in its set once; records that
// differ in any part are all there.
func TestBuildZoneNoDuplicates(t *testing.T) {
	z := BuildZone(ZoneInput{
		Services: []*corev1.Service{
			// The same named port twice gives the same SRV records twice.
			mkSvc("default", "dup", port("web", "TCP", 80, ""), port("web", "TCP", 80, ""), port("web", "UDP", 80, "")),
		},
		Pods: []*corev1.Pod{
			// Two pods with one address: the Service's A set has it once,
			// and the address has a PTR record for each pod.
			mkPod("default", "a-0", "10.7.0.1", member("dup")),
			mkPod("default", "a-1", "10.7.0.1", member("dup")),
			mkPod("default", "a-2", "10.7.0.2", member("dup")),
		},
	})
	tests := []struct {
		qname        string
		qtype        uint16
		answer, extr []string
	}{
		{"dup.default.", dns.TypeA, []string{"dup.default. 5 IN A 10.7.0.1", "dup.default. 5 IN A 10.7.0.2"}, nil},
		{"1.0.7.10.in-addr.arpa.", dns.TypePTR, []string{
			"1.0.7.10.in-addr.arpa. 5 IN PTR a-0.dup.default.svc.cluster.local.",
			"1.0.7.10.in-addr.arpa. 5 IN PTR a-1.dup.default.svc.cluster.local.",
		}, nil},
		{"_web._tcp.dup.default.", dns.TypeSRV, []string{
			"_web._tcp.dup.default. 5 IN SRV 0 100 80 a-0.dup.default.svc.cluster.local.",
			"_web._tcp.dup.default. 5 IN SRV 0 100 80 a-1.dup.default.svc.cluster.local.",
			"_web._tcp.dup.default. 5 IN SRV 0 100 80 a-2.dup.default.svc.cluster.local.",
		}, []string{
			"a-0.dup.default.svc.cluster.local. 5 IN A 10.7.0.1",
			"a-1.dup.default.svc.cluster.local. 5 IN A 10.7.0.1",
			"a-2.dup.default.svc.cluster.local. 5 IN A 10.7.0.2",
		}},
		{"_web._udp.dup.default.", dns.TypeSRV, []string{
			"_web._udp.dup.default. 5 IN SRV 0 100 80 a-0.dup.default.svc.cluster.local.",
			"_web._udp.dup.default. 5 IN SRV 0 100 80 a-1.dup.default.svc.cluster.local.",
			"_web._udp.dup.default. 5 IN SRV 0 100 80 a-2.dup.default.svc.cluster.local.",
		}, []string{
			"a-0.dup.default.svc.cluster.local. 5 IN A 10.7.0.1",
			"a-1.dup.default.svc.cluster.local. 5 IN A 10.7.0.1",
			"a-2.dup.default.svc.cluster.local. 5 IN A 10.7.0.2",
		}},
	}
	for _, tc := range tests {
		got := z.Lookup(tc.qname, tc.qtype)
		if a, want := texts(got.Answer), rrSet(t, tc.answer...); !slices.Equal(a, want) {
			t.Errorf("%s answer:\n got %q\nwant %q", tc.qname, a, want)
		}
		if e, want := texts(got.Extra), rrSet(t, tc.extr...); !slices.Equal(e, want) {
			t.Errorf("%s additional:\n got %q\nwant %q", tc.qname, e, want)
		}
	}
}

// isLabel accepts exactly what validation.IsDNS1123Label accepts.
func TestIsLabel(t *testing.T) {
	for _, s := range []string{
		"", "a", "0", "web-0", "a-b-c", "x1", "-a", "a-", "-", "A", "web_0", "a.b", "a b", "é",
		"a\x00", strings.Repeat("a", 63), strings.Repeat("a", 64), "0" + strings.Repeat("-", 61) + "0",
		"default", "kube-system", "Bad NS", "Bad_Name", "tcp", "udp",
	} {
		want := s != "" && len(validation.IsDNS1123Label(s)) == 0
		if got := isLabel(s); got != want {
			t.Errorf("isLabel(%q) = %v, want %v", s, got, want)
		}
	}
}

// reverseName spells PTR names as dns.ReverseAddr does.
func TestReverseName(t *testing.T) {
	for _, s := range []string{"10.1.2.10", "0.0.0.0", "255.255.255.255", "192.0.2.1", "fd00::11", "::1", "2001:db8::ff00:42:8329", "fe80::1"} {
		want, err := dns.ReverseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := reverseName(netip.MustParseAddr(s)); got != want {
			t.Errorf("reverseName(%s) = %q, want %q", s, got, want)
		}
	}
}

// dedup keeps the first of each record and the order of the rest, in small
// sets and in large ones.
func TestDedup(t *testing.T) {
	a := func(owner, ip string) dns.RR {
		rr, err := dns.NewRR(owner + " 5 IN A " + ip)
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	srv := func(port, target string) dns.RR {
		rr, err := dns.NewRR("_web._tcp.x. 5 IN SRV 0 100 " + port + " " + target)
		if err != nil {
			t.Fatal(err)
		}
		return rr
	}
	var large, largeWant []dns.RR
	for i := range 20 {
		// 10.0.0.19, 10.0.0.18, ... each twice in a row, then again.
		ip := "10.0.0." + strconv.Itoa(19-i/2)
		large = append(large, a("x.", ip))
		if i%2 == 0 {
			largeWant = append(largeWant, a("x.", ip))
		}
	}
	large = append(large, a("x.", "10.0.0.15"), a("x.", "10.0.0.99"))
	largeWant = append(largeWant, a("x.", "10.0.0.99"))
	tests := []struct {
		name     string
		in, want []dns.RR
	}{
		{"empty", nil, nil},
		{"one", []dns.RR{a("x.", "10.0.0.1")}, []dns.RR{a("x.", "10.0.0.1")}},
		{"small", []dns.RR{a("x.", "10.0.0.2"), a("x.", "10.0.0.1"), a("x.", "10.0.0.2"), a("x.", "10.0.0.3")},
			[]dns.RR{a("x.", "10.0.0.2"), a("x.", "10.0.0.1"), a("x.", "10.0.0.3")}},
		{"owners differ", []dns.RR{a("x.", "10.0.0.1"), a("y.", "10.0.0.1"), a("x.", "10.0.0.1")},
			[]dns.RR{a("x.", "10.0.0.1"), a("y.", "10.0.0.1")}},
		{"SRV port and target", []dns.RR{srv("80", "a."), srv("81", "a."), srv("80", "b."), srv("80", "a.")},
			[]dns.RR{srv("80", "a."), srv("81", "a."), srv("80", "b.")}},
		{"large", large, largeWant},
		{"large without duplicates", largeWant[:10], largeWant[:10]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got, want []string
			for _, rr := range dedup(slices.Clone(tc.in)) {
				got = append(got, rr.String())
			}
			for _, rr := range tc.want {
				want = append(want, rr.String())
			}
			if !slices.Equal(got, want) {
				t.Errorf("dedup:\n got %q\nwant %q", got, want)
			}
		})
	}
}
