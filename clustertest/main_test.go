package clustertest

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"
)

// bins are the programs built once for every test of the package; empty
// when the tests that need them are skipped.
var bins Binaries

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() || os.Geteuid() != 0 {
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "clustertest-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if bins, err = BuildBinaries(ctx, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// startCluster starts a cluster for a fault test: skipped with -short.
func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a cluster of processes")
	}
	return Start(t, bins, opts)
}
