package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent/watchdog"
	"github.com/stead-io/stead/api"
)

var (
	nodesResource, _ = api.LookupResource("nodes")
	podsResource, _  = api.LookupResource("pods")
)

// nodeObject is the node as the agent registers it: its name, labels,
// addresses, capacity, software and the address of its API.
func (a *Agent) nodeObject(ip netip.Addr) *corev1.Node {
	cfg := a.cfg
	labels := map[string]string{
		corev1.LabelHostname:   cfg.NodeName,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: runtime.GOARCH,
	}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		advertise = a.apiAddr
		if host, port, err := net.SplitHostPort(a.apiAddr); err == nil {
			if addr, err := netip.ParseAddr(host); err == nil && addr.IsUnspecified() {
				advertise = net.JoinHostPort(ip.String(), port)
			}
		}
	}
	res := nodeResources(cfg.MaxPods)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	version, _ := a.containers.(interface {
		Version(context.Context) (string, error)
	})
	runtimeVersion := "containerd://unknown"
	if version != nil {
		if v, err := version.Version(context.Background()); err == nil {
			runtimeVersion = "containerd://" + v
		}
	}
	return &corev1.Node{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        cfg.NodeName,
			Labels:      labels,
			Annotations: map[string]string{api.AnnotationAgentAddr: advertise},
		},
		Status: corev1.NodeStatus{
			Capacity:    res,
			Allocatable: res,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip.String()},
				{Type: corev1.NodeHostName, Address: cfg.NodeName},
			},
			NodeInfo: corev1.NodeSystemInfo{
				MachineID:               strings.TrimSpace(readFile("/etc/machine-id")),
				BootID:                  bootID(),
				KernelVersion:           unix.ByteSliceToString(uts.Release[:]),
				OSImage:                 osImage(),
				ContainerRuntimeVersion: runtimeVersion,
				KubeletVersion:          "stead-" + cfg.Version,
				OperatingSystem:         "linux",
				Architecture:            runtime.GOARCH,
			},
		},
	}
}

