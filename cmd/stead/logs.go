package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/api"
)

func newLogsCmd(g *globals) *cobra.Command {
	var o api.LogOptions
	cmd := &cobra.Command{
		Use:   "logs POD",
		Short: "Print the logs of a container in a pod",
		Long: `Print what a container of a pod wrote to its standard output and error, as
kubectl logs does. The logs are read from the agent of the pod's node.`,
		Example: `  stead logs web-0
  stead logs web-0 -c nginx --tail 20 -f
  stead logs web-0 --previous`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.client()
			if err != nil {
				return err
			}
			ac, err := agentOfPod(ctx, g, c, g.ns(), args[0])
			if err != nil {
				return err
			}
			r, err := ac.Logs(ctx, g.ns(), args[0], o)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(cmd.OutOrStdout(), r)
			if ctx.Err() != nil {
				return nil
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Container, "container", "c", "", "container name (default: the pod's only container)")
	f.BoolVarP(&o.Follow, "follow", "f", false, "keep streaming the log as the container writes it")
	f.IntVar(&o.Tail, "tail", -1, "lines of recent log to show (-1: all)")
	f.BoolVarP(&o.Previous, "previous", "p", false, "print the log of the previous run of the container")
	return cmd
}
