package watchdog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
)

// Fence records one expiry of the node's lease and the tasks killed for
// it. The watchdog rewrites the fence file (atomically) when an expiry
// starts and whenever it kills more tasks; the next expiry replaces it.
type Fence struct {
	// Reason is the lease's verdict: "expired", "missing", "unreadable" or
	// "from another boot".
	Reason string `json:"reason"`
	// Node and LeaseExpiresMono are from the void lease (empty and zero
	// when it could not be read).
	Node             string   `json:"node,omitempty"`
	LeaseExpiresMono MonoTime `json:"leaseExpiresMono,omitempty"`
	// DetectedMono is when the watchdog found the lease void.
	DetectedMono MonoTime `json:"detectedMono"`
	// Boot is the BootID the times were read in.
	Boot string `json:"boot"`
	// Killed are the tasks killed, in the order they were.
	Killed []KilledTask `json:"killed"`
	// Checksum is as for Lease.
	Checksum string `json:"checksum"`
}

func (f Fence) checksum() string {
	f.Checksum = ""
	b, _ := json.Marshal(f)
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// WriteFence replaces the fence file at path with f, atomically.
func WriteFence(path string, f Fence) error {
	f.Checksum = f.checksum()
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("write fence record %s: %w", path, err)
	}
	if err := writeAtomic(path, append(b, '\n')); err != nil {
		return fmt.Errorf("write fence record %s: %w", path, err)
	}
	return nil
}

// ReadFence reads the fence file at path: the last expiry of the lease.
// A missing file (the node never fenced) matches os.ErrNotExist.
func ReadFence(path string) (Fence, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Fence{}, fmt.Errorf("read fence record: %w", err)
	}
	var f Fence
	if err := json.Unmarshal(b, &f); err != nil {
		return Fence{}, fmt.Errorf("read fence record %s: %w: %v", path, ErrCorrupt, err)
	}
	if f.Checksum != f.checksum() {
		return Fence{}, fmt.Errorf("read fence record %s: %w: checksum mismatch", path, ErrCorrupt)
	}
	return f, nil
}

// FenceOnStart is the agent's own fence (RELIABILITY.md R7): unless the
// lease at leasePath is valid at now, it kills every task through rt and
// returns true with the tasks killed. Unlike the watchdog, it treats a
// missing lease as void: an agent that starts without a lease holds none,
// whatever runs.
//
// The agent calls it when it starts, before it reports anything, and again
// whenever the lease it holds may have lapsed (its own copy of the expiry
// has passed, or its loop notices that much more monotonic time went by
// than it expected: the process was paused). After a fence the agent
// forgets the assignments it had, and starts nothing until a new heartbeat
// has succeeded and it has read its assignments afresh.
func FenceOnStart(ctx context.Context, rt Runtime, leasePath string, now MonoTime) (fenced bool, killed []KilledTask, err error) {
	boot, err := BootID()
	if err != nil {
		return false, nil, fmt.Errorf("fence on start: %w", err)
	}
	l, rerr := ReadLease(leasePath)
	if Judge(l, rerr, now, boot) == VerdictValid {
		return false, nil, nil
	}
	killed, err = rt.KillAll(ctx)
	if err != nil {
		return true, killed, fmt.Errorf("fence on start: %w", err)
	}
	return true, killed, nil
}
