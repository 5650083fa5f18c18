// Command webserver is the example image's program: a tiny static HTTP
// server standing in for nginx in examples/web.yaml. It answers / with the
// pod's hostname (or index.html when the document root has one), serves
// the files under its document root (/usr/share/nginx/html, the volume
// the example mounts), and /healthz for probes. It stops on SIGTERM.
//
// "webserver get URL" fetches a URL and prints the body, so that pods can
// be checked from each other without any other tool in the image:
//
//	stead exec web-0 -- /webserver get http://web-1.nginx/
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "get" {
		os.Exit(get(os.Args[2]))
	}
	addr := flag.String("addr", ":80", "address to listen on")
	root := flag.String("root", "/usr/share/nginx/html", "document root")
	flag.Parse()

	host, _ := os.Hostname()
	files := http.FileServer(http.Dir(*root))
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			if _, err := os.Stat(filepath.Join(*root, "index.html")); err != nil {
				fmt.Fprintln(w, host)
				return
			}
		}
		files.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: *addr, Handler: logged(mux), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		log.Printf("stopping")
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Printf("%s serving %s on %s", host, *root, *addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// logged logs each request, as a web server's access log.
func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.Printf("%s %s %s", r.RemoteAddr, r.Method, r.URL.Path)
		h.ServeHTTP(w, r)
	})
}

// get prints the body of url and returns the exit code: 0 for a 2xx answer.
func get(url string) int {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode/100 != 2 {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	return 0
}
