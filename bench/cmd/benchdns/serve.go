package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/dnsserver"
)

// The records both servers answer: a headless Service "web" in namespace
// "default" selecting pods web-0 … web-(n-1), each Ready with one IPv4
// address, so that web-i.web.default.svc.cluster.local has one A record.
const (
	svcName   = "web"
	namespace = "default"
)

// queryName is the name of pod i's A record.
func queryName(i int) string {
	return api.PodFQDN(api.ReplicaName(svcName, i), svcName, namespace, api.DefaultClusterDomain) + "."
}

// podIP is the address of pod i in version v of the records.
func podIP(i, v int) string {
	return fmt.Sprintf("10.%d.%d.%d", 100+v%100, i/250, 1+i%250)
}

// records describes version v of the record set: n pods at their first
// addresses, except that version v > 0 has moved pod v%n to a new one.
// Each version differs from the one before in one or two records, and
// versions repeat every 100.
type records struct {
	n int
}

// period is how many distinct versions there are.
const period = 100

func (r records) service() *corev1.Service {
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: svcName, Namespace: namespace},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": svcName},
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	return svc
}

// ips returns the address of each pod in version v.
func (r records) ips(v int) []string {
	out := make([]string, r.n)
	for i := range out {
		out[i] = podIP(i, 0)
	}
	if v > 0 {
		out[v%r.n] = podIP(v%r.n, v)
	}
	return out
}

func (r records) pods(v int) []*corev1.Pod {
	ips := r.ips(v)
	pods := make([]*corev1.Pod, r.n)
	for i := range pods {
		name := api.ReplicaName(svcName, i)
		pods[i] = &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{"app": svcName}},
			Spec:       corev1.PodSpec{Hostname: name, Subdomain: svcName, NodeName: "node-a"},
			Status: corev1.PodStatus{
				Phase:      corev1.PodRunning,
				PodIP:      ips[i],
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			},
		}
	}
	return pods
}

// versions holds every version of the records in the form each server
// takes them, prepared before serving, so that a change costs a server
// only what publishing it costs: Stead's zone built from the objects, the
// bare server's map built from its records.
type versions struct {
	inputs []dnsserver.ZoneInput
	bare   [][]*dns.A
}

func (r records) prepare() versions {
	var vs versions
	svc := r.service()
	for v := range period {
		vs.inputs = append(vs.inputs, dnsserver.ZoneInput{
			Namespaces: []string{namespace},
			Services:   []*corev1.Service{svc},
			Pods:       r.pods(v),
			Serial:     uint32(v),
		})
		var as []*dns.A
		for i, ip := range r.ips(v) {
			name := queryName(i)
			as = append(as, &dns.A{
				Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsserver.DefaultTTL},
				A:   net.ParseIP(ip).To4(),
			})
		}
		vs.bare = append(vs.bare, as)
	}
	return vs
}

// steadZone is version v as Stead's DNS server holds it.
func (vs versions) steadZone(v int) *dnsserver.Zone {
	return dnsserver.BuildZone(vs.inputs[v%period])
}

// bareMap is version v as the bare server holds it: name to A record.
func (vs versions) bareMap(v int) map[string]*dns.A {
	as := vs.bare[v%period]
	m := make(map[string]*dns.A, len(as))
	for _, a := range as {
		m[a.Hdr.Name] = a
	}
	return m
}

// bareServer is the ceiling: miekg/dns answering A queries from a map.
type bareServer struct {
	m atomic.Pointer[map[string]*dns.A]
}

func (b *bareServer) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	m.Authoritative = true
	if len(r.Question) == 1 {
		q := r.Question[0]
		if a, ok := (*b.m.Load())[q.Name]; ok && q.Qtype == dns.TypeA {
			m.Answer = []dns.RR{a}
		} else if !ok {
			m.Rcode = dns.RcodeNameError
		}
	}
	w.WriteMsg(m)
}

// runServe is the `serve` subcommand: one DNS server, Stead's or the bare
// one, on UDP and TCP at -addr, changing its records -churn times a
// second, until SIGTERM.
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	impl := fs.String("impl", "stead", "stead or bare")
	addr := fs.String("addr", "127.0.0.1:0", "address to serve on")
	n := fs.Int("names", 100, "names answered")
	churn := fs.Int("churn", 0, "record changes per second")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	fs.Parse(args)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	vs := records{n: *n}.prepare()

	var swap func(v int)
	var serve func() error
	switch *impl {
	case "stead":
		srv := dnsserver.NewServer(dnsserver.Config{Upstreams: []string{}}, hclog.New(&hclog.LoggerOptions{Name: "dns", Level: hclog.Warn}))
		srv.Swap(vs.steadZone(0))
		swap = func(v int) { srv.Swap(vs.steadZone(v)) }
		serve = func() error { return srv.ListenAndServe(ctx, *addr) }
	case "bare":
		b := &bareServer{}
		m := vs.bareMap(0)
		b.m.Store(&m)
		swap = func(v int) {
			m := vs.bareMap(v)
			b.m.Store(&m)
		}
		serve = func() error { return serveBare(ctx, *addr, b) }
	default:
		return fmt.Errorf("-impl %q is neither stead nor bare", *impl)
	}
	if *churn > 0 {
		go func() {
			t := time.NewTicker(time.Second / time.Duration(*churn))
			defer t.Stop()
			for v := 1; ; v++ {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					swap(v)
				}
			}
		}()
	}
	return serve()
}

// serveBare serves b on UDP and TCP at addr until ctx ends.
func serveBare(ctx context.Context, addr string, b *bareServer) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	port := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	host, _, _ := net.SplitHostPort(addr)
	l, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		pc.Close()
		return err
	}
	servers := []*dns.Server{{PacketConn: pc, Handler: b}, {Listener: l, Handler: b}}
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.ActivateAndServe() }()
	}
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, s := range servers {
		s.Shutdown()
	}
	return err
}
