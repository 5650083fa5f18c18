package dnsserver

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/stead-io/stead/api"
)

// Defaults of ZoneInput.
const (
	// DefaultTTL is the TTL of every positive record, in seconds. It is short
	// because pod IPs change when a pod is rescheduled (SEMANTICS C.25).
	DefaultTTL = 5
	// DefaultNegativeTTL is the SOA minimum, which resolvers use as the TTL of
	// NXDOMAIN and NODATA answers (RFC 2308). It is short so that a name
	// queried just before its pod becomes ready does not stay missing for long
	// (SEMANTICS C.27).
	DefaultNegativeTTL = 5
)

// ZoneInput is the snapshot a Zone is built from. BuildZone only reads it.
type ZoneInput struct {
	// Domain is the cluster domain; empty means api.DefaultClusterDomain.
	Domain string
	// Namespaces are the known namespaces. The namespaces of Services and
	// Pods are known as well. A name whose last label is a known namespace
	// is a short cluster name ("web-0.nginx.default").
	Namespaces []string
	// Services and Pods are the objects records are derived from.
	Services []*corev1.Service
	Pods     []*corev1.Pod
	// TTL is the TTL of positive records; 0 means DefaultTTL.
	TTL uint32
	// NegativeTTL is the SOA minimum and the TTL of the SOA returned with
	// negative answers; 0 means DefaultNegativeTTL.
	NegativeTTL uint32
	// Serial is the SOA serial, for instance the store index the snapshot
	// was taken at. Nothing transfers the zone, so it is informational.
	Serial uint32
}

// Zone is an immutable set of cluster DNS records. It is safe for
// concurrent use; Lookup returns copies that callers may change.
type Zone struct {
	// domain is the canonical cluster domain ("cluster.local.").
	domain string
	// namespaces are the known namespaces, for short names.
	namespaces map[string]bool
	// nodes holds every name that exists, by canonical long name, including
	// empty non-terminals (a node with no records).
	nodes map[string]*node
	ttl   uint32
	// soa is the apex SOA with the negative TTL as its TTL, as it is put in
	// the authority section of negative answers.
	soa *dns.SOA
	// soaWire is soa packed, and hinfoWire the answer to ANY packed
	// without its owner name, for the fast path (wire.go).
	soaWire, hinfoWire []byte
	// wireLen is the size of the records packed for the fast path, counted
	// as they are added.
	wireLen int
}

// node is one existing name.
type node struct {
	// sets are the record sets at the name, one per type, owned by the
	// canonical name. A name has few types, so they are a slice.
	sets []recordSet
	// extra are the address records of the targets of the SRV records at
	// this name, for the additional section.
	extra []dns.RR
}

// recordSet is the records of one type at a name.
type recordSet struct {
	rrtype uint16
	rrs    []dns.RR
	// wire is the set packed, for the fast path (wire.go).
	wire wireSet
}

// set returns the set of type t at n, nil if there is none.
func (n *node) set(t uint16) *recordSet {
	for i := range n.sets {
		if n.sets[i].rrtype == t {
			return &n.sets[i]
		}
	}
	return nil
}

// Result is the outcome of a Lookup.
type Result struct {
	// Rcode is dns.RcodeSuccess (answer or NODATA) or dns.RcodeNameError
	// for names in the zone, dns.RcodeRefused for names outside it.
	Rcode int
	// Answer, Ns and Extra are the sections of the reply. Answer records are
	// owned by the query name as spelled in the query; Ns holds the SOA on
	// negative answers; Extra the addresses of SRV targets.
	Answer, Ns, Extra []dns.RR
	// InZone says whether the name belongs to the cluster zone, in which
	// case the Result is authoritative. Other names are not answered.
	InZone bool
}

