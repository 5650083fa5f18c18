package volumes

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMountsUnderUnescapes: mount points whose names the kernel escapes in
// mountinfo (\040 for a space, \011 for a tab) come back as they are
// named, deepest first, and a sibling that only shares a prefix is left
// out.
func TestMountsUnderUnescapes(t *testing.T) {
	requireRoot(t)
	dir := testDir(t)
	root := filepath.Join(dir, "root")
	paths := []string{root, filepath.Join(root, "a b"), filepath.Join(root, "a b", "tab\tx"), filepath.Join(dir, "root2")}
	for _, p := range paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount %s: %v", p, err)
		}
		t.Cleanup(func() { unix.Unmount(p, unix.MNT_DETACH) })
	}
	got, err := MountsUnder(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a b", "tab\tx"), filepath.Join(root, "a b"), root}
	if !slices.Equal(got, want) {
		t.Errorf("MountsUnder(%q) = %q, want %q", root, got, want)
	}
}
