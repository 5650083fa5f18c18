package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

func newACLCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "acl",
		Short: "Bootstrap ACLs and manage tokens",
		Long: `With --acl, servers refuse every request without a token whose role allows
it (default deny). Roles: management (everything), read-only (every read
but tokens) and agent (one node's agent: its node, its pods' status and
end, and the reads cluster DNS needs). See docs/security.md.`,
	}
	token := &cobra.Command{Use: "token", Short: "Make, list and revoke tokens"}
	token.AddCommand(newTokenCreateCmd(g), newTokenListCmd(g), newTokenRevokeCmd(g))
	cmd.AddCommand(newACLBootstrapCmd(g), token)
	return cmd
}

func aclDo(cmd *cobra.Command, g *globals, method, path string, body, out any) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	var data []byte
	if body != nil {
		if data, err = json.Marshal(body); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
	defer cancel()
	_, err = c.Do(ctx, method, path, nil, data, out)
	return err
}

func newACLBootstrapCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Make the first management token; works once per cluster",
		Long: `bootstrap makes the cluster's first management token and prints its
secret, the only time it is shown. It works once: a second call is refused.
Use the token to make others ('stead acl token create'), then make a second
management token and revoke this one. If every management token is lost,
docs/security.md says how to bootstrap again from the leader's disk.`,
		Example: `  export STEAD_TOKEN=$(stead acl bootstrap -q)`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var tok api.NewToken
			if err := aclDo(cmd, g, http.MethodPost, "/v1/acl/bootstrap", nil, &tok); err != nil {
				return err
			}
			return printNewToken(cmd.OutOrStdout(), tok, quiet)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the secret")
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
	var req api.TokenRequest
	var role string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "create --role management|read-only|agent [--node NODE]",
		Short: "Make a token and print its secret, the only time it is shown",
		Example: `  stead acl token create --role read-only --description dashboards
  stead acl token create --role agent --node node-a`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.Role = api.TokenRole(role)
			var tok api.NewToken
			if err := aclDo(cmd, g, http.MethodPost, "/v1/acl/tokens", req, &tok); err != nil {
				return err
			}
			return printNewToken(cmd.OutOrStdout(), tok, quiet)
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", "management, read-only or agent")
	f.StringVar(&req.Node, "node", "", "the node of an agent token")
	f.StringVar(&req.Description, "description", "", "who or what holds the token")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only the secret")
	cmd.MarkFlagRequired("role")
	return cmd
}

func printNewToken(w io.Writer, tok api.NewToken, quiet bool) error {
	if quiet {
		_, err := fmt.Fprintln(w, tok.Secret)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", tok.ID)
	fmt.Fprintf(tw, "Role:\t%s\n", tok.Role)
	if tok.Node != "" {
		fmt.Fprintf(tw, "Node:\t%s\n", tok.Node)
	}
	if tok.Description != "" {
		fmt.Fprintf(tw, "Description:\t%s\n", tok.Description)
	}
	fmt.Fprintf(tw, "Secret:\t%s\n", tok.Secret)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintln(w, "The secret is shown this once; pass it with --token or STEAD_TOKEN.")
	return err
}

func newTokenListCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the tokens (never their secrets)",
		Example: `  stead acl token list`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list api.TokenList
			if err := aclDo(cmd, g, http.MethodGet, "/v1/acl/tokens", nil, &list); err != nil {
				return err
			}
			return printTokens(cmd.OutOrStdout(), list, time.Now())
		},
	}
}

func printTokens(w io.Writer, list api.TokenList, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tNODE\tAGE\tREVOKED\tDESCRIPTION")
	for _, t := range list.Items {
		node, revoked := t.Node, "-"
		if node == "" {
			node = "-"
		}
		if t.Revoked != nil {
			revoked = t.Revoked.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, node, age(t.Created, now), revoked, t.Description)
	}
	return tw.Flush()
}

func newTokenRevokeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "revoke ID",
		Short:   "Revoke a token: it is refused from now on",
		Example: `  stead acl token revoke bootstrap`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var info api.TokenInfo
			if err := aclDo(cmd, g, http.MethodDelete, "/v1/acl/tokens/"+args[0], nil, &info); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "token %s revoked\n", info.ID)
			return err
		},
	}
}

// devAgentDescription marks the agent tokens a server makes for an
// agent in its own process.
const devAgentDescription = "agent in the server's process"

// agentToken makes, on this server once it leads, an agent token for
// node and returns its secret: for an agent running in the server's own
// process (stead dev with --acl), which cannot be handed one. The tokens
// it made before for node are revoked in the same write.
func (rs *runningServer) agentToken(ctx context.Context, node string) (string, error) {
	ch := rs.store.LeaderCh()
	for leader := false; !leader; {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case l, ok := <-ch:
			if !ok {
				return "", fmt.Errorf("make the agent token of node %s: the store closed", node)
			}
			leader = l
		}
	}
	id, secret, err := acl.NewSecret(rand.Reader)
	if err != nil {
		return "", err
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	tok := &api.Token{
		TypeMeta:   raftstore.Tokens.TypeMeta(),
		ObjectMeta: metav1.ObjectMeta{Name: id, CreationTimestamp: now},
		Spec:       api.TokenSpec{Role: api.TokenAgent, Node: node, Description: devAgentDescription, SecretHash: acl.HashSecret(secret)},
	}
	op, err := raftstore.PutOp(raftstore.Tokens, tok)
	if err != nil {
		return "", err
	}
	op.IfAbsent = true
	ops := []raftstore.Op{op}
	for _, old := range raftstore.ListOf[*api.Token](rs.store.View(), raftstore.Tokens, "") {
		if old.Spec.Node != node || old.Spec.Description != devAgentDescription || old.Spec.Revoked != nil {
			continue
		}
		revoked := old.DeepCopyObject().(*api.Token)
		revoked.Spec.Revoked = &now
		op, err := scheduler.PutOp(raftstore.Tokens, revoked, scheduler.Version(old))
		if err != nil {
			return "", err
		}
		ops = append(ops, op)
	}
	var rid [16]byte
	rand.Read(rid[:])
	if _, err := rs.store.Apply(ctx, raftstore.Txn{RequestID: hex.EncodeToString(rid[:]), Ops: ops}); err != nil {
		return "", fmt.Errorf("make the agent token of node %s: %w", node, err)
	}
	return secret, nil
}
