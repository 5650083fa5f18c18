package dnsserver

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testNetns creates a network namespace for the test, with lo up and the
// given addresses on it, and deletes it when the test ends.
func testNetns(t *testing.T, addrs ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip not installed")
	}
	name := "stead-dnstest-" + strconv.Itoa(os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	ip("-n", name, "link", "set", "lo", "up")
	for _, a := range addrs {
		ip("-n", name, "addr", "add", a, "dev", "lo")
	}
	return name
}

// serveInNetns runs s.ListenAndServe on addr inside network namespace ns.
// The sockets are created by a goroutine locked to a thread that entered
// the namespace; the goroutine never unlocks, so the thread ends with it.
// The server's other goroutines, and the upstream exchanges they make, run
// in the test's own namespace.
func serveInNetns(t *testing.T, s *Server, ns, addr string) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			done <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			done <- err
			return
		}
		done <- s.ListenAndServe(ctx, addr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ListenAndServe: %v", err)
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("ListenAndServe in %s: %v", ns, err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	return s.Addrs()[0]
}

// Recursion is refused to sources that are neither loopback nor in a pod
// CIDR, with the real source address a kernel gives a real client: dig runs
// in a network namespace made by the test, from an address outside the pod
// range and from one inside it.
func TestForwardOnlyForPodsAndLoopback(t *testing.T) {
	const (
		outsider = "198.51.100.1"
		pod      = "10.244.7.1"
	)
	ns := testNetns(t, outsider+"/32", pod+"/32")
	up := startUpstream(t) // in the test's namespace, reached by the server's exchanges
	s := NewServer(Config{Upstreams: []string{up.addr}, PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	server := serveInNetns(t, s, ns, outsider+":0")

	digFrom := func(src string, args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns, "dig", "@" + server.Addr().String(),
			"-p", strconv.Itoa(int(server.Port())), "-b", src, "+time=5", "+tries=1"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dig from %s %v: %v\n%s", src, args, err, out)
		}
		return string(out)
	}
	tests := []struct {
		name   string
		src    string
		args   []string
		status string
		flags  []string
		answer []string
	}{
		{"external from outsider", outsider, []string{"example.org"}, "REFUSED", []string{"qr", "rd"}, nil},
		{"external from outsider over TCP", outsider, []string{"example.org", "+tcp"}, "REFUSED", []string{"qr", "rd"}, nil},
		{"external from outsider without RD", outsider, []string{"example.org", "+norecurse"}, "REFUSED", []string{"qr"}, nil},
		{"cluster name from outsider", outsider, []string{"web-0.nginx.default"}, "NOERROR", []string{"qr", "aa", "rd"},
			[]string{"web-0.nginx.default. 30 IN A 10.1.2.10"}},
		{"external from pod", pod, []string{"example.org"}, "NOERROR", []string{"qr", "rd", "ra"},
			[]string{"example.org. 60 IN A 192.0.2.7"}},
		{"external from pod over TCP", pod, []string{"example.org", "+tcp"}, "NOERROR", []string{"qr", "rd", "ra"},
			[]string{"example.org. 60 IN A 192.0.2.7"}},
		{"external from loopback", "127.0.0.1", []string{"example.org"}, "NOERROR", []string{"qr", "rd", "ra"},
			[]string{"example.org. 60 IN A 192.0.2.7"}},
		{"cluster name from pod", pod, []string{"web-1.nginx.default"}, "NOERROR", []string{"qr", "aa", "rd"},
			[]string{"web-1.nginx.default. 30 IN A 10.1.2.11"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := digFrom(tc.src, tc.args...)
			status, flags := digHeader(t, out)
			if status != tc.status || !slices.Equal(flags, tc.flags) {
				t.Errorf("status %s flags %v, want %s %v\n%s", status, flags, tc.status, tc.flags, out)
			}
			ans := digFrom(tc.src, append(tc.args, "+noall", "+answer")...)
			var got []string
			for _, l := range lines(ans) {
				got = append(got, rrSet(t, l)...)
			}
			slices.Sort(got)
			if want := rrSet(t, tc.answer...); !slices.Equal(got, want) {
				t.Errorf("answer %q, want %q", got, want)
			}
		})
	}
	if got := s.Counters().Refused.Load(); got != 6 {
		t.Errorf("Refused = %d, want 6 (3 queries, each asked twice)", got)
	}
	if got := s.Counters().Forwarded.Load(); got != 6 {
		t.Errorf("Forwarded = %d, want 6", got)
	}
}

// On a wildcard address, a reply from the fast path leaves from the address
// the query was sent to, which is what clients check; on a specific
// address it always does.
func TestFastPathReplySource(t *testing.T) {
	const a, b = "198.51.100.1", "198.51.100.2"
	// Each query is sent from the other address, so that a reply that
	// leaves from the address the kernel picks for its destination comes
	// from the wrong one.
	from := map[string]string{a: b, b: a, "127.0.0.1": a}
	for _, tc := range []struct {
		name, listen string
		to           []string
	}{
		{"wildcard", "0.0.0.0:0", []string{a, b, "127.0.0.1"}},
		{"specific", b + ":0", []string{b}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := testNetns(t, a+"/32", b+"/32")
			s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
			s.Swap(BuildZone(fixture()))
			port := serveInNetns(t, s, ns, tc.listen).Port()
			for _, to := range tc.to {
				before := s.fastReplies.Load()
				out, err := exec.Command("ip", "netns", "exec", ns, "dig", "@"+to, "-p", strconv.Itoa(int(port)),
					"-b", from[to], "+time=5", "+tries=1", "+short", "web-0.nginx.default").CombinedOutput()
				if err != nil || strings.TrimSpace(string(out)) != "10.1.2.10" {
					t.Errorf("dig @%s -b %s: %v\n%s", to, from[to], err, out)
				}
				if got := s.fastReplies.Load(); got != before+1 {
					t.Errorf("dig @%s -b %s: %d fast replies, want 1", to, from[to], got-before)
				}
			}
		})
	}
}
