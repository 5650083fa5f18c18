package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	autoscalingv1 "k8s.io/api/autoscaling/v1"

	"github.com/stead-io/stead/api"
)

func newScaleCmd(g *globals) *cobra.Command {
	var replicas int32
	cmd := &cobra.Command{
		Use:   "scale sts/NAME --replicas=N",
		Short: "Set the number of replicas of a StatefulSet",
		Example: `  stead scale sts/web --replicas=5
  stead scale statefulset web --replicas=0`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") {
				return fmt.Errorf("--replicas is required: stead scale sts/NAME --replicas=N")
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas must be 0 or more, not %d", replicas)
			}
			targets, err := parseTargets(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			for _, t := range targets {
				if t.res.Name != "statefulsets" {
					return fmt.Errorf("only statefulsets can be scaled, not %s", t.res.Name)
				}
				sc := autoscalingv1.Scale{Spec: autoscalingv1.ScaleSpec{Replicas: replicas}}
				body, err := json.Marshal(sc)
				if err != nil {
					return err
				}
				if _, err := c.Do(ctx, http.MethodPut, api.Path(t.res, g.ns(), t.name, "scale"), nil, body, nil); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s scaled\n", t.res.Ref(t.name))
			}
			return nil
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", 0, "the new number of replicas")
	return cmd
}
