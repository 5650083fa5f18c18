package containerd_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/agent/containerd"
)

// waitFor polls cond until it holds or timeout passes; then it fails the
// test with cond's last explanation.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting %s for %s: %s", timeout, what, why)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run creates and starts a container from spec (its log in a temp dir when
// spec.LogPath is empty) and deletes it at the end of the test.
func run(t *testing.T, rt *containerd.Runtime, spec containerd.ContainerSpec) containerd.ContainerSpec {
	t.Helper()
	if spec.LogPath == "" {
		spec.LogPath = filepath.Join(t.TempDir(), spec.ID+".log")
	}
	ctx := context.Background()
	if err := rt.Create(ctx, spec); err != nil {
		t.Fatalf("create %s: %v", spec.ID, err)
	}
	t.Cleanup(func() {
		if err := rt.Delete(context.Background(), spec.ID); err != nil {
			t.Errorf("delete %s: %v", spec.ID, err)
		}
	})
	if err := rt.Start(ctx, spec.ID); err != nil {
		t.Fatalf("start %s: %v", spec.ID, err)
	}
	return spec
}

// waitLog waits until the log at path contains want and returns the log.
func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	var log string
	waitFor(t, 10*time.Second, fmt.Sprintf("%q in %s", want, path), func() (bool, string) {
		b, _ := os.ReadFile(path)
		log = string(b)
		return strings.Contains(log, want), "log is:\n" + log
	})
	return log
}

// get fetches url and returns the body; a non-200 answer is an error.
func get(url string) (string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b), err
}

// waitGet waits until url answers 200 and returns the body.
func waitGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	waitFor(t, 10*time.Second, "GET "+url, func() (bool, string) {
		var err error
		body, err = get(url)
		return err == nil, fmt.Sprint(err)
	})
	return body
}

// dockerOnly turns an archive from image.BuildFromBinary into a plain
// Docker archive: no oci-layout or index.json, manifest.json retagged from
// oldTag to newTag.
func dockerOnly(t *testing.T, archive []byte, oldTag, newTag string) []byte {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(archive))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "oci-layout" || hdr.Name == "index.json" {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Name == "manifest.json" {
			data = bytes.ReplaceAll(data, []byte(`"`+oldTag+`"`), []byte(`"`+newTag+`"`))
			hdr.Size = int64(len(data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}
