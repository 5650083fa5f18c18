package scheduler

import (
	"testing"
	"time"
)

func TestLeases(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := NewLeases(clock, 10*time.Second)
	step := func(d time.Duration) { clock.now = clock.now.Add(d) }

	// A node never heard from has a full TTL from the leader's start.
	step(9 * time.Second)
	if l.Expired("a") {
		t.Fatal("lease of an unknown node expired before a TTL since the leader started")
	}
	step(2 * time.Second)
	if !l.Expired("a") {
		t.Fatal("lease of a silent node did not expire after a TTL")
	}
	l.Renew("a")
	step(10 * time.Second)
	if l.Expired("a") {
		t.Fatal("lease expired exactly at the TTL; it must last the whole TTL")
	}
	step(time.Millisecond)
	if !l.Expired("a") {
		t.Fatal("lease still valid after the TTL")
	}
	// A node first seen after the leader's start, and not heard from, has
	// a full TTL from then; seeing it again does not restart it, and a
	// node heard from counts from its renewal alone.
	l.Saw("b")
	step(10 * time.Second)
	l.Saw("b")
	l.Saw("a")
	if l.Expired("b") || l.Age("b") != 10*time.Second {
		t.Fatalf("node seen a TTL after the leader's start: expired %v age %v, want a full TTL from when it was seen", l.Expired("b"), l.Age("b"))
	}
	step(time.Millisecond)
	if !l.Expired("b") || !l.Expired("a") {
		t.Fatalf("after a TTL: b expired %v, a expired %v; want both", l.Expired("b"), l.Expired("a"))
	}
	// A new leader gives every node a fresh grace period.
	l.Reset()
	if l.Expired("a") || l.Age("a") != 0 || l.Age("b") != 0 {
		t.Fatalf("after Reset: expired %v age %v, b's age %v", l.Expired("a"), l.Age("a"), l.Age("b"))
	}
	// Wall-clock jumps do not exist for the lease: only the injected clock's
	// differences matter, and Go's time.Now differences are monotonic.
}
