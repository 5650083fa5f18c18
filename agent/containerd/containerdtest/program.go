package containerdtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/image"
)

var (
	programsMu sync.Mutex
	programs   = map[string]string{}
)

// BuildProgram builds the main package in srcDir as a static binary
// (CGO_ENABLED=0) and returns its path. Builds are kept under the
// temporary directory, named by a hash of the package's Go files and the
// Go version, so test runs share them.
func BuildProgram(t testing.TB, srcDir string) string {
	t.Helper()
	programsMu.Lock()
	defer programsMu.Unlock()
	if p, ok := programs[srcDir]; ok {
		return p
	}
	files, err := filepath.Glob(filepath.Join(srcDir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("build %s: no Go files (%v)", srcDir, err)
	}
	sort.Strings(files)
	h := sha256.New()
	h.Write([]byte(runtime.Version()))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write([]byte(filepath.Base(f)))
		h.Write(b)
	}
	name := filepath.Base(srcDir)
	dir := filepath.Join(os.TempDir(), "stead-prog-"+name+"-"+hex.EncodeToString(h.Sum(nil)[:8]))
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Built aside and renamed, so concurrent test binaries never see
		// half a file.
		tmp := filepath.Join(dir, fmt.Sprintf(".%s-%d", name, os.Getpid()))
		cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, ".")
		cmd.Dir = srcDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("build %s: %v: %s", srcDir, err, out.String())
		}
		if err := os.Rename(tmp, bin); err != nil {
			t.Fatal(err)
		}
	}
	programs[srcDir] = bin
	return bin
}

// ProgramImage builds srcDir's program into an image tagged tag (its
// entrypoint the program, its default arguments cmd) and imports it into
// rt, returning the image's full name.
func ProgramImage(t testing.TB, rt *containerd.Runtime, srcDir, tag string, cmd ...string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := image.BuildFromBinary(&buf, image.BuildOptions{Binary: BuildProgram(t, srcDir), Tag: tag, Cmd: cmd}); err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := rt.ImportArchive(ctx, &buf)
	if err != nil || len(names) != 1 {
		t.Fatalf("import image %s: %v %v", tag, names, err)
	}
	return names[0]
}
