package dnsserver

import (
	"encoding/binary"
	"slices"

	"github.com/miekg/dns"
)

// The fast path. Most queries a cluster DNS server gets are plain UDP
// queries for names in the zone, and their replies do not depend on the
// client: the same records in the same order, owned by the name as the
// client spelled it. BuildZone therefore packs every record set once, and
// the server answers such a query by copying its header bits and question
// and the packed sets into a buffer, without parsing the message into a
// dns.Msg or packing one. Anything else (other classes and opcodes, EDNS
// options other than cookies and padding, names outside the zone, replies
// that need truncation) takes the slow path through ServeDNS. The fast path writes exactly the bytes the
// slow path writes for the queries it takes; TestFastReplyMatchesSlowPath
// and FuzzServeDNS check that.

// wireSet is a record set packed for the wire, as Lookup returns it.
type wireSet struct {
	// answer holds each record packed without its owner name (type, class,
	// TTL, rdlength, rdata): the owner is the name as the query spells it.
	answer  []byte
	ancount uint16
	// extra holds the additional records of an SRV set, packed whole.
	extra   []byte
	arcount uint16
}

// packWire packs every record set of z for the fast path, into one buffer.
func (z *Zone) packWire() {
	var p packer
	z.soaWire = p.whole(z.soa)
	z.hinfoWire = p.rest(&dns.HINFO{
		Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: z.ttl},
		Cpu: "RFC8482",
	})
	p.buf = make([]byte, 0, z.wireLen)
	for _, n := range z.nodes {
		for i := range n.sets {
			set := &n.sets[i]
			ws := &set.wire
			ws.ancount = uint16(len(set.rrs))
			start := len(p.buf)
			for _, rr := range set.rrs {
				p.rest(rr)
			}
			ws.answer = p.buf[start:len(p.buf):len(p.buf)]
			if set.rrtype == dns.TypeSRV {
				start = len(p.buf)
				for _, rr := range n.extra {
					p.whole(rr)
				}
				ws.extra = p.buf[start:len(p.buf):len(p.buf)]
				ws.arcount = uint16(len(n.extra))
			}
		}
	}
}

// packer packs records uncompressed, one after the other, into buf.
type packer struct {
	buf     []byte
	scratch [1024]byte
}

// whole appends rr to buf and returns it packed.
func (p *packer) whole(rr dns.RR) []byte {
	start := len(p.buf)
	p.buf = append(p.buf, p.pack(rr)...)
	return p.buf[start:len(p.buf):len(p.buf)]
}

// rest appends rr to buf without its owner name and returns that. Address
// records, most of a zone, are packed here; others by miekg/dns, under the
// root name so that there is little to cut.
func (p *packer) rest(rr dns.RR) []byte {
	start := len(p.buf)
	h := rr.Header()
	var addr []byte
	switch rr := rr.(type) {
	case *dns.A:
		addr = rr.A
	case *dns.AAAA:
		addr = rr.AAAA
	}
	if (h.Rrtype == dns.TypeA && len(addr) == 4) || (h.Rrtype == dns.TypeAAAA && len(addr) == 16) {
		p.buf = binary.BigEndian.AppendUint16(p.buf, h.Rrtype)
		p.buf = binary.BigEndian.AppendUint16(p.buf, h.Class)
		p.buf = binary.BigEndian.AppendUint32(p.buf, h.Ttl)
		p.buf = binary.BigEndian.AppendUint16(p.buf, uint16(len(addr)))
		p.buf = append(p.buf, addr...)
	} else {
		// The record is the zone's own, not yet shared.
		name := h.Name
		h.Name = "."
		b := p.pack(rr)
		h.Name = name
		p.buf = append(p.buf, b[1:]...)
	}
	return p.buf[start:len(p.buf):len(p.buf)]
}

// pack packs rr into scratch. The records of a zone always fit and pack.
func (p *packer) pack(rr dns.RR) []byte {
	off, err := dns.PackRR(rr, p.scratch[:], 0, nil, false)
	if err != nil {
		panic("dnsserver: pack " + rr.String() + ": " + err.Error())
	}
	return p.scratch[:off]
}

