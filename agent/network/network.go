// Package network gives pods their network through CNI: one network
// namespace per pod, pinned under a runtime directory, attached to a node
// bridge with an IP from the node's pod subnet, host ports through portmap.
// It also installs the host-gw routes to other nodes' pod subnets.
//
// It drives Debian's containernetworking-plugins (bridge, host-local,
// loopback, portmap) through containerd's go-cni with a generated network
// configuration. host-local keeps its allocations under the agent's data
// directory and this package records each pod's attachment (namespace, IP,
// host ports) there too, so a restarted agent finds every pod's IP and can
// tear down what an earlier process set up.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	cni "github.com/containerd/go-cni"
	"github.com/hashicorp/go-hclog"
)

// Defaults for Options.
const (
	DefaultBridge      = "stead0"
	DefaultNetworkName = "stead"
)

// DefaultPluginDirs are where Debian (and upstream) install the plugins.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// Options configure New.
type Options struct {
	// Subnet is the node's pod subnet, e.g. 10.244.3.0/24. Its first
	// address is the bridge's (the pods' gateway and DNS server).
	Subnet netip.Prefix
	// DataDir keeps IP allocations and attachment records; they must
	// survive agent restarts (e.g. <agent data dir>/network).
	DataDir string
	// NetNSDir holds the pinned network namespaces of pods (e.g.
	// /run/stead/netns).
	NetNSDir string
	// Bridge names the node bridge; empty means DefaultBridge.
	Bridge string
	// NetworkName names the CNI network (and so host-local's directory and
	// iptables chains); empty means DefaultNetworkName.
	NetworkName string
	// PluginDirs are searched for CNI plugins; empty means
	// DefaultPluginDirs.
	PluginDirs []string
	// Logger; nil discards.
	Logger hclog.Logger
	// ClusterCIDR, when valid, is the range of every pod IP in the
	// cluster: pods' traffic within it keeps its source address (other
	// nodes route to this node's pods, host-gw) and only traffic leaving it
	// is masqueraded, by one rule EnsureBridge installs. When not valid, the
	// bridge plugin masquerades whatever leaves the node's subnet.
	ClusterCIDR netip.Prefix
}

// PortMapping publishes a container port on the node (hostPort).
type PortMapping struct {
	HostPort      uint16 `json:"hostPort"`
	ContainerPort uint16 `json:"containerPort"`
	// Protocol is "tcp" (default) or "udp".
	Protocol string `json:"protocol,omitempty"`
	// HostIP restricts the published port to one node address.
	HostIP string `json:"hostIP,omitempty"`
}

// Attachment is a pod's network as recorded on disk.
type Attachment struct {
	PodID string        `json:"podID"`
	NetNS string        `json:"netns"`
	IP    netip.Addr    `json:"ip"`
	Ports []PortMapping `json:"ports,omitempty"`
}

// Network attaches pods to the node's pod network.
//
// Concurrency: safe for concurrent use; Setup and Teardown of one pod ID are
// serialized, different pods proceed in parallel (host-local locks its own
// allocations).
type Network struct {
	opts    Options
	cni     cni.CNI
	gateway netip.Addr
	log     hclog.Logger

	mu    sync.Mutex
	locks map[string]*sync.Mutex
}

