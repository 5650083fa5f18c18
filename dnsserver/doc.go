// Package dnsserver is the cluster DNS server every agent runs for its pods.
//
// It has two halves, as CoreDNS's file plugin does. BuildZone turns a
// snapshot of namespaces, Services and Pods into an immutable Zone, and
// Zone.Lookup answers one name and type from it with records and a result
// code: no I/O, no clock, no locks. Server is the network adapter: it parses
// a query, applies the policy (QUERY with one question only, authoritative
// for the cluster zone, forwarding of other names for pods and loopback
// only, EDNS sizes, truncation), calls Lookup on the zone it currently holds
// and writes the reply. A new snapshot is published with Server.Swap, so a
// query never waits on the state store and the last zone keeps being served
// when every server is down.
//
// Most queries are plain UDP queries for cluster names, whose replies do not
// depend on the client. BuildZone packs every record set for the wire once,
// and the UDP read loop answers such a query by copying the packed records
// after the query's header and question, without parsing it into a message
// or starting a goroutine; everything else goes through ServeDNS. The two
// paths write the same bytes (wire.go).
//
// The records are those of the Kubernetes DNS specification for headless
// Services (SEMANTICS.md C.19–C.28):
//
//	<hostname>.<svc>.<ns>.svc.<domain>  A/AAAA  the pod's IPs, if its endpoint is ready
//	<svc>.<ns>.svc.<domain>             A/AAAA  every ready endpoint (NXDOMAIN if none)
//	_<port>._<proto>.<svc>.<ns>.svc.<domain>  SRV  ready endpoint with hostname × named port
//	<reversed IP>.in-addr.arpa / ip6.arpa     PTR  the pod's FQDN
//
// and, for Services with a cluster IP, the Service name's A/AAAA, SRV per
// named port and PTR. Every name is also served in the short form that
// leaves out ".svc.<domain>" (web-0.nginx.default), which is how Stead's
// pods usually spell it. A namespace named like a top-level domain therefore
// shadows that domain's two- and three-label names for pods; namespaces
// should not be named "com" or "io".
//
// The serving policy (RELIABILITY.md, DNS hardening):
//
//   - Only a QUERY with exactly one question is answered. Responses and
//     messages shorter than a header are dropped; other opcodes get a bare
//     NOTIMP header, other question counts and unparseable messages a bare
//     FORMERR header, as miekg/dns's default accept function does. None of
//     these replies is larger than the message that caused it.
//   - Cluster names are answered authoritatively (AA) to anyone who can
//     reach the server, never with RA. ANY gets one HINFO record (RFC 8482);
//     zone transfers and classes other than IN are REFUSED.
//   - Other names are forwarded to the upstream resolvers only for loopback
//     and pod sources, and those replies carry RA; any other source gets
//     REFUSED, so the server is not an open resolver.
//   - UDP replies are cut to the client's EDNS size, at most 1232 bytes (512
//     without EDNS), with TC set; the full answer is available over TCP.
//   - TCP connections are capped, and bounded in time by the read, idle and
//     write timeouts and a number of queries each.
package dnsserver