// ownerLen returns the length of the uncompressed owner name that packed
// record b starts with.
func ownerLen(b []byte) int {
	i := 0
	for b[i] != 0 {
		i += int(b[i]) + 1
	}
	return i + 1
}

// Header bits of a DNS message (RFC 1035 4.1.1).
const (
	bitQR = 1 << 15
	bitAA = 1 << 10
	bitRD = 1 << 8
	bitCD = 1 << 4
	// headerLen is the length of a DNS header.
	headerLen = 12
)

// plainQuery is what the fast path needs of a plain query.
type plainQuery struct {
	// question is the question section as sent: name, type, class.
	question []byte
	// name is the query name in canonical text form ("web-0.web.default.").
	name  []byte
	qtype uint16
	// edns says whether the query had an OPT record, do its DO bit, and
	// size the size of UDP reply it takes.
	edns, do bool
	size     int
}

// parseQuery parses raw if it is a plain query: QUERY, one question of
// class IN whose name has only letters, digits, hyphens and underscores,
// and at most an OPT record of version 0 with at most cookies and padding,
// and nothing after. name is a buffer for the canonical name. ok is false for anything
// else.
func parseQuery(raw []byte, name []byte) (q plainQuery, ok bool) {
	if len(raw) < headerLen {
		return q, false
	}
	bits := binary.BigEndian.Uint16(raw[2:])
	counts := raw[4:headerLen]
	if bits&bitQR != 0 || (bits>>11)&0xF != dns.OpcodeQuery ||
		binary.BigEndian.Uint16(counts[0:]) != 1 || binary.BigEndian.Uint16(counts[2:]) != 0 ||
		binary.BigEndian.Uint16(counts[4:]) != 0 || binary.BigEndian.Uint16(counts[6:]) > 1 {
		return q, false
	}
	off := headerLen
	name = name[:0]
	for {
		if off >= len(raw) {
			return q, false
		}
		l := int(raw[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(raw) || off-headerLen+l > 254 {
			return q, false
		}
		for _, c := range raw[off : off+l] {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case 'A' <= c && c <= 'Z':
				c += 'a' - 'A'
			default:
				return q, false
			}
			name = append(name, c)
		}
		name = append(name, '.')
		off += l
	}
	if len(name) == 0 || off+4 > len(raw) {
		return q, false
	}
	q.qtype = binary.BigEndian.Uint16(raw[off:])
	if binary.BigEndian.Uint16(raw[off+2:]) != dns.ClassINET {
		return q, false
	}
	off += 4
	q.question = raw[headerLen:off]
	q.name = name
	q.size = dns.MinMsgSize
	if binary.BigEndian.Uint16(counts[6:]) == 1 {
		// An OPT record: root name, type, UDP size, extended rcode,
		// version, flags, and options that end the message.
		if off+11 > len(raw) || raw[off] != 0 || binary.BigEndian.Uint16(raw[off+1:]) != dns.TypeOPT ||
			raw[off+6] != 0 || off+11+int(binary.BigEndian.Uint16(raw[off+9:])) != len(raw) ||
			!plainOptions(raw[off+11:]) {
			return q, false
		}
		q.edns = true
		q.size = min(max(int(binary.BigEndian.Uint16(raw[off+3:])), dns.MinMsgSize), MaxUDPSize)
		q.do = binary.BigEndian.Uint16(raw[off+7:])&0x8000 != 0
		off = len(raw)
	}
	if off != len(raw) {
		return q, false
	}
	return q, true
}

// plainOptions reports whether opts, the options of a query's OPT record,
// are well framed and only cookies (RFC 7873) and padding (RFC 7830). The
// reply does not depend on them: the server does not do cookies, and its
// replies carry an OPT record of their own. Other options may not parse,
// which the handler answers with FORMERR.
func plainOptions(opts []byte) bool {
	for off := 0; off < len(opts); {
		if off+4 > len(opts) {
			return false
		}
		code := binary.BigEndian.Uint16(opts[off:])
		l := int(binary.BigEndian.Uint16(opts[off+2:]))
		if code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING || off+4+l > len(opts) {
			return false
		}
		off += 4 + l
	}
	return true
}

// appendReply appends to dst the UDP reply to the plain query q with ID id
// and header bits bits, from the zone, and returns it with its rcode. ok is
// false when the name is not in the zone or the reply would not fit the
// client's size; those take the slow path.
func (z *Zone) appendReply(dst []byte, id, bits uint16, q *plainQuery) (reply []byte, rcode int, ok bool) {
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		return dst, 0, false
	}
	n, in := z.wireNode(q.name)
	if !in {
		return dst, 0, false
	}
	owner := q.question[:len(q.question)-4]
	var (
		answer, authority, extra []byte
		ancount, arcount         uint16
		hinfo                    bool
	)
	switch {
	case n == nil:
		rcode = dns.RcodeNameError
		authority = z.soaWire
	case q.qtype == dns.TypeANY && len(n.sets) > 0:
		hinfo, ancount = true, 1
	default:
		if set := n.set(q.qtype); set != nil {
			ws := &set.wire
			answer, ancount = ws.answer, ws.ancount
			extra, arcount = ws.extra, ws.arcount
		} else {
			authority = z.soaWire
		}
	}
	size := headerLen + len(q.question) + len(answer) + int(ancount)*len(owner) + len(authority) + len(extra)
	if hinfo {
		size += len(z.hinfoWire)
	}
	if q.edns {
		size += 11
		arcount++
	}
	if size > q.size {
		return dst, 0, false
	}
	start := len(dst)
	dst = slices.Grow(dst, size)
	var nscount uint16
	if len(authority) > 0 {
		nscount = 1
	}
	dst = binary.BigEndian.AppendUint16(dst, id)
	dst = binary.BigEndian.AppendUint16(dst, bitQR|bitAA|bits&(bitRD|bitCD)|uint16(rcode))
	dst = binary.BigEndian.AppendUint16(dst, 1)
	dst = binary.BigEndian.AppendUint16(dst, ancount)
	dst = binary.BigEndian.AppendUint16(dst, nscount)
	dst = binary.BigEndian.AppendUint16(dst, arcount)
	dst = append(dst, q.question...)
	if hinfo {
		dst = append(dst, owner...)
		dst = append(dst, z.hinfoWire...)
	}
	// Each record of the set starts with its type, then the rest of a
	// length known from its rdlength.
	for off := 0; off < len(answer); {
		l := 10 + int(binary.BigEndian.Uint16(answer[off+8:]))
		dst = append(dst, owner...)
		dst = append(dst, answer[off:off+l]...)
		off += l
	}
	dst = append(dst, authority...)
	dst = append(dst, extra...)
	if q.edns {
		var flags uint16
		if q.do {
			flags = 0x8000
		}
		dst = append(dst, 0, byte(dns.TypeOPT>>8), byte(dns.TypeOPT), byte(MaxUDPSize>>8), byte(MaxUDPSize&0xFF), 0, 0)
		dst = binary.BigEndian.AppendUint16(dst, flags)
		dst = append(dst, 0, 0)
	}
	if len(dst)-start != size {
		// Cannot happen; should it, the handler answers.
		return dst[:start], 0, false
	}
	return dst, rcode, true
}

// wireNode finds canonical text name as Lookup does: the node it names, nil
// if the name does not exist, and whether it is in the zone at all.
func (z *Zone) wireNode(name []byte) (*node, bool) {
	dom := z.domain
	switch {
	case string(name) == dom ||
		len(name) > len(dom) && name[len(name)-len(dom)-1] == '.' && string(name[len(name)-len(dom):]) == dom:
		return z.nodes[string(name)], true
	case hasSuffix(name, ".in-addr.arpa.") || hasSuffix(name, ".ip6.arpa."):
		n := z.nodes[string(name)]
		return n, n != nil
	}
	// A short name: its last label is a known namespace.
	i := len(name) - 2
	for i >= 0 && name[i] != '.' {
		i--
	}
	if !z.namespaces[string(name[i+1:len(name)-1])] {
		return nil, false
	}
	long := append(name, "svc."...)
	long = append(long, dom...)
	return z.nodes[string(long)], true
}

func hasSuffix(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && string(b[len(b)-len(suffix):]) == suffix
}
