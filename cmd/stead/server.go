package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	// tls names the server's CA, certificate and key (--tls-*); acl,
	// rateLimit and rateBurst are its --acl and --api-rate-* (tls.go).
	tls       api.TLSFiles
	acl       bool
	rateLimit float64
	rateBurst int
	// peers reach other servers' APIs; startServer sets them.
	peers peerClients
	// onListening, when set, is called once the HTTP API listens, before
	// the server waits for its peers to form or admit it. peers reach
	// that API as other servers do.
	onListening func(addr string, peers peerClients)
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

func newServerCmd(g *globals) *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Stead server: a member of the Raft group that stores the cluster state and runs the controller",
		Long: `stead server runs one member of the Raft group that stores the cluster
state. Writes sent to any server are forwarded to the leader.

A new cluster of N servers forms when N servers started with
--bootstrap-expect N find each other through --join: each lists some or all
of the others' HTTP addresses. A server without state started with --join
alone joins an existing cluster. A restarted server keeps its data
directory and rejoins by itself.

A server refuses a data directory from another cluster, and refuses to
start when its data directory lost the Raft state of a member: such a
server must be removed ('stead operator raft remove-peer') and join again
with an empty directory. If a majority of the servers is lost for good, see
docs/operations/lost-quorum.md.`,
		Example: `  # A single-server cluster:
  stead server --data-dir /var/lib/stead --bootstrap

  # A cluster of three, the same command on each machine (10.0.0.1-3):
  stead server --node-id s1 --data-dir /var/lib/stead --raft-addr 10.0.0.1:7471 \
      --http-addr 10.0.0.1:7470 --bootstrap-expect 3 --join 10.0.0.2:7470,10.0.0.3:7470

  # A fourth server joining the cluster:
  stead server --node-id s4 --data-dir /var/lib/stead --raft-addr 10.0.0.4:7471 \
      --http-addr 10.0.0.4:7470 --join 10.0.0.1:7470 --retry-join`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := newLogger("stead", o.logLevel, o.logJSON)
			// systemd hears READY once the API listens: a server of a new
			// cluster waits for its peers after that, and the watchdog
			// pings go on as long as the API answers.
			o.onListening = func(addr string, peers peerClients) {
				notifyReady(log)
				go watchdogPinger(ctx, peers.healthCheck(ctx, addr))
			}
			o.tls = g.tls
			srv, err := startServer(ctx, *o, log)
			if err != nil {
				return err
			}
			defer notifyStopping()
			select {
			case <-ctx.Done():
				return srv.Close()
			case err := <-srv.Failed():
				srv.Close()
				return err
			}
		},
	}
	host, _ := os.Hostname()
	o.addFlags(cmd, host, "/var/lib/stead")
	f := cmd.Flags()
	f.BoolVar(&o.bootstrap, "bootstrap", false, "start a new cluster with this server as its only member")
	f.IntVar(&o.bootstrapExpect, "bootstrap-expect", 0, "form a new cluster once this many servers, started with the same value, find each other through --join")
	f.StringSliceVar(&o.join, "join", nil, "HTTP addresses of other servers: of the cluster to join, or of the servers to form one with (comma-separated)")
	f.BoolVar(&o.retryJoin, "retry-join", false, "keep retrying --join until it succeeds")
	f.StringVar(&o.dnsAddr, "dns-addr", "", "also answer cluster DNS on this address (UDP and TCP), e.g. 127.0.0.1:53")
	o.addSecurityFlags(cmd)
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
	store   *raftstore.Store
	leases  *scheduler.Leases
	ctrl    *scheduler.Controller
	metrics *prometheus.Registry
	api     *httpapi.Server
	http    *http.Server
	addr    string
	log     hclog.Logger
	stop    context.CancelFunc
	done    chan struct{}
	// failed receives the error that makes the server stop on its own:
	// the cluster refused it.
	failed chan error
}

// Failed returns a channel that receives an error if the server must stop
// on its own.
func (rs *runningServer) Failed() <-chan error { return rs.failed }

// handlerSwap is an http.Handler whose handler can be replaced while it
// serves: the API of a starting server, then the full one.
type handlerSwap struct{ h atomic.Pointer[http.Handler] }

