package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/dnsserver"
)

var (
	servicesResource, _   = api.LookupResource("services")
	namespacesResource, _ = api.LookupResource("namespaces")
)

// dnsService is the cluster DNS the agent serves to its pods (on the pod
// bridge's gateway, port 53) and to the host (Config.DNSAddr).
type dnsService struct {
	server *dnsserver.Server
}

// startDNS binds the DNS listeners and starts following the cluster's
// pods, services and namespaces. The zone is rebuilt whenever the state
// changes and swapped in whole; while no server answers, the last zone
// keeps being served.
func (a *Agent) startDNS(ctx context.Context, bg *sync.WaitGroup) (*dnsService, error) {
	srv := dnsserver.NewServer(dnsserver.Config{PodCIDRs: []netip.Prefix{a.cfg.ClusterCIDR}}, a.log.Named("dns"))
	addrs := []string{net.JoinHostPort(a.network.GatewayIP().String(), "53")}
	if a.cfg.DNSAddr != "-" {
		addrs = append(addrs, a.cfg.DNSAddr)
	}
	errc := make(chan error, 1)
	bg.Add(1)
	go func() {
		defer bg.Done()
		errc <- srv.ListenAndServe(ctx, addrs...)
	}()
	select {
	case err := <-errc:
		return nil, fmt.Errorf("agent: serve cluster DNS: %w", err)
	case <-srv.Ready():
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		a.watchZone(ctx, srv)
	}()
	return &dnsService{server: srv}, nil
}

// watchZone rebuilds the DNS zone from the servers' state each time its
// pods, services or namespaces change.
func (a *Agent) watchZone(ctx context.Context, srv *dnsserver.Server) {
	var index uint64
	backoff := time.Second
	for ctx.Err() == nil {
		c := a.servers.client()
		in, idx, err := a.zoneInput(ctx, c, index)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.servers.failed(c, err)
			a.log.Debug("watch DNS records; answering from the last zone", "error", err)
			select {
			case <-ctx.Done():
			case <-a.cfg.Clock.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		srv.Swap(dnsserver.BuildZone(in))
		index = idx
	}
}

// zoneResources are what the zone is built from. A blocking list wakes
// only for changes of its own kind, so the zone watch waits on each.
var zoneResources = []api.Resource{podsResource, servicesResource, namespacesResource}

// zoneInput waits until pods, services or namespaces changed past index
// (or the wait ran out), then reads all three.
func (a *Agent) zoneInput(ctx context.Context, c *api.Client, index uint64) (dnsserver.ZoneInput, uint64, error) {
	in := dnsserver.ZoneInput{Domain: a.cfg.ClusterDomain}
	lists, idx, err := waitAny(ctx, c, zoneResources, index)
	if err != nil {
		return in, 0, err
	}
	for i, res := range zoneResources {
		if lists[i] == nil {
			if lists[i], _, err = c.List(ctx, res, "", api.ListOptions{}); err != nil {
				return in, 0, err
			}
		}
	}
	pods, svcs, nss := lists[0], lists[1], lists[2]
	in.Pods = podsOf(pods.Items)
	for _, raw := range svcs.Items {
		var s corev1.Service
		if json.Unmarshal(raw, &s) == nil {
			in.Services = append(in.Services, &s)
		}
	}
	for _, raw := range nss.Items {
		var n corev1.Namespace
		if json.Unmarshal(raw, &n) == nil {
			in.Namespaces = append(in.Namespaces, n.Name)
		}
	}
	in.Serial = uint32(idx)
	return in, idx, nil
}

// waitAny holds a blocking list of each resource past index and returns
// when the first answers, with the index it answered at and its list in
// that resource's place (the others nil, their lists cancelled).
func waitAny(ctx context.Context, c *api.Client, resources []api.Resource, index uint64) ([]*api.List, uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i    int
		list *api.List
		idx  uint64
		err  error
	}
	answers := make(chan answer, len(resources))
	for i, res := range resources {
		go func() {
			list, idx, err := c.List(ctx, res, "", api.ListOptions{Index: index, Wait: DefaultAssignmentsWait})
			answers <- answer{i, list, idx, err}
		}()
	}
	first := <-answers
	if first.err != nil {
		return nil, 0, first.err
	}
	lists := make([]*api.List, len(resources))
	lists[first.i] = first.list
	return lists, first.idx, nil
}
