package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary and of the server it talks to",
		Example: `  stead version
  stead version --client`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Client Version: %s (commit %s)\n", version, commit)
			if clientOnly {
				return nil
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Server Version: %s (server %s, leader %s)\n", st.Version, st.ServerID, st.Leader)
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "print only the client's version")
	return cmd
}
