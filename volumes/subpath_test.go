package volumes

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCheckSubPath(t *testing.T) {
	tests := []struct {
		sub  string
		want string // "" for accepted
	}{
		{"data", ""},
		{"a/b/c", ""},
		{"a/../b", ""},
		{"./a", ""},
		{"a/", ""},
		{"", "unsafe subPath: subPath is empty"},
		{"..", `unsafe subPath: subPath ".." leaves the volume through '..'`},
		{"../x", `unsafe subPath: subPath "../x" leaves the volume through '..'`},
		{"a/../../x", `unsafe subPath: subPath "a/../../x" leaves the volume through '..'`},
		{"/etc", `unsafe subPath: subPath "/etc" is absolute: it must be relative to the volume`},
		{"/", `unsafe subPath: subPath "/" is absolute: it must be relative to the volume`},
		{"a\x00b", `unsafe subPath: subPath "a\x00b" contains a NUL byte`},
		{strings.Repeat("a/", 2048), "unsafe subPath: subPath is 4096 bytes long (at most 4095)"},
	}
	for _, tt := range tests {
		err := checkSubPath(tt.sub)
		if tt.want == "" {
			if err != nil {
				t.Errorf("checkSubPath(%q) = %v, want accepted", tt.sub, err)
			}
			continue
		}
		if err == nil || err.Error() != tt.want || !errors.Is(err, ErrUnsafeSubPath) {
			t.Errorf("checkSubPath(%.40q) = %v, want %q", tt.sub, err, tt.want)
		}
	}
}

