package scheduler

import (
	"sync"
	"time"
)

// Default lease timings. An agent renews every DefaultHeartbeat; the leader
// counts a node lost once DefaultLeaseTTL passes without a renewal.
const (
	DefaultHeartbeat = 2 * time.Second
	DefaultLeaseTTL  = 8 * time.Second
)

// Leases holds, in the leader's memory only, when each node last renewed
// its lease. Heartbeats are not written to Raft: only a node's change of
// state (Ready, lost) is committed. Times come from the leader's own
// monotonic clock, taken when a heartbeat arrives, so no clock crosses the
// network. It is safe for concurrent use.
type Leases struct {
	clock Clock
	ttl   time.Duration

	mu sync.Mutex
	// renewed is the leader-local time of each node's last renewal.
	renewed map[string]time.Time
	// since is when this leader took office: every node gets a full TTL
	// from then, since the previous leader's leases are unknown here.
	since time.Time
	// seen is when this leader first saw each node it has not heard from:
	// a node registered while it leads gets its full TTL from then, so
	// that its first heartbeat, sent once the registration is committed,
	// is not late.
	seen map[string]time.Time
}

// NewLeases returns an empty lease table whose leases last ttl.
func NewLeases(clock Clock, ttl time.Duration) *Leases {
	if clock == nil {
		clock = SystemClock{}
	}
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	return &Leases{clock: clock, ttl: ttl, renewed: map[string]time.Time{}, seen: map[string]time.Time{}, since: clock.Now()}
}

// TTL returns how long a lease lasts.
func (l *Leases) TTL() time.Duration { return l.ttl }

// Reset forgets every lease and starts a fresh grace period for all nodes.
// A new leader calls it when it takes office.
func (l *Leases) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewed = map[string]time.Time{}
	l.seen = map[string]time.Time{}
	l.since = l.clock.Now()
}

// Saw records that node exists. A node not heard from since this leader
// took office has its lease counted from the first time it was seen.
func (l *Leases) Saw(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.renewed[node]; ok {
		return
	}
	if _, ok := l.seen[node]; !ok {
		l.seen[node] = l.clock.Now()
	}
}

// Renew records a heartbeat from node now.
func (l *Leases) Renew(node string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.renewed[node] = l.clock.Now()
	delete(l.seen, node)
}

// Expired reports whether node's lease has run out: no renewal for a TTL,
// counting, for a node not heard from since this leader's start, from
// that start or from when the node was first seen, whichever is later.
func (l *Leases) Expired(node string) bool {
	return l.Age(node) > l.ttl
}

// Age returns how long ago node last renewed its lease or, if this leader
// has not heard from it, how long ago it took office or first saw the
// node, whichever is later.
func (l *Leases) Age(node string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A node seen is seen after since: Reset forgets every sighting.
	last, ok := l.renewed[node]
	if !ok {
		if last, ok = l.seen[node]; !ok {
			last = l.since
		}
	}
	return l.clock.Now().Sub(last)
}
