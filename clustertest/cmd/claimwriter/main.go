// Command claimwriter runs journal-writer (volumes/journalwriter) on a
// claim volume in the fault tests' workload. The agent mounts a claim's
// data directory (<root>/<uid>/data on the shared storage) into the pod,
// but not the volume's control directory beside it, which holds the fence
// marker, its lock and the journal. claimwriter finds which volume is
// mounted at DATA_DIR (default /data) in /proc/self/mountinfo, sets
// CONTROL_DIR to that volume's control directory as the pod sees the
// shared root at SHARED_DIR (default /shared, a hostPath volume of the
// root, which must be the root of its filesystem), and execs
// /journal-writer with the rest of its environment.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

func main() {
	dataDir, shared := getenv("DATA_DIR", "/data"), getenv("SHARED_DIR", "/shared")
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		fail(err)
	}
	root, err := mountRoot(f, dataDir)
	f.Close()
	if err != nil {
		fail(err)
	}
	control, err := controlDir(shared, root)
	if err != nil {
		fail(err)
	}
	env := append(os.Environ(), "CONTROL_DIR="+control)
	fail(syscall.Exec("/journal-writer", []string{"journal-writer"}, env))
}

func getenv(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "claimwriter: %v\n", err)
	os.Exit(2)
}

// mountRoot returns the root, within its filesystem, of the last mount at
// mountPoint listed in a mountinfo file.
func mountRoot(r io.Reader, mountPoint string) (string, error) {
	ms, err := mountinfo.GetMountsFromReader(r, func(m *mountinfo.Info) (skip, stop bool) {
		return m.Mountpoint != mountPoint, false
	})
	if err != nil {
		return "", err
	}
	if len(ms) == 0 {
		return "", fmt.Errorf("nothing is mounted at %s", mountPoint)
	}
	return ms[len(ms)-1].Root, nil
}

// controlDir maps the root of a claim's data mount, /<uid>/data, to the
// volume's control directory under shared: <shared>/<uid>/control.
func controlDir(shared, root string) (string, error) {
	dir, base := path.Split(path.Clean(root))
	uid := path.Base(dir)
	if base != "data" || uid == "/" || uid == "." || path.Dir(path.Clean(dir)) != "/" {
		return "", errors.New("the data mount's root " + root + " is not /<uid>/data on the shared filesystem")
	}
	return path.Join(shared, uid, "control"), nil
}
