package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestNormalizeName(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"web:1", "docker.io/library/web:1", ""},
		{"web", "docker.io/library/web:latest", ""},
		{"stead/demo:2", "docker.io/stead/demo:2", ""},
		{"registry.local:5000/a/b:c", "registry.local:5000/a/b:c", ""},
		{"Web:1", "", "must be lowercase"},
		{"", "", "invalid"},
	}
	for _, tc := range cases {
		got, err := NormalizeName(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("NormalizeName(%q) = %q, %v; want error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// fakeBinary writes a file standing in for a static binary.
func fakeBinary(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func readTar(t *testing.T, r io.Reader) (map[string][]byte, map[string]*tar.Header, []string) {
	t.Helper()
	files := map[string][]byte{}
	hdrs := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files, hdrs, order
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
		hdrs[h.Name] = h
		order = append(order, h.Name)
	}
}

func TestBuildFromBinary(t *testing.T) {
	bin := fakeBinary(t, "app", "#!not really an ELF\n")
	extra := fakeBinary(t, "conf", "key=value\n")
	var buf bytes.Buffer
	name, err := BuildFromBinary(&buf, BuildOptions{Binary: bin, Tag: "web:1", Cmd: []string{"serve"}, StopSignal: "SIGINT", ExtraFiles: map[string]string{"/etc/app/app.conf": extra}})
	if err != nil {
		t.Fatal(err)
	}
	if name != "docker.io/library/web:1" {
		t.Fatalf("name = %q", name)
	}
	files, _, order := readTar(t, &buf)

	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %s", files["oci-layout"])
	}
	var idx ocispec.Index
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(idx.Manifests))
	}
	md := idx.Manifests[0]
	if md.Annotations["io.containerd.image.name"] != "docker.io/library/web:1" || md.Annotations[ocispec.AnnotationRefName] != "1" {
		t.Errorf("index annotations = %v", md.Annotations)
	}
	blob := func(d ocispec.Descriptor) []byte {
		b, ok := files["blobs/sha256/"+d.Digest.Encoded()]
		if !ok {
			t.Fatalf("blob %s missing; archive has %v", d.Digest, order)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != d.Digest.Encoded() || int64(len(b)) != d.Size {
			t.Fatalf("blob %s does not match its descriptor", d.Digest)
		}
		return b
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blob(md), &m); err != nil {
		t.Fatal(err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(blob(m.Config), &cfg); err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Config.Entrypoint, " ") != "/app" || strings.Join(cfg.Config.Cmd, " ") != "serve" || cfg.OS != "linux" || cfg.Config.StopSignal != "SIGINT" {
		t.Errorf("config = %+v", cfg)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Fatalf("layers = %+v", m.Layers)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(m.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(zr)
	diff := sha256.Sum256(raw)
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0].Encoded() != hex.EncodeToString(diff[:]) {
		t.Errorf("diff IDs %v do not match the layer", cfg.RootFS.DiffIDs)
	}
	layer, hdrs, layerOrder := readTar(t, bytes.NewReader(raw))
	wantOrder := []string{"app", "etc/", "etc/app/", "etc/app/app.conf", "etc/group", "etc/passwd", "tmp/"}
	if strings.Join(layerOrder, " ") != strings.Join(wantOrder, " ") {
		t.Errorf("layer entries = %v, want %v", layerOrder, wantOrder)
	}
	if string(layer["app"]) != "#!not really an ELF\n" || hdrs["app"].Mode != 0o755 {
		t.Errorf("binary: mode %o content %q", hdrs["app"].Mode, layer["app"])
	}
	if string(layer["etc/app/app.conf"]) != "key=value\n" {
		t.Errorf("extra file = %q", layer["etc/app/app.conf"])
	}
	if !strings.HasPrefix(string(layer["etc/passwd"]), "root:x:0:0:") {
		t.Errorf("passwd = %q", layer["etc/passwd"])
	}
	if hdrs["tmp/"].Mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", hdrs["tmp/"].Mode)
	}
	for n, h := range hdrs {
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %s owner %d:%d; want the epoch and root", n, h.ModTime, h.Uid, h.Gid)
		}
	}

	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(files["manifest.json"], &docker); err != nil {
		t.Fatal(err)
	}
	if len(docker) != 1 || strings.Join(docker[0].RepoTags, ",") != "web:1" ||
		docker[0].Config != "blobs/sha256/"+m.Config.Digest.Encoded() ||
		strings.Join(docker[0].Layers, ",") != "blobs/sha256/"+m.Layers[0].Digest.Encoded() {
		t.Errorf("manifest.json = %+v", docker)
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	bin := fakeBinary(t, "app", "same bytes")
	build := func(tag, content string) []byte {
		if content != "" {
			os.WriteFile(bin, []byte(content), 0o755)
		}
		var buf bytes.Buffer
		if _, err := BuildFromBinary(&buf, BuildOptions{Binary: bin, Tag: tag}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a := build("web:1", "")
	// A different modification time of the binary changes nothing.
	os.Chtimes(bin, epoch, epoch)
	if b := build("web:1", ""); !bytes.Equal(a, b) {
		t.Fatal("two builds of the same binary differ")
	}
	if c := build("web:1", "other bytes"); bytes.Equal(a, c) {
		t.Fatal("a different binary gave the same archive")
	}
}

func TestBuildErrors(t *testing.T) {
	bin := fakeBinary(t, "app", "x")
	cases := []struct {
		name string
		opts BuildOptions
		want string
	}{
		{"no binary", BuildOptions{Tag: "web:1"}, "no binary"},
		{"missing binary", BuildOptions{Binary: "/nonexistent/app", Tag: "web:1"}, "no such file"},
		{"bad tag", BuildOptions{Binary: bin, Tag: "Web:1"}, "lowercase"},
		{"digest instead of tag", BuildOptions{Binary: bin, Tag: "web@sha256:" + strings.Repeat("a", 64)}, "needs a tag"},
		{"directory as extra file", BuildOptions{Binary: bin, Tag: "web:1", ExtraFiles: map[string]string{"/x": t.TempDir()}}, "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildFromBinary(io.Discard, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestBuildFile(t *testing.T) {
	bin := fakeBinary(t, "app", "x")
	dir := t.TempDir()
	p := filepath.Join(dir, "web.tar")
	if _, err := BuildFile(p, BuildOptions{Binary: bin, Tag: "web:1"}); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "web.tar" {
		t.Fatalf("directory holds %v, want only web.tar", names)
	}
	f, _ := os.Open(p)
	defer f.Close()
	files, _, _ := readTar(t, f)
	if _, ok := files["index.json"]; !ok {
		t.Fatal("no index.json in the file")
	}
}