// New writes the network configuration and loads the plugins. It does not
// touch the host's network until EnsureBridge or Setup.
func New(opts Options) (*Network, error) {
	if !opts.Subnet.IsValid() || !opts.Subnet.Addr().Is4() || opts.Subnet.Bits() > 30 {
		return nil, fmt.Errorf("pod network: subnet %v must be an IPv4 prefix of at most /30", opts.Subnet)
	}
	opts.Subnet = opts.Subnet.Masked()
	if opts.DataDir == "" || opts.NetNSDir == "" {
		return nil, errors.New("pod network: DataDir and NetNSDir are required")
	}
	if opts.Bridge == "" {
		opts.Bridge = DefaultBridge
	}
	if len(opts.Bridge) > 15 {
		return nil, fmt.Errorf("pod network: bridge name %q is longer than 15 bytes", opts.Bridge)
	}
	if opts.NetworkName == "" {
		opts.NetworkName = DefaultNetworkName
	}
	if len(opts.PluginDirs) == 0 {
		opts.PluginDirs = DefaultPluginDirs
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	for _, dir := range []string{opts.DataDir, opts.ipamDir(), opts.podsDir(), opts.NetNSDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("pod network: %w", err)
		}
	}
	gw := opts.Subnet.Addr().Next()
	conf, err := Conflist(opts)
	if err != nil {
		return nil, fmt.Errorf("pod network: %w", err)
	}
	if err := os.WriteFile(filepath.Join(opts.DataDir, opts.NetworkName+".conflist"), conf, 0o600); err != nil {
		return nil, fmt.Errorf("pod network: %w", err)
	}
	c, err := cni.New(
		cni.WithPluginDir(opts.PluginDirs),
		cni.WithMinNetworkCount(2),
		cni.WithInterfacePrefix("eth"),
		// The pod network first, so its interface is eth0...
		cni.WithConfListBytes(conf),
		// ...then loopback ("lo").
		cni.WithLoNetwork,
	)
	if err != nil {
		return nil, fmt.Errorf("pod network: load CNI config: %w", err)
	}
	return &Network{opts: opts, cni: c, gateway: gw, log: opts.Logger, locks: make(map[string]*sync.Mutex)}, nil
}

func (o Options) ipamDir() string { return filepath.Join(o.DataDir, "ipam") }
func (o Options) podsDir() string { return filepath.Join(o.DataDir, "pods") }

// IPAMDir is where host-local keeps this network's allocations (one file
// per allocated IP, named by the IP).
func (n *Network) IPAMDir() string { return filepath.Join(n.opts.ipamDir(), n.opts.NetworkName) }

