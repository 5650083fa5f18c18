// Command benchserver is a Stead server for finding where a benchmark's
// time goes: the main parts `stead server` composes (raftstore.Open,
// httpapi.New behind its Secure guard, the leader's scheduler.Controller
// and node leases), without TLS, ACLs, rate limits or metrics, plus a
// profiling endpoint that `stead server` does not have.
//
//	benchserver --node-id s1 --data-dir D --http-addr A --raft-addr R --bootstrap
//	benchserver --node-id s2 ... --join A [--cluster-cidr 10.0.0.0/8] [--pprof-addr P]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
	"github.com/stead-io/stead/scheduler/httpapi"
)

type options struct {
	id, dataDir, httpAddr, raftAddr string
	bootstrap                       bool
	join                            string
	clusterCIDR                     string
	pprofAddr                       string
	logLevel                        string
}

func main() {
	var o options
	flag.StringVar(&o.id, "node-id", "", "Raft ID")
	flag.StringVar(&o.dataDir, "data-dir", "", "data directory")
	flag.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:7470", "HTTP API address")
	flag.StringVar(&o.raftAddr, "raft-addr", "127.0.0.1:7471", "Raft address")
	flag.BoolVar(&o.bootstrap, "bootstrap", false, "start a new cluster with this server as its only member")
	flag.StringVar(&o.join, "join", "", "HTTP address of a server to join")
	flag.StringVar(&o.clusterCIDR, "cluster-cidr", "10.0.0.0/8", "range node pod subnets come from")
	flag.StringVar(&o.pprofAddr, "pprof-addr", "", "address to serve /debug/pprof on (off when empty)")
	flag.StringVar(&o.logLevel, "log-level", "info", "log level")
	flag.Parse()
	log := hclog.New(&hclog.LoggerOptions{Name: "stead", Level: hclog.LevelFromString(o.logLevel), Output: os.Stderr})
	if err := run(o, log); err != nil {
		log.Error("benchserver failed", "error", err)
		os.Exit(1)
	}
}

func run(o options, log hclog.Logger) error {
	cidr, err := netip.ParsePrefix(o.clusterCIDR)
	if err != nil {
		return fmt.Errorf("--cluster-cidr %q: %w", o.clusterCIDR, err)
	}
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if o.pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		go http.ListenAndServe(o.pprofAddr, mux)
	}
	ln, err := net.Listen("tcp", o.httpAddr)
	if err != nil {
		return err
	}
	store, err := raftstore.Open(raftstore.Config{
		ID: o.id, DataDir: filepath.Clean(o.dataDir), BindAddr: o.raftAddr,
		Bootstrap: o.bootstrap, Logger: log.Named("raft"),
	})
	if err != nil {
		ln.Close()
		return err
	}
	defer store.Close()
	leases := scheduler.NewLeases(scheduler.SystemClock{}, scheduler.DefaultLeaseTTL)
	api := httpapi.New(httpapi.Config{ID: o.id, Version: "bench", Store: store, Logger: log, Leases: leases, ClusterCIDR: cidr})
	api.HandleCluster(httpapi.ClusterOptions{HTTPAddr: ln.Addr().String()})
	// As stead server without --acl and with --api-rate-limit 0.
	srv := &http.Server{Handler: api.Secure(httpapi.Security{}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if o.join != "" {
		go join(ctx, o, log)
	}
	lead(ctx, store, func(ctx context.Context) {
		for {
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := api.Register(rctx, o.id, o.raftAddr, ln.Addr().String())
			cancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
		leases.Reset()
		ctrl := scheduler.NewController(scheduler.ControllerConfig{Store: store, Logger: log, Leases: leases})
		if err := ctrl.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("controller stopped", "error", err)
		}
	})
	return nil
}

// lead runs duty while this server leads, until ctx ends.
func lead(ctx context.Context, store *raftstore.Store, duty func(context.Context)) {
	var current *term
	defer func() { current.end() }()
	leaderCh := store.LeaderCh()
	for {
		select {
		case <-ctx.Done():
			return
		case leader, ok := <-leaderCh:
			switch {
			case !ok:
				return
			case !leader:
				current.end()
				current = nil
			case current == nil:
				current = startTerm(ctx, duty)
			}
		}
	}
}

// term is the leader's duty during one term of office.
type term struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func startTerm(ctx context.Context, duty func(context.Context)) *term {
	ctx, cancel := context.WithCancel(ctx)
	t := &term{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(t.done)
		duty(ctx)
	}()
	return t
}

// end stops the term's duty and waits for it; a nil term is a no-op.
func (t *term) end() {
	if t == nil {
		return
	}
	t.cancel()
	<-t.done
}

// join asks the server at o.join to add this one, until it accepts.
func join(ctx context.Context, o options, log hclog.Logger) {
	body, _ := json.Marshal(httpapi.JoinRequest{ID: o.id, RaftAddr: o.raftAddr, HTTPAddr: o.httpAddr, LogVersion: raftstore.LogVersion})
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+o.join+"/v1/join", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		log.Warn("join failed", "via", o.join, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