func (s *handlerSwap) set(h http.Handler) { s.h.Store(&h) }

func (s *handlerSwap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// startServer decides how the server takes part in its cluster (see
// cluster.go), opens the Raft store, serves the API and keeps this
// server's address recorded while it leads. While it waits for its peers
// it answers only GET /v1/join-info.
func startServer(ctx context.Context, o serverOptions, log hclog.Logger) (_ *runningServer, err error) {
	if o.id == "" {
		return nil, errors.New("--node-id is empty and the host has no name; set --node-id")
	}
	switch {
	case o.bootstrapExpect < 0:
		return nil, fmt.Errorf("--bootstrap-expect %d: want the number of servers of the new cluster", o.bootstrapExpect)
	case o.bootstrap && o.bootstrapExpect > 1:
		return nil, fmt.Errorf("--bootstrap starts a cluster of one server and --bootstrap-expect %d one of %d: choose one", o.bootstrapExpect, o.bootstrapExpect)
	case o.bootstrapExpect > 1 && len(o.join) == 0:
		return nil, fmt.Errorf("--bootstrap-expect %d needs --join with the HTTP addresses of the other servers", o.bootstrapExpect)
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", o.dataDir, err)
	}
	o.dataDir = filepath.Clean(o.dataDir)
	clusterCIDR, err := netip.ParsePrefix(o.clusterCIDR)
	if err != nil || !clusterCIDR.Addr().Is4() || clusterCIDR.Bits() > 24 {
		return nil, fmt.Errorf("--cluster-cidr %q is not an IPv4 range of /24 or larger, such as 10.244.0.0/16", o.clusterCIDR)
	}
	sec, err := o.security(log)
	if err != nil {
		return nil, err
	}
	dir, err := raftstore.Inspect(o.dataDir, o.id)
	if err != nil {
		return nil, explainDataDir(o, err)
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return nil, fmt.Errorf("listen on --http-addr %s: %w", o.httpAddr, err)
	}
	if sec.tls != nil {
		ln = tls.NewListener(ln, sec.tls.ServerConfig())
	}
	advertise := o.advertise
	if advertise == "" {
		advertise = o.raftAddr
	}
	addr := ln.Addr().String()
	front := &handlerSwap{}
	httpSrv := &http.Server{Handler: front, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})}
	o.peers = sec.peers
	form := &formation{o: o, log: log.Named("cluster"), dir: dir, self: httpapi.JoinInfo{
		ID: o.id, RaftAddr: advertise, HTTPAddr: addr, ClusterID: dir.ClusterID, HasState: dir.HasState, BootstrapExpect: o.bootstrapExpect,
	}}
	front.set(startingGuard(httpapi.Starting(form.info), o.acl, sec.cluster))
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "error", err)
		}
	}()
	if o.onListening != nil {
		o.onListening(addr, sec.peers)
	}
	defer func() {
		if err != nil {
			httpSrv.Close()
		}
	}()

	plan, err := form.prepare(ctx)
	if err != nil {
		return nil, err
	}
	store, err := raftstore.Open(raftstore.Config{
		ID:            o.id,
		ClusterID:     plan.clusterID,
		DataDir:       o.dataDir,
		BindAddr:      o.raftAddr,
		AdvertiseAddr: advertise,
		Bootstrap:     plan.bootstrap,
		Servers:       plan.servers,
		Logger:        log.Named("raft"),
		TLS:           sec.peerTLS(),
	})
	if err != nil {
		return nil, explainDataDir(o, err)
	}
	leases := scheduler.NewLeases(scheduler.SystemClock{}, scheduler.DefaultLeaseTTL)
	ctrl := scheduler.NewController(scheduler.ControllerConfig{Store: store, Logger: log, Leases: leases})
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics.MustRegister(store.Collectors()...)
	metrics.MustRegister(ctrl.Collectors()...)
	handler := httpapi.New(httpapi.Config{ID: o.id, Version: version, Store: store, Logger: log, Leases: leases, ClusterCIDR: clusterCIDR,
		Metrics: promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}), ForwardClient: sec.forwardClient()})
	handler.HandleCluster(httpapi.ClusterOptions{HTTPAddr: addr, BootstrapExpect: o.bootstrapExpect})
	front.set(handler.Secure(sec.api))
	ctx, cancel := context.WithCancel(ctx)
	rs := &runningServer{
		store: store, leases: leases, ctrl: ctrl, metrics: metrics, api: handler, addr: addr, log: log, stop: cancel, done: make(chan struct{}),
		http: httpSrv, failed: make(chan error, 1),
	}
	go rs.lead(ctx, o.id, advertise)
	// HasState: held before the store opened, or since. A server let in
	// whose answer got lost holds state by its next attempt (the leader
	// replicates to it), and is a member restarting no more than before.
	req := func() httpapi.JoinRequest {
		return httpapi.JoinRequest{ID: o.id, RaftAddr: advertise, HTTPAddr: addr, ClusterID: store.ClusterID(),
			HasState: plan.hadState || store.HasState(), Formed: plan.formed, LogVersion: raftstore.LogVersion}
	}
	switch {
	case plan.joinFirst:
		if err := join(ctx, log, o.peers, plan.joinVia, req, plan.joinForever); err != nil {
			rs.Close()
			return nil, err
		}
	case len(plan.joinVia) > 0:
		go rs.joinCluster(ctx, o.peers, plan.joinVia, req, plan.joinForever)
	}
	if o.dnsAddr != "" {
		if err := rs.serveDNS(ctx, o, clusterCIDR); err != nil {
			rs.Close()
			return nil, err
		}
	}
	log.Info("server started", "id", o.id, "http", rs.addr, "raft", advertise, "data_dir", o.dataDir, "cluster", store.ClusterID(),
		"tls", sec.tls != nil, "acl", o.acl)
	return rs, nil
}