// BuildZone derives the cluster records from a snapshot, as SEMANTICS C.19–C.28
// describe. Objects with names that are not DNS labels are left out.
func BuildZone(in ZoneInput) *Zone {
	domain := strings.TrimSuffix(dns.CanonicalName(in.Domain), ".")
	if domain == "" {
		domain = api.DefaultClusterDomain
	}
	b := &zoneBuilder{
		z: &Zone{
			domain:     domain + ".",
			namespaces: map[string]bool{},
			// A pod has a name and a reverse name, a Service a name and a
			// few SRV names.
			nodes: make(map[string]*node, 2*len(in.Pods)+4*len(in.Services)+len(in.Namespaces)+8),
			ttl:   orDefault(in.TTL, DefaultTTL),
		},
		domain: domain,
	}
	negTTL := orDefault(in.NegativeTTL, DefaultNegativeTTL)
	b.z.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: b.z.domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: negTTL},
		Ns:      "ns.dns." + b.z.domain,
		Mbox:    "hostmaster." + b.z.domain,
		Serial:  in.Serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  negTTL,
	}
	apexSOA := dns.Copy(b.z.soa)
	apexSOA.Header().Ttl = b.z.ttl
	b.add(b.z.domain, apexSOA)

	for _, ns := range in.Namespaces {
		b.namespace(ns)
	}
	for _, svc := range in.Services {
		if svc != nil {
			b.namespace(svc.Namespace)
		}
	}
	podsByNS := map[string][]*corev1.Pod{}
	for _, p := range in.Pods {
		if p == nil || !isLabel(p.Namespace) {
			continue
		}
		b.namespace(p.Namespace)
		podsByNS[p.Namespace] = append(podsByNS[p.Namespace], p)
	}
	for _, pods := range podsByNS {
		slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	}
	var services []*corev1.Service
	for _, svc := range in.Services {
		if svc != nil && isLabel(svc.Namespace) && isLabel(svc.Name) {
			services = append(services, svc)
		}
	}
	slices.SortFunc(services, func(a, b *corev1.Service) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, svc := range services {
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			b.headless(svc, podsByNS[svc.Namespace])
		} else {
			b.clusterIP(svc)
		}
	}
	// A record two objects both produce is in its set once.
	for _, n := range b.z.nodes {
		for i := range n.sets {
			n.sets[i].rrs = dedup(n.sets[i].rrs)
		}
		n.extra = dedup(n.extra)
	}
	b.z.packWire()
	return b.z
}

// zoneBuilder accumulates the records of a Zone under construction.
type zoneBuilder struct {
	z      *Zone
	domain string // without the trailing dot, as api.PodFQDN takes it
}

// rrData is what tells two records of one set apart: every record of a
// zone has the zone's class and TTL, and the records of a set its type.
type rrData struct {
	// owner is the record's name; it is the set's name, but for
	// additional records.
	owner string
	// addr is the address of an A or AAAA record.
	addr netip.Addr
	// target is the target of a PTR or SRV record; other types keep their
	// text here.
	target                 string
	priority, weight, port uint16
}

func dataOf(rr dns.RR) rrData {
	d := rrData{owner: rr.Header().Name}
	switch rr := rr.(type) {
	case *dns.A:
		d.addr, _ = netip.AddrFromSlice(rr.A)
	case *dns.AAAA:
		d.addr, _ = netip.AddrFromSlice(rr.AAAA)
	case *dns.PTR:
		d.target = rr.Ptr
	case *dns.SRV:
		d.target, d.priority, d.weight, d.port = rr.Target, rr.Priority, rr.Weight, rr.Port
	default:
		d.target = rr.String()
	}
	return d
}

// linearDedup is the size up to which a set is searched for duplicates
// record by record; larger sets are sorted.
const linearDedup = 8

