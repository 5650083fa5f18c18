package dnsserver

import (
	"strings"

	"github.com/miekg/dns"
)

// Domain returns the cluster domain of the zone, fully qualified
// ("cluster.local.").
func (z *Zone) Domain() string { return z.domain }

// Lookup answers qtype for qname from the zone.
//
// A name is in the zone if it is the domain or under it, if it is the reverse
// name of an address the zone has a PTR record for, or if its last label is a
// known namespace; such a short name is looked up as if ".svc.<domain>"
// followed it. Matching is case-insensitive and answer records are owned by
// qname as spelled. For names in the zone the result is one of:
//
//   - an answer: the records of that type;
//   - NODATA (RcodeSuccess, no answer, the SOA in Ns) when the name exists
//     with other types or none (an empty non-terminal such as
//     "<ns>.svc.<domain>");
//   - NXDOMAIN (RcodeNameError, the SOA in Ns) when the name does not exist.
//
// A query of type ANY for a name that has records is answered with one
// synthesized HINFO "RFC8482" record (RFC 8482 section 4.2), so that it can
// never be larger than a query for a single type. Names outside the zone get
// InZone false and RcodeRefused; what to do with them is the caller's policy.
func (z *Zone) Lookup(qname string, qtype uint16) Result {
	name, ok := z.canonical(qname)
	if !ok {
		return Result{Rcode: dns.RcodeRefused}
	}
	owner := dns.Fqdn(qname)
	n := z.nodes[name]
	if n == nil {
		return Result{Rcode: dns.RcodeNameError, Ns: []dns.RR{dns.Copy(z.soa)}, InZone: true}
	}
	res := Result{Rcode: dns.RcodeSuccess, InZone: true}
	switch {
	case qtype == dns.TypeANY && len(n.sets) > 0:
		res.Answer = []dns.RR{&dns.HINFO{
			Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: z.ttl},
			Cpu: "RFC8482",
		}}
	case n.set(qtype) != nil:
		set := n.set(qtype)
		res.Answer = make([]dns.RR, 0, len(set.rrs))
		for _, rr := range set.rrs {
			c := dns.Copy(rr)
			c.Header().Name = owner
			res.Answer = append(res.Answer, c)
		}
		if qtype == dns.TypeSRV {
			for _, rr := range n.extra {
				res.Extra = append(res.Extra, dns.Copy(rr))
			}
		}
	default:
		res.Ns = []dns.RR{dns.Copy(z.soa)}
	}
	return res
}

// canonical returns the canonical long name qname stands for, and whether it
// is in the zone.
func (z *Zone) canonical(qname string) (string, bool) {
	name := dns.CanonicalName(qname)
	if dns.IsSubDomain(z.domain, name) {
		return name, true
	}
	if strings.HasSuffix(name, ".in-addr.arpa.") || strings.HasSuffix(name, ".ip6.arpa.") {
		_, ok := z.nodes[name]
		return name, ok
	}
	labels := dns.SplitDomainName(name)
	if len(labels) > 0 && z.namespaces[labels[len(labels)-1]] {
		return name + "svc." + z.domain, true
	}
	return "", false
}
