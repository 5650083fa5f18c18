package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/stead-io/stead/api"
)

// resolveIn resolves name inside pod with the test program, which uses the
// pod's /etc/resolv.conf (the node's DNS on the bridge, the search path,
// ndots), and returns the IPv4 addresses, sorted.
func (e *e2eCluster) resolveIn(t *testing.T, pod, name string) ([]string, error) {
	t.Helper()
	out, err := e.exec(t, pod, "resolve", name)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(out))
	}
	return strings.Fields(out), nil
}

// queryDNS sends one query over UDP to addr and returns the reply.
func queryDNS(addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// rdata returns the data of a reply's answers, sorted: addresses for A,
// "port target" for SRV, the name for PTR.
func rdata(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.SRV:
			out = append(out, fmt.Sprintf("%d %s", rr.Port, rr.Target))
		case *dns.PTR:
			out = append(out, rr.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitFor retries cond until it returns nil or within passes, and returns
// how long it took. It is for what the API cannot be asked about (a DNS
// answer, a file inside a pod).
func waitFor(t *testing.T, within time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("after %v, still not %s: %v", within, what, err)
		}
		<-tick.C
	}
}

// waitRecords waits until the DNS at addr answers each Ready pod of set
// in v by name, with its IP: the agent rebuilds its zone from its own watch
// of the state, a moment after the API shows a change.
func waitRecords(t *testing.T, addr, set, svc string, v setView) {
	t.Helper()
	waitFor(t, 15*time.Second, "every pod of "+set+" in DNS", func() error {
		for _, p := range v.Pods {
			if !p.Ready {
				continue
			}
			name := p.Name + "." + svc + "." + e2eNamespace + ".svc.cluster.local"
			r, err := queryDNS(addr, name, dns.TypeA)
			if err != nil {
				return err
			}
			if got := rdata(r); !slices.Equal(got, []string{p.IP}) {
				return fmt.Errorf("%s: %s %v, want %s", name, dns.RcodeToString[r.Rcode], got, p.IP)
			}
		}
		return nil
	})
}

// TestClusterDNSE2E checks cluster DNS (SEMANTICS.md C, DESIGN.md
// invariant 6) through `stead dev`: names resolved inside pods with their
// own resolv.conf, records that follow readiness and new IPs, and
// forwarding of names outside the zone.
func TestClusterDNSE2E(t *testing.T) {
	e := startE2EDev(t)
	const set, svc = "web", "nginx"
	v := e.createReady(t, e2eSet{Name: set, Replicas: 3, Version: "1", Service: svc}, headlessService(svc, set))
	ip := func(ord int) string {
		p, _ := v.pod(set, ord)
		return p.IP
	}
	for ord := range 3 {
		if ip(ord) == "" {
			t.Fatalf("%s has no IP: %s", api.ReplicaName(set, ord), v)
		}
	}
	waitRecords(t, e.dns, set, svc, v)

	t.Run("C19 pod names resolve in pods through the search path", func(t *testing.T) {
		tests := []struct {
			from int
			name string
			want int // ordinal whose IP is the answer
		}{
			{0, "web-1.nginx", 1},
			{0, "web-1.nginx.default", 1},
			{0, "web-1.nginx.default.svc", 1},
			{0, "web-1.nginx.default.svc.cluster.local", 1},
			{0, "WEB-2.Nginx", 2},
			{2, "web-0.nginx", 0},
		}
		for _, tt := range tests {
			got, err := e.resolveIn(t, api.ReplicaName(set, tt.from), tt.name)
			if want := []string{ip(tt.want)}; err != nil || !slices.Equal(got, want) {
				t.Errorf("in %s, %s resolves to %v (%v), want %v", api.ReplicaName(set, tt.from), tt.name, got, err, want)
			}
		}
	})

	t.Run("C20 C22 C23 records as the host's resolvers see them", func(t *testing.T) {
		rev, err := dns.ReverseAddr(ip(1))
		if err != nil {
			t.Fatal(err)
		}
		fqdn := func(ord int) string { return api.ReplicaName(set, ord) + ".nginx.default.svc.cluster.local." }
		tests := []struct {
			name  string
			qtype uint16
			want  []string
		}{
			{"web-1.nginx.default.svc.cluster.local", dns.TypeA, []string{ip(1)}},
			{"web-1.nginx.default", dns.TypeA, []string{ip(1)}},
			{"nginx.default.svc.cluster.local", dns.TypeA, sorted(ip(0), ip(1), ip(2))},
			{"_http._tcp.nginx.default.svc.cluster.local", dns.TypeSRV, sorted("8080 "+fqdn(0), "8080 "+fqdn(1), "8080 "+fqdn(2))},
			{rev, dns.TypePTR, []string{fqdn(1)}},
		}
		for _, tt := range tests {
			r, err := queryDNS(e.dns, tt.name, tt.qtype)
			if err != nil {
				t.Errorf("%s %s: %v", tt.name, dns.TypeToString[tt.qtype], err)
				continue
			}
			if got := rdata(r); r.Rcode != dns.RcodeSuccess || !r.Authoritative || !slices.Equal(got, tt.want) {
				t.Errorf("%s %s: %s aa=%v %v, want NOERROR aa=true %v", tt.name, dns.TypeToString[tt.qtype],
					dns.RcodeToString[r.Rcode], r.Authoritative, got, tt.want)
			}
		}
	})

	t.Run("C20 C21 the service name lists the Ready pods only", func(t *testing.T) {
		pod2 := api.ReplicaName(set, 2)
		if got, err := e.resolveIn(t, api.ReplicaName(set, 0), "nginx"); err != nil || !slices.Equal(got, sorted(ip(0), ip(1), ip(2))) {
			t.Errorf("nginx resolves to %v (%v), want every pod's IP", got, err)
		}
		if out, err := e.exec(t, pod2, "unready"); err != nil {
			t.Fatalf("exec %s unready: %v\n%s", pod2, err, out)
		}
		e.follow(t, set, 30*time.Second, pod2+" not Ready", func(v setView) bool {
			p, ok := v.pod(set, 2)
			return ok && !p.Ready
		})
		took := waitFor(t, 15*time.Second, "nginx without "+pod2, func() error {
			got, err := e.resolveIn(t, api.ReplicaName(set, 0), "nginx")
			if want := sorted(ip(0), ip(1)); err != nil || !slices.Equal(got, want) {
				return fmt.Errorf("nginx resolves to %v (%v), want %v", got, err, want)
			}
			return nil
		})
		t.Logf("%s left the service's records %v after the API showed it not Ready", pod2, took.Round(time.Millisecond))
		if got, err := e.resolveIn(t, api.ReplicaName(set, 0), "web-2.nginx"); err == nil || !strings.Contains(err.Error(), "no such host") {
			t.Errorf("web-2.nginx, not Ready, resolves to %v (%v), want no such host", got, err)
		}
		if out, err := e.exec(t, pod2, "ready"); err != nil {
			t.Fatalf("exec %s ready: %v\n%s", pod2, err, out)
		}
		e.follow(t, set, 30*time.Second, pod2+" Ready again", func(v setView) bool { return allReady(v, set, 3, "") })
		waitFor(t, 15*time.Second, "nginx with "+pod2+" again", func() error {
			got, err := e.resolveIn(t, api.ReplicaName(set, 0), "nginx")
			if want := sorted(ip(0), ip(1), ip(2)); err != nil || !slices.Equal(got, want) {
				return fmt.Errorf("nginx resolves to %v (%v), want %v", got, err, want)
			}
			return nil
		})
	})

	t.Run("names outside the zone are forwarded", func(t *testing.T) {
		// stead dev forwards to the host's own resolvers (/etc/resolv.conf),
		// which the test cannot choose: it asks them the same question and
		// expects their answer back, now with RA and without AA. Only
		// loopback and pod sources are forwarded to; the refusal of others is
		// tested in dnsserver, in a network namespace.
		const name = "example.invalid"
		conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil || len(conf.Servers) == 0 {
			t.Skipf("the host has no resolver to forward to: %v", err)
		}
		wantRcode := dns.RcodeServerFailure // what no answer from upstream gives
		if up, err := queryDNS(net.JoinHostPort(conf.Servers[0], conf.Port), name, dns.TypeA); err == nil {
			wantRcode = up.Rcode
		}
		r, err := queryDNS(e.dns, name, dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != wantRcode || !r.RecursionAvailable || r.Authoritative {
			t.Errorf("%s from the host: %s ra=%v aa=%v, want the upstream's %s with ra=true aa=false",
				name, dns.RcodeToString[r.Rcode], r.RecursionAvailable, r.Authoritative, dns.RcodeToString[wantRcode])
		}
		if wantRcode == dns.RcodeNameError {
			// In a pod: the search path's cluster names are NXDOMAIN, then the
			// name itself is forwarded; a refusal would read "server
			// misbehaving".
			if got, err := e.resolveIn(t, api.ReplicaName(set, 0), name); err == nil || !strings.Contains(err.Error(), "no such host") {
				t.Errorf("in a pod, %s resolves to %v (%v), want no such host", name, got, err)
			}
		}
	})

	t.Run("C25 a recreated pod's name follows its new IP", func(t *testing.T) {
		pod1 := api.ReplicaName(set, 1)
		old, _ := v.pod(set, 1)
		e.must(t, "delete", "pod", pod1)
		after := e.follow(t, set, 60*time.Second, pod1+" back and Ready", func(v setView) bool {
			p, ok := v.pod(set, 1)
			return ok && p.UID != old.UID && allReady(v, set, 3, "")
		})
		newIP := after.Pods[pod1].IP
		if newIP == old.IP {
			t.Fatalf("%s came back with its old IP %s; the test needs a new one", pod1, newIP)
		}
		took := waitFor(t, 15*time.Second, pod1+"'s name at its new IP", func() error {
			r, err := queryDNS(e.dns, "web-1.nginx.default.svc.cluster.local", dns.TypeA)
			if err != nil {
				return err
			}
			if got := rdata(r); !slices.Equal(got, []string{newIP}) {
				return fmt.Errorf("%s answers %v, want %s", dns.RcodeToString[r.Rcode], got, newIP)
			}
			return nil
		})
		t.Logf("%s moved from %s to %s; its name followed %v after the API showed it Ready", pod1, old.IP, newIP, took.Round(time.Millisecond))
		if got, err := e.resolveIn(t, api.ReplicaName(set, 0), "web-1.nginx"); err != nil || !slices.Equal(got, []string{newIP}) {
			t.Errorf("in %s, web-1.nginx resolves to %v (%v), want %s", api.ReplicaName(set, 0), got, err, newIP)
		}
	})
}

// TestClusterDNSWithoutServerE2E checks that an agent's DNS keeps answering
// from its last copy of the records while no server answers (DESIGN.md
// invariant 6), to the host and to its pods, and follows the state again
// once the server is back. The server and the agent run as two processes,
// so that the server can be killed alone.
func TestClusterDNSWithoutServerE2E(t *testing.T) {
	e := startE2EServerAgent(t)
	const set, svc = "web", "nginx"
	v := e.createReady(t, e2eSet{Name: set, Replicas: 2, Version: "1", Service: svc}, headlessService(svc, set))
	ip0, ip1 := v.Pods[api.ReplicaName(set, 0)].IP, v.Pods[api.ReplicaName(set, 1)].IP
	waitRecords(t, e.dns, set, svc, v)
	tests := []struct {
		name string
		want []string
	}{
		{"web-0.nginx.default.svc.cluster.local", []string{ip0}},
		{"web-1.nginx.default", []string{ip1}},
		{"nginx.default.svc.cluster.local", sorted(ip0, ip1)},
	}
	check := func(when string) {
		t.Helper()
		for _, tt := range tests {
			r, err := queryDNS(e.dns, tt.name, dns.TypeA)
			if err != nil {
				t.Errorf("%s: %s: %v", when, tt.name, err)
				continue
			}
			if got := rdata(r); r.Rcode != dns.RcodeSuccess || !r.Authoritative || !slices.Equal(got, tt.want) {
				t.Errorf("%s: %s: %s aa=%v %v, want NOERROR aa=true %v", when, tt.name, dns.RcodeToString[r.Rcode], r.Authoritative, got, tt.want)
			}
		}
	}
	check("with the server")

	since := len(e.node.log.String())
	e.server.kill9()
	killed := time.Now()
	// The agent notices when its watch of the records fails; from then on
	// it answers from the zone it holds.
	e.node.waitOutputSince(t, since, "answering from the last zone", "", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := e.c.Status(ctx)
	cancel()
	if err == nil {
		t.Fatal("the server still answers after kill -9")
	}
	// Asked again and again for a few seconds, well within the node's
	// lease, so that nothing but the missing server changes.
	pace := time.NewTicker(250 * time.Millisecond)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end) && !t.Failed(); <-pace.C {
		check("without the server")
	}
	pace.Stop()
	// Inside a pod, through the bridge: exec goes to the agent directly.
	ac, err := api.NewAgentClient(e.agent)
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	code, err := ac.Exec(ctx, e2eNamespace, "web-1", api.ExecOptions{Command: []string{"/e2eapp", "resolve", "web-0.nginx"}, Stdout: &out, Stderr: &errOut})
	cancel()
	if got := strings.Fields(out.String()); err != nil || code != 0 || !slices.Equal(got, []string{ip0}) {
		t.Errorf("without the server, in web-1, web-0.nginx resolves to %v (exit %d, %v, %s), want %s", got, code, err, errOut.String(), ip0)
	}

	// The server back on its data directory: the records follow the state
	// again.
	t.Logf("answered for %v without the server", time.Since(killed).Round(time.Millisecond))
	e.startServer(t)
	e.must(t, "scale", "sts/"+set, "--replicas=1")
	took := waitFor(t, 60*time.Second, "web-1's name gone after the scale down", func() error {
		r, err := queryDNS(e.dns, "web-1.nginx.default.svc.cluster.local", dns.TypeA)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeNameError {
			return fmt.Errorf("%s %v", dns.RcodeToString[r.Rcode], rdata(r))
		}
		return nil
	})
	t.Logf("with the server back, web-1's name went %v after the scale down", took.Round(time.Millisecond))
}

// sorted returns its arguments, sorted.
func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
