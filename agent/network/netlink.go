package network

// A minimal rtnetlink client: the few link, address and route operations
// the agent needs (the pod bridge, host-gw routes), over a NETLINK_ROUTE
// socket from golang.org/x/sys/unix, without another dependency.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// routeProtocol marks the routes SyncRoutes owns (rtm_protocol), so it
// never touches routes it did not add. Values above RTPROT_STATIC (4) are
// free for daemons; 0x53 ('S') is not in /etc/iproute2/rt_protos.
const routeProtocol = 0x53

var nlSeq atomic.Uint32

type nlAttr struct {
	typ  uint16
	data []byte
}

func attrString(typ uint16, s string) nlAttr { return nlAttr{typ, append([]byte(s), 0)} }
func attrU32(typ uint16, v uint32) nlAttr {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return nlAttr{typ, b}
}

func encodeAttrs(attrs []nlAttr) []byte {
	var out []byte
	for _, a := range attrs {
		l := unix.SizeofRtAttr + len(a.data)
		hdr := make([]byte, unix.SizeofRtAttr)
		binary.NativeEndian.PutUint16(hdr[0:2], uint16(l))
		binary.NativeEndian.PutUint16(hdr[2:4], a.typ)
		out = append(out, hdr...)
		out = append(out, a.data...)
		for len(out)%4 != 0 {
			out = append(out, 0)
		}
	}
	return out
}

func structBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// nlRequest sends one request and returns the reply messages (for dumps)
// or the error the kernel acknowledged with.
func nlRequest(typ uint16, flags uint16, body []byte) ([]syscall.NetlinkMessage, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	seq := nlSeq.Add(1)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], typ)
	binary.NativeEndian.PutUint16(msg[6:8], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:12], seq)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out []syscall.NetlinkMessage
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink parse: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("netlink: short error message")
				}
				if errno := int32(binary.NativeEndian.Uint32(m.Data[0:4])); errno != 0 {
					return nil, syscall.Errno(-errno)
				}
				return out, nil // the ACK
			default:
				// buf is reused by the next receive.
				m.Data = append([]byte(nil), m.Data...)
				out = append(out, m)
			}
		}
	}
}

// addBridge creates a bridge named name; an existing link of that name is
// not an error.
func addBridge(name string) error {
	info := unix.IfInfomsg{Family: unix.AF_UNSPEC}
	kind := encodeAttrs([]nlAttr{attrString(unix.IFLA_INFO_KIND, "bridge")})
	body := append(structBytes(&info), encodeAttrs([]nlAttr{
		attrString(unix.IFLA_IFNAME, name),
		{unix.IFLA_LINKINFO, kind},
	})...)
	_, err := nlRequest(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	return nil
}

// deleteLink removes the link named name; a missing one is not an error.
func deleteLink(name string) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil
	}
	info := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(ifc.Index)}
	if _, err := nlRequest(unix.RTM_DELLINK, 0, structBytes(&info)); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// setLinkUp brings the link named name up.
func setLinkUp(name string) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	info := unix.IfInfomsg{Family: unix.AF_UNSPEC, Index: int32(ifc.Index), Flags: unix.IFF_UP, Change: unix.IFF_UP}
	if _, err := nlRequest(unix.RTM_NEWLINK, 0, structBytes(&info)); err != nil {
		return fmt.Errorf("set link %s up: %w", name, err)
	}
	return nil
}

// addAddr assigns the IPv4 address prefix (e.g. 10.244.1.1/24) to the
// link named name; an address it already has is not an error.
func addAddr(name string, prefix netip.Prefix) error {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	a := prefix.Addr().As4()
	msg := unix.IfAddrmsg{Family: unix.AF_INET, Prefixlen: uint8(prefix.Bits()), Index: uint32(ifc.Index)}
	body := append(structBytes(&msg), encodeAttrs([]nlAttr{
		{unix.IFA_LOCAL, a[:]},
		{unix.IFA_ADDRESS, a[:]},
	})...)
	_, err = nlRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL, body)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("add address %s to %s: %w", prefix, name, err)
	}
	return nil
}

func routeBody(dst netip.Prefix, gw netip.Addr) []byte {
	msg := unix.RtMsg{
		Family:   unix.AF_INET,
		Dst_len:  uint8(dst.Bits()),
		Table:    unix.RT_TABLE_MAIN,
		Protocol: routeProtocol,
		Scope:    unix.RT_SCOPE_UNIVERSE,
		Type:     unix.RTN_UNICAST,
	}
	d := dst.Masked().Addr().As4()
	attrs := []nlAttr{{unix.RTA_DST, d[:]}, attrU32(unix.RTA_TABLE, unix.RT_TABLE_MAIN)}
	if gw.IsValid() {
		g := gw.As4()
		attrs = append(attrs, nlAttr{unix.RTA_GATEWAY, g[:]})
	}
	return append(structBytes(&msg), encodeAttrs(attrs)...)
}

// replaceRoute installs dst via gw, replacing any route to dst.
func replaceRoute(dst netip.Prefix, gw netip.Addr) error {
	if _, err := nlRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE, routeBody(dst, gw)); err != nil {
		return fmt.Errorf("route %s via %s: %w", dst, gw, err)
	}
	return nil
}

// deleteRoute removes our route to dst; a missing one is not an error.
func deleteRoute(dst netip.Prefix, gw netip.Addr) error {
	_, err := nlRequest(unix.RTM_DELROUTE, 0, routeBody(dst, gw))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s: %w", dst, err)
	}
	return nil
}

// ownRoutes lists the IPv4 routes of the main table marked with
// routeProtocol: destination → gateway.
func ownRoutes() (map[netip.Prefix]netip.Addr, error) {
	msg := unix.RtMsg{Family: unix.AF_INET}
	msgs, err := nlRequest(unix.RTM_GETROUTE, unix.NLM_F_DUMP, structBytes(&msg))
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	out := make(map[netip.Prefix]netip.Addr)
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWROUTE || len(m.Data) < unix.SizeofRtMsg {
			continue
		}
		rt := (*unix.RtMsg)(unsafe.Pointer(&m.Data[0]))
		if rt.Protocol != routeProtocol || rt.Family != unix.AF_INET {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			return nil, fmt.Errorf("list routes: %w", err)
		}
		var dst netip.Addr = netip.IPv4Unspecified()
		var gw netip.Addr
		table := uint32(rt.Table)
		for _, a := range attrs {
			switch a.Attr.Type {
			case unix.RTA_DST:
				dst, _ = netip.AddrFromSlice(a.Value)
			case unix.RTA_GATEWAY:
				gw, _ = netip.AddrFromSlice(a.Value)
			case unix.RTA_TABLE:
				if len(a.Value) == 4 {
					table = binary.NativeEndian.Uint32(a.Value)
				}
			}
		}
		if table != unix.RT_TABLE_MAIN {
			continue
		}
		out[netip.PrefixFrom(dst, int(rt.Dst_len))] = gw
	}
	return out, nil
}
