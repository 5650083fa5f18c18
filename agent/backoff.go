package agent

import "time"

// Kubernetes' back-off for restarting crashed containers and retrying
// image pulls: 10 s doubling up to 5 min.
const (
	DefaultBackoff    = 10 * time.Second
	DefaultMaxBackoff = 5 * time.Minute
	// backoffReset: a crash that comes more than this long after the
	// previous one starts a new streak (the kubelet's 2 × max back-off).
	backoffResetFactor = 2
)

// Backoff is an exponential back-off: Base after the second failure of a
// streak, doubling up to Max.
type Backoff struct {
	Base, Max time.Duration
}

// Delay is the wait before retrying after the n-th failure in a row (n ≥ 1).
// As in the kubelet, the first failure is retried at once.
func (b Backoff) Delay(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := b.Base
	for i := 2; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// Step is the wait after the n-th failure when every failure waits (image
// pulls): Base after the first, doubling up to Max.
func (b Backoff) Step(n int) time.Duration { return b.Delay(n + 1) }

// crashStreak returns the number of quick crashes in a row that ended with
// attempt cur, whose predecessor prev (nil for the first attempt) ended at
// prev.FinishedAt and which started with streak crashes behind it (its
// label). A crash more than twice the maximum back-off after the previous
// one starts a new streak, as the kubelet forgets a back-off that long.
func crashStreak(cur, prev *attemptView, streak int, b Backoff) int {
	if prev == nil || cur.FinishedAt.Sub(prev.FinishedAt) > backoffResetFactor*b.Max {
		return 1
	}
	return streak + 1
}
