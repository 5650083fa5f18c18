package network

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// testNet makes a Network on a bridge, CNI network name and /24 of its own
// (10.251.x.0/24, a subnet no interface of the machine uses), so tests of
// concurrent users of the machine never share state; cleanup tears down
// every pod and deletes the bridge.
func testNet(t *testing.T) (*Network, Options) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and CNI")
	}
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("needs CNI plugin %s in /usr/lib/cni: %v", p, err)
		}
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables for the bridge and portmap plugins")
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:2])
	subnet := freeSubnet(t, b[2])
	dir := t.TempDir()
	opts := Options{
		Subnet:      subnet,
		DataDir:     filepath.Join(dir, "data"),
		NetNSDir:    filepath.Join(dir, "netns"),
		Bridge:      "stt" + suffix,
		NetworkName: "stead-test-" + suffix,
	}
	n, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		as, _ := n.List()
		for _, a := range as {
			if err := n.Teardown(ctx, a.PodID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := n.DeleteBridge(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n, opts
}

// freeSubnet picks 10.251.x.0/24 starting at x=start that no address of
// the machine falls in.
func freeSubnet(t *testing.T, start byte) netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 251, start + byte(i), 0}), 24)
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
			}
		}
		if !used {
			return p
		}
	}
	t.Fatal("no free 10.251.x.0/24")
	return netip.Prefix{}
}

// listenIn starts a TCP echo-name server inside the namespace at nsPath:
// each connection receives name and is closed.
func listenIn(t *testing.T, nsPath, addr, name string) {
	t.Helper()
	var ln net.Listener
	err := inNetNS(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprint(c, name)
			c.Close()
		}
	}()
}

// fetch dials addr (from nsPath, or from the host when nsPath is "") and
// returns what the server sent.
func fetch(nsPath, addr string) (string, error) {
	var out string
	dial := func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	}
	if nsPath == "" {
		return out, dial()
	}
	return out, inNetNS(nsPath, dial)
}

func mountedAt(path string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && fs[4] == path {
			return true
		}
	}
	return false
}

func ipamFiles(t *testing.T, n *Network) []string {
	t.Helper()
	ents, err := os.ReadDir(n.IPAMDir())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, e.Name())
		}
	}
	sort.Strings(ips)
	return ips
}

func TestPodsGetDistinctIPsAndReachEachOther(t *testing.T) {
	n, opts := testNet(t)
	ctx := context.Background()

	nsA, ipA, err := n.Setup(ctx, "pod-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	nsB, ipB, err := n.Setup(ctx, "pod-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	for _, ip := range []netip.Addr{ipA, ipB} {
		if !opts.Subnet.Contains(ip) || ip == n.GatewayIP() {
			t.Fatalf("pod IP %s not a host address of %s other than the gateway %s", ip, opts.Subnet, n.GatewayIP())
		}
	}
	if got, want := ipamFiles(t, n), sortedStrings(ipA.String(), ipB.String()); !equal(got, want) {
		t.Fatalf("host-local allocations = %v, want %v", got, want)
	}
	for _, ns := range []string{nsA, nsB} {
		if !isNetNS(ns) || !mountedAt(ns) {
			t.Fatalf("%s is not a pinned network namespace", ns)
		}
	}

	listenIn(t, nsA, netip.AddrPortFrom(ipA, 8080).String(), "a")
	listenIn(t, nsB, netip.AddrPortFrom(ipB, 8080).String(), "b")
	cases := []struct {
		name, from, to, want string
	}{
		{"host to a", "", netip.AddrPortFrom(ipA, 8080).String(), "a"},
		{"host to b", "", netip.AddrPortFrom(ipB, 8080).String(), "b"},
		{"a to b", nsA, netip.AddrPortFrom(ipB, 8080).String(), "b"},
		{"b to a", nsB, netip.AddrPortFrom(ipA, 8080).String(), "a"},
		{"a to itself", nsA, netip.AddrPortFrom(ipA, 8080).String(), "a"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := fetch(tc.from, tc.to)
			if err != nil || got != tc.want {
				t.Fatalf("fetch %s = %q, %v; want %q", tc.to, got, err, tc.want)
			}
		})
	}

	// Setup is idempotent: the same pod keeps its namespace and IP.
	ns2, ip2, err := n.Setup(ctx, "pod-a", nil)
	if err != nil || ns2 != nsA || ip2 != ipA {
		t.Fatalf("second Setup(pod-a) = %s %s %v; want %s %s", ns2, ip2, err, nsA, ipA)
	}
}

