package volumes

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestFenceMarkerDecode(t *testing.T) {
	good := encodeFence(42, "a1")
	if m, err := decodeFence(good); err != nil || m.Generation != 42 || m.Node != "a1" {
		t.Fatalf("decode(%s) = %+v, %v", good, m, err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"generation altered", bytes.Replace(good, []byte(`"generation":42`), []byte(`"generation":43`), 1)},
		{"node altered", bytes.Replace(good, []byte(`"a1"`), []byte(`"a2"`), 1)},
		{"checksum altered", bytes.Replace(good, []byte(`"sha256":"`), []byte(`"sha256":"0`), 1)},
		{"torn", good[:len(good)/2]},
		{"empty", nil},
		{"unknown field", []byte(`{"generation":1,"node":"a","sha256":"x","extra":1}`)},
		{"no checksum", []byte(`{"generation":1,"node":"a"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeFence(tt.data); !errors.Is(err, ErrFenceCorrupt) {
				t.Errorf("decode(%q) error = %v, want ErrFenceCorrupt", tt.data, err)
			}
		})
	}
}

// localVolume returns a local-class volume whose Manager directory is
// under dir.
func localVolume(name, uid string) Volume {
	return Volume{Namespace: "default", Name: name, UID: uid, Class: Class{Name: "fast", Driver: DriverLocal}}
}

func TestAttachRefusesStaleGeneration(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := localVolume("www-web-0", "uid-0")
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, v, 5); err != nil {
		t.Fatal(err)
	}
	_, err := m.Attach(ctx, v, 3)
	if !errors.Is(err, ErrStaleGeneration) {
		t.Fatalf("Attach(gen 3) after gen 5: %v, want ErrStaleGeneration", err)
	}
	var se *StaleGenerationError
	if !errors.As(err, &se) || *se != (StaleGenerationError{Volume: "default/www-web-0", Gen: 3, MarkerGen: 5}) {
		t.Fatalf("error = %#v, want StaleGenerationError{default/www-web-0, 3, 5}", se)
	}
	want := "volume default/www-web-0: attach refused: generation 3 is stale, the fence marker holds generation 5"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	// The refused attach changed nothing: the marker and the attachment
	// are gen 5's.
	if gen, err := ReadFence(m.ControlDir(v)); err != nil || gen != 5 {
		t.Errorf("marker = %d, %v; want 5", gen, err)
	}
	as, _ := m.Attachments()
	if len(as) != 1 || as[0].Gen != 5 {
		t.Errorf("attachments = %+v, want gen 5 only", as)
	}
	// The same and a higher generation attach.
	if _, err := m.Attach(ctx, v, 5); err != nil {
		t.Errorf("Attach(gen 5) again: %v", err)
	}
	if _, err := m.Attach(ctx, v, 8); err != nil {
		t.Errorf("Attach(gen 8): %v", err)
	}
	if gen, _ := ReadFence(m.ControlDir(v)); gen != 8 {
		t.Errorf("marker = %d, want 8", gen)
	}
	// Fence raises without attaching and never lowers.
	if err := m.Fence(ctx, v, 6); err != nil {
		t.Errorf("Fence(6) below the marker: %v", err)
	}
	if err := m.Fence(ctx, v, 11); err != nil {
		t.Fatal(err)
	}
	if gen, _ := ReadFence(m.ControlDir(v)); gen != 11 {
		t.Errorf("marker = %d, want 11", gen)
	}
	if _, err := m.Attach(ctx, v, 9); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("Attach(gen 9) after Fence(11): %v, want ErrStaleGeneration", err)
	}
}

// TestFenceSurvivesCrashBeforeRename: a crash after the new marker was
// written to its temporary file but before the rename leaves the old
// marker in force; the next raise cleans the leftover up.
func TestFenceSurvivesCrashBeforeRename(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := localVolume("www-web-0", "uid-0")
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, v, 5); err != nil {
		t.Fatal(err)
	}
	crash := errors.New("simulated crash")
	testHookBeforeFenceRename = func() error { return crash }
	_, err := m.Attach(ctx, v, 9)
	testHookBeforeFenceRename = nil
	if !errors.Is(err, crash) {
		t.Fatalf("Attach(gen 9) with a crash before rename: %v", err)
	}
	if gen, err := ReadFence(m.ControlDir(v)); err != nil || gen != 5 {
		t.Fatalf("marker after crash = %d, %v; want 5, valid", gen, err)
	}
	if temps := fenceTemps(t, m.ControlDir(v)); len(temps) != 1 {
		t.Fatalf("temporary markers after crash = %v, want the one the crash left", temps)
	}
	if _, err := m.Attach(ctx, v, 3); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("Attach(gen 3) after crash: %v, want ErrStaleGeneration from marker 5", err)
	}
	if _, err := m.Attach(ctx, v, 9); err != nil {
		t.Fatal(err)
	}
	if gen, _ := ReadFence(m.ControlDir(v)); gen != 9 {
		t.Errorf("marker = %d, want 9", gen)
	}
	if temps := fenceTemps(t, m.ControlDir(v)); len(temps) != 0 {
		t.Errorf("temporary markers left: %v", temps)
	}
}

func fenceTemps(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, fenceTmp+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestAttachRefusesCorruptMarker(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	for _, tt := range []struct {
		name    string
		corrupt func(path string) error
		want    string
	}{
		{"bit flip", func(p string) error {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(p, bytes.Replace(data, []byte(`"generation":5`), []byte(`"generation":1`), 1), 0o644)
		}, "does not match its content"},
		{"missing", os.Remove, "the marker is missing"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := localVolume("www-web-0", "uid-"+strings.ReplaceAll(tt.name, " ", "-"))
			if err := m.Create(ctx, v); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Attach(ctx, v, 5); err != nil {
				t.Fatal(err)
			}
			if err := m.Detach(ctx, v); err != nil {
				t.Fatal(err)
			}
			if err := tt.corrupt(filepath.Join(m.ControlDir(v), fenceFile)); err != nil {
				t.Fatal(err)
			}
			_, err := m.Attach(ctx, v, 7)
			if !errors.Is(err, ErrFenceCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Attach with a %s marker: %v, want ErrFenceCorrupt saying %q", tt.name, err, tt.want)
			}
			if as, _ := m.Attachments(); len(as) != 0 {
				t.Errorf("attachments after refusal = %+v, want none", as)
			}
		})
	}
}

// TestFenceLockWaitsForWriter: an attach that raises the marker waits for
// a writer holding the lock shared, so no write checked against the old
// marker can land after the new one.
func TestFenceLockWaitsForWriter(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := localVolume("www-web-0", "uid-0")
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	unlock, err := LockShared(ctx, m.ControlDir(v))
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = m.Attach(short, v, 5)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "held by a writer") {
		t.Fatalf("Attach while a writer holds the lock: %v, want a lock timeout", err)
	}
	if gen, _ := ReadFence(m.ControlDir(v)); gen != 0 {
		t.Fatalf("marker = %d, want 0 (unchanged)", gen)
	}
	unlock()
	if _, err := m.Attach(ctx, v, 5); err != nil {
		t.Fatal(err)
	}
}

// TestFenceFullDisk (T12): with the volume's filesystem full, raising the
// marker fails and the old marker stays valid; once there is room it
// succeeds.
func TestFenceFullDisk(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	root := mountTmpfs(t, dir, "shared", 4<<20)
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := Volume{Namespace: "default", Name: "www-web-0", UID: "uid-0", Class: Class{Name: "nfs", Driver: DriverShared, Root: root, Shared: true}}
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, v, 5); err != nil {
		t.Fatal(err)
	}
	ballast := filepath.Join(root, "ballast")
	fill(t, ballast)
	_, err := m.Attach(ctx, v, 9)
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("Attach(gen 9) on a full disk: %v, want ENOSPC", err)
	}
	if gen, err := ReadFence(m.ControlDir(v)); err != nil || gen != 5 {
		t.Fatalf("marker on a full disk = %d, %v; want 5, valid", gen, err)
	}
	if temps := fenceTemps(t, m.ControlDir(v)); len(temps) != 0 {
		t.Errorf("temporary markers left: %v", temps)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach(ctx, v, 9); err != nil {
		t.Fatalf("Attach(gen 9) with room again: %v", err)
	}
	if gen, _ := ReadFence(m.ControlDir(v)); gen != 9 {
		t.Errorf("marker = %d, want 9", gen)
	}
}

// fill writes path until its filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// Also take the last partial page.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
}

// TestConcurrentAttachNeverRegresses: two nodes attach one shared volume
// concurrently with generations in a random order. The marker ends at the
// highest generation, every refusal names a marker above its generation,
// and the journal shows no mount accepted below an earlier fence.
func TestConcurrentAttachNeverRegresses(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	dir := t.TempDir()
	root := filepath.Join(dir, "nfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	nodes := []*Manager{newManager(t, dir, "a1"), newManager(t, dir, "a2")}
	ctx := ctxT(t)
	v := Volume{Namespace: "default", Name: "www-web-0", UID: "uid-0", Class: Class{Name: "nfs", Driver: DriverShared, Root: root, Shared: true}}
	if err := nodes[0].Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	const n = 40
	gens := rng.Perm(n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = nodes[i%2].Attach(ctx, v, uint64(g+1))
		}()
	}
	wg.Wait()
	accepted := 0
	for i, err := range errs {
		gen := uint64(gens[i] + 1)
		var se *StaleGenerationError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &se):
			if se.Gen != gen || se.MarkerGen <= gen {
				t.Errorf("gen %d refused with %+v", gen, se)
			}
		default:
			t.Errorf("gen %d: %v", gen, err)
		}
	}
	if gen, err := ReadFence(nodes[0].ControlDir(v)); err != nil || gen != n {
		t.Errorf("marker = %d, %v; want %d", gen, err, n)
	}
	data, err := os.ReadFile(filepath.Join(nodes[0].ControlDir(v), journalFile))
	if err != nil {
		t.Fatal(err)
	}
	if vs := CheckJournal(bytes.NewReader(data)); len(vs) > 0 {
		t.Errorf("journal violations: %v", violationStrings(vs))
	}
	if mounts := bytes.Count(data, []byte(`"kind":"mount"`)); mounts != accepted {
		t.Errorf("%d mount records for %d accepted attaches", mounts, accepted)
	}
	t.Logf("%d of %d attaches accepted", accepted, n)
}
