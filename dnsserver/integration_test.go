package dnsserver

import (
	"context"
	"encoding/binary"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
)

// Tests over real sockets on 127.0.0.1, with miekg/dns's client and dig.

func clientExchange(t *testing.T, net, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: net, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s exchange %s: %v", net, m.Question[0].String(), err)
	}
	return r
}

func TestClientOverUDPAndTCP(t *testing.T) {
	up := startUpstream(t)
	s := NewServer(Config{Upstreams: []string{up.addr}}, testLogger(t))
	s.Swap(BuildZone(bigInput(100)))
	addr := serve(t, s)

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r := clientExchange(t, network, addr, query("Web-0.Nginx.Default.", dns.TypeA))
			if got, want := texts(r.Answer), rrSet(t, "Web-0.Nginx.Default. 30 IN A 10.1.2.10"); !slices.Equal(got, want) {
				t.Errorf("A: %q, want %q", got, want)
			}
			if !r.Authoritative || r.RecursionAvailable {
				t.Errorf("cluster answer aa=%v ra=%v, want aa only", r.Authoritative, r.RecursionAvailable)
			}

			r = clientExchange(t, network, addr, query("web-9.nginx.default.svc.cluster.local.", dns.TypeA))
			if r.Rcode != dns.RcodeNameError || !slices.Equal(texts(r.Ns), rrSet(t, soa)) || !r.Authoritative || r.RecursionAvailable {
				t.Errorf("NXDOMAIN: %v", r)
			}

			r = clientExchange(t, network, addr, query("_raft._tcp.peers.default.", dns.TypeSRV))
			if len(r.Answer) != 3 || len(r.Extra) != 3 {
				t.Errorf("SRV: %d answers, %d extra, want 3 and 3: %v", len(r.Answer), len(r.Extra), r)
			}

			r = clientExchange(t, network, addr, query("example.org.", dns.TypeA))
			if got, want := texts(r.Answer), rrSet(t, "example.org. 60 IN A 192.0.2.7"); !slices.Equal(got, want) {
				t.Errorf("forwarded: %q, want %q", got, want)
			}
			// The upstream answered authoritatively; the relayed answer is not.
			if r.Authoritative || !r.RecursionAvailable || r.Rcode != dns.RcodeSuccess {
				t.Errorf("forwarded answer aa=%v ra=%v rcode=%s, want ra only", r.Authoritative, r.RecursionAvailable, dns.RcodeToString[r.Rcode])
			}
			select {
			case got := <-up.queries:
				if len(got.Question) != 1 || got.Question[0].Name != "example.org." || len(got.Extra) != 0 {
					t.Errorf("upstream got %v, want the bare question", got)
				}
			default:
				t.Errorf("upstream saw no query")
			}
		})
	}
}

// A large answer is cut to the client's size over UDP, with TC set, and is
// complete over TCP.
func TestTruncationAndTCPFallback(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
	s.Swap(BuildZone(bigInput(100)))
	addr := serve(t, s)
	big := "big.default.svc.cluster.local."

	for _, size := range []uint16{0, 512, 1232, 4096} {
		q := query(big, dns.TypeA)
		if size > 0 {
			q.SetEdns0(size, false)
		}
		c := &dns.Client{Net: "udp", Timeout: 5 * time.Second, UDPSize: 65535}
		conn, err := c.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.UDPSize = 65535
		if err := conn.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		raw := make([]byte, 65535)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(raw)
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw[:n]); err != nil {
			t.Fatal(err)
		}
		limit := min(max(int(size), 512), MaxUDPSize)
		if !r.Truncated || n > limit || len(r.Answer) == 0 || len(r.Answer) >= 100 {
			t.Errorf("UDP bufsize %d: tc=%v, %d bytes (max %d), %d answers", size, r.Truncated, n, limit, len(r.Answer))
		}
	}
	r := clientExchange(t, "tcp", addr, query(big, dns.TypeA))
	if r.Truncated || len(r.Answer) != 100 {
		t.Errorf("TCP: tc=%v, %d answers, want 100", r.Truncated, len(r.Answer))
	}
	var got []string
	for _, rr := range r.Answer {
		got = append(got, rr.(*dns.A).A.String())
	}
	slices.Sort(got)
	var want []string
	for i := range 100 {
		want = append(want, "10.50.0."+strconv.Itoa(i+1))
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("TCP answer addresses = %v", got)
	}
}