// dedup removes from rrs, in place, every record that repeats an earlier
// one, and keeps the order of the rest.
func dedup(rrs []dns.RR) []dns.RR {
	if len(rrs) < 2 {
		return rrs
	}
	if len(rrs) <= linearDedup {
		out := rrs[:0]
	next:
		for _, rr := range rrs {
			d := dataOf(rr)
			for _, x := range out {
				if dataOf(x) == d {
					continue next
				}
			}
			out = append(out, rr)
		}
		return out
	}
	type keyed struct {
		d rrData
		i int
	}
	keys := make([]keyed, len(rrs))
	for i, rr := range rrs {
		keys[i] = keyed{dataOf(rr), i}
	}
	slices.SortFunc(keys, func(a, b keyed) int {
		if c := a.d.compare(b.d); c != 0 {
			return c
		}
		return cmp.Compare(a.i, b.i)
	})
	drop := make([]bool, len(rrs))
	dups := false
	for j := 1; j < len(keys); j++ {
		if keys[j].d == keys[j-1].d {
			drop[keys[j].i], dups = true, true
		}
	}
	if !dups {
		return rrs
	}
	out := rrs[:0]
	for i, rr := range rrs {
		if !drop[i] {
			out = append(out, rr)
		}
	}
	return out
}

func (d rrData) compare(e rrData) int {
	if c := strings.Compare(d.owner, e.owner); c != 0 {
		return c
	}
	if c := d.addr.Compare(e.addr); c != 0 {
		return c
	}
	if c := strings.Compare(d.target, e.target); c != 0 {
		return c
	}
	if c := cmp.Compare(d.priority, e.priority); c != 0 {
		return c
	}
	if c := cmp.Compare(d.weight, e.weight); c != 0 {
		return c
	}
	return cmp.Compare(d.port, e.port)
}

// endpoint is a pod published in a headless Service.
type endpoint struct {
	pod *corev1.Pod
	ips []netip.Addr
	// fqdn is the canonical name of its per-pod record, empty when the pod
	// has none (no hostname, or a subdomain naming another Service).
	fqdn string
}

// headless adds the records of a headless Service: its endpoint set, the
// per-pod names, SRV per named port and PTR.
func (b *zoneBuilder) headless(svc *corev1.Service, pods []*corev1.Pod) {
	name := serviceFQDN(svc.Name, svc.Namespace, b.domain)
	eps := make([]endpoint, 0, len(pods))
	for _, p := range pods {
		ips := podIPs(p)
		if len(ips) == 0 || !selects(svc, p) || !published(svc, p) {
			continue
		}
		ep := endpoint{pod: p, ips: ips}
		// C.20, C.28: a per-pod name needs a hostname and a subdomain naming
		// this very Service.
		if p.Spec.Subdomain == svc.Name && isLabel(p.Spec.Hostname) {
			ep.fqdn = api.PodFQDN(p.Spec.Hostname, svc.Name, svc.Namespace, b.domain) + "."
		}
		eps = append(eps, ep)
	}
	for _, ep := range eps {
		// C.21: the Service name has one address per ready endpoint.
		for _, ip := range ep.ips {
			b.add(name, b.addr(name, ip))
		}
		if ep.fqdn == "" {
			continue
		}
		for _, ip := range ep.ips {
			b.add(ep.fqdn, b.addr(ep.fqdn, ip))
			b.addPTR(ip, ep.fqdn)
		}
	}
	// C.22: SRV for every named port × ready endpoint with a hostname.
	for _, sp := range svc.Spec.Ports {
		srv, ok := srvName(sp, name)
		if !ok {
			continue
		}
		for _, ep := range eps {
			if ep.fqdn == "" {
				continue
			}
			port, ok := endpointPort(sp, ep.pod)
			if !ok {
				continue
			}
			b.add(srv, b.srv(srv, port, ep.fqdn))
			for _, ip := range ep.ips {
				b.addExtra(srv, b.addr(ep.fqdn, ip))
			}
		}
	}
}

