package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func newDevCmd() *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a one-machine cluster: a single-server Raft store on local disk, the controller, an agent and DNS in one process",
		Long: `stead dev runs everything Stead needs on this machine in one process. Its
state lives in --data-dir and survives restarts and crashes: run it again on
the same directory and everything is there.`,
		Example: `  stead dev
  stead dev --data-dir /tmp/stead --http-addr 127.0.0.1:8470`,
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
			fmt.Fprintf(cmd.OutOrStdout(), "stead dev: API on http://%s, state in %s\n", srv.addr, o.dataDir)
			<-ctx.Done()
			return srv.Close()
		},
	}
	o.addFlags(cmd, "dev", "./stead-data")
	return cmd
}
