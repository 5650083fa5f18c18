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
// index moves.
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

// zoneInput reads pods (blocking past index), services and namespaces.
func (a *Agent) zoneInput(ctx context.Context, c *api.Client, index uint64) (dnsserver.ZoneInput, uint64, error) {
	in := dnsserver.ZoneInput{Domain: a.cfg.ClusterDomain}
	pods, idx, err := c.List(ctx, podsResource, "", api.ListOptions{Index: index, Wait: DefaultAssignmentsWait})
	if err != nil {
		return in, 0, err
	}
	svcs, _, err := c.List(ctx, servicesResource, "", api.ListOptions{})
	if err != nil {
		return in, 0, err
	}
	nss, _, err := c.List(ctx, namespacesResource, "", api.ListOptions{})
	if err != nil {
		return in, 0, err
	}
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
