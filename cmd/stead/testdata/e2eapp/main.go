// Command e2eapp is the program of the image the end-to-end tests of
// cmd/stead run: a tiny static HTTP server whose readiness the tests turn
// on and off from outside, through `stead exec`, with no shell in the
// image.
//
//	e2eapp            serve HTTP on :8080 until SIGTERM: / prints the
//	                  hostname, /healthz is 200, /ready is 200 only while
//	                  /tmp/ready exists (created at start unless NOT_READY=1)
//	e2eapp unready    remove /tmp/ready
//	e2eapp ready      create /tmp/ready
//	e2eapp resolve N  print the IPv4 addresses N resolves to through
//	                  /etc/resolv.conf, sorted, one a line
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"
)

// readyFile exists while the server is to be ready.
const readyFile = "/tmp/ready"

func main() {
	if len(os.Args) > 1 {
		os.Exit(command(os.Args[1], os.Args[2:]))
	}
	if os.Getenv("NOT_READY") != "1" {
		if err := os.WriteFile(readyFile, nil, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	serve()
}

// command runs a subcommand and returns the exit code.
func command(name string, args []string) int {
	var err error
	switch {
	case name == "unready" && len(args) == 0:
		err = os.Remove(readyFile)
	case name == "ready" && len(args) == 0:
		err = os.WriteFile(readyFile, nil, 0o644)
	case name == "resolve" && len(args) == 1:
		err = resolve(args[0])
	default:
		fmt.Fprintln(os.Stderr, "usage: e2eapp [unready | ready | resolve NAME]")
		return 2
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// resolve prints the IPv4 addresses of name, looked up by Go's own
// resolver, which reads /etc/resolv.conf (nameserver, search, ndots) as a
// libc resolver does.
func resolve(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &net.Resolver{PreferGo: true}
	addrs, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return err
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.Unmap().String())
	}
	slices.Sort(out)
	for _, a := range out {
		fmt.Println(a)
	}
	return nil
}

func serve() {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, host) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat(readyFile); err != nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	srv := &http.Server{Addr: ":8080", Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		log.Printf("%s stopping", host)
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("%s serving on %s", host, srv.Addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
}