// dig runs /usr/bin/dig against addr with args and returns its output.
func dig(t *testing.T, addr string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig not installed")
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("dig", append([]string{"@" + host, "-p", port, "+time=5", "+tries=1"}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// header returns the status and flags dig printed.
func digHeader(t *testing.T, out string) (status string, flags []string) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(l, "status: "); ok {
			status, _, _ = strings.Cut(rest, ",")
		}
		if _, rest, ok := strings.Cut(l, ";; flags: "); ok {
			f, _, _ := strings.Cut(rest, ";")
			flags = strings.Fields(f)
		}
	}
	if status == "" {
		t.Fatalf("no header in dig output:\n%s", out)
	}
	return status, flags
}

func TestDig(t *testing.T) {
	up := startUpstream(t)
	s := NewServer(Config{Upstreams: []string{up.addr}}, testLogger(t))
	s.Swap(BuildZone(bigInput(100)))
	addr := serve(t, s)

	var all100 []string
	for i := range 100 {
		all100 = append(all100, "10.50.0."+strconv.Itoa(i+1))
	}
	slices.Sort(all100)

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"pod short name", []string{"web-0.nginx.default", "+short"}, []string{"10.1.2.10"}},
		{"pod over TCP", []string{"web-1.nginx.default.svc.cluster.local", "AAAA", "+tcp", "+short"}, []string{"fd00::11"}},
		{"service", []string{"nginx.default", "+short"}, []string{"10.1.2.10", "10.1.2.11", "10.1.2.20", "10.1.2.21"}},
		{"SRV", []string{"_web._tcp.nginx.default", "SRV", "+short"}, []string{"0 100 8080 " + web0, "0 100 8080 " + web1}},
		{"PTR", []string{"-x", "10.1.2.10", "+short"}, []string{web0}},
		// dig retries over TCP when the UDP answer is truncated.
		{"large answer, TCP fallback", []string{"big.default", "+short"}, all100},
		{"large answer over TCP", []string{"big.default", "+tcp", "+short"}, all100},
		{"forwarded", []string{"example.org", "+short"}, []string{"192.0.2.7"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if got := lines(dig(t, addr, tc.args...)); !slices.Equal(got, want) {
				t.Errorf("dig %v:\n got %q\nwant %q", tc.args, got, want)
			}
		})
	}

	headers := []struct {
		name   string
		args   []string
		status string
		flags  []string
	}{
		{"cluster answer", []string{"web-0.nginx.default"}, "NOERROR", []string{"qr", "aa", "rd"}},
		{"NXDOMAIN", []string{"web-9.nginx.default"}, "NXDOMAIN", []string{"qr", "aa", "rd"}},
		{"NODATA", []string{"web-0.nginx.default", "AAAA"}, "NOERROR", []string{"qr", "aa", "rd"}},
		{"truncated", []string{"big.default", "+bufsize=512", "+ignore"}, "NOERROR", []string{"qr", "aa", "tc", "rd"}},
		{"truncated at 1232", []string{"big.default", "+bufsize=4096", "+ignore"}, "NOERROR", []string{"qr", "aa", "tc", "rd"}},
		{"forwarded", []string{"example.org"}, "NOERROR", []string{"qr", "rd", "ra"}},
		{"ANY", []string{"nginx.default", "ANY"}, "NOERROR", []string{"qr", "aa", "rd"}},
	}
	for _, tc := range headers {
		t.Run("header "+tc.name, func(t *testing.T) {
			out := dig(t, addr, tc.args...)
			status, flags := digHeader(t, out)
			if status != tc.status || !slices.Equal(flags, tc.flags) {
				t.Errorf("dig %v: status %s flags %v, want %s %v\n%s", tc.args, status, flags, tc.status, tc.flags, out)
			}
		})
	}

	// The negative answer carries the SOA with the negative TTL.
	out := dig(t, addr, "web-9.nginx.default", "+noall", "+authority")
	if got, want := lines(out), rrSet(t, soa); len(got) != 1 || !slices.Equal(rrSet(t, got[0]), want) {
		t.Errorf("authority: %q, want %q", got, want)
	}
}