// clusterIP adds the records of a Service with a cluster IP: its address,
// SRV per named port pointing at the Service name, and PTR.
func (b *zoneBuilder) clusterIP(svc *corev1.Service) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	ips := parseIPs(append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...))
	if len(ips) == 0 {
		return
	}
	name := serviceFQDN(svc.Name, svc.Namespace, b.domain)
	for _, ip := range ips {
		b.add(name, b.addr(name, ip))
		b.addPTR(ip, name)
	}
	for _, sp := range svc.Spec.Ports {
		srv, ok := srvName(sp, name)
		if !ok || sp.Port <= 0 || sp.Port > 65535 {
			continue
		}
		b.add(srv, b.srv(srv, uint16(sp.Port), name))
		for _, ip := range ips {
			b.addExtra(srv, b.addr(name, ip))
		}
	}
}

// namespace makes ns known and its name <ns>.svc.<domain> exist.
func (b *zoneBuilder) namespace(ns string) {
	if !isLabel(ns) || b.z.namespaces[ns] {
		return
	}
	b.z.namespaces[ns] = true
	b.node(ns + ".svc." + b.z.domain)
}

// node returns the node of a canonical name, creating it and, for names
// under the domain, its ancestors up to the apex (empty non-terminals).
func (b *zoneBuilder) node(name string) *node {
	n := b.z.nodes[name]
	if n != nil {
		return n
	}
	n = &node{}
	b.z.nodes[name] = n
	if name != b.z.domain && strings.HasSuffix(name, "."+b.z.domain) {
		_, parent, _ := strings.Cut(name, ".")
		b.node(parent)
	}
	return n
}

// add puts rr at name. Duplicates are removed when the zone is complete.
func (b *zoneBuilder) add(name string, rr dns.RR) {
	n := b.node(name)
	t := rr.Header().Rrtype
	set := n.set(t)
	if set == nil {
		n.sets = append(n.sets, recordSet{rrtype: t})
		set = &n.sets[len(n.sets)-1]
	}
	set.rrs = append(set.rrs, rr)
	b.z.wireLen += dns.Len(rr) - len(name) - 1
}

// addExtra adds rr to the additional records of the SRV set at name.
func (b *zoneBuilder) addExtra(name string, rr dns.RR) {
	n := b.node(name)
	n.extra = append(n.extra, rr)
	b.z.wireLen += dns.Len(rr)
}

// addPTR adds the reverse record of ip pointing at target (C.23).
func (b *zoneBuilder) addPTR(ip netip.Addr, target string) {
	rev := reverseName(ip)
	b.add(rev, &dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}

// reverseName returns the name of ip's PTR record, as dns.ReverseAddr
// does, without formatting and parsing the address as text.
func reverseName(ip netip.Addr) string {
	if ip.Is4() {
		buf := make([]byte, 0, len("255.255.255.255.in-addr.arpa."))
		a := ip.As4()
		for i := len(a) - 1; i >= 0; i-- {
			buf = strconv.AppendUint(buf, uint64(a[i]), 10)
			buf = append(buf, '.')
		}
		return string(append(buf, "in-addr.arpa."...))
	}
	const hex = "0123456789abcdef"
	buf := make([]byte, 0, 16*4+len("ip6.arpa."))
	a := ip.As16()
	for i := len(a) - 1; i >= 0; i-- {
		buf = append(buf, hex[a[i]&0xF], '.', hex[a[i]>>4], '.')
	}
	return string(append(buf, "ip6.arpa."...))
}

func (b *zoneBuilder) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.z.ttl}
}

// addr returns the A or AAAA record of ip at name.
func (b *zoneBuilder) addr(name string, ip netip.Addr) dns.RR {
	if ip.Is4() {
		return &dns.A{Hdr: b.hdr(name, dns.TypeA), A: ip.AsSlice()}
	}
	return &dns.AAAA{Hdr: b.hdr(name, dns.TypeAAAA), AAAA: ip.AsSlice()}
}

