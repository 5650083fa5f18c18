package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// journalKinds reads a volume's journal as "kind:gen@node" strings and
// checks it with CheckJournal.
func journalKinds(t *testing.T, m *Manager, v Volume) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(m.ControlDir(v), journalFile))
	if err != nil {
		t.Fatal(err)
	}
	if vs := CheckJournal(strings.NewReader(string(data))); len(vs) > 0 {
		t.Errorf("journal violations: %v", violationStrings(vs))
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		if r.Ord != 0 {
			t.Errorf("record %s: ord %d, want 0 (www-web-0)", l, r.Ord)
		}
		out = append(out, string(r.Kind)+":"+formatInt(r.Gen)+"@"+r.Node)
	}
	return out
}

func formatInt(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestDirectoryDrivers: create, attach, detach and delete a local and a
// shared volume, and what each leaves on disk.
func TestDirectoryDrivers(t *testing.T) {
	dir := t.TempDir()
	for _, class := range []Class{
		{Name: "fast", Driver: DriverLocal},
		{Name: "nfs", Driver: DriverShared, Root: filepath.Join(dir, "nfs"), Shared: true},
	} {
		t.Run(string(class.Driver), func(t *testing.T) {
			if class.Shared {
				if err := os.Mkdir(class.Root, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			m := newManager(t, dir, "a1-"+string(class.Driver))
			ctx := ctxT(t)
			v := Volume{Namespace: "default", Name: "www-web-0", UID: "3f1c2a4e", Class: class, Size: 1 << 30}
			if err := m.Create(ctx, v); err != nil {
				t.Fatal(err)
			}
			wantDir := filepath.Join(class.Root, v.UID)
			if class.Root == "" {
				wantDir = filepath.Join(m.dir, "local", "fast", v.UID)
			}
			if m.VolumeDir(v) != wantDir {
				t.Errorf("VolumeDir = %s, want %s", m.VolumeDir(v), wantDir)
			}
			var md meta
			data, err := os.ReadFile(filepath.Join(wantDir, "meta.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &md); err != nil {
				t.Fatal(err)
			}
			if md != (meta{"default", "www-web-0", "3f1c2a4e", class.Name, class.Driver, 1 << 30}) {
				t.Errorf("meta.json = %+v", md)
			}
			if gen, err := ReadFence(m.ControlDir(v)); err != nil || gen != 0 {
				t.Errorf("new marker = %d, %v; want 0", gen, err)
			}

			hostPath, err := m.Attach(ctx, v, 5)
			if err != nil {
				t.Fatal(err)
			}
			if want := filepath.Join(wantDir, "data"); hostPath != want {
				t.Errorf("Attach = %s, want %s", hostPath, want)
			}
			if err := os.WriteFile(filepath.Join(hostPath, "hostname"), []byte("web-0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Create again changes nothing.
			if err := m.Create(ctx, v); err != nil {
				t.Fatal(err)
			}
			if data, err := os.ReadFile(filepath.Join(hostPath, "hostname")); err != nil || string(data) != "web-0\n" {
				t.Errorf("data after a second Create: %q, %v", data, err)
			}
			as, err := m.Attachments()
			if err != nil || len(as) != 1 || as[0].Gen != 5 || as[0].HostPath != hostPath || as[0].Volume.UID != v.UID {
				t.Errorf("Attachments = %+v, %v", as, err)
			}
			err = m.Delete(ctx, v)
			if !errors.Is(err, ErrAttached) || err.Error() != "delete volume default/www-web-0: volume is attached on node "+m.node+" (generation 5): detach it first" {
				t.Errorf("Delete while attached: %v", err)
			}
			if err := m.Detach(ctx, v); err != nil {
				t.Fatal(err)
			}
			if err := m.Detach(ctx, v); err != nil {
				t.Errorf("second Detach: %v", err)
			}
			if as, _ := m.Attachments(); len(as) != 0 {
				t.Errorf("Attachments after Detach = %+v", as)
			}
			want := []string{"fence:5@" + m.node, "mount:5@" + m.node, "unmount:5@" + m.node}
			if got := journalKinds(t, m, v); !reflect.DeepEqual(got, want) {
				t.Errorf("journal = %v, want %v", got, want)
			}
			if err := m.Delete(ctx, v); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(wantDir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("volume directory after Delete: %v", err)
			}
			if err := m.Delete(ctx, v); err != nil {
				t.Errorf("second Delete: %v", err)
			}
			if _, err := m.Attach(ctx, v, 6); !errors.Is(err, ErrNotFound) {
				t.Errorf("Attach after Delete: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestSharedVolumeFollowsOrdinal: two nodes see one shared root; the
// volume moves from a1 to a2 with its data, and a1 can no longer attach
// with its old generation.
func TestSharedVolumeFollowsOrdinal(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "nfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	a1, a2 := newManager(t, dir, "a1"), newManager(t, dir, "a2")
	ctx := ctxT(t)
	v := Volume{Namespace: "default", Name: "www-web-0", UID: "uid-0", Class: Class{Name: "nfs", Driver: DriverShared, Root: root, Shared: true}}
	if err := a1.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	p1, err := a1.Attach(ctx, v, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p1, "state"), []byte("from a1"), 0o644); err != nil {
		t.Fatal(err)
	}
	// a1 is lost without detaching; a2 gets the ordinal at gen 7.
	p2, err := a2.Attach(ctx, v, 7)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(p2, "state")); err != nil || string(data) != "from a1" {
		t.Errorf("a2 reads %q, %v; want a1's data", data, err)
	}
	if _, err := a1.Attach(ctx, v, 5); !errors.Is(err, ErrStaleGeneration) {
		t.Errorf("a1 re-attaching gen 5: %v, want ErrStaleGeneration", err)
	}
	want := []string{"fence:5@a1", "mount:5@a1", "fence:7@a2", "mount:7@a2"}
	if got := journalKinds(t, a2, v); !reflect.DeepEqual(got, want) {
		t.Errorf("journal = %v, want %v", got, want)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	nfs := filepath.Join(dir, "nfs")
	if err := os.Mkdir(nfs, 0o755); err != nil {
		t.Fatal(err)
	}
	local := Class{Name: "fast", Driver: DriverLocal}
	tests := []struct {
		name    string
		v       Volume
		want    error
		wantMsg string
	}{
		{
			name:    "uid escapes the root",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "../../etc", Class: Class{Name: "nfs", Driver: DriverShared, Root: nfs}},
			want:    ErrInvalidVolume,
			wantMsg: `volume default/www-web-0: invalid volume: uid "../../etc" is not an opaque identifier (letters, digits, '.', '_', '-', starting with a letter or digit): it could name a path outside the class root`,
		},
		{
			name:    "uid is a path",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "a/b", Class: local},
			want:    ErrInvalidVolume,
			wantMsg: `volume default/www-web-0: invalid volume: uid "a/b" is not an opaque identifier`,
		},
		{
			name:    "negative size",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "u1", Class: local, Size: -1},
			want:    ErrInvalidVolume,
			wantMsg: "volume default/www-web-0: invalid volume: size -1 is negative",
		},
		{
			name:    "image too small",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "u2", Class: Class{Name: "disk", Driver: DriverImage, Root: nfs}, Size: 1 << 20},
			want:    ErrInvalidVolume,
			wantMsg: `volume default/www-web-0: invalid volume: class "disk" keeps ext4 images of at least 4 MiB; 1 MiB requested`,
		},
		{
			name:    "unknown driver",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "u3", Class: Class{Name: "odd", Driver: "zfs", Root: nfs}},
			want:    ErrInvalidVolume,
			wantMsg: `volume default/www-web-0: invalid volume: storage class "odd": driver: "zfs" is not a driver (want local, shared or image)`,
		},
		{
			name:    "shared root not mounted",
			v:       Volume{Namespace: "default", Name: "www-web-0", UID: "u4", Class: Class{Name: "nfs", Driver: DriverShared, Root: filepath.Join(dir, "unmounted"), Shared: true}},
			wantMsg: `volume default/www-web-0: class "nfs" root ` + filepath.Join(dir, "unmounted") + ` does not exist: is the network filesystem mounted?`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tree(t, dir)
			err := m.Create(ctx, tt.v)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) || !strings.HasPrefix(err.Error(), tt.wantMsg) {
				t.Fatalf("Create: %v\nwant %v: %s", err, tt.want, tt.wantMsg)
			}
			if after := tree(t, dir); !reflect.DeepEqual(before, after) {
				t.Errorf("Create made %v", diff(before, after))
			}
		})
	}
	v := localVolume("www-web-1", "never-created")
	if _, err := m.Attach(ctx, v, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Attach before Create: %v, want ErrNotFound", err)
	}
}

// tree lists every path under dir.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diff(before, after []string) []string {
	seen := map[string]bool{}
	for _, p := range before {
		seen[p] = true
	}
	var out []string
	for _, p := range after {
		if !seen[p] {
			out = append(out, p)
		}
	}
	return out
}

// TestDeleteDoesNotFollowSymlinks: a symlink that a workload planted in
// its volume is removed, not what it points to.
func TestDeleteDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	outside := filepath.Join(dir, "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	sentinel := filepath.Join(outside, "sentinel")
	if err := os.WriteFile(sentinel, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := localVolume("www-web-0", "uid-0")
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	p, err := m.Attach(ctx, v, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range []string{"dir-link", "file-link"} {
		target := outside
		if link == "file-link" {
			target = sentinel
		}
		if err := os.Symlink(target, filepath.Join(p, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(sentinel); err != nil || string(data) != "keep" {
		t.Errorf("sentinel outside the volume after Delete: %q, %v", data, err)
	}
}

func imageVolume(root string, size int64) Volume {
	return Volume{Namespace: "default", Name: "www-web-0", UID: "uid-img", Class: Class{Name: "disk", Driver: DriverImage, Root: root}, Size: size}
}

// TestImageVolume: an image volume is a real ext4 filesystem of the
// requested size on a loop device, grows online and offline, and leaves
// no mount and no loop device behind.
func TestImageVolume(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	root := filepath.Join(dir, "images")
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(root, 32<<20)
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(root, v.UID, "disk.img")
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 32<<20 || st.Blocks*512 > 8<<20 {
		t.Errorf("image is %d bytes with %d allocated, want 32 MiB, sparse", st.Size, st.Blocks*512)
	}
	if n, err := m.Size(v); err != nil || n != 32<<20 {
		t.Errorf("Size = %d, %v; want 32 MiB", n, err)
	}

	mp, err := m.Attach(ctx, v, 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(m.dir, "mounts", v.UID); mp != want {
		t.Errorf("Attach = %s, want %s", mp, want)
	}
	ent, ok, err := mountAt(mp)
	if err != nil || !ok || ent.FSType != "ext4" || !strings.HasPrefix(ent.Source, "/dev/loop") {
		t.Fatalf("mount at %s = %+v, %v, %v; want ext4 from a loop device", mp, ent, ok, err)
	}
	if got := loopBackingFiles(t)[ent.Source]; got != img {
		t.Errorf("%s backing file = %q, want %s", ent.Source, got, img)
	}
	// Attaching again reuses the mount.
	if mp2, err := m.Attach(ctx, v, 1); err != nil || mp2 != mp {
		t.Errorf("second Attach = %s, %v", mp2, err)
	}
	if n := countMounts(t, mp); n != 1 {
		t.Errorf("%d mounts at %s, want 1", n, mp)
	}

	// The size is a real limit.
	if err := os.WriteFile(filepath.Join(mp, "keep"), []byte("survives resizes"), 0o644); err != nil {
		t.Fatal(err)
	}
	n1 := fillVolume(t, filepath.Join(mp, "fill1"))
	if n1 > 32<<20 || n1 < 24<<20 {
		t.Errorf("wrote %s into a 32 MiB volume before ENOSPC", formatSize(n1))
	}

	// Growth: the new space is usable at once.
	want := []string{"fence:1@a1", "mount:1@a1"}
	if hasCapability(t, unix.CAP_SYS_RESOURCE) {
		if err := m.Resize(ctx, v, 64<<20); err != nil {
			t.Fatal(err)
		}
	} else {
		// The kernel refuses an online ext4 resize without it; the
		// refusal says what to do, and the offline resize completes it.
		t.Log("no CAP_SYS_RESOURCE: growing to 64 MiB offline")
		err := m.Resize(ctx, v, 64<<20)
		if !errors.Is(err, ErrOnlineResize) || !strings.Contains(err.Error(), "detach the volume and resize it offline") {
			t.Errorf("online resize without CAP_SYS_RESOURCE: %v", err)
		}
		// The image file grew, the filesystem did not: Size says so.
		if n, err := m.Size(v); err != nil || n != 32<<20 {
			t.Errorf("Size after a refused online resize = %d, %v; want 32 MiB", n, err)
		}
		if err := m.Detach(ctx, v); err != nil {
			t.Fatal(err)
		}
		if err := m.Resize(ctx, v, 64<<20); err != nil {
			t.Fatal(err)
		}
		if mp, err = m.Attach(ctx, v, 1); err != nil {
			t.Fatal(err)
		}
		want = append(want, "unmount:1@a1", "mount:1@a1")
	}
	n2 := fillVolume(t, filepath.Join(mp, "fill2"))
	if n2 < 28<<20 || n1+n2 > 64<<20 {
		t.Errorf("after growing to 64 MiB wrote %s more (total %s)", formatSize(n2), formatSize(n1+n2))
	}
	err = m.Resize(ctx, v, 48<<20)
	if !errors.Is(err, ErrShrink) || err.Error() != "resize volume default/www-web-0: volumes cannot shrink: it is 64 MiB and 48 MiB was asked; ext4 images only grow" {
		t.Errorf("shrinking: %v", err)
	}
	if err := m.Delete(ctx, v); !errors.Is(err, ErrAttached) {
		t.Errorf("Delete while mounted: %v, want ErrAttached", err)
	}

	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, dir)

	// Offline growth.
	if err := m.Resize(ctx, v, 96<<20); err != nil {
		t.Fatal(err)
	}
	mp, err = m.Attach(ctx, v, 2)
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(mp, &fs); err != nil {
		t.Fatal(err)
	}
	if size := int64(fs.Blocks) * fs.Bsize; size < 80<<20 || size > 96<<20 {
		t.Errorf("filesystem is %s after growing to 96 MiB offline", formatSize(size))
	}
	if data, err := os.ReadFile(filepath.Join(mp, "keep")); err != nil || string(data) != "survives resizes" {
		t.Errorf("data after resizes: %q, %v", data, err)
	}
	var md meta
	data, _ := os.ReadFile(filepath.Join(root, v.UID, "meta.json"))
	if err := json.Unmarshal(data, &md); err != nil || md.Size != 96<<20 {
		t.Errorf("meta.json size = %d, %v; want 96 MiB", md.Size, err)
	}
	if n, err := m.Size(v); err != nil || n != 96<<20 {
		t.Errorf("Size after growing = %d, %v; want 96 MiB", n, err)
	}
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	want = append(want, "unmount:1@a1", "fence:2@a1", "mount:2@a1", "unmount:2@a1")
	if got := journalKinds(t, m, v); !reflect.DeepEqual(got, want) {
		t.Errorf("journal = %v, want %v", got, want)
	}
	if err := m.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, v.UID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Delete: %v", err)
	}
	assertNothingLeft(t, m, dir)
}

func countMounts(t *testing.T, path string) int {
	t.Helper()
	ms, err := mounts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if m.Mountpoint == path {
			n++
		}
	}
	return n
}

// fillVolume writes path until ENOSPC and returns how much it wrote.
func fillVolume(t *testing.T, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	var total int64
	for {
		n, err := f.Write(buf)
		total += int64(n)
		if err == nil {
			continue
		}
		if !errors.Is(err, unix.ENOSPC) {
			t.Fatalf("write %s: %v, want ENOSPC eventually", path, err)
		}
		break
	}
	if total > 1<<40 {
		t.Fatal("unbounded")
	}
	// Written data must reach the image: a sync error is a failure.
	if err := f.Sync(); err != nil && !errors.Is(err, unix.ENOSPC) {
		t.Fatal(err)
	}
	return total
}

// TestImageTooLarge (T12): on a 4 MiB root, a 1 GiB image is refused with
// the reason, and nothing is made.
func TestImageTooLarge(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	root := mountTmpfs(t, dir, "small", 4<<20)
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(root, 1<<30)
	err := m.Create(ctx, v)
	want := `volume default/www-web-0: not enough space: class "disk" cannot provide 1 GiB: its root ` + root + ` has 4 MiB free`
	if !errors.Is(err, ErrInsufficientSpace) || err == nil || err.Error() != want {
		t.Fatalf("Create 1 GiB on 4 MiB:\n got %v\nwant %s", err, want)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("root after refusal holds %v", ents)
	}
	// Growth beyond the free space is refused the same way.
	v.Size = 4 << 20
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	err = m.Resize(ctx, v, 1<<30)
	if !errors.Is(err, ErrInsufficientSpace) || !strings.Contains(err.Error(), `class "disk" cannot provide 1020 MiB more to grow it from 4 MiB to 1 GiB`) {
		t.Errorf("Resize to 1 GiB on a 4 MiB root: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(root, v.UID, "disk.img"), &st); err != nil || st.Size != 4<<20 {
		t.Errorf("image after refused resize: %d bytes, %v; want 4 MiB", st.Size, err)
	}
	assertNothingLeft(t, m, dir)
}

// TestImageMkfsFailure: when formatting fails, no image and no temporary
// file remain, and Create can be retried.
func TestImageMkfsFailure(t *testing.T) {
	dir := t.TempDir()
	failing := true
	m, err := NewManager(Options{Node: "a1", Dir: filepath.Join(dir, "node"), Exec: func(ctx context.Context, name string, args ...string) ([]byte, error) {
		if failing {
			return []byte("mkfs.ext4: Device size reported to be zero."), errors.New("exit status 1")
		}
		return nil, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "images")
	v := imageVolume(root, 8<<20)
	err = m.Create(ctxT(t), v)
	want := "create volume default/www-web-0: mkfs.ext4: exit status 1: mkfs.ext4: Device size reported to be zero."
	if err == nil || err.Error() != want {
		t.Fatalf("Create = %v, want %s", err, want)
	}
	for _, name := range []string{"disk.img", "disk.img.tmp"} {
		if _, err := os.Lstat(filepath.Join(root, v.UID, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after a failed mkfs: %v", name, err)
		}
	}
	failing = false
	if err := m.Create(ctxT(t), v); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, v.UID, "disk.img")); err != nil || fi.Size() != 8<<20 {
		t.Errorf("image after retry: %v, %v", fi, err)
	}
}

// TestImageAttachFailureLeavesNothing: an image that does not mount (its
// superblock destroyed) is refused with nothing mounted, no loop device
// bound and no attachment recorded.
func TestImageAttachFailureLeavesNothing(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	root := filepath.Join(dir, "images")
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(root, 8<<20)
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(root, v.UID, "disk.img"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = m.Attach(ctx, v, 3)
	if err == nil || !strings.Contains(err.Error(), "mount disk.img") {
		t.Fatalf("Attach of a broken image: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(m.dir, "mounts", v.UID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mount point after failure: %v", err)
	}
	if as, _ := m.Attachments(); len(as) != 0 {
		t.Errorf("attachments after failure: %+v", as)
	}
	assertNothingLeft(t, m, dir)
	if err := m.Delete(ctx, v); err != nil {
		t.Fatal(err)
	}
}

// TestDetachBusy: a mount that a process still uses is not detached.
func TestDetachBusy(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(filepath.Join(dir, "images"), 8<<20)
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	mp, err := m.Attach(ctx, v, 1)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mp, "open"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Detach(ctx, v); !errors.Is(err, ErrBusy) {
		t.Errorf("Detach with an open file: %v, want ErrBusy", err)
	}
	if _, ok, _ := mountAt(mp); !ok {
		t.Error("mount gone after a refused Detach")
	}
	if as, _ := m.Attachments(); len(as) != 1 {
		t.Errorf("attachments after a refused Detach: %+v", as)
	}
	f.Close()
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, dir)
}

// TestDetachAfterCrash: a loop device bound to the image but never
// mounted (a crash between the two) is released by Detach.
func TestDetachAfterCrash(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(filepath.Join(dir, "images"), 8<<20)
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	img, err := os.OpenFile(filepath.Join(m.VolumeDir(v), "disk.img"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	dev, devf, err := attachLoop(img)
	img.Close()
	if err != nil {
		t.Fatal(err)
	}
	// Without autoclear the kernel keeps the binding after the close, as
	// a crashed process's would be kept with losetup.
	info, err := unix.IoctlLoopGetStatus64(int(devf.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	info.Flags &^= unix.LO_FLAGS_AUTOCLEAR
	if err := unix.IoctlLoopSetStatus64(int(devf.Fd()), info); err != nil {
		t.Fatal(err)
	}
	devf.Close()
	if _, ok := loopBackingFiles(t)[dev]; !ok {
		t.Fatalf("%s not bound before Detach", dev)
	}
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, dir)
}

// BenchmarkImageAttachDetach measures attaching (fence, loop device,
// ext4 mount) and detaching an image volume.
func BenchmarkImageAttachDetach(b *testing.B) {
	requireRoot(b)
	dir := testDir(b)
	m := newManager(b, dir, "a1")
	ctx := context.Background()
	v := imageVolume(filepath.Join(dir, "images"), 256<<20)
	if err := m.Create(ctx, v); err != nil {
		b.Fatal(err)
	}
	var attach, detach time.Duration
	gen := uint64(0)
	for b.Loop() {
		gen++
		t0 := time.Now()
		if _, err := m.Attach(ctx, v, gen); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Detach(ctx, v); err != nil {
			b.Fatal(err)
		}
		attach += t1.Sub(t0)
		detach += time.Since(t1)
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(gen), "attach-µs/op")
	b.ReportMetric(float64(detach.Microseconds())/float64(gen), "detach-µs/op")
}

// BenchmarkImageCreate measures creating (sparse file and mkfs.ext4) a
// 1 GiB image volume.
func BenchmarkImageCreate(b *testing.B) {
	requireRoot(b)
	dir := testDir(b)
	m := newManager(b, dir, "a1")
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		v := imageVolume(filepath.Join(dir, "images"), 1<<30)
		v.UID = "uid-" + formatInt(uint64(i))
		if err := m.Create(ctx, v); err != nil {
			b.Fatal(err)
		}
	}
}

// TestDetachWaitsForStagedSubPaths: a subPath staged from an image volume
// keeps Detach from unmounting anything until the pod's staging directory
// is cleaned, as an agent that restarted would do with CleanStaging.
func TestDetachWaitsForStagedSubPaths(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	m := newManager(t, dir, "a1")
	ctx := ctxT(t)
	v := imageVolume(filepath.Join(dir, "images"), 8<<20)
	if err := m.Create(ctx, v); err != nil {
		t.Fatal(err)
	}
	mp, err := m.Attach(ctx, v, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mp, "my.cnf"), []byte("[mysqld]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	podStaging := filepath.Join(m.StagingDir(), "pod-uid-1")
	for _, sub := range []string{"conf", "my.cnf"} {
		if _, _, err := StageSubPath(mp, sub, podStaging); err != nil {
			t.Fatal(err)
		}
	}
	err = m.Detach(ctx, v)
	if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "a subPath staging mount?") {
		t.Fatalf("Detach with staged subPaths: %v, want ErrBusy", err)
	}
	if _, ok, _ := mountAt(mp); !ok {
		t.Fatal("the refused Detach unmounted the volume")
	}
	if err := CleanStaging(podStaging); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(podStaging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("staging directory after CleanStaging: %v", err)
	}
	if err := CleanStaging(podStaging); err != nil {
		t.Errorf("second CleanStaging: %v", err)
	}
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, dir)
	// The data is still in the image.
	mp, err = m.Attach(ctx, v, 2)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(mp, "my.cnf")); err != nil || string(data) != "[mysqld]\n" {
		t.Errorf("my.cnf after CleanStaging: %q, %v", data, err)
	}
	if err := m.Detach(ctx, v); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, m, dir)
}
