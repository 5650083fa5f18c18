package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/scheduler/httpapi"
)

func newOperatorCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "operator",
		Short: "Operate the cluster's servers",
	}
	raft := &cobra.Command{
		Use:   "raft",
		Short: "Inspect and change the servers of the Raft group",
	}
	raft.AddCommand(newListPeersCmd(g), newRemovePeerCmd(g))
	cmd.AddCommand(raft, newSnapshotCmd(g))
	return cmd
}

func newListPeersCmd(g *globals) *cobra.Command {
	var stale bool
	cmd := &cobra.Command{
		Use:   "list-peers",
		Short: "List the servers of the Raft group",
		Long: `list-peers prints the Raft configuration as the leader confirms it. With
--stale the server asked answers from its own copy, which works without a
leader (after a loss of quorum).`,
		Example: `  stead operator raft list-peers
  stead --server 10.0.0.2:7470 operator raft list-peers --stale`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			var q url.Values
			if stale {
				q = url.Values{"stale": {"true"}}
			}
			var conf httpapi.RaftConfiguration
			if _, err := c.Do(ctx, http.MethodGet, "/v1/operator/raft/configuration", q, nil, &conf); err != nil {
				return err
			}
			return printPeers(cmd.OutOrStdout(), conf)
		},
	}
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the asked server's copy of the configuration, without the leader")
	return cmd
}

// printPeers prints the configuration as Consul's list-peers does. A
// server's node name is its ID.
func printPeers(w io.Writer, conf httpapi.RaftConfiguration) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tID\tADDRESS\tSTATE\tVOTER")
	for _, p := range conf.Servers {
		state := "follower"
		if p.Leader {
			state = "leader"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.ID, p.RaftAddr, state, strconv.FormatBool(p.Voter))
	}
	return tw.Flush()
}

func newRemovePeerCmd(g *globals) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "remove-peer --id ID",
		Short: "Remove a server from the Raft group",
		Long: `remove-peer removes a server from the Raft group, on the leader, and forgets
where its API listened. Use it for a server that is gone for good, or
before a server whose data directory was lost joins again with an empty
one. The last voter cannot be removed.`,
		Example: `  stead operator raft remove-peer --id s3`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return fmt.Errorf("--id is required: stead operator raft remove-peer --id ID")
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			if _, err := c.Do(ctx, http.MethodDelete, "/v1/operator/raft/peers/"+url.PathEscape(id), nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Removed peer with id %q\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the ID (--node-id) of the server to remove")
	return cmd
}
