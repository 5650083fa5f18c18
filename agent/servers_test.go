package agent

import (
	"errors"
	"slices"
	"testing"

	"github.com/stead-io/stead/api"
)

// TestServerPoolSpreadsAgents: agents given the same list of servers
// start at different ones, each server getting a share of them; a
// failure moves an agent to the next server, and round.
func TestServerPoolSpreadsAgents(t *testing.T) {
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	starts := map[string]int{}
	const agents = 300
	for range agents {
		p, err := newServerPool(addrs, api.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		starts[p.client().Addr()]++
	}
	for _, a := range addrs {
		// Each server's share is binomial(300, 1/3): below 60 with
		// probability under 1e-6.
		if starts[a] < 60 {
			t.Errorf("%d of %d agents start at %s: %v", starts[a], agents, a, starts)
		}
	}

	p, err := newServerPool(addrs, api.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for range len(addrs) + 1 {
		c := p.client()
		seen = append(seen, c.Addr())
		p.failed(c, errors.New("connection refused"))
	}
	for i := range len(addrs) {
		if next := seen[i+1]; next != addrs[(slices.Index(addrs, seen[i])+1)%len(addrs)] {
			t.Fatalf("after %s failed the agent moved to %s: %v", seen[i], next, seen)
		}
	}
	if seen[len(addrs)] != seen[0] {
		t.Errorf("the agent did not come round to its first server: %v", seen)
	}

	if _, err := newServerPool(nil, api.ClientOptions{}); err == nil {
		t.Error("a pool without servers was made")
	}
}
