package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent"
	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// agentOptions are the flags of `stead agent` (and the agent of `stead dev`).
type agentOptions struct {
	servers       []string
	nodeName      string
	dataDir       string
	labels        []string
	nodeIP        string
	socket        string
	namespace     string
	agentAddr     string
	advertise     string
	dnsAddr       string
	clusterCIDR   string
	clusterDomain string
	netnsDir      string
	bridge        string
	cniNetwork    string
	// storageClasses are --storage-class specs (volumes.ParseClass).
	storageClasses []string
	logLevel       string
	logJSON        bool
	// watchdog starts the node's self-fencing watchdog process.
	watchdog bool
}

func newAgentCmd(g *globals) *cobra.Command {
	o := &agentOptions{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run this machine's node agent: run the pods the servers assign to it",
		Long: `stead agent registers this machine as a node with the servers, keeps its
lease with heartbeats, and runs the pods assigned to it through containerd:
each pod in its own network namespace with an IP from the node's pod subnet,
with its probes, restarts, logs and graceful stop. It serves cluster DNS to
the pods (on the pod bridge's address) and to the host (--dns-addr), and
its own API (--agent-addr) for 'stead logs', 'stead exec' and 'stead image'.

When nothing answers on --containerd-socket and containerd is installed, the
agent runs its own containerd under --data-dir. Stopping or killing the agent
leaves the pods running; an agent started again on the same data directory
adopts them.`,
		Example: `  stead agent --servers 10.0.0.1:7470,10.0.0.2:7470 --data-dir /var/lib/stead/agent \
      --node-label zone=a --agent-addr 10.0.0.5:7472`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.servers) == 0 {
				return errors.New("--servers is required: the HTTP addresses of the Stead servers")
			}
			cfg, err := o.config(g.token)
			if err != nil {
				return err
			}
			// With TLS the agent presents its node's certificate to the
			// servers and serves its own API with it.
			ld, err := g.tlsMaterial()
			if err != nil {
				return err
			}
			if ld != nil {
				if err := checkAgentCert(ld, cfg.NodeName); err != nil {
					return err
				}
				cfg.ServerTLS, cfg.APITLS = ld.ClientConfig(), ld.ServerConfig()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			cfg.Logger = newLogger("stead", o.logLevel, o.logJSON).Named("agent")
			if o.watchdog {
				if cfg.Watchdog, err = os.Executable(); err != nil {
					return fmt.Errorf("find this executable to run the watchdog: %w", err)
				}
			}
			return runAgent(ctx, cfg, cmd.OutOrStdout())
		},
	}
	host, _ := os.Hostname()
	o.addFlags(cmd, host, "/var/lib/stead/agent")
	f := cmd.Flags()
	f.StringSliceVar(&o.servers, "servers", nil, "HTTP addresses of the Stead servers (comma-separated); the agent starts with a random one and moves to the next when it fails")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	f.BoolVar(&o.logJSON, "log-json", false, "write logs as JSON lines")
	f.BoolVar(&o.watchdog, "watchdog", true, "run 'stead watchdog', which stops this node's pods when its lease runs out (needed for safe failover)")
	return cmd
}

// addFlags registers the agent's flags; stead dev shares them.
func (o *agentOptions) addFlags(cmd *cobra.Command, defaultNode, defaultDataDir string) {
	f := cmd.Flags()
	if cmd.Name() == "agent" {
		f.StringVar(&o.nodeName, "node-name", defaultNode, "this node's name (stable across restarts)")
		f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "directory for the agent's state: pods, logs, IP allocations, volumes")
		f.StringVar(&o.clusterCIDR, "cluster-cidr", agent.DefaultClusterCIDR.String(), "range of every pod IP in the cluster")
		f.StringVar(&o.clusterDomain, "cluster-domain", api.DefaultClusterDomain, "DNS domain of cluster names")
	}
	f.StringArrayVar(&o.labels, "node-label", nil, "label of the node, KEY=VALUE (repeatable)")
	f.StringVar(&o.nodeIP, "node-ip", "", "this node's address for other nodes (default: the address that reaches the first server)")
	f.StringVar(&o.socket, "containerd-socket", containerd.DefaultSocket, "containerd's socket; when nothing answers there, the agent runs its own containerd")
	f.StringVar(&o.namespace, "containerd-namespace", containerd.DefaultNamespace, "containerd namespace of the pods' containers and images")
	f.StringVar(&o.agentAddr, "agent-addr", agent.DefaultAgentAddr, "address of the agent's API (logs, exec, images)")
	f.StringVar(&o.advertise, "advertise-agent-addr", "", "address of the agent's API as clients reach it (default --agent-addr)")
	f.StringVar(&o.dnsAddr, "dns-addr", agent.DefaultDNSAddr, `address where cluster DNS answers for the host ("-": only for pods)`)
	f.StringVar(&o.netnsDir, "netns-dir", agent.DefaultNetNSDir, "directory of the pods' network namespaces")
	f.StringVar(&o.bridge, "bridge", network.DefaultBridge, "name of the pods' bridge")
	f.StringVar(&o.cniNetwork, "cni-network", network.DefaultNetworkName, "name of the pods' CNI network (names its IP allocations and iptables chains)")
	f.StringArrayVar(&o.storageClasses, "storage-class", nil, `storage class of volume claims, NAME=DRIVER[:ROOT][,default][,shared] with DRIVER local, shared or image (repeatable; default "`+defaultStorageClass+`": volumes under the data dir)`)
}