// plantVolume makes a volume directory with symlinks a workload could
// plant, and an outside directory holding a sentinel file.
func plantVolume(t *testing.T) (vol, outside string) {
	t.Helper()
	dir := t.TempDir()
	vol = filepath.Join(dir, "vol")
	outside = filepath.Join(dir, "outside")
	for _, d := range []string{vol + "/sub/inner", outside + "/inner"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		vol + "/file":             "inside",
		vol + "/sub/inner/marker": "inside",
		outside + "/sentinel":     "outside",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"root-link":      "/",                   // CVE-2017-1002101
		"outside-link":   outside,               // absolute, outside
		"sentinel-link":  outside + "/sentinel", // absolute, to a file outside
		"sub/up":         "../..",               // relative, climbs out
		"sub/abs-inside": vol + "/sub",          // absolute, even though inside
		"to-sub":         "sub",                 // relative, inside
		"to-file":        "sub/../file",         // relative, to a file inside
		"loop":           "loop",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mkfifo(filepath.Join(vol, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return vol, outside
}

func TestResolveSubPath(t *testing.T) {
	vol, _ := plantVolume(t)
	tests := []struct {
		sub     string
		want    string // path inside vol that must be the same file, or ""
		wantErr string // error substring
		unsafe  bool
	}{
		{sub: "sub", want: "sub"},
		{sub: "sub/inner", want: "sub/inner"},
		{sub: "to-sub", want: "sub"},
		{sub: "to-sub/inner", want: "sub/inner"},
		{sub: "file", want: "file"},
		{sub: "to-file", want: "file"},
		{sub: "new/dir", want: "new/dir"}, // created
		{sub: "root-link", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "root-link/etc", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "outside-link", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "sentinel-link", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "sub/up", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "sub/up/outside", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "sub/abs-inside", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "root-link/new", unsafe: true, wantErr: "leads outside the volume"},
		{sub: "fifo", unsafe: true, wantErr: `subPath "fifo" is a named pipe: only directories and regular files can be mounted`},
		{sub: "loop", wantErr: "too many levels of symbolic links"},
		{sub: "file/x", wantErr: "not a directory"},
		{sub: "../outside", unsafe: true, wantErr: "leaves the volume through '..'"},
		{sub: "/etc", unsafe: true, wantErr: "is absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			f, err := ResolveSubPath(vol, tt.sub)
			if tt.wantErr != "" {
				if err == nil {
					f.Close()
					t.Fatalf("ResolveSubPath(%q) succeeded, want %q", tt.sub, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || errors.Is(err, ErrUnsafeSubPath) != tt.unsafe {
					t.Fatalf("ResolveSubPath(%q) = %v, want %q (unsafe %v)", tt.sub, err, tt.wantErr, tt.unsafe)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if !sameFile(t, f, filepath.Join(vol, tt.want)) {
				t.Errorf("ResolveSubPath(%q) opened another file than %s", tt.sub, tt.want)
			}
		})
	}
	// Nothing was made outside the volume.
	if _, err := os.Lstat(filepath.Join(filepath.Dir(vol), "outside", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("outside/new: %v", err)
	}
}

func sameFile(t *testing.T, f *os.File, path string) bool {
	t.Helper()
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(path, &b); err != nil {
		t.Fatal(err)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func TestStageSubPath(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	vol := filepath.Join(dir, "vol")
	if err := os.MkdirAll(filepath.Join(vol, "conf"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "conf", "my.cnf"), []byte("[mysqld]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/", filepath.Join(vol, "root-link")); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, "staging")

	// A directory: writes through the staged path land in the volume.
	staged, cleanup, err := StageSubPath(vol, "conf", staging)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staged, "extra.cnf"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(vol, "conf", "extra.cnf")); err != nil {
		t.Errorf("write through staged dir: %v", err)
	}
	// A file.
	stagedFile, cleanupFile, err := StageSubPath(vol, "conf/my.cnf", staging)
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(stagedFile); err != nil || string(data) != "[mysqld]\n" {
		t.Errorf("staged file reads %q, %v", data, err)
	}
	// The planted link to / is refused and stages nothing.
	if _, _, err := StageSubPath(vol, "root-link", staging); !errors.Is(err, ErrUnsafeSubPath) {
		t.Errorf("StageSubPath(root-link) = %v, want ErrUnsafeSubPath", err)
	}
	for _, c := range []func() error{cleanup, cleanupFile} {
		if err := c(); err != nil {
			t.Fatal(err)
		}
	}
	if ents, err := os.ReadDir(staging); err != nil || len(ents) != 0 {
		t.Errorf("staging after cleanup holds %v, %v", ents, err)
	}
	if data, err := os.ReadFile(filepath.Join(vol, "conf", "my.cnf")); err != nil || string(data) != "[mysqld]\n" {
		t.Errorf("volume data after cleanup: %q, %v", data, err)
	}
	ms, _ := mounts()
	for _, m := range ms {
		if under(m.Mountpoint, dir) {
			t.Errorf("mount left at %s", m.Mountpoint)
		}
	}
}

// TestStageSubPathRace (S6, CVE-2021-25741): while a workload swaps a
// directory in its volume with a symlink to the outside, as fast as it
// can, no staged path ever shows anything outside the volume.
func TestStageSubPathRace(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	vol := filepath.Join(dir, "vol")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{vol + "/x/inner", outside + "/inner"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{outside + "/sentinel", outside + "/inner/sentinel"} {
		if err := os.WriteFile(p, []byte("outside"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, vol+"/swap"); err != nil {
		t.Fatal(err)
	}
	staging := filepath.Join(dir, "staging")

	// The attacker: exchange "x" (a directory) and "swap" (a symlink to
	// the outside) atomically, over and over.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var swaps atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := unix.Renameat2(unix.AT_FDCWD, vol+"/x", unix.AT_FDCWD, vol+"/swap", unix.RENAME_EXCHANGE); err != nil {
				t.Errorf("exchange: %v", err)
				return
			}
			swaps.Add(1)
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	const iterations = 2000
	deadline := time.Now().Add(20 * time.Second)
	var staged, refused int
	for i := 0; i < iterations && time.Now().Before(deadline); i++ {
		sub := "x"
		if i%2 == 1 {
			sub = "x/inner"
		}
		p, cleanup, err := StageSubPath(vol, sub, staging)
		if err != nil {
			if !errors.Is(err, ErrUnsafeSubPath) {
				t.Fatalf("iteration %d: StageSubPath(%s): %v", i, sub, err)
			}
			refused++
			continue
		}
		staged++
		for _, name := range []string{"sentinel", "inner/sentinel"} {
			if _, err := os.Lstat(filepath.Join(p, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("iteration %d: staged %s shows %s from outside the volume (%v)", i, sub, name, err)
			}
		}
		var st, out, outInner unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		_ = unix.Stat(outside, &out)
		_ = unix.Stat(outside+"/inner", &outInner)
		if st.Ino == out.Ino || st.Ino == outInner.Ino {
			t.Errorf("iteration %d: staged %s is the outside directory", i, sub)
		}
		if err := cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d staged, %d refused, %d swaps", staged, refused, swaps.Load())
	if staged == 0 || refused == 0 {
		t.Errorf("the race was not exercised: %d staged, %d refused", staged, refused)
	}
	if data, err := os.ReadFile(outside + "/sentinel"); err != nil || string(data) != "outside" {
		t.Errorf("sentinel: %q, %v", data, err)
	}
}