// A swapped zone answers the very next query.
func TestSwapVisibleToNextQuery(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
	in := ZoneInput{Services: []*corev1.Service{mkSvc("default", "nginx")}}
	s.Swap(BuildZone(in))
	addr := serve(t, s)

	if r := clientExchange(t, "udp", addr, query("web-0.nginx.default.", dns.TypeA)); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before: %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	in.Pods = []*corev1.Pod{mkPod("default", "web-0", "10.0.0.1", member("nginx"))}
	s.Swap(BuildZone(in))
	r := clientExchange(t, "udp", addr, query("web-0.nginx.default.", dns.TypeA))
	if got, want := texts(r.Answer), rrSet(t, "web-0.nginx.default. 5 IN A 10.0.0.1"); !slices.Equal(got, want) {
		t.Fatalf("after Swap: %q, want %q", got, want)
	}
	// Rescheduled: same name, new IP (C.25).
	in.Pods = []*corev1.Pod{mkPod("default", "web-0", "10.0.0.2", member("nginx"))}
	s.Swap(BuildZone(in))
	r = clientExchange(t, "tcp", addr, query("web-0.nginx.default.", dns.TypeA))
	if got, want := texts(r.Answer), rrSet(t, "web-0.nginx.default. 5 IN A 10.0.0.2"); !slices.Equal(got, want) {
		t.Fatalf("after move: %q, want %q", got, want)
	}
}

// Upstreams are tried in order; one that does not answer costs a timeout.
func TestForwardFailover(t *testing.T) {
	up := startUpstream(t)
	// A bound socket that never answers.
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	s := NewServer(Config{Upstreams: []string{silent.LocalAddr().String(), up.addr}, ForwardTimeout: 200 * time.Millisecond}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	addr := serve(t, s)
	r := clientExchange(t, "udp", addr, query("example.org.", dns.TypeA))
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || !r.RecursionAvailable {
		t.Errorf("failover: %v", r)
	}

	dead := NewServer(Config{Upstreams: []string{silent.LocalAddr().String()}, ForwardTimeout: 200 * time.Millisecond}, testLogger(t))
	dead.Swap(BuildZone(fixture()))
	addr = serve(t, dead)
	r = clientExchange(t, "udp", addr, query("example.org.", dns.TypeA))
	if r.Rcode != dns.RcodeServerFailure || !r.RecursionAvailable || r.Authoritative {
		t.Errorf("no upstream answering: %v", r)
	}
	if got := dead.Counters().ForwardFailures.Load(); got != 1 {
		t.Errorf("ForwardFailures = %d, want 1", got)
	}
}

// Upstreams default to resolv.conf's nameservers, minus the server itself.
func TestUpstreamsFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	if err := os.WriteFile(path, []byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := NewServer(Config{ResolvConf: path}, testLogger(t))
	if want := []string{"192.0.2.53:53", "[2001:db8::53]:53"}; !slices.Equal(s.upstreams, want) {
		t.Errorf("upstreams = %q, want %q", s.upstreams, want)
	}
	s = NewServer(Config{Upstreams: []string{"192.0.2.1", "[2001:db8::1]", "192.0.2.2:5353"}}, testLogger(t))
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.2:5353"}; !slices.Equal(s.upstreams, want) {
		t.Errorf("upstreams = %q, want %q", s.upstreams, want)
	}
	s = NewServer(Config{ResolvConf: dir + "/missing"}, testLogger(t))
	if len(s.upstreams) != 0 {
		t.Errorf("upstreams without resolv.conf = %q", s.upstreams)
	}

	// A server listed as its own upstream is dropped once it knows its
	// address.
	pc, l, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := pc.LocalAddr().String()
	pc.Close()
	l.Close()
	up := startUpstream(t)
	s = NewServer(Config{Upstreams: []string{self, up.addr}}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, self) }()
	<-s.Ready()
	if !slices.Equal(s.upstreams, []string{up.addr}) {
		t.Errorf("upstreams while serving on %s = %q", self, s.upstreams)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

// Messages rejected before the handler, through the real server: the rules
// the fuzz target's serveRaw reproduces.
func TestMalformedOverUDP(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	addr := serve(t, s)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	good, _ := query("web-0.nginx.default.", dns.TypeA).Pack()
	withHeader := func(id, bits, qd, an, ns, ar uint16, rest []byte) []byte {
		b := make([]byte, 12, 12+len(rest))
		for i, v := range []uint16{id, bits, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], v)
		}
		return append(b, rest...)
	}
	question := good[12:]
	tests := []struct {
		name  string
		msg   []byte
		rcode int // -1: no reply
	}{
		{"short", []byte{1, 2, 3}, -1},
		{"response", withHeader(1, 1<<15, 1, 0, 0, 0, question), -1},
		{"no question", withHeader(2, 0, 0, 0, 0, 0, nil), dns.RcodeFormatError},
		{"two questions", withHeader(3, 0, 2, 0, 0, 0, append(slices.Clone(question), question...)), dns.RcodeFormatError},
		{"UPDATE", withHeader(4, uint16(dns.OpcodeUpdate)<<11, 1, 0, 0, 0, question), dns.RcodeNotImplemented},
		{"NOTIFY", withHeader(5, uint16(dns.OpcodeNotify)<<11, 1, 0, 0, 0, question), dns.RcodeNotImplemented},
		{"garbage question", withHeader(6, 0, 1, 0, 0, 0, []byte{0xc0, 0xff, 0, 1}), dns.RcodeFormatError},
		{"answer section", withHeader(7, 0, 1, 1, 0, 0, question), dns.RcodeFormatError},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Counters().Ignored.Load()
			if _, err := conn.Write(tc.msg); err != nil {
				t.Fatal(err)
			}
			if tc.rcode < 0 {
				// Once the server has dropped it, a query sent after it is
				// the next thing answered.
				waitFor(t, "the message to be dropped", func() bool { return s.Counters().Ignored.Load() > before })
				q := query("web-0.nginx.default.", dns.TypeA)
				q.Id = uint16(1000 + i)
				b, _ := q.Pack()
				conn.Write(b)
			}
			buf := make([]byte, 2048)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if tc.rcode < 0 {
				if r.Id != uint16(1000+i) {
					t.Errorf("got a reply to the dropped message: %v", r)
				}
				return
			}
			if r.Rcode != tc.rcode || n > len(tc.msg) || len(r.Answer)+len(r.Ns)+len(r.Extra) != 0 || r.Authoritative || r.RecursionAvailable {
				t.Errorf("reply %s in %d bytes (query %d): %v", dns.RcodeToString[r.Rcode], n, len(tc.msg), r)
			}
		})
	}
}

