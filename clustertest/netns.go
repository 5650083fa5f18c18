package clustertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// cmdTimeout bounds every helper command the harness runs (ip, nft, runc,
// dig).
const cmdTimeout = 15 * time.Second

// Host is one machine of the topology: a network namespace with an
// address on the switch.
type Host struct {
	// Name is the machine's name in the cluster: s1, a2, c0.
	Name string
	// NS is the name of its network namespace (under /run/netns).
	NS string
	// Addr is its address on the switch.
	Addr netip.Addr
	// port is the switch-side end of its veth.
	port string
}

// NSPath is the path of the host's network namespace.
func (h *Host) NSPath() string { return filepath.Join(netnsDir, h.NS) }

// topology is the switch namespace and the hosts plugged into it.
type topology struct {
	prefix string // of every namespace name
	subnet netip.Prefix
	swNS   string
	hosts  map[string]*Host
}

// run runs a command and returns its combined output; a failure carries
// the output.
func run(ctx context.Context, name string, args ...string) (string, error) {
	return runIn(ctx, nil, name, args...)
}

// runIn is run with stdin.
func runIn(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// pickSubnet returns 10.99.R.0/24 for a random R that no route or address
// of this (root) namespace overlaps. It lives only inside the cluster's
// namespaces, so two clusters may use the same one.
func pickSubnet(ctx context.Context) (netip.Prefix, error) {
	routes, err := run(ctx, "ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return netip.Prefix{}, err
	}
	var used []netip.Prefix
	for _, line := range strings.Split(routes, "\n") {
		for _, f := range strings.Fields(line) {
			if p, err := netip.ParsePrefix(f); err == nil {
				used = append(used, p)
			} else if a, err := netip.ParseAddr(f); err == nil && a.Is4() {
				used = append(used, netip.PrefixFrom(a, 32))
			}
		}
	}
	for range 100 {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, byte(1 + rand.IntN(250)), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) && u.Bits() > 0 {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, errors.New("no free 10.99.x.0/24")
}

// newTopology makes the switch namespace with br0 and one namespace per
// host with its veth and address (hostAddrs gives each host's last
// octet). On failure it removes what it made.
func newTopology(ctx context.Context, prefix string, subnet netip.Prefix, hostAddrs map[string]byte) (_ *topology, err error) {
	t := &topology{prefix: prefix, subnet: subnet, swNS: prefix + "-sw", hosts: map[string]*Host{}}
	defer func() {
		if err != nil {
			t.delete(context.Background())
		}
	}()
	sw := t.swNS
	steps := [][]string{
		{"ip", "netns", "add", sw},
		{"ip", "-n", sw, "link", "set", "lo", "up"},
		{"ip", "-n", sw, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", sw, "link", "set", "br0", "up"},
	}
	for name, octet := range hostAddrs {
		base := subnet.Addr().As4()
		base[3] = octet
		h := &Host{Name: name, NS: prefix + "-" + name, Addr: netip.AddrFrom4(base), port: "v-" + name}
		t.hosts[name] = h
		steps = append(steps,
			[]string{"ip", "netns", "add", h.NS},
			[]string{"ip", "-n", h.NS, "link", "set", "lo", "up"},
			[]string{"ip", "-n", sw, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS},
			[]string{"ip", "-n", sw, "link", "set", h.port, "master", "br0", "up"},
			[]string{"ip", "-n", h.NS, "addr", "add", netip.PrefixFrom(h.Addr, subnet.Bits()).String(), "dev", "eth0"},
			[]string{"ip", "-n", h.NS, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return nil, fmt.Errorf("make topology: %w", err)
		}
	}
	return t, nil
}

// delete removes every namespace of the topology; what is gone already is
// no error.
func (t *topology) delete(ctx context.Context) error {
	var errs []error
	names := []string{t.swNS}
	for _, h := range t.hosts {
		names = append(names, h.NS)
	}
	for _, ns := range names {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if _, err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nftTable is the harness's table in a victim's namespace.
const nftTable = "chaos"

// cutRules returns the nft script that drops traffic between the namespace
// and peers: from them (in) and to them (out).
func cutRules(peers []netip.Addr, in, out bool) string {
	var set []string
	for _, p := range peers {
		set = append(set, p.String())
	}
	elems := "{ " + strings.Join(set, ", ") + " }"
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", nftTable)
	if in {
		fmt.Fprintf(&b, "  chain input { type filter hook input priority -10; policy accept; ip saddr %s drop; }\n", elems)
	}
	if out {
		fmt.Fprintf(&b, "  chain output { type filter hook output priority -10; policy accept; ip daddr %s drop; }\n", elems)
	}
	b.WriteString("}\n")
	return b.String()
}

// nftIn runs an nft script inside a host's namespace.
func nftIn(ctx context.Context, h *Host, script string) error {
	_, err := runIn(ctx, []byte(script), "ip", "netns", "exec", h.NS, "nft", "-f", "-")
	return err
}

// healIn removes the harness's table from a host's namespace; a missing
// table is no error.
func healIn(ctx context.Context, h *Host) error {
	out, err := run(ctx, "ip", "netns", "exec", h.NS, "nft", "list", "tables")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "inet "+nftTable) {
		return nil
	}
	_, err = run(ctx, "ip", "netns", "exec", h.NS, "nft", "delete", "table", "inet", nftTable)
	return err
}

// dialIn dials addr from inside the network namespace at nsPath: the
// socket is made by a thread that entered the namespace and then returns
// to its own, and it stays in the namespace it was made in.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("enter %s: %w", nsPath, err)}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
			// The thread stays locked and is discarded with this
			// goroutine rather than reused in the wrong namespace.
			if c != nil {
				c.Close()
			}
			ch <- result{nil, fmt.Errorf("return from %s: %w", nsPath, rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
