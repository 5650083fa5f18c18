package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stead-io/stead/api"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Act on volumes (persistent volume claims)",
		Long: `Act on the volumes of StatefulSets' ordinals, stored as persistent volume claims.

List them with 'stead get volumes', look at one with 'stead describe volume
NAME', and delete one with 'stead delete volume NAME': it stays Terminating
until no pod uses it and its node deleted its data.`,
	}
	cmd.AddCommand(newVolumeResizeCmd(g))
	return cmd
}

func newVolumeResizeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "resize NAME SIZE",
		Short: "Grow a volume of an image class",
		Long: `Grow a volume: set its claim's spec.resources.requests.storage to SIZE.

The node that holds the volume grows it (the ext4 filesystem of an image
class's volume, while the pod runs if the kernel lets it, otherwise when the
pod is next started) and then reports the new size as the claim's capacity.
A volume that nobody holds grows when it is next mounted. If the volume
cannot grow (its class's root has no room left), the claim gets a
NodeResizeError condition saying why, and the volume keeps its size and data.

Volumes only grow. Only volumes of image classes have a real size; the size
of local and shared volumes is advisory, so they cannot be resized.`,
		Example: `  stead volume resize data-db-0 2Gi
  stead volume resize www-web-1 500Mi -n shop`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			size, err := resource.ParseQuantity(args[1])
			if err != nil || size.Sign() <= 0 {
				return fmt.Errorf("size %q is not a positive quantity such as 2Gi or 500Mi", args[1])
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			res, _ := api.LookupResource("persistentvolumeclaims")
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			for range 5 {
				var pvc corev1.PersistentVolumeClaim
				if _, err := c.Get(ctx, res, g.ns(), name, &pvc); err != nil {
					if apierrors.IsNotFound(err) {
						return fmt.Errorf("volume %s/%s not found: 'stead get volumes -n %s' lists them", g.ns(), name, g.ns())
					}
					return err
				}
				next, err := resizedClaim(&pvc, size)
				if err != nil {
					return err
				}
				if next == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s unchanged: it already asks for %s\n", res.Ref(name), size.String())
					return nil
				}
				// Compare-and-swap on the claim's resourceVersion: an
				// agent writing the claim meanwhile makes us read it again.
				if _, err := c.Put(ctx, res, g.ns(), name, next, nil); apierrors.IsConflict(err) {
					continue
				} else if err != nil {
					return err
				}
				old := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
				fmt.Fprintf(cmd.OutOrStdout(), "%s resized from %s to %s: the node that holds it grows it, then its capacity shows the new size\n",
					res.Ref(name), old.String(), size.String())
				return nil
			}
			return fmt.Errorf("volume %s/%s keeps changing; try again", g.ns(), name)
		},
	}
}

// resizedClaim returns pvc asking for size, or nil when it already does.
// It refuses, naming the field and what to do, a claim being deleted, a
// claim whose volume a driver without a real size keeps, and a smaller
// size.
func resizedClaim(pvc *corev1.PersistentVolumeClaim, size resource.Quantity) (*corev1.PersistentVolumeClaim, error) {
	name := pvc.Namespace + "/" + pvc.Name
	if pvc.DeletionTimestamp != nil {
		return nil, fmt.Errorf("volume %s is being deleted: it cannot be resized", name)
	}
	// The driver is recorded by the node that made the volume; a claim
	// without one has no volume yet, which is made at the size asked.
	if d := pvc.Annotations["stead.io/storage-driver"]; d != "" && d != "image" {
		return nil, fmt.Errorf("volume %s is kept by the %s driver, whose size is advisory: only volumes of image classes can be resized (spec.resources.requests.storage left unchanged)", name, d)
	}
	cur, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if ok {
		switch size.Cmp(cur) {
		case 0:
			return nil, nil
		case -1:
			return nil, fmt.Errorf("volume %s cannot shrink from %s to %s: spec.resources.requests.storage only grows; give %s or more",
				name, cur.String(), size.String(), cur.String())
		}
	}
	next := pvc.DeepCopy()
	if next.Spec.Resources.Requests == nil {
		next.Spec.Resources.Requests = corev1.ResourceList{}
	}
	next.Spec.Resources.Requests[corev1.ResourceStorage] = size
	return next, nil
}
