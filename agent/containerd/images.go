package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/distribution/reference"
)

// NormalizeImage returns the full name containerd stores a reference under:
// "web:1" → "docker.io/library/web:1", "web" → "docker.io/library/web:latest".
func NormalizeImage(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", ref, err)
	}
	return named.String(), nil
}

// ImportArchive imports an OCI image layout or Docker archive (`docker
// save`) read from r, unpacks every image it names for the snapshotter and
// returns their full names in order. An archive that names no image is an
// error: nothing could refer to what it holds.
func (r *Runtime) ImportArchive(ctx context.Context, archive io.Reader) ([]string, error) {
	ctx = r.ctx(ctx)
	imgs, err := r.client.Import(ctx, archive)
	if err != nil {
		return nil, fmt.Errorf("import image archive: %w", err)
	}
	if len(imgs) == 0 {
		return nil, errors.New("import image archive: it names no image (OCI layouts need an org.opencontainers.image.ref.name or io.containerd.image.name annotation)")
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		i := containerd.NewImage(r.client, img)
		if err := i.Unpack(ctx, r.snapshotter); err != nil {
			return nil, fmt.Errorf("unpack image %s: %w", img.Name, err)
		}
		names = append(names, img.Name)
		r.log.Info("imported image", "image", img.Name, "digest", img.Target.Digest)
	}
	return names, nil
}

// HasImage reports whether the image ref (normalized) is in the store.
func (r *Runtime) HasImage(ctx context.Context, ref string) (bool, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return false, err
	}
	_, err = r.client.ImageService().Get(r.ctx(ctx), name)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up image %s: %w", name, err)
	}
	return true, nil
}

// ListImages returns the full names of the images in the store, sorted.
func (r *Runtime) ListImages(ctx context.Context) ([]string, error) {
	imgs, err := r.client.ImageService().List(r.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	names := make([]string, 0, len(imgs))
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	sort.Strings(names)
	return names, nil
}

// Pull fetches ref from its registry and unpacks it. Any failure is a
// *PullError.
func (r *Runtime) Pull(ctx context.Context, ref string) error {
	name, err := NormalizeImage(ref)
	if err != nil {
		return &PullError{Ref: ref, Err: err}
	}
	if _, err := r.client.Pull(r.ctx(ctx), name, containerd.WithPullUnpack, containerd.WithPullSnapshotter(r.snapshotter)); err != nil {
		return &PullError{Ref: name, Err: err}
	}
	r.log.Info("pulled image", "image", name)
	return nil
}

// image loads ref and makes sure it is unpacked for the snapshotter.
func (r *Runtime) image(ctx context.Context, ref string) (containerd.Image, error) {
	name, err := NormalizeImage(ref)
	if err != nil {
		return nil, err
	}
	img, err := r.client.GetImage(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, notFound(err, ErrImageNotFound))
	}
	ok, err := img.IsUnpacked(ctx, r.snapshotter)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if !ok {
		if err := img.Unpack(ctx, r.snapshotter); err != nil {
			return nil, fmt.Errorf("unpack image %s: %w", name, err)
		}
	}
	return img, nil
}