// defaultStorageClass is the class of an agent given no --storage-class:
// local volumes under its data directory, for claims that name no class.
const defaultStorageClass = "local=local,default"

// config turns the flags into an agent configuration.
func (o *agentOptions) config(token string) (agent.Config, error) {
	cfg := agent.Config{
		NodeName:            o.nodeName,
		Servers:             o.servers,
		Token:               token,
		DataDir:             o.dataDir,
		ContainerdSocket:    o.socket,
		ContainerdNamespace: o.namespace,
		AgentAddr:           o.agentAddr,
		AdvertiseAddr:       o.advertise,
		DNSAddr:             o.dnsAddr,
		ClusterDomain:       o.clusterDomain,
		NetNSDir:            o.netnsDir,
		Bridge:              o.bridge,
		NetworkName:         o.cniNetwork,
		Version:             version,
	}
	if cfg.NodeName == "" {
		return cfg, errors.New("--node-name is empty and the host has no name; set --node-name")
	}
	specs := o.storageClasses
	if len(specs) == 0 {
		specs = []string{defaultStorageClass}
	}
	classes, err := volumes.ParseClasses(specs)
	if err != nil {
		return cfg, fmt.Errorf("--storage-class: %w", err)
	}
	cfg.StorageClasses = classes
	labels, err := parseLabels(o.labels)
	if err != nil {
		return cfg, err
	}
	cfg.Labels = labels
	if o.nodeIP != "" {
		if cfg.NodeIP, err = netip.ParseAddr(o.nodeIP); err != nil || !cfg.NodeIP.Is4() {
			return cfg, fmt.Errorf("--node-ip %q is not an IPv4 address", o.nodeIP)
		}
	}
	if o.clusterCIDR != "" {
		p, err := netip.ParsePrefix(o.clusterCIDR)
		if err != nil || !p.Addr().Is4() {
			return cfg, fmt.Errorf("--cluster-cidr %q is not an IPv4 range such as 10.244.0.0/16", o.clusterCIDR)
		}
		cfg.ClusterCIDR = p
	}
	return cfg, nil
}

// parseLabels reads KEY=VALUE node labels.
func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--node-label %q is not KEY=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// runAgent runs an agent until ctx ends, saying on out where it serves once
// it is ready.
func runAgent(ctx context.Context, cfg agent.Config, out io.Writer) error {
	a, err := startAgent(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "stead agent: node %s, pod subnet %s, API on %s, DNS on %s\n", cfg.NodeName, a.Node().Spec.PodCIDR, a.APIAddr(), dnsAddrs(a))
	return a.wait()
}

// runningAgent is an agent started in this process.
type runningAgent struct {
	*agent.Agent
	done chan error
}

func (a *runningAgent) wait() error { return <-a.done }

// startAgent starts an agent and waits until it is ready or failed.
func startAgent(ctx context.Context, cfg agent.Config) (*runningAgent, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	a, err := agent.New(cfg)
	if err != nil {
		return nil, err
	}
	ra := &runningAgent{Agent: a, done: make(chan error, 1)}
	go func() { ra.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
		return ra, nil
	case err := <-ra.done:
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	}
}

func dnsAddrs(a *runningAgent) string {
	var s []string
	for _, ap := range a.DNSAddrs() {
		s = append(s, ap.String())
	}
	return strings.Join(s, " and ")
}

var (
	podsRes, _  = api.LookupResource("pods")
	nodesRes, _ = api.LookupResource("nodes")
)

// agentOfNode returns a client for the agent of node name, from the
// address its node records.
func agentOfNode(ctx context.Context, g *globals, c *api.Client, name string) (*api.AgentClient, error) {
	var node corev1.Node
	if _, err := c.Get(ctx, nodesRes, "", name, &node); err != nil {
		return nil, err
	}
	return agentClientOf(g, &node)
}

// agentOfPod returns a client for the agent of the node pod ns/name runs on.
func agentOfPod(ctx context.Context, g *globals, c *api.Client, ns, name string) (*api.AgentClient, error) {
	var pod corev1.Pod
	if _, err := c.Get(ctx, podsRes, ns, name, &pod); err != nil {
		return nil, err
	}
	if pod.Spec.NodeName == "" {
		return nil, fmt.Errorf("pod %s is not assigned to a node yet", name)
	}
	return agentOfNode(ctx, g, c, pod.Spec.NodeName)
}

// agentClientOf returns a client for the agent a node records.
func agentClientOf(g *globals, node *corev1.Node) (*api.AgentClient, error) {
	addr := node.Annotations[api.AnnotationAgentAddr]
	if addr == "" {
		return nil, fmt.Errorf("node %s records no agent address (annotation %s): is its agent running?", node.Name, api.AnnotationAgentAddr)
	}
	o := api.ClientOptions{Token: g.token}
	ld, err := g.tlsMaterial()
	if err != nil {
		return nil, err
	}
	if ld != nil {
		// The agent must present its own node's certificate.
		o.TLS = ld.ClientConfigFor(api.AgentName(ld.Identity.Cluster, node.Name))
	}
	return api.NewAgentClientWithOptions(addr, o)
}

// allNodes lists the nodes, sorted by name.
func allNodes(ctx context.Context, c *api.Client) ([]*corev1.Node, error) {
	l, _, err := c.List(ctx, nodesRes, "", api.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []*corev1.Node
	for _, raw := range l.Items {
		var n corev1.Node
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, err
		}
		out = append(out, &n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
