package containerd

import (
	"context"
	"fmt"
	"sort"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
)

// ListLabeled returns the containers whose label key equals value, with
// their labels and status, sorted by ID: the containers of one pod, without
// inspecting every container of the namespace.
func (r *Runtime) ListLabeled(ctx context.Context, key, value string) ([]Container, error) {
	ctx = r.ctx(ctx)
	cs, err := r.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", key, value))
	if err != nil {
		return nil, fmt.Errorf("list containers with %s=%s: %w", key, value, err)
	}
	out := make([]Container, 0, len(cs))
	for _, c := range cs {
		info, err := c.Info(ctx, containerd.WithoutRefreshedMetadata)
		if errdefs.IsNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list containers: %s: %w", c.ID(), err)
		}
		st, err := r.status(ctx, c, info)
		if err != nil {
			return nil, fmt.Errorf("list containers: %s: %w", c.ID(), err)
		}
		out = append(out, Container{
			ID:      c.ID(),
			Image:   info.Image,
			Labels:  userLabels(info.Labels),
			LogPath: info.Labels[LabelLogPath],
			Status:  st,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ImageDigest returns the digest of the manifest (or index) the image ref
// names in the store, e.g. "sha256:4f1c…": what Kubernetes reports as a
// container's imageID after the repository name.
func (r *Runtime) ImageDigest(ctx context.Context, ref string) (string, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return "", err
	}
	img, err := r.client.ImageService().Get(r.ctx(ctx), name)
	if err != nil {
		return "", fmt.Errorf("image %s: %w", name, notFound(err, ErrImageNotFound))
	}
	return img.Target.Digest.String(), nil
}
