package containerd_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/containerd/containerdtest"
	"github.com/stead-io/stead/agent/network"
)

// podNet is a pod network of the test's own: unique bridge, CNI network
// name and a 10.252.x.0/24 no interface uses. Cleanup tears every pod down
// and removes the bridge.
func podNet(t *testing.T) *network.Network {
	t.Helper()
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("needs CNI plugin %s: %v", p, err)
		}
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:2])
	addrs, _ := net.InterfaceAddrs()
	var subnet netip.Prefix
	for i := 0; i < 256 && !subnet.IsValid(); i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 252, b[2] + byte(i), 0}), 24)
		used := false
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && p.Contains(ip.Unmap()) {
					used = true
				}
			}
		}
		if !used {
			subnet = p
		}
	}
	dir := t.TempDir()
	n, err := network.New(network.Options{
		Subnet:      subnet,
		DataDir:     filepath.Join(dir, "net"),
		NetNSDir:    filepath.Join(dir, "netns"),
		Bridge:      "stc" + suffix,
		NetworkName: "stead-ctest-" + suffix,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		as, _ := n.List()
		for _, a := range as {
			if err := n.Teardown(context.Background(), a.PodID); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if err := n.DeleteBridge(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n
}

// pod sets up the network of a pod and runs the stub serving on :8080 in
// it, with /etc/hosts and /etc/resolv.conf bind-mounted as the agent will.
func pod(t *testing.T, rt *containerd.Runtime, n *network.Network, img, name string) (containerd.ContainerSpec, netip.Addr) {
	t.Helper()
	ctx := context.Background()
	ns, ip, err := n.Setup(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hosts := filepath.Join(dir, "hosts")
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(hosts, []byte(fmt.Sprintf("127.0.0.1\tlocalhost\n%s\t%s.nginx.default.svc.cluster.local\t%s\n", ip, name, name)), 0o644)
	os.WriteFile(resolv, []byte(fmt.Sprintf("nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", n.GatewayIP())), 0o644)
	spec := run(t, rt, containerd.ContainerSpec{
		ID:        name,
		Image:     img,
		Args:      []string{"serve", ":8080"},
		Hostname:  name,
		NetNSPath: ns,
		Mounts: []containerd.Mount{
			{Source: hosts, Destination: "/etc/hosts", ReadOnly: true},
			{Source: resolv, Destination: "/etc/resolv.conf", ReadOnly: true},
		},
		Labels: map[string]string{"stead.io/pod": name, "stead.io/generation": "42"},
	})
	return spec, ip
}

func TestPodNetworking(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	n := podNet(t)

	_, ipA := pod(t, rt, n, img, "web-0")
	_, ipB := pod(t, rt, n, img, "web-1")
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	urlA := "http://" + netip.AddrPortFrom(ipA, 8080).String()
	urlB := "http://" + netip.AddrPortFrom(ipB, 8080).String()

	cases := []struct{ name, url, want string }{
		{"host reaches web-0 by its IP", urlA + "/hostname", "web-0"},
		{"host reaches web-1 by its IP", urlB + "/hostname", "web-1"},
		{"web-0 reaches web-1 over TCP", urlA + "/get?url=" + urlB + "/hostname", "web-1"},
		{"web-1 reaches web-0 over TCP", urlB + "/get?url=" + urlA + "/hostname", "web-0"},
		{"/etc/hosts holds the pod's IP and FQDN", urlA + "/file/etc/hosts", fmt.Sprintf("127.0.0.1\tlocalhost\n%s\tweb-0.nginx.default.svc.cluster.local\tweb-0\n", ipA)},
		{"/etc/resolv.conf points at the node", urlB + "/file/etc/resolv.conf", fmt.Sprintf("nameserver %s\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n", n.GatewayIP())},
	}
	waitGet(t, urlA+"/hostname")
	waitGet(t, urlB+"/hostname")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := get(tc.url)
			if err != nil || got != tc.want {
				t.Fatalf("GET %s = %q, %v; want %q", tc.url, got, err, tc.want)
			}
		})
	}

	t.Run("host network", func(t *testing.T) {
		port := freePort(t)
		run(t, rt, containerd.ContainerSpec{ID: "hostnet", Image: img, Args: []string{"serve", fmt.Sprintf("127.0.0.1:%d", port)}})
		host, _ := os.Hostname()
		got := waitGet(t, fmt.Sprintf("http://127.0.0.1:%d/hostname", port))
		if got != host {
			t.Fatalf("hostNetwork pod hostname = %q, want the node's %q", got, host)
		}
	})
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestDeleteLeavesNothing deletes a running pod's container and network and
// checks containerd, the snapshotter, the shim, the mounts, the network
// namespace and host-local for leftovers.
func TestDeleteLeavesNothing(t *testing.T) {
	d := containerdtest.Start(t)
	rt := d.Connect(t)
	img := containerdtest.StubImage(t, rt)
	n := podNet(t)
	ctx := context.Background()

	spec, ip := pod(t, rt, n, img, "web-2")
	waitGet(t, "http://"+netip.AddrPortFrom(ip, 8080).String()+"/hostname")
	st, err := rt.Inspect(ctx, spec.ID)
	if err != nil || st.State != containerd.StateRunning {
		t.Fatalf("inspect: %+v %v", st, err)
	}
	if ok, err := containerd.SnapshotExists(ctx, rt, spec.ID); err != nil || !ok {
		t.Fatalf("snapshot of a running container: %v %v", ok, err)
	}
	if !mountinfoHas(spec.ID) {
		t.Fatalf("no rootfs mount for %s in mountinfo", spec.ID)
	}

	if err := rt.Stop(ctx, spec.ID, 5*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if err := rt.Delete(ctx, spec.ID); err != nil {
		t.Fatal(err)
	}
	if err := n.Teardown(ctx, "web-2"); err != nil {
		t.Fatal(err)
	}

	if _, err := rt.Inspect(ctx, spec.ID); !errors.Is(err, containerd.ErrNotFound) {
		t.Errorf("container still there: %v", err)
	}
	if ok, err := containerd.TaskExists(ctx, rt, spec.ID); ok || err != nil {
		t.Errorf("task still there: %v %v", ok, err)
	}
	if ok, err := containerd.SnapshotExists(ctx, rt, spec.ID); ok || err != nil {
		t.Errorf("snapshot still there: %v %v", ok, err)
	}
	if list, _ := rt.List(ctx); len(list) != 0 {
		t.Errorf("List after delete = %+v", list)
	}
	if mountinfoHas(spec.ID) {
		t.Errorf("a mount of %s is left in mountinfo", spec.ID)
	}
	if mountinfoHas("/netns/web-2") {
		t.Errorf("the netns mount of web-2 is left in mountinfo")
	}
	if pid := int(st.Pid); pid != 0 {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("container process %d still alive", pid)
		}
	}
	if _, ok, _ := n.Lookup("web-2"); ok {
		t.Errorf("network record of web-2 left")
	}
	if b, err := os.ReadDir(n.IPAMDir()); err == nil {
		for _, e := range b {
			if e.Name() == ip.String() {
				t.Errorf("IP allocation %s left in %s", ip, n.IPAMDir())
			}
		}
	}
	if shims := shimsFor(d.Socket); len(shims) != 0 {
		t.Errorf("shim processes left: %v", shims)
	}
	// Delete is idempotent.
	if err := rt.Delete(ctx, spec.ID); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func mountinfoHas(sub string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 4 && strings.Contains(fs[4], sub) {
			return true
		}
	}
	return false
}

// shimsFor lists shim processes whose command line names socket.
func shimsFor(socket string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, "containerd-shim") && strings.Contains(cmd, socket) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}