// explainDataDir adds to an error about the data directory what to do.
func explainDataDir(o serverOptions, err error) error {
	switch {
	case errors.Is(err, raftstore.ErrStateLost):
		return fmt.Errorf("%w. This server was a member of a cluster and has forgotten its votes, so it must not vote again: "+
			"remove it with 'stead operator raft remove-peer --id %s' against another server, empty --data-dir %s, "+
			"and start it again with --join to join as a new member", err, o.id, o.dataDir)
	case errors.Is(err, raftstore.ErrOtherServer):
		return fmt.Errorf("%w: start it with that --node-id, or use another --data-dir", err)
	case errors.Is(err, raftstore.ErrClusterMismatch):
		return fmt.Errorf("%w: to join this cluster, empty --data-dir %s and start again", err, o.dataDir)
	}
	return err
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
	// Decide from the whole committed state: wait until everything
	// committed before this term is applied here.
	if err := rs.store.Barrier(ctx); err != nil {
		rs.log.Warn("wait for the committed state", "error", err)
	}
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
	if err := rs.ctrl.Run(ctx); err != nil && ctx.Err() == nil {
		rs.log.Error("controller stopped", "error", err)
	}
}

// joinCluster asks the servers at addrs to add this one (or to record
// its new addresses), in the background: a restarting member serves
// meanwhile, since the cluster may need its vote to elect the leader that
// will answer. A refusal stops the server.
func (rs *runningServer) joinCluster(ctx context.Context, peers peerClients, addrs []string, req func() httpapi.JoinRequest, forever bool) {
	err := join(ctx, rs.log, peers, addrs, req, forever)
	switch {
	case errors.Is(err, errJoinRefused):
		rs.log.Error("the cluster refused this server", "error", err)
		rs.failed <- err
	case err != nil && ctx.Err() == nil:
		rs.log.Error("could not join the cluster", "error", err)
	}
}

// serveDNS answers cluster DNS on --dns-addr from this server's own copy of
// the state: a zone rebuilt whenever the state changes and swapped in whole.
func (rs *runningServer) serveDNS(ctx context.Context, o serverOptions, clusterCIDR netip.Prefix) error {
	dns := dnsserver.NewServer(dnsserver.Config{PodCIDRs: []netip.Prefix{clusterCIDR}}, rs.log.Named("dns"))
	rs.metrics.MustRegister(dns.Collectors()...)
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
