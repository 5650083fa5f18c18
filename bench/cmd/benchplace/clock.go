package main

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/stead-io/stead/api"
)

// indexClock tells when the leader applied each state index. It holds a
// blocking query on the server's status, which answers as soon as the
// index moves, and stamps every index it is told of with the time it was
// told. The answers are a few hundred bytes, so the clock barely loads
// the server.
type indexClock struct {
	mu     sync.Mutex
	stamps []stamp
	moved  chan struct{} // closed and replaced on every new stamp
}

type stamp struct {
	index uint64
	at    time.Time
}

func newIndexClock() *indexClock { return &indexClock{moved: make(chan struct{})} }

// run follows the index of the server at base until ctx ends.
func (c *indexClock) run(ctx context.Context, f *fleet, base string) {
	var index uint64
	for ctx.Err() == nil {
		q := url.Values{"index": {strconv.FormatUint(index, 10)}, "wait": {"30s"}}
		var st api.ClusterStatus
		idx, err := f.get(ctx, base+"/v1/status?"+q.Encode(), &st)
		at := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				f.watchFailed(fmt.Errorf("index clock: %w", err))
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
			continue
		}
		if idx <= index {
			continue
		}
		index = idx
		c.mu.Lock()
		c.stamps = append(c.stamps, stamp{idx, at})
		close(c.moved)
		c.moved = make(chan struct{})
		c.mu.Unlock()
	}
}

// when returns the time the clock first saw an index at or past index,
// waiting for it until ctx ends.
func (c *indexClock) when(ctx context.Context, index uint64) (time.Time, error) {
	for {
		c.mu.Lock()
		for _, s := range c.stamps {
			if s.index >= index {
				c.mu.Unlock()
				return s.at, nil
			}
		}
		moved := c.moved
		c.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("index %d never seen: %w", index, ctx.Err())
		}
	}
}