// register stores the node with the servers, retrying until one accepts,
// and returns the stored node (with its pod subnet).
func (a *Agent) register(ctx context.Context, ip netip.Addr) (*corev1.Node, error) {
	node := a.nodeObject(ip)
	backoff := time.Second
	for {
		var stored corev1.Node
		c := a.servers.client()
		_, err := c.Put(ctx, nodesResource, "", node.Name, node, &stored)
		if err == nil {
			if stored.Spec.PodCIDR == "" {
				return nil, fmt.Errorf("agent: server %s registered node %s without a pod subnet", c.Addr(), node.Name)
			}
			a.log.Info("registered node", "node", node.Name, "server", c.Addr(), "pod_cidr", stored.Spec.PodCIDR, "ip", ip)
			return &stored, nil
		}
		a.servers.failed(c, err)
		if apierrors.IsBadRequest(err) || apierrors.IsInvalid(err) {
			return nil, fmt.Errorf("agent: register node %s: %w", node.Name, err)
		}
		a.log.Warn("register node; retrying", "server", c.Addr(), "error", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-a.cfg.Clock.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// heartbeatRetry is the pause before a failed lease renewal is tried again.
const heartbeatRetry = 250 * time.Millisecond

// heartbeat renews the node's lease every Heartbeat interval and records
// each renewal in DATA_DIR/lease for the watchdog (agent/watchdog). The time
// of a renewal is read before its request is sent, so the node's idea of
// its lease always ends before the leader's (RELIABILITY R3). A server that
// does not know the node gets it registered again.
func (a *Agent) heartbeat(ctx context.Context) {
	for {
		sent, sentMono := time.Now(), watchdog.Now()
		c := a.servers.client()
		rctx, cancel := context.WithTimeout(ctx, a.cfg.Heartbeat)
		var lease api.Lease
		_, err := c.Do(rctx, http.MethodPost, "/v1/nodes/"+a.cfg.NodeName+"/heartbeat", nil, nil, &lease)
		cancel()
		switch {
		case err == nil:
			a.renewed(sent, time.Duration(lease.TTLSeconds*float64(time.Second)))
			// The watchdog fences the node when this lease runs out.
			if lease.TTLSeconds > 0 {
				expires := sentMono.Add(time.Duration(lease.TTLSeconds * float64(time.Second)))
				if err := watchdog.WriteLease(watchdog.PathsIn(a.cfg.DataDir).Lease, expires, a.cfg.NodeName); err != nil {
					a.log.Error("record lease", "error", err)
				}
				// A watchdog that died is replaced; a running one costs a lock test.
				if a.cfg.Watchdog != "" {
					if _, err := watchdog.EnsureRunning(ctx, a.watchdogCmd); err != nil {
						a.log.Error("restart the watchdog", "error", err)
					}
				}
			}
		case apierrors.IsNotFound(err) && strings.Contains(err.Error(), a.cfg.NodeName):
			a.log.Warn("the server does not know this node; registering it again")
			ip, _ := netip.ParseAddr(a.env.node.IP)
			if _, err := c.Put(ctx, nodesResource, "", a.cfg.NodeName, a.nodeObject(ip), nil); err != nil {
				a.log.Warn("register node", "error", err)
			}
		default:
			a.servers.failed(c, err)
			a.log.Debug("heartbeat not renewed", "server", c.Addr(), "error", err)
		}
		// A renewal that failed is tried again soon, on the next server
		// when this one could not answer: waiting a whole interval after a
		// server that timed out would let a lease of a few intervals lapse
		// while another server could have renewed it.
		next := a.cfg.Heartbeat
		if err != nil && !apierrors.IsNotFound(err) {
			next = min(next, heartbeatRetry)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.cfg.Clock.After(next):
		}
	}
}

// renewed records a lease renewal whose request was sent at sent. A lease
// that ran out before this renewal is a lapse even if nothing noticed it
// (the agent was stopped meanwhile): leaseValid must not count the lease
// as held again before the assignments are read afresh, or a pod worker
// that wakes with the process could restart an ordinal the servers gave
// to another node while it was stopped.
func (a *Agent) renewed(sent time.Time, ttl time.Duration) {
	if prev, prevTTL := a.lastRenewed.Load(), a.leaseTTL.Load(); prev != nil && prevTTL != nil {
		if ranOut := prev.Add(*prevTTL); !sent.Before(ranOut) {
			a.lapsedAt.CompareAndSwap(nil, &ranOut)
		}
	}
	a.leaseTTL.Store(&ttl)
	a.lastRenewed.Store(&sent)
}

// watchNodes keeps a route to every other node's pod subnet through that
// node's address (host-gw).
func (a *Agent) watchNodes(ctx context.Context) {
	var index uint64
	var last map[netip.Prefix]netip.Addr
	backoff := time.Second
	for ctx.Err() == nil {
		c := a.servers.client()
		list, idx, err := c.List(ctx, nodesResource, "", api.ListOptions{Index: index, Wait: DefaultAssignmentsWait})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.servers.failed(c, err)
			a.log.Debug("watch nodes", "error", err)
			select {
			case <-ctx.Done():
			case <-a.cfg.Clock.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		index = idx
		var nodes []*corev1.Node
		for _, raw := range list.Items {
			var n corev1.Node
			if json.Unmarshal(raw, &n) == nil {
				nodes = append(nodes, &n)
			}
		}
		routes := nodeRoutes(nodes, a.cfg.NodeName)
		if fmt.Sprint(routes) != fmt.Sprint(last) {
			if err := a.network.SyncRoutes(routes); err != nil {
				a.log.Error("sync routes to other nodes' pods", "error", err)
				continue
			}
			a.log.Info("routes to other nodes' pods", "routes", len(routes))
			last = routes
		}
	}
}

// nodeRoutes maps every other node's pod subnet to its InternalIP.
func nodeRoutes(nodes []*corev1.Node, self string) map[netip.Prefix]netip.Addr {
	routes := map[netip.Prefix]netip.Addr{}
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		subnet, err := netip.ParsePrefix(n.Spec.PodCIDR)
		if err != nil {
			continue
		}
		for _, addr := range n.Status.Addresses {
			if addr.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(addr.Address); err == nil && ip.Is4() {
				routes[subnet.Masked()] = ip
				break
			}
		}
	}
	return routes
}

// detectNodeIP is the address this machine reaches server from, or, when
// that is loopback, its first global IPv4 address.
func detectNodeIP(server string) netip.Addr {
	if host, port, err := net.SplitHostPort(server); err == nil {
		if conn, err := net.Dial("udp", net.JoinHostPort(host, port)); err == nil {
			ap, _ := netip.ParseAddrPort(conn.LocalAddr().String())
			conn.Close()
			if ip := ap.Addr().Unmap(); ip.IsValid() && !ip.IsLoopback() {
				return ip
			}
		}
	}
	ifaces, _ := net.Interfaces()
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, addr := range addrs {
			if ipn, ok := addr.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap().Is4() && ip.IsGlobalUnicast() {
					return ip.Unmap()
				}
			}
		}
	}
	return netip.MustParseAddr("127.0.0.1")
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func osImage() string {
	for _, line := range strings.Split(readFile("/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func numCPU() int { return runtime.NumCPU() }

// memTotal is the machine's memory in bytes.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
