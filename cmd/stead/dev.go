package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/agent"
	"github.com/stead-io/stead/api"
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
--dns-addr for the host.

With --acl, the API refuses every request without a token (see
docs/security.md). The first start makes the management token and writes
its secret to DATA_DIR/management.token (mode 0600); the agent gets a token
of its own node at every start.`,
		Example: `  stead dev
  stead dev --data-dir /tmp/stead --http-addr 127.0.0.1:8470
  stead dev --acl && export STEAD_TOKEN=$(cat stead-data/management.token)
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
			if o.acl {
				msg, err := devManagementToken(ctx, srv, o.dataDir)
				if err != nil {
					srv.Close()
					return err
				}
				fmt.Fprintf(out, "stead dev: ACLs on; %s\n", msg)
			}
			var node *runningAgent
			if runAgent {
				cfg, err := devAgentConfig(o, ao, srv.addr)
				if err == nil && o.acl {
					// The agent acts with a token of its own node.
					cfg.Token, err = srv.agentToken(ctx, cfg.NodeName)
				}
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
	cmd.Flags().BoolVar(&o.acl, "acl", false, "refuse every request without a token whose role allows it; the management token is written to DATA_DIR/management.token")
	return cmd
}

// devManagementTokenFile holds, under stead dev's data directory, the
// secret of the management token its first start with --acl made.
const devManagementTokenFile = "management.token"

// devManagementToken bootstraps the ACLs of stead dev's cluster once it
// leads, and writes the management token's secret to
// DATA_DIR/management.token (mode 0600). On later starts the bootstrap is
// done and the file is kept. It returns what to tell the user.
func devManagementToken(ctx context.Context, srv *runningServer, dataDir string) (string, error) {
	path, err := filepath.Abs(filepath.Join(dataDir, devManagementTokenFile))
	if err != nil {
		return "", err
	}
	use := fmt.Sprintf("the management token is in %s (export STEAD_TOKEN=$(cat %s))", path, path)
	if err := srv.waitLeader(ctx); err != nil {
		return "", err
	}
	c, err := api.NewClient(srv.addr)
	if err != nil {
		return "", err
	}
	var tok api.NewToken
	_, err = c.Do(ctx, http.MethodPost, "/v1/acl/bootstrap", nil, nil, &tok)
	switch {
	case apierrors.IsConflict(err):
		if _, serr := os.Stat(path); serr == nil {
			return use, nil
		}
		return fmt.Sprintf("the ACL bootstrap was done before and %s is gone: use a management token you made, "+
			"or bootstrap again as docs/security.md says", path), nil
	case err != nil:
		return "", fmt.Errorf("bootstrap ACLs: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(tok.Secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write the management token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write the management token: %w", err)
	}
	return use, nil
}

// waitLeader waits until this server leads.
func (rs *runningServer) waitLeader(ctx context.Context) error {
	ch := rs.store.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l, ok := <-ch:
			if !ok {
				return errors.New("the store closed before this server led")
			}
			if l {
				return nil
			}
		}
	}
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
