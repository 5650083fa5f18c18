package agent

import (
	"testing"
	"time"
)

// TestRenewalAfterUnnoticedLapse: a renewal that comes after the lease ran
// out counts as a lapse even when nothing checked the lease meanwhile (the
// agent was stopped), so the lease is held again only once the
// assignments were listed after the renewal.
func TestRenewalAfterUnnoticedLapse(t *testing.T) {
	const ttl = 8 * time.Second
	now := time.Now()
	for _, tc := range []struct {
		name string
		// prev is how long before now the renewal before this one was sent.
		prev time.Duration
		// listed is when, relative to now, the last assignment list was asked for.
		listed time.Duration
		want   bool
	}{
		{"renewed in time, listed before", 2 * time.Second, -time.Second, true},
		{"ran out, listed before the renewal", 20 * time.Second, -time.Second, false},
		{"ran out, listed after the renewal", 20 * time.Second, time.Millisecond, true},
		{"ran out exactly, listed before the renewal", ttl, -time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{}
			a.renewed(now.Add(-tc.prev), ttl)
			a.renewed(now, ttl)
			listed := now.Add(tc.listed)
			a.listedFrom.Store(&listed)
			if got := a.leaseValid(); got != tc.want {
				t.Errorf("leaseValid() = %v, want %v (lapsed at %v)", got, tc.want, a.lapsedAt.Load())
			}
		})
	}
}