// Conflist returns the CNI network configuration for opts: a bridge with
// the gateway address and masquerading, host-local IPAM over the subnet
// (the gateway excluded) with state under DataDir, and portmap for host
// ports.
func Conflist(opts Options) ([]byte, error) {
	gw := opts.Subnet.Addr().Next()
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       opts.NetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      opts.Bridge,
				"isGateway":   true,
				"ipMasq":      !opts.ClusterCIDR.IsValid(),
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": opts.Subnet.String(), "gateway": gw.String()}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": opts.ipamDir(),
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// GatewayIP is the bridge's address: the pods' default gateway, where the
// agent's DNS server listens.
func (n *Network) GatewayIP() netip.Addr { return n.gateway }

// Subnet is the node's pod subnet.
func (n *Network) Subnet() netip.Prefix { return n.opts.Subnet }

// Bridge is the node bridge's name.
func (n *Network) Bridge() string { return n.opts.Bridge }

// EnsureBridge creates the bridge with the gateway address and brings it up
// (the bridge plugin would on the first pod; the DNS server needs the
// address before that), and enables IPv4 forwarding.
func (n *Network) EnsureBridge() error {
	if err := addBridge(n.opts.Bridge); err != nil {
		return err
	}
	if err := addAddr(n.opts.Bridge, netip.PrefixFrom(n.gateway, n.opts.Subnet.Bits())); err != nil {
		return err
	}
	if err := setLinkUp(n.opts.Bridge); err != nil {
		return err
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return n.ensureMasquerade()
}

// DeleteBridge removes the node bridge (after every pod is torn down, e.g.
// when the node leaves); a missing bridge is not an error.
func (n *Network) DeleteBridge() error {
	if err := n.deleteMasquerade(); err != nil {
		return err
	}
	return deleteLink(n.opts.Bridge)
}

var podIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$`)

func (n *Network) lock(podID string) func() {
	n.mu.Lock()
	l := n.locks[podID]
	if l == nil {
		l = &sync.Mutex{}
		n.locks[podID] = l
	}
	n.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (n *Network) netnsPath(podID string) string { return filepath.Join(n.opts.NetNSDir, podID) }
func (n *Network) recordPath(podID string) string {
	return filepath.Join(n.opts.podsDir(), podID+".json")
}

// Setup gives the pod podID a network namespace attached to the pod network
// with the given host ports, and returns the namespace's path and the pod's
// IP. Setting up a pod that is already attached returns its attachment.
// On failure nothing is left behind.
func (n *Network) Setup(ctx context.Context, podID string, ports []PortMapping) (netnsPath string, ip netip.Addr, err error) {
	if !podIDRE.MatchString(podID) {
		return "", netip.Addr{}, fmt.Errorf("set up network of pod %q: invalid pod ID", podID)
	}
	defer n.lock(podID)()
	if a, ok, err := n.readRecord(podID); err != nil {
		return "", netip.Addr{}, err
	} else if ok && a.IP.IsValid() && isNetNS(a.NetNS) {
		return a.NetNS, a.IP, nil
	} else if ok {
		// Half done by an earlier process: undo it and start again.
		if err := n.teardown(ctx, podID); err != nil {
			return "", netip.Addr{}, err
		}
	}

	a := Attachment{PodID: podID, NetNS: n.netnsPath(podID), Ports: ports}
	if isNetNS(a.NetNS) {
		// Left by a crash before the record was written.
		_ = n.cni.Remove(ctx, podID, a.NetNS, cni.WithCapabilityPortMap(cniPorts(ports)))
	}
	if err := removeNetNS(a.NetNS); err != nil {
		return "", netip.Addr{}, fmt.Errorf("set up network of pod %s: %w", podID, err)
	}
	if err := newNetNS(a.NetNS); err != nil {
		return "", netip.Addr{}, fmt.Errorf("set up network of pod %s: %w", podID, err)
	}
	// Record before ADD, so a crash in between is undone by Teardown.
	if err := n.writeRecord(a); err != nil {
		_ = removeNetNS(a.NetNS)
		return "", netip.Addr{}, fmt.Errorf("set up network of pod %s: %w", podID, err)
	}
	res, err := n.cni.SetupSerially(ctx, podID, a.NetNS, cni.WithCapabilityPortMap(cniPorts(ports)))
	if err == nil {
		a.IP, err = podIP(res)
	}
	if err == nil {
		err = n.writeRecord(a)
	}
	if err != nil {
		if terr := n.teardown(ctx, podID); terr != nil {
			n.log.Error("undo failed network setup", "pod", podID, "error", terr)
		}
		return "", netip.Addr{}, fmt.Errorf("set up network of pod %s: %w", podID, err)
	}
	n.log.Debug("pod network set up", "pod", podID, "ip", a.IP, "netns", a.NetNS)
	return a.NetNS, a.IP, nil
}

func podIP(res *cni.Result) (netip.Addr, error) {
	iface, ok := res.Interfaces["eth0"]
	if !ok {
		return netip.Addr{}, errors.New("CNI result has no eth0")
	}
	for _, c := range iface.IPConfigs {
		if a, ok := netip.AddrFromSlice(c.IP); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, errors.New("CNI result gives eth0 no IPv4 address")
}

func cniPorts(ports []PortMapping) []cni.PortMapping {
	out := make([]cni.PortMapping, 0, len(ports))
	for _, p := range ports {
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		out = append(out, cni.PortMapping{HostPort: int32(p.HostPort), ContainerPort: int32(p.ContainerPort), Protocol: proto, HostIP: p.HostIP})
	}
	return out
}

// Teardown detaches the pod: CNI DEL (releasing its IP, host ports and
// masquerading rules), then removes its network namespace and record.
// Tearing down a pod that has no network succeeds.
func (n *Network) Teardown(ctx context.Context, podID string) error {
	if !podIDRE.MatchString(podID) {
		return fmt.Errorf("tear down network of pod %q: invalid pod ID", podID)
	}
	defer n.lock(podID)()
	return n.teardown(ctx, podID)
}

func (n *Network) teardown(ctx context.Context, podID string) error {
	a, ok, err := n.readRecord(podID)
	if err != nil {
		return err
	}
	if !ok {
		a = Attachment{PodID: podID, NetNS: n.netnsPath(podID)}
	}
	// DEL while the namespace still exists: the bridge plugin finds the
	// pod's addresses there to remove their masquerading rules.
	path := a.NetNS
	if !isNetNS(path) {
		path = ""
	}
	if err := n.cni.Remove(ctx, podID, path, cni.WithCapabilityPortMap(cniPorts(a.Ports))); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podID, err)
	}
	if err := removeNetNS(a.NetNS); err != nil {
		return fmt.Errorf("tear down network of pod %s: %w", podID, err)
	}
	if err := os.Remove(n.recordPath(podID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("tear down network of pod %s: %w", podID, err)
	}
	n.log.Debug("pod network torn down", "pod", podID)
	return nil
}

// Lookup returns the recorded attachment of podID.
func (n *Network) Lookup(podID string) (Attachment, bool, error) {
	if !podIDRE.MatchString(podID) {
		return Attachment{}, false, fmt.Errorf("look up network of pod %q: invalid pod ID", podID)
	}
	return n.readRecord(podID)
}

// List returns every recorded attachment, sorted by pod ID: what a
// restarted agent compares with its pods to tear down the leftovers.
func (n *Network) List() ([]Attachment, error) {
	ents, err := os.ReadDir(n.opts.podsDir())
	if err != nil {
		return nil, fmt.Errorf("list pod networks: %w", err)
	}
	var out []Attachment
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !podIDRE.MatchString(id) {
			continue
		}
		a, ok, err := n.readRecord(id)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PodID < out[j].PodID })
	return out, nil
}

func (n *Network) readRecord(podID string) (Attachment, bool, error) {
	b, err := os.ReadFile(n.recordPath(podID))
	if errors.Is(err, os.ErrNotExist) {
		return Attachment{}, false, nil
	}
	if err != nil {
		return Attachment{}, false, fmt.Errorf("read network record of pod %s: %w", podID, err)
	}
	var a Attachment
	if err := json.Unmarshal(b, &a); err != nil {
		return Attachment{}, false, fmt.Errorf("read network record of pod %s: %w", podID, err)
	}
	return a, true, nil
}

// writeRecord stores a durably: temporary file, fsync, rename, fsync dir.
func (n *Network) writeRecord(a Attachment) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	dir := n.opts.podsDir()
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(b); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), n.recordPath(a.PodID))
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SyncRoutes makes the node's routes to other nodes' pod subnets (host-gw)
// exactly routes: subnet → that node's address. Routes it added earlier and
// no longer wanted are removed; routes it did not add are never touched.
func (n *Network) SyncRoutes(routes map[netip.Prefix]netip.Addr) error {
	return SyncRoutes(routes)
}

// SyncRoutes is Network.SyncRoutes for the calling thread's network
// namespace.
func SyncRoutes(routes map[netip.Prefix]netip.Addr) error {
	have, err := ownRoutes()
	if err != nil {
		return err
	}
	var errs []error
	want := make(map[netip.Prefix]netip.Addr, len(routes))
	for dst, gw := range routes {
		if !dst.Addr().Is4() || !gw.Is4() {
			errs = append(errs, fmt.Errorf("route %s via %s: only IPv4 is supported", dst, gw))
			continue
		}
		want[dst.Masked()] = gw
	}
	for dst, gw := range have {
		// Changed gateways are replaced below; only unwanted routes go.
		if _, ok := want[dst]; !ok {
			if err := deleteRoute(dst, gw); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for dst, gw := range want {
		if cur, ok := have[dst]; ok && cur == gw {
			continue
		}
		if err := replaceRoute(dst, gw); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