// TCP connections beyond the cap wait until one closes; UDP is answered
// meanwhile.
func TestTCPConnectionCap(t *testing.T) {
	const limit = 4
	s := NewServer(Config{Upstreams: []string{}, MaxTCPConns: limit, ReadTimeout: time.Minute, TCPIdleTimeout: time.Minute}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	addr := serve(t, s)

	var conns []*dns.Conn
	for range limit + 5 {
		c, err := dns.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		defer c.Close()
	}
	waitFor(t, "the server to accept up to the cap", func() bool { return s.Counters().TCPConns.Load() == limit })

	if r := clientExchange(t, "udp", addr, query("web-0.nginx.default.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("UDP while TCP is full: %v", r)
	}

	// Ask on the last connection: it is queued, not served.
	waiting := conns[len(conns)-1]
	if err := waiting.WriteMsg(query("web-1.nginx.default.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	waiting.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if r, err := waiting.ReadMsg(); err == nil {
		t.Fatalf("connection over the cap was served: %v", r)
	}
	if got := s.Counters().TCPConns.Load(); got != limit {
		t.Errorf("TCPConns = %d, want %d", got, limit)
	}

	// Closing served connections frees slots; the queued ones are accepted
	// in turn and the pending query is answered.
	for _, c := range conns[:5] {
		c.Close()
	}
	waiting.SetReadDeadline(time.Now().Add(10 * time.Second))
	r, err := waiting.ReadMsg()
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("queued connection after slots freed: %v %v", r, err)
	}
	waitFor(t, "the gauge to settle", func() bool { return s.Counters().TCPConns.Load() == limit })
}

// RELIABILITY S3: 500 idle TCP connections (the CVE-2017-15133 pattern) and
// a burst of UDP queries. The cap holds and UDP keeps being answered.
func TestTCPExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const limit, idle, udpQueries, workers = 100, 500, 10000, 4
	s := NewServer(Config{Upstreams: []string{}, MaxTCPConns: limit, ReadTimeout: time.Minute, TCPIdleTimeout: time.Minute}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	addr := serve(t, s)
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, "the cap to be reached", func() bool { return s.Counters().TCPConns.Load() == limit })

	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
			conn, err := c.Dial(addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			for i := range udpQueries / workers {
				q := query("web-"+strconv.Itoa(i%2)+".nginx.default.", dns.TypeA)
				r, _, err := c.ExchangeWithConn(q, conn)
				if err != nil {
					errs <- err
					return
				}
				if len(r.Answer) != 1 {
					errs <- &net.AddrError{Err: "no answer from worker " + strconv.Itoa(w), Addr: addr}
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Counters().TCPConns.Load(); got != limit {
		t.Errorf("TCPConns = %d after the burst, want %d", got, limit)
	}
}

func TestListenAndServeErrors(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, nil)
	if err := s.ListenAndServe(context.Background()); err == nil {
		t.Error("no address: no error")
	}
	taken, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s = NewServer(Config{Upstreams: []string{}}, nil)
	if err := s.ListenAndServe(context.Background(), "127.0.0.1:0", taken.LocalAddr().String()); err == nil || !strings.Contains(err.Error(), taken.LocalAddr().String()) {
		t.Errorf("address in use: %v", err)
	}
	if s.Addrs() != nil {
		t.Errorf("Addrs after failure = %v", s.Addrs())
	}

	s = NewServer(Config{Upstreams: []string{}}, nil)
	s.Swap(BuildZone(fixture()))
	addr := serve(t, s)
	if err := s.ListenAndServe(context.Background(), "127.0.0.1:0"); err == nil {
		t.Error("second ListenAndServe: no error")
	}
	if r := clientExchange(t, "tcp", addr, query("web-0.nginx.default.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("still serving after a refused second start: %v", r)
	}
}

// Several addresses, each with UDP and TCP on the same port; all of them
// close on cancel.
func TestListenSeveralAddresses(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}}, testLogger(t))
	s.Swap(BuildZone(fixture()))
	addrs := []string{"127.0.0.1:0", "127.0.0.2:0"}
	if ln, err := net.Listen("tcp", "[::1]:0"); err == nil {
		ln.Close()
		addrs = append(addrs, "[::1]:0")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, addrs...) }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatal(err)
	}
	bound := s.Addrs()
	if len(bound) != len(addrs) {
		t.Fatalf("Addrs = %v for %v", bound, addrs)
	}
	for _, a := range bound {
		for _, network := range []string{"udp", "tcp"} {
			if r := clientExchange(t, network, a.String(), query("web-0.nginx.default.", dns.TypeA)); len(r.Answer) != 1 {
				t.Errorf("%s %s: %v", network, a, r)
			}
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, a := range bound {
		if c, err := net.DialTimeout("tcp", a.String(), time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts TCP after shutdown", a)
		}
		pc, err := net.ListenPacket("udp", a.String())
		if err != nil {
			t.Errorf("%s UDP not released: %v", a, err)
			continue
		}
		pc.Close()
	}
}

// A TCP client that sends queries and never reads the replies is cut off
// once a write cannot complete in WriteTimeout, freeing its slot.
func TestTCPSlowReaderLosesConnection(t *testing.T) {
	s := NewServer(Config{Upstreams: []string{}, MaxTCPConns: 1, WriteTimeout: 200 * time.Millisecond,
		ReadTimeout: time.Minute, TCPIdleTimeout: time.Minute}, testLogger(t))
	// Replies of about 63 KB, so that 128 of them overflow the socket
	// buffers on both sides.
	s.Swap(BuildZone(bigInput(1400)))
	addr := serve(t, s)

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	conn := &dns.Conn{Conn: raw}
	for range DefaultMaxTCPQueries {
		if err := conn.WriteMsg(query("big.default.", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the stalled connection to be closed", func() bool {
		return s.Counters().TCPConns.Load() == 0 && s.Counters().NoError.Load() > 0
	})
	// The slot is free again.
	if r := clientExchange(t, "tcp", addr, query("web-0.nginx.default.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("after the stalled client: %v", r)
	}
}
