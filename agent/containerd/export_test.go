package containerd

import (
	"context"

	"github.com/containerd/containerd/errdefs"
)

// SnapshotExists reports whether the runtime's snapshotter holds key.
func SnapshotExists(ctx context.Context, r *Runtime, key string) (bool, error) {
	_, err := r.client.SnapshotService(r.snapshotter).Stat(r.ctx(ctx), key)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// TaskExists reports whether containerd has a task for id.
func TaskExists(ctx context.Context, r *Runtime, id string) (bool, error) {
	c, err := r.client.LoadContainer(r.ctx(ctx), id)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = c.Task(r.ctx(ctx), nil)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}
