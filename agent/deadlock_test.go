package agent_test

import "github.com/sasha-s/go-deadlock"

// go-cni swaps its mutexes for go-deadlock's in race builds. With this Go,
// go-deadlock's goroutine IDs (from petermattis/goid, older than the
// runtime) all read 0, so two pods whose networks are set up at once look
// like one goroutine locking recursively, and it aborts the test binary.
// Its detection is turned off for these tests; the race detector stays on.
func init() { deadlock.Opts.Disable = true }
