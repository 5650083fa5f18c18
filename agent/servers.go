package agent

import (
	"fmt"
	"math/rand/v2"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/api"
)

// serverPool is the agent's way to the servers: one client per server
// address, the current one used until it fails to answer, then the next.
// Each agent starts at a random one, as Nomad's and Consul's clients do,
// so that a fleet given the same list spreads its watches and heartbeats
// over the servers instead of loading the first.
type serverPool struct {
	mu      sync.Mutex
	clients []*api.Client
	cur     int
}

func newServerPool(addrs []string, o api.ClientOptions) (*serverPool, error) {
	p := &serverPool{}
	for _, addr := range addrs {
		c, err := api.NewClientWithOptions(addr, o)
		if err != nil {
			return nil, fmt.Errorf("agent: server %q: %w", addr, err)
		}
		p.clients = append(p.clients, c)
	}
	if len(p.clients) == 0 {
		return nil, fmt.Errorf("agent: no server addresses: set --servers")
	}
	p.cur = rand.IntN(len(p.clients))
	return p, nil
}

// client returns the server to talk to now.
func (p *serverPool) client() *api.Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients[p.cur]
}

// first is the address of the first server.
func (p *serverPool) first() string { return p.clients[0].Addr() }

// failed moves on to the next server when c could not be reached or has
// no leader; an answer of the API (not found, conflict) is no reason to.
func (p *serverPool) failed(c *api.Client, err error) {
	if err == nil || len(p.clients) == 1 {
		return
	}
	if se, ok := err.(apierrors.APIStatus); ok && se.Status().Code < 500 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.clients[p.cur] == c {
		p.cur = (p.cur + 1) % len(p.clients)
	}
}
