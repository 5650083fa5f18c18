// Command stead is Stead's one binary: the server (`stead server`), the
// node agent (`stead agent`), the one-machine cluster (`stead dev`) and the
// command-line client (`stead apply`, `stead get`, ...).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/api"
)

// Set at build time with -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "unknown"
)

// globals are the flags every client verb shares.
type globals struct {
	// server is the address of the server to talk to.
	server string
	// namespace is -n; empty means "default" for verbs that need one.
	namespace string
	// token is the ACL token sent with every request.
	token string
	// tls names the CA, certificate and key for mutual TLS (tls.go).
	tls api.TLSFiles
}

// client returns an API client for the configured server.
func (g *globals) client() (*api.Client, error) {
	o, err := g.clientOptions()
	if err != nil {
		return nil, err
	}
	return api.NewClientWithOptions(g.server, o)
}

// ns returns the namespace a verb acts in.
func (g *globals) ns() string {
	if g.namespace == "" {
		return "default"
	}
	return g.namespace
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "stead",
		Short: "Stateful sets on bare metal: stable names, ordered rollouts, per-ordinal volumes and fenced failover",
		Long: `Stead runs Kubernetes StatefulSets on machines without Kubernetes.

Start a one-machine cluster with 'stead dev', then apply Kubernetes manifests
unchanged with 'stead apply -f web.yaml' and watch them with 'stead get pods'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	addr := os.Getenv("STEAD_ADDR")
	if addr == "" {
		addr = api.DefaultAddr
	}
	root.PersistentFlags().StringVar(&g.server, "server", addr, "address of a Stead server (host:port or URL); also STEAD_ADDR")
	root.PersistentFlags().StringVarP(&g.namespace, "namespace", "n", "", "namespace to act in (default \"default\")")
	root.PersistentFlags().StringVar(&g.token, "token", os.Getenv("STEAD_TOKEN"), "ACL token; also STEAD_TOKEN")
	g.addTLSFlags(root.PersistentFlags())
	addConfig(root, os.LookupEnv)

	root.AddCommand(
		newVersionCmd(g),
		newServerCmd(g),
		newOperatorCmd(g),
		newDevCmd(),
		newApplyCmd(g),
		newGetCmd(g),
		newDescribeCmd(g),
		newDeleteCmd(g),
		newScaleCmd(g),
		newVolumeCmd(g),
		newRolloutCmd(g),
		newNodeCmd(g),
		newWatchdogCmd(),
		newAgentCmd(g),
		newLogsCmd(g),
		newExecCmd(g),
		newImageCmd(g),
		newTLSCmd(),
		newACLCmd(g),
	)
	return root
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