func TestTeardownLeavesNothingAndIsIdempotent(t *testing.T) {
	n, opts := testNet(t)
	ctx := context.Background()
	ns, ip, err := n.Setup(ctx, "pod-x", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(ctx, "pod-x"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ns); !os.IsNotExist(err) {
		t.Errorf("netns file %s still there (stat: %v)", ns, err)
	}
	if mountedAt(ns) {
		t.Errorf("netns %s still mounted", ns)
	}
	if got := ipamFiles(t, n); len(got) != 0 {
		t.Errorf("IP allocations left after teardown of %s: %v", ip, got)
	}
	if _, ok, _ := n.Lookup("pod-x"); ok {
		t.Errorf("record of pod-x left behind")
	}
	if out, err := exec.Command("iptables-save", "-t", "nat").Output(); err == nil && strings.Contains(string(out), opts.NetworkName) {
		t.Errorf("iptables rules of network %s left behind:\n%s", opts.NetworkName, grepLines(string(out), opts.NetworkName))
	}
	if err := n.Teardown(ctx, "pod-x"); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	if err := n.Teardown(ctx, "never-set-up"); err != nil {
		t.Fatalf("teardown of unknown pod: %v", err)
	}
}

func TestAllocationsSurviveRestart(t *testing.T) {
	n, opts := testNet(t)
	ctx := context.Background()
	_, ipA, err := n.Setup(ctx, "pod-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A new process: same directories, fresh Network.
	n2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	a, ok, err := n2.Lookup("pod-a")
	if err != nil || !ok || a.IP != ipA {
		t.Fatalf("Lookup(pod-a) after restart = %+v %v %v; want IP %s", a, ok, err, ipA)
	}
	_, ipB, err := n2.Setup(ctx, "pod-b", nil)
	if err != nil {
		t.Fatal(err)
	}
	if ipB == ipA {
		t.Fatalf("pod-b got pod-a's IP %s after restart", ipA)
	}
	list, err := n2.List()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range list {
		ids = append(ids, a.PodID+"="+a.IP.String())
	}
	if want := []string{"pod-a=" + ipA.String(), "pod-b=" + ipB.String()}; !equal(ids, want) {
		t.Fatalf("List = %v, want %v", ids, want)
	}
	// Tearing down through the new instance releases the old allocation.
	if err := n2.Teardown(ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	if got, want := ipamFiles(t, n2), []string{ipB.String()}; !equal(got, want) {
		t.Fatalf("allocations = %v, want %v", got, want)
	}
}

func TestHostPort(t *testing.T) {
	n, opts := testNet(t)
	ctx := context.Background()
	hostPort := uint16(20000 + int(time.Now().UnixNano()%10000))
	ns, ip, err := n.Setup(ctx, "pod-p", []PortMapping{{HostPort: hostPort, ContainerPort: 80}})
	if err != nil {
		t.Fatal(err)
	}
	listenIn(t, ns, netip.AddrPortFrom(ip, 80).String(), "p")
	// The node's own address on the pod network, as another node's pod
	// would reach it.
	addr := netip.AddrPortFrom(n.GatewayIP(), hostPort).String()
	got, err := fetch("", addr)
	if err != nil || got != "p" {
		t.Fatalf("fetch host port %s = %q, %v; want %q", addr, got, err, "p")
	}
	if err := n.Teardown(ctx, "pod-p"); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch("", addr); err == nil {
		t.Fatalf("host port %s still answers after teardown", addr)
	}
	if out, err := exec.Command("iptables-save", "-t", "nat").Output(); err == nil && strings.Contains(string(out), opts.NetworkName) {
		t.Errorf("iptables rules of network %s left behind:\n%s", opts.NetworkName, grepLines(string(out), opts.NetworkName))
	}
}

func TestEnsureBridgeBeforeAnyPod(t *testing.T) {
	n, opts := testNet(t)
	if err := n.EnsureBridge(); err != nil {
		t.Fatal(err)
	}
	if err := n.EnsureBridge(); err != nil {
		t.Fatalf("second EnsureBridge: %v", err)
	}
	ifc, err := net.InterfaceByName(opts.Bridge)
	if err != nil {
		t.Fatal(err)
	}
	if ifc.Flags&net.FlagUp == 0 {
		t.Errorf("bridge %s is down", opts.Bridge)
	}
	addrs, _ := ifc.Addrs()
	var got []string
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			got = append(got, a.String())
		}
	}
	want := netip.PrefixFrom(n.GatewayIP(), 24).String()
	if !equal(got, []string{want}) {
		t.Fatalf("bridge addresses = %v, want [%s]", got, want)
	}
	// The DNS server can bind the gateway before any pod exists, and a pod
	// set up afterwards uses the same bridge.
	ln, err := net.ListenPacket("udp", netip.AddrPortFrom(n.GatewayIP(), 0).String())
	if err != nil {
		t.Fatalf("bind gateway: %v", err)
	}
	ln.Close()
	if _, _, err := n.Setup(context.Background(), "pod-after", nil); err != nil {
		t.Fatal(err)
	}
}

func TestSyncRoutes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	// Routes are changed in a namespace of the test's own, never the host's.
	ns := filepath.Join(t.TempDir(), "routes")
	if err := newNetNS(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeNetNS(ns) })
	gwNet := netip.MustParsePrefix("192.0.2.1/24") // TEST-NET-1: no traffic is sent
	err := inNetNS(ns, func() error {
		if err := addBridge("br0"); err != nil {
			return err
		}
		if err := addAddr("br0", gwNet); err != nil {
			return err
		}
		return setLinkUp("br0")
	})
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	steps := []struct {
		name string
		want map[netip.Prefix]netip.Addr
	}{
		{"add two nodes", map[netip.Prefix]netip.Addr{p("10.244.1.0/24"): a("192.0.2.11"), p("10.244.2.0/24"): a("192.0.2.12")}},
		{"node 2 moves, node 3 joins", map[netip.Prefix]netip.Addr{p("10.244.1.0/24"): a("192.0.2.11"), p("10.244.2.0/24"): a("192.0.2.22"), p("10.244.3.0/24"): a("192.0.2.13")}},
		{"node 1 leaves", map[netip.Prefix]netip.Addr{p("10.244.2.0/24"): a("192.0.2.22"), p("10.244.3.0/24"): a("192.0.2.13")}},
		{"all leave", map[netip.Prefix]netip.Addr{}},
	}
	for _, st := range steps {
		var got map[netip.Prefix]netip.Addr
		err := inNetNS(ns, func() error {
			if err := SyncRoutes(st.want); err != nil {
				return err
			}
			var err error
			got, err = ownRoutes()
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(st.want) {
			t.Fatalf("%s: routes = %v, want %v", st.name, got, st.want)
		}
	}
	// Routes not added by SyncRoutes (the connected route of br0) stay.
	var out []byte
	err = inNetNS(ns, func() error {
		var err error
		out, err = exec.Command("ip", "-4", "route", "show").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "192.0.2.0/24 dev br0") {
		t.Fatalf("connected route of br0 removed; routes:\n%s", out)
	}
}

func sortedStrings(s ...string) []string { sort.Strings(s); return s }

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
