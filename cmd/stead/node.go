package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
)

func newNodeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "List, inspect, cordon, drain and fence nodes",
	}
	ls := newGetCmd(g)
	ls.Use, ls.Short, ls.Example, ls.Aliases = "ls", "List nodes", "  stead node ls\n  stead node ls -o wide", []string{"list"}
	ls.Args = cobra.NoArgs
	getRun := ls.RunE
	ls.RunE = func(cmd *cobra.Command, _ []string) error { return getRun(cmd, []string{"nodes"}) }

	describe := newDescribeCmd(g)
	describe.Use, describe.Short, describe.Example = "describe NAME...", "Show a node in detail, with its pods and events", "  stead node describe node-a"
	describe.Args = cobra.MinimumNArgs(1)
	describeRun := describe.RunE
	describe.RunE = func(cmd *cobra.Command, args []string) error {
		return describeRun(cmd, append([]string{"nodes"}, args...))
	}

	cmd.AddCommand(ls, describe,
		nodeActionCmd(g, "cordon", "Mark a node unschedulable: no new pods are placed on it", ""),
		nodeActionCmd(g, "uncordon", "Mark a node schedulable again", ""),
		nodeActionCmd(g, "fence", "Assert that a node is dead: its pods are freed at once and start elsewhere",
			`Fence is the operator's assertion that a node is powered off or will never run
its pods again (Kubernetes' out-of-service taint). Stead then frees the
node's ordinals without waiting for the lease and fence margin. Fencing a
node that still runs its pods can run an ordinal twice: fence only a node
you have confirmed dead, and unfence it once it is wiped or repaired.`),
		nodeActionCmd(g, "unfence", "Remove the fence of a node that was cleaned up (it stays cordoned until uncordoned)", ""),
		newDrainCmd(g),
	)
	return cmd
}

// nodeActionCmd returns a verb that posts one action to /v1/nodes/NAME/ACTION.
func nodeActionCmd(g *globals, action, short, long string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " NAME...",
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  stead node %s node-a", action),
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			for _, name := range args {
				if err := nodeAction(cmd.Context(), c, name, action); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "node/%s %sed\n", name, trimE(action))
			}
			return nil
		},
	}
}

// trimE makes "fence" read "fenced", not "fenceed".
func trimE(action string) string {
	if action[len(action)-1] == 'e' {
		return action[:len(action)-1]
	}
	return action
}

func nodeAction(ctx context.Context, c *api.Client, name, action string) error {
	_, err := c.Do(ctx, http.MethodPost, "/v1/nodes/"+name+"/"+action, nil, nil, nil)
	return err
}

func newDrainCmd(g *globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "drain NAME",
		Short: "Cordon a node and move its pods away one at a time, each Ready elsewhere before the next",
		Long: `Drain cordons the node, then deletes its pods one at a time. Each pod stops
gracefully and its node detaches its volume before the set's controller
starts the ordinal on another node; drain waits for it to be Running and
Ready there before it moves the next one.`,
		Example: `  stead node drain node-a
  stead node drain node-a --timeout=10m`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return drain(ctx, c, args[0], cmd.OutOrStdout())
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "give up after this long")
	return cmd
}

func drain(ctx context.Context, c *api.Client, node string, out interface{ Write([]byte) (int, error) }) error {
	if err := nodeAction(ctx, c, node, "cordon"); err != nil {
		return err
	}
	fmt.Fprintf(out, "node/%s cordoned\n", node)
	pods, _, err := nodePodsOn(ctx, c, node, 0)
	if err != nil {
		return err
	}
	podsRes, _ := api.LookupResource("pods")
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		fmt.Fprintf(out, "evicting pod %s/%s\n", p.Namespace, p.Name)
		if _, err := c.Delete(ctx, podsRes, p.Namespace, p.Name, api.DeleteOptions{}); err != nil {
			return err
		}
		if metav1.GetControllerOf(&p) == nil {
			continue
		}
		if err := waitReadyElsewhere(ctx, c, p, node); err != nil {
			return fmt.Errorf("pod %s/%s did not become Ready on another node: %w; the drain stopped, node %s stays cordoned", p.Namespace, p.Name, err, node)
		}
		fmt.Fprintf(out, "pod/%s is Ready on another node\n", p.Name)
	}
	fmt.Fprintf(out, "node/%s drained\n", node)
	return nil
}

// nodePodsOn lists the pods bound to node, ordered by namespace and name.
func nodePodsOn(ctx context.Context, c *api.Client, node string, index uint64) ([]corev1.Pod, uint64, error) {
	podsRes, _ := api.LookupResource("pods")
	l, idx, err := c.List(ctx, podsRes, "", api.ListOptions{FieldSelector: "spec.nodeName=" + node, Index: index, Wait: 30 * time.Second})
	if err != nil {
		return nil, 0, err
	}
	var pods []corev1.Pod
	for _, raw := range l.Items {
		var p corev1.Pod
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, 0, err
		}
		pods = append(pods, p)
	}
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	return pods, idx, nil
}

// waitReadyElsewhere blocks until a pod named like old runs Ready on a node
// other than from.
func waitReadyElsewhere(ctx context.Context, c *api.Client, old corev1.Pod, from string) error {
	podsRes, _ := api.LookupResource("pods")
	var index uint64
	for {
		var p corev1.Pod
		idx, err := c.Get(ctx, podsRes, old.Namespace, old.Name, &p)
		if err == nil && p.UID != old.UID && p.Spec.NodeName != "" && p.Spec.NodeName != from && podReady(&p) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Wait for the state to move before looking again.
		if _, index, err = c.List(ctx, podsRes, old.Namespace, api.ListOptions{Index: max(idx, index), Wait: 30 * time.Second}); err != nil {
			return err
		}
	}
}