// srv returns an SRV record at name. Priority and weight are not prescribed
// (C.24); all targets are equal.
func (b *zoneBuilder) srv(name string, port uint16, target string) dns.RR {
	return &dns.SRV{Hdr: b.hdr(name, dns.TypeSRV), Priority: 0, Weight: 100, Port: port, Target: target}
}

// serviceFQDN returns the canonical name of Service svc in namespace ns.
// api.PodFQDN is "<hostname>.<svc>.<ns>.svc.<domain>", so the Service's is
// the same name without its first label.
func serviceFQDN(svc, ns, domain string) string {
	_, name, _ := strings.Cut(api.PodFQDN("x", svc, ns, domain), ".")
	return name + "."
}

// srvName returns "_<port>._<proto>.<service name>" for a named port; unnamed
// ports get no SRV records (C.22).
func srvName(sp corev1.ServicePort, service string) (string, bool) {
	if !isLabel(sp.Name) {
		return "", false
	}
	proto := strings.ToLower(string(sp.Protocol))
	if proto == "" {
		proto = "tcp"
	}
	if !isLabel(proto) {
		return "", false
	}
	return "_" + sp.Name + "._" + proto + "." + service, true
}

// endpointPort resolves the port an endpoint serves a Service port on, as the
// Kubernetes endpoints controller does: the target port if it is a number, the
// pod's container port of that name and protocol if it is a name, else the
// Service port. ok is false when a named target port is not on the pod.
func endpointPort(sp corev1.ServicePort, pod *corev1.Pod) (port uint16, ok bool) {
	n := sp.Port
	switch tp := sp.TargetPort; {
	case tp.Type == intstr.String && tp.StrVal != "":
		n = 0
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if n == 0 && cp.Name == tp.StrVal && cpProto == proto {
					n = cp.ContainerPort
				}
			}
		}
	case tp.Type == intstr.Int && tp.IntVal != 0:
		n = tp.IntVal
	}
	if n <= 0 || n > 65535 {
		return 0, false
	}
	return uint16(n), true
}

// selects reports whether the Service's selector matches the pod's labels.
// A Service without a selector has no automatic endpoints.
func selects(svc *corev1.Service, p *corev1.Pod) bool {
	if p.Namespace != svc.Namespace || len(svc.Spec.Selector) == 0 {
		return false
	}
	for k, v := range svc.Spec.Selector {
		if got, ok := p.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// published reports whether the pod is an endpoint of the Service that DNS
// publishes. Ready means phase Running and condition Ready=True, and not
// terminating (C.20). With publishNotReadyAddresses every pod that has not
// finished counts, terminating ones included, as in the Kubernetes endpoints
// controller (C.26).
func published(svc *corev1.Service, p *corev1.Pod) bool {
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return false
	}
	if svc.Spec.PublishNotReadyAddresses {
		return true
	}
	return p.DeletionTimestamp == nil && podReady(p)
}

// podReady reports phase Running and condition Ready=True.
func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podIPs returns the pod's addresses: status.podIPs, or status.podIP.
func podIPs(p *corev1.Pod) []netip.Addr {
	ips := make([]string, 0, len(p.Status.PodIPs)+1)
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 {
		ips = append(ips, p.Status.PodIP)
	}
	return parseIPs(ips)
}

// parseIPs parses the valid addresses among ips, without duplicates.
func parseIPs(ips []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			continue
		}
		ip = ip.Unmap()
		if ip.IsUnspecified() || slices.Contains(out, ip) {
			continue
		}
		out = append(out, ip)
	}
	return out
}

// isLabel reports whether s can be used as one label of a record name: a
// DNS-1123 label (validation.IsDNS1123Label) of lower-case letters, digits
// and inner hyphens, at most 63 bytes. It is checked by hand because a
// rebuild checks every pod and Service name and the regular expression
// behind validation.IsDNS1123Label costs more than the rest of the check.
func isLabel(s string) bool {
	if s == "" || len(s) > validation.DNS1123LabelMaxLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func orDefault(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}
