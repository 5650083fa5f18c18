// Package image builds minimal OCI images from a static binary, so that Stead's
// demo and test images exist without any registry.
//
// BuildFromBinary writes an OCI image-layout tar (oci-layout, index.json and
// blobs/sha256/...) that also carries a Docker-style manifest.json, so that
// containerd's importer (`ctr images import`, the agent's ImportArchive) and
// `docker load` both accept it and name the image with its tag. The output is
// deterministic: the same binary, tag and options give byte-identical archives
// and so the same image digest.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// annotationImageName is the index annotation containerd reads first to name
// an imported image (images.AnnotationImageName in containerd). It is spelled
// out here because only agent/containerd may import containerd.
const annotationImageName = "io.containerd.image.name"

// epoch is the modification time of every file in the archive and its layer:
// fixed so that the output depends only on the inputs.
var epoch = time.Unix(0, 0).UTC()

// BuildOptions says what goes into an image built from a binary.
type BuildOptions struct {
	// Binary is the host path of a static executable. It is stored at
	// /<base name of Binary> in the image.
	Binary string
	// Tag names the image, e.g. "web:1"; it is normalized like containerd
	// does (docker.io/library/web:1).
	Tag string
	// Entrypoint overrides the image's ENTRYPOINT; empty means
	// ["/<base name of Binary>"].
	Entrypoint []string
	// Cmd is the image's CMD (the default arguments), may be empty.
	Cmd []string
	// Env is added to the image's environment after PATH.
	Env []string
	// StopSignal is the image's STOPSIGNAL (e.g. "SIGINT"); empty means
	// the runtime's default, SIGTERM.
	StopSignal string
	// ExtraFiles maps absolute paths in the image to host files copied there
	// (mode preserved, owner root). Parent directories are created.
	ExtraFiles map[string]string
}

// NormalizeName returns the full name containerd gives a reference:
// "web:1" → "docker.io/library/web:1", "web" → "docker.io/library/web:latest".
func NormalizeName(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", ref, err)
	}
	return reference.TagNameOnly(named).String(), nil
}

// BuildFromBinary writes an OCI image-layout tar to w holding one gzip layer
// with the binary, a root-only /etc/passwd and /etc/group, a world-writable
// /tmp and the extra files. It returns the normalized image name.
func BuildFromBinary(w io.Writer, opts BuildOptions) (string, error) {
	if opts.Binary == "" {
		return "", errors.New("build image: no binary given")
	}
	name, err := NormalizeName(opts.Tag)
	if err != nil {
		return "", fmt.Errorf("build image: %w", err)
	}
	named, _ := reference.ParseNormalizedNamed(name)
	tagged, ok := named.(reference.Tagged)
	if !ok {
		return "", fmt.Errorf("build image %s: the name needs a tag, not a digest", opts.Tag)
	}

	layer, diffID, err := buildLayer(opts)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", name, err)
	}
	layerDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.FromBytes(layer),
		Size:      int64(len(layer)),
	}

	entrypoint := opts.Entrypoint
	if len(entrypoint) == 0 {
		entrypoint = []string{"/" + filepath.Base(opts.Binary)}
	}
	config := ocispec.Image{
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config: ocispec.ImageConfig{
			Env:        append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, opts.Env...),
			Entrypoint: entrypoint,
			Cmd:        opts.Cmd,
			WorkingDir: "/",
			StopSignal: opts.StopSignal,
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
	}
	configBytes, err := json.Marshal(config)
	if err != nil {
		return "", fmt.Errorf("build image %s: encode config: %w", name, err)
	}
	configDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageConfig,
		Digest:    digest.FromBytes(configBytes),
		Size:      int64(len(configBytes)),
	}

	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    configDesc,
		Layers:    []ocispec.Descriptor{layerDesc},
	}
	manifestBytes, err := json.Marshal(manifest)
	if err != nil {
		return "", fmt.Errorf("build image %s: encode manifest: %w", name, err)
	}
	manifestDesc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(manifestBytes),
		Size:      int64(len(manifestBytes)),
		Platform:  &ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Annotations: map[string]string{
			// containerd names the image from this one...
			annotationImageName: name,
			// ...and OCI tools from this one, which holds the tag only,
			// as containerd's exporter writes it.
			ocispec.AnnotationRefName: tagged.Tag(),
		},
	}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{manifestDesc},
	}
	indexBytes, err := json.Marshal(index)
	if err != nil {
		return "", fmt.Errorf("build image %s: encode index: %w", name, err)
	}
	layoutBytes, err := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err != nil {
		return "", fmt.Errorf("build image %s: encode layout: %w", name, err)
	}
	// Docker's manifest.json, ignored by containerd when oci-layout exists.
	dockerManifest, err := json.Marshal([]struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{
		Config:   blobPath(configDesc.Digest),
		RepoTags: []string{reference.FamiliarString(named)},
		Layers:   []string{blobPath(layerDesc.Digest)},
	}})
	if err != nil {
		return "", fmt.Errorf("build image %s: encode docker manifest: %w", name, err)
	}

	tw := tar.NewWriter(w)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(dirHeader(dir, 0o755)); err != nil {
			return "", fmt.Errorf("build image %s: %w", name, err)
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{ocispec.ImageLayoutFile, layoutBytes},
		{blobPath(layerDesc.Digest), layer},
		{blobPath(configDesc.Digest), configBytes},
		{blobPath(manifestDesc.Digest), manifestBytes},
		{"index.json", indexBytes},
		{"manifest.json", dockerManifest},
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return "", fmt.Errorf("build image %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return "", fmt.Errorf("build image %s: %w", name, err)
	}
	return name, nil
}

