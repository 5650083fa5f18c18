package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/dnsserver"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// serverOptions are the settings of one Stead server.
type serverOptions struct {
	id              string
	dataDir         string
	httpAddr        string
	raftAddr        string
	advertise       string
	bootstrap       bool
	bootstrapExpect int
	join            []string
	retryJoin       bool
	logLevel        string
	logJSON         bool
	clusterCIDR     string
	clusterDomain   string
	dnsAddr         string
}

func (o *serverOptions) addFlags(cmd *cobra.Command, defaultID, defaultDataDir string) {
	f := cmd.Flags()
	f.StringVar(&o.id, "node-id", defaultID, "this server's Raft ID (stable across restarts)")
	f.StringVar(&o.dataDir, "data-dir", defaultDataDir, "directory for the Raft log, snapshots and state")
	f.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7470", "address of the HTTP API")
	f.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7471", "address of the Raft transport")
	f.StringVar(&o.advertise, "advertise", "", "Raft address other servers reach this one at (default --raft-addr)")
	f.StringVar(&o.clusterCIDR, "cluster-cidr", httpapi.DefaultClusterCIDR.String(), "range each node's /24 pod subnet is taken from")
	f.StringVar(&o.clusterDomain, "cluster-domain", api.DefaultClusterDomain, "DNS domain of cluster names")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	f.BoolVar(&o.logJSON, "log-json", false, "write logs as JSON lines")
}

func newServerCmd() *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Stead server: a member of the Raft group that stores the cluster state and runs the controller",
		Example: `  # A single-server cluster:
  stead server --data-dir /var/lib/stead --bootstrap

  # A second and third server joining the first:
  stead server --node-id s2 --data-dir /var/lib/stead --raft-addr 10.0.0.2:7471 \
      --http-addr 10.0.0.2:7470 --join 10.0.0.1:7470`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := newLogger("stead", o.logLevel, o.logJSON)
			srv, err := startServer(ctx, *o, log)
			if err != nil {
				return err
			}
			<-ctx.Done()
			return srv.Close()
		},
	}
	host, _ := os.Hostname()
	o.addFlags(cmd, host, "/var/lib/stead")
	f := cmd.Flags()
	f.BoolVar(&o.bootstrap, "bootstrap", false, "start a new cluster with this server as its only member")
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "number of servers expected to form a new cluster")
	f.StringSliceVar(&o.join, "join", nil, "HTTP addresses of existing servers to join (comma-separated)")
	f.BoolVar(&o.retryJoin, "retry-join", false, "keep retrying --join until it succeeds")
	f.StringVar(&o.dnsAddr, "dns-addr", "", "also answer cluster DNS on this address (UDP and TCP), e.g. 127.0.0.1:53")
	return cmd
}

func newLogger(name, level string, json bool) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.LevelFromString(level),
		JSONFormat: json,
		Output:     os.Stderr,
	})
}

// runningServer is a started server; Close stops it.
type runningServer struct {
	store  *raftstore.Store
	leases *scheduler.Leases
	api    *httpapi.Server
	http   *http.Server
	addr   string
	log    hclog.Logger
	stop   context.CancelFunc
	done   chan struct{}
}

// startServer opens the Raft store, serves the API and keeps this server's
// address recorded while it leads.
func startServer(ctx context.Context, o serverOptions, log hclog.Logger) (*runningServer, error) {
	if o.id == "" {
		return nil, errors.New("--node-id is empty and the host has no name; set --node-id")
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", o.dataDir, err)
	}
	clusterCIDR, err := netip.ParsePrefix(o.clusterCIDR)
	if err != nil || !clusterCIDR.Addr().Is4() || clusterCIDR.Bits() > 24 {
		return nil, fmt.Errorf("--cluster-cidr %q is not an IPv4 range of /24 or larger, such as 10.244.0.0/16", o.clusterCIDR)
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http-addr %s: %w", o.httpAddr, err)
	}
	advertise := o.advertise
	if advertise == "" {
		advertise = o.raftAddr
	}
	store, err := raftstore.Open(raftstore.Config{
		ID:            o.id,
		DataDir:       filepath.Clean(o.dataDir),
		BindAddr:      o.raftAddr,
		AdvertiseAddr: advertise,
		Bootstrap:     o.bootstrap || o.bootstrapExpect == 1,
		Logger:        log.Named("raft"),
	})
	if err != nil {
		ln.Close()
		return nil, err
	}
	leases := scheduler.NewLeases(scheduler.SystemClock{}, scheduler.DefaultLeaseTTL)
	handler := httpapi.New(httpapi.Config{ID: o.id, Version: version, Store: store, Logger: log, Leases: leases, ClusterCIDR: clusterCIDR})
	ctx, cancel := context.WithCancel(ctx)
	rs := &runningServer{
		store: store, leases: leases, api: handler, addr: ln.Addr().String(), log: log, stop: cancel, done: make(chan struct{}),
		http: &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
	}
	go func() {
		if err := rs.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	go rs.lead(ctx, o.id, advertise)
	if len(o.join) > 0 {
		go rs.joinCluster(ctx, o, advertise)
	}
	if o.dnsAddr != "" {
		if err := rs.serveDNS(ctx, o, clusterCIDR); err != nil {
			rs.Close()
			return nil, err
		}
	}
	log.Info("server started", "id", o.id, "http", rs.addr, "raft", advertise, "data_dir", o.dataDir)
	return rs, nil
}

// lead runs the leader's duties for as long as this server leads: it
// records its own address, so that followers can forward writes to it, and
// runs the controller. Losing leadership cancels them.
func (rs *runningServer) lead(ctx context.Context, id, raftAddr string) {
	defer close(rs.done)
	var term *leaderTerm
	defer func() { term.end() }()
	leaderCh := rs.store.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case leader, ok := <-leaderCh:
			switch {
			case !ok:
				return
			case !leader:
				term.end()
				term = nil
			case term == nil:
				term = startTerm(ctx, func(ctx context.Context) { rs.runLeader(ctx, id, raftAddr) })
			}
		}
	}
}

