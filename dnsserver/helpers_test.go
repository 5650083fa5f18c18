package dnsserver

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Compact builders of the objects zones are made of.

type podOpt func(*corev1.Pod)

// mkPod returns a Running, Ready pod labelled app=web with one IP.
func mkPod(ns, name, ip string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "web"}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// host sets spec.hostname and spec.subdomain.
func host(hostname, subdomain string) podOpt {
	return func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = hostname, subdomain }
}

// member makes the pod web-style: hostname = its name, subdomain svc.
func member(svc string) podOpt {
	return func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = p.Name, svc }
}

func labels(kv ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for _, s := range kv {
			k, v, _ := strings.Cut(s, "=")
			p.Labels[k] = v
		}
	}
}

func notReady(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func terminating(p *corev1.Pod) {
	ts := metav1.NewTime(time.Unix(1700000000, 0))
	p.DeletionTimestamp = &ts
}

// ips sets status.podIPs (dual stack).
func ips(addrs ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.PodIPs = nil
		for _, a := range addrs {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: a})
		}
		p.Status.PodIP = addrs[0]
	}
}

// containerPort adds a named container port.
func containerPort(name string, port int32) podOpt {
	return func(p *corev1.Pod) {
		if len(p.Spec.Containers) == 0 {
			p.Spec.Containers = []corev1.Container{{Name: "main"}}
		}
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
}

type svcOpt func(*corev1.Service)

// mkSvc returns a headless Service selecting app=web.
func mkSvc(ns, name string, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "web"},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func selector(kv ...string) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Selector = map[string]string{}
		for _, x := range kv {
			k, v, _ := strings.Cut(x, "=")
			s.Spec.Selector[k] = v
		}
	}
}

func clusterIP(ip string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip} }
}

func publishNotReady(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }

// port adds a Service port; target "" leaves targetPort unset, a number
// string sets a numeric one, anything else a named one.
func port(name, proto string, n int32, target string) svcOpt {
	return func(s *corev1.Service) {
		sp := corev1.ServicePort{Name: name, Protocol: corev1.Protocol(proto), Port: n}
		if target != "" {
			sp.TargetPort = intstr.Parse(target)
		}
		s.Spec.Ports = append(s.Spec.Ports, sp)
	}
}

// rrSet parses records written in zone-file syntax into their canonical
// text, sorted.
func rrSet(t *testing.T, lines ...string) []string {
	t.Helper()
	out := []string{}
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil || rr == nil {
			t.Fatalf("bad expected record %q: %v", l, err)
		}
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// texts returns the text of rrs, sorted.
func texts(rrs []dns.RR) []string {
	out := []string{}
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

// memWriter is an in-memory dns.ResponseWriter that packs what is written
// to it, as the real one does.
type memWriter struct {
	remote net.Addr
	writes [][]byte
	msgs   []*dns.Msg
}

func (w *memWriter) LocalAddr() net.Addr {
	if _, ok := w.remote.(*net.TCPAddr); ok {
		return &net.TCPAddr{IP: net.IPv4(10, 244, 0, 1), Port: 53}
	}
	return &net.UDPAddr{IP: net.IPv4(10, 244, 0, 1), Port: 53}
}
func (w *memWriter) RemoteAddr() net.Addr { return w.remote }
func (w *memWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	w.msgs = append(w.msgs, m)
	_, err = w.Write(b)
	return err
}
func (w *memWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, slices.Clone(b))
	return len(b), nil
}
func (w *memWriter) Close() error        { return nil }
func (w *memWriter) TsigStatus() error   { return nil }
func (w *memWriter) TsigTimersOnly(bool) {}
func (w *memWriter) Hijack()             {}
func udpFrom(ip string) *memWriter {
	return &memWriter{remote: &net.UDPAddr{IP: net.ParseIP(ip), Port: 40000}}
}
func tcpFrom(ip string) *memWriter {
	return &memWriter{remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}}
}
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "dns", Output: tWriter{t}, Level: hclog.Debug})
}
func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

type tWriter struct{ t testing.TB }

// serve starts s on 127.0.0.1 and stops it when the test ends, checking it
// shut down cleanly. It returns the address served on.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe(ctx, "127.0.0.1:0") }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ListenAndServe: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("ListenAndServe did not return after cancel")
		}
	})
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("ListenAndServe: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready")
	}
	return s.Addrs()[0].String()
}

// upstream is a real DNS server on 127.0.0.1 (UDP and TCP, same port) that
// answers every A query with 192.0.2.7, authoritatively, and counts queries.
type upstream struct {
	addr    string
	queries chan *dns.Msg
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	pc, l, err := listenPair("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{addr: pc.LocalAddr().String(), queries: make(chan *dns.Msg, 100)}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		select {
		case u.queries <- r.Copy():
		default:
		}
		m := new(dns.Msg).SetReply(r)
		m.Authoritative = true
		if r.Question[0].Qtype == dns.TypeA {
			rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 192.0.2.7")
			m.Answer = []dns.RR{rr}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