// BuildFile is BuildFromBinary into a file at path (written to a temporary
// file and renamed, so a reader never sees half an archive).
func BuildFile(path string, opts BuildOptions) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".image-*.tar")
	if err != nil {
		return "", fmt.Errorf("build image into %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	name, err := BuildFromBinary(tmp, opts)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("build image into %s: %w", path, err)
	}
	return name, nil
}

func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

// buildLayer returns the gzip-compressed layer and the digest of its
// uncompressed tar (the diff ID).
func buildLayer(opts BuildOptions) ([]byte, digest.Digest, error) {
	type entry struct {
		mode   int64
		data   []byte
		isDir  bool
		source string
	}
	entries := map[string]entry{
		"etc/":       {mode: 0o755, isDir: true},
		"tmp/":       {mode: 0o1777, isDir: true},
		"etc/passwd": {mode: 0o644, data: []byte("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		"etc/group":  {mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
	}
	addParents := func(p string) {
		for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := entries[dir+"/"]; !ok {
				entries[dir+"/"] = entry{mode: 0o755, isDir: true}
			}
		}
	}
	add := func(imagePath, source string) error {
		clean := strings.TrimPrefix(path.Clean("/"+imagePath), "/")
		if clean == "" {
			return fmt.Errorf("bad image path %q", imagePath)
		}
		fi, err := os.Stat(source)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a regular file", source)
		}
		addParents(clean)
		entries[clean] = entry{mode: int64(fi.Mode().Perm()), source: source}
		return nil
	}
	if err := add(filepath.Base(opts.Binary), opts.Binary); err != nil {
		return nil, "", err
	}
	for imagePath, source := range opts.ExtraFiles {
		if err := add(imagePath, source); err != nil {
			return nil, "", err
		}
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)

	var compressed bytes.Buffer
	gz, err := gzip.NewWriterLevel(&compressed, gzip.BestCompression)
	if err != nil {
		return nil, "", err
	}
	diff := sha256.New()
	tw := tar.NewWriter(io.MultiWriter(gz, diff))
	for _, n := range names {
		e := entries[n]
		if e.isDir {
			if err := tw.WriteHeader(dirHeader(n, e.mode)); err != nil {
				return nil, "", err
			}
			continue
		}
		data := e.data
		if e.source != "" {
			if data, err = os.ReadFile(e.source); err != nil {
				return nil, "", err
			}
		}
		if err := writeFile(tw, n, e.mode, data); err != nil {
			return nil, "", err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	if err := gz.Close(); err != nil {
		return nil, "", err
	}
	return compressed.Bytes(), digest.NewDigest(digest.SHA256, diff), nil
}

func dirHeader(name string, mode int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeDir,
		Name:     name,
		Mode:     mode,
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Mode:     mode,
		Size:     int64(len(data)),
		ModTime:  epoch,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