// leaderTerm is the leader's work during one term of office.
type leaderTerm struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startTerm(ctx context.Context, run func(context.Context)) *leaderTerm {
	ctx, cancel := context.WithCancel(ctx)
	t := &leaderTerm{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		run(ctx)
	}()
	return t
}

// end stops the term's work and waits for it; a nil term is a no-op.
func (t *leaderTerm) end() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}

// runLeader is one term of office.
func (rs *runningServer) runLeader(ctx context.Context, id, raftAddr string) {
	rs.log.Info("leading the cluster")
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := rs.api.Register(rctx, id, raftAddr, rs.addr)
		cancel()
		if err == nil {
			break
		}
		rs.log.Warn("record this server's address", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	// A new leader knows nothing of the previous one's leases: every node
	// gets a full lease from now.
	rs.leases.Reset()
	ctrl := scheduler.NewController(scheduler.ControllerConfig{Store: rs.store, Logger: rs.log, Leases: rs.leases})
	if err := ctrl.Run(ctx); err != nil && ctx.Err() == nil {
		rs.log.Error("controller stopped", "error", err)
	}
}

// joinCluster asks the servers named by --join to add this one, until one
// accepts (or once, without --retry-join).
func (rs *runningServer) joinCluster(ctx context.Context, o serverOptions, raftAddr string) {
	body, _ := json.Marshal(httpapi.JoinRequest{ID: o.id, RaftAddr: raftAddr, HTTPAddr: rs.addr})
	backoff := time.Second
	for attempt := 1; ; attempt++ {
		for _, addr := range o.join {
			if !strings.Contains(addr, "://") {
				addr = "http://" + addr
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, addr+"/v1/join", bytes.NewReader(body))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					rs.log.Info("joined cluster", "via", addr)
					return
				}
				err = fmt.Errorf("status %s", resp.Status)
			}
			rs.log.Warn("join failed", "via", addr, "attempt", attempt, "error", err)
		}
		if !o.retryJoin && attempt >= 5 {
			rs.log.Error("could not join any of --join; restart with --retry-join to keep trying", "join", o.join)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// serveDNS answers cluster DNS on --dns-addr from this server's own copy of
// the state: a zone rebuilt whenever the state changes and swapped in whole.
func (rs *runningServer) serveDNS(ctx context.Context, o serverOptions, clusterCIDR netip.Prefix) error {
	dns := dnsserver.NewServer(dnsserver.Config{PodCIDRs: []netip.Prefix{clusterCIDR}}, rs.log.Named("dns"))
	errc := make(chan error, 1)
	go func() { errc <- dns.ListenAndServe(ctx, o.dnsAddr) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve DNS on --dns-addr %s: %w", o.dnsAddr, err)
	case <-dns.Ready():
	}
	go func() {
		var index uint64
		for {
			v := rs.store.View()
			index = v.Index()
			dns.Swap(dnsserver.BuildZone(dnsserver.ZoneInput{
				Domain:     o.clusterDomain,
				Namespaces: names(v.List(raftstore.Namespaces, "")),
				Services:   raftstore.ListOf[*corev1.Service](v, raftstore.Services, ""),
				Pods:       raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, ""),
				Serial:     uint32(index),
			}))
			if _, err := rs.store.WaitForIndex(ctx, index); err != nil {
				return
			}
		}
	}()
	rs.log.Info("serving cluster DNS", "addr", o.dnsAddr, "domain", o.clusterDomain)
	return nil
}

func names(objs []raftstore.Object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetName()
	}
	return out
}

// Close stops serving and closes the store.
func (rs *runningServer) Close() error {
	rs.stop()
	<-rs.done
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs.http.Shutdown(sctx)
	return rs.store.Close()
}
