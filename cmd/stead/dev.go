package main

import (
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/agent"
)

func newDevCmd() *cobra.Command {
	o := &serverOptions{}
	ao := &agentOptions{}
	runAgent := true
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a one-machine cluster: a single-server Raft store on local disk, the controller, an agent and DNS in one process",
		Long: `stead dev runs everything Stead needs on this machine in one process. Its
state lives in --data-dir and survives restarts and crashes: run it again on
the same directory and everything is there.

The agent runs the pods on this machine (as root, with containerd and the CNI
plugins installed; without them stead dev runs the server alone and says
why). Its state is in DATA_DIR/agent; image archives dropped in
DATA_DIR/agent/images/ are imported when it starts. Cluster DNS answers on
--dns-addr for the host.`,
		Example: `  stead dev
  stead dev --data-dir /tmp/stead --http-addr 127.0.0.1:8470
  dig @127.0.0.1 -p 7453 web-0.nginx.default.svc.cluster.local`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.bootstrap = true
			log := newLogger("stead", o.logLevel, o.logJSON)
			srv, err := startServer(ctx, *o, log)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "stead dev: API on http://%s, state in %s\n", srv.addr, o.dataDir)
			var node *runningAgent
			if runAgent {
				cfg, err := devAgentConfig(o, ao, srv.addr)
				if err == nil {
					cfg.Logger = log.Named("agent")
					node, err = startAgent(ctx, cfg)
				}
				if err != nil && ctx.Err() == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "stead dev: no agent, pods will not run on this machine: %v\n", err)
				} else if node != nil {
					fmt.Fprintf(out, "stead dev: node %s runs pods (subnet %s), agent API on %s, cluster DNS on %s\n",
						cfg.NodeName, node.Node().Spec.PodCIDR, node.APIAddr(), dnsAddrs(node))
				}
			}
			<-ctx.Done()
			if node != nil {
				node.wait()
			}
			return srv.Close()
		},
	}
	o.addFlags(cmd, "dev", "./stead-data")
	ao.addFlags(cmd, "", "")
	cmd.Flags().BoolVar(&runAgent, "agent", true, "run an agent for this machine in the same process")
	return cmd
}

// devAgentConfig is the configuration of stead dev's agent: the node is
// named after the host, keeps its state under the data directory and talks
// to the server of the same process.
func devAgentConfig(o *serverOptions, ao *agentOptions, server string) (agent.Config, error) {
	ao.servers = []string{server}
	host, _ := os.Hostname()
	ao.nodeName = strings.ToLower(host)
	if ao.nodeName == "" {
		ao.nodeName = "dev"
	}
	ao.dataDir = filepath.Join(o.dataDir, "agent")
	ao.clusterCIDR, ao.clusterDomain = o.clusterCIDR, o.clusterDomain
	cfg, err := ao.config("")
	if err != nil {
		return cfg, err
	}
	if _, err := netip.ParsePrefix(o.clusterCIDR); err != nil {
		return cfg, fmt.Errorf("--cluster-cidr %q: %w", o.clusterCIDR, err)
	}
	return cfg, nil
}
