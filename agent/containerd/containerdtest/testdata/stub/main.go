// Command stub is the program inside the test images: a static binary whose
// first argument picks what it does, so tests observe a container from the
// outside (HTTP, log file, exit code).
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: stub serve ADDR | ignore-term | print N | tick [INTERVAL] | info | exit CODE | cat PATH")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		// Serves /hostname, /env/NAME, /file/PATH and /get?url= until
		// SIGTERM or SIGINT, then says which and exits 0.
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/hostname", func(w http.ResponseWriter, _ *http.Request) {
			h, _ := os.Hostname()
			fmt.Fprint(w, h)
		})
		mux.HandleFunc("/env/", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, os.Getenv(strings.TrimPrefix(r.URL.Path, "/env/")))
		})
		mux.HandleFunc("/file/", func(w http.ResponseWriter, r *http.Request) {
			b, err := os.ReadFile(strings.TrimPrefix(r.URL.Path, "/file"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			w.Write(b)
		})
		mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
			c := http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get(r.URL.Query().Get("url"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			io.Copy(w, resp.Body)
		})
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
		go http.Serve(ln, mux)
		fmt.Println("serving on", ln.Addr())
		switch <-term {
		case syscall.SIGINT:
			fmt.Println("got SIGINT")
		default:
			fmt.Println("got SIGTERM")
		}
		os.Exit(0)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		sleepForever()
	case "print":
		// Prints N numbered lines, then sleeps until killed.
		n, _ := strconv.Atoi(os.Args[2])
		for i := 0; i < n; i++ {
			fmt.Printf("line %d\n", i)
		}
		sleepForever()
	case "tick":
		// Prints a numbered line every interval (default 20ms) until killed.
		interval := 20 * time.Millisecond
		if len(os.Args) > 2 {
			interval, _ = time.ParseDuration(os.Args[2])
		}
		for i := 0; ; i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(interval)
		}
	case "info":
		h, _ := os.Hostname()
		wd, _ := os.Getwd()
		fmt.Printf("args=%s\n", strings.Join(os.Args[1:], ","))
		fmt.Printf("hostname=%s\nuid=%d\ngid=%d\ncwd=%s\n", h, os.Getuid(), os.Getgid(), wd)
		for _, e := range os.Environ() {
			fmt.Printf("env %s\n", e)
		}
		if err := os.WriteFile("/rootfs-write-test", []byte("x"), 0o644); err != nil {
			fmt.Println("rootfs=ro")
		} else {
			fmt.Println("rootfs=rw")
		}
	case "cat":
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	case "exit":
		code, _ := strconv.Atoi(os.Args[2])
		fmt.Fprintf(os.Stderr, "exiting with %d\n", code)
		os.Exit(code)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

// sleepForever blocks without tripping the runtime's deadlock detector
// (a bare select{} with no other goroutine is a fatal error).
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}
