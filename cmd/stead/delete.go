package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stead-io/stead/api"
)

func newDeleteCmd(g *globals) *cobra.Command {
	var (
		cascade string
		grace   int64
		force   bool
	)
	cmd := &cobra.Command{
		Use:   "delete TYPE NAME... | TYPE/NAME...",
		Short: "Delete objects: a pod is re-created with the same identity; a set takes its pods with it unless --cascade=orphan",
		Example: `  stead delete pod web-1
  stead delete sts web
  stead delete sts web --cascade=orphan   # leave the pods running, without an owner
  stead delete pod web-1 --grace-period=0 --force   # assert the pod is dead; frees its ordinal at once`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			targets, err := parseTargets(args)
			if err != nil {
				return err
			}
			if force && grace != 0 {
				return fmt.Errorf("--force needs --grace-period=0: it removes the pod's record without waiting for its node")
			}
			opts := api.DeleteOptions{Cascade: cascade, Force: force}
			if cmd.Flags().Changed("grace-period") {
				opts.GracePeriodSeconds = &grace
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			for _, t := range targets {
				if _, err := c.Delete(ctx, t.res, g.ns(), t.name, opts); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s %q deleted\n", qualifiedKind(t.res), t.name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cascade, "cascade", "background", `"background" deletes the object's pods too; "orphan" leaves them running`)
	f.Int64Var(&grace, "grace-period", -1, "seconds a pod gets to stop (default: its terminationGracePeriodSeconds)")
	f.BoolVar(&force, "force", false, "with --grace-period=0: remove the pod record at once, asserting it no longer runs")
	return cmd
}

// target is one object named on the command line.
type target struct {
	res  api.Resource
	name string
}

// parseTargets reads "TYPE NAME..." or "TYPE/NAME..." as kubectl does.
func parseTargets(args []string) ([]target, error) {
	var out []target
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok || name == "" {
				return nil, fmt.Errorf("%q is not TYPE/NAME; name every object as TYPE/NAME, or give TYPE then NAMEs", a)
			}
			r, err := api.LookupResource(typ)
			if err != nil {
				return nil, err
			}
			out = append(out, target{r, name})
		}
		return out, nil
	}
	r, err := api.LookupResource(args[0])
	if err != nil {
		return nil, err
	}
	if len(args) == 1 {
		return nil, fmt.Errorf("name the %s to act on: stead ... %s NAME", r.Name, args[0])
	}
	for _, name := range args[1:] {
		out = append(out, target{r, name})
	}
	return out, nil
}

// qualifiedKind returns the resource as kubectl names it in messages:
// "statefulset.apps", "pod".
func qualifiedKind(r api.Resource) string {
	ref := r.Ref("")
	return strings.TrimSuffix(ref, "/")
}
