// Command podtest is the program inside the agent's test images: its first
// argument picks what it does, so tests observe a pod from the outside
// (HTTP, exec, logs, exit codes).
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
	"unsafe"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: podtest serve ADDR | ignore-term | touch PATH | rm PATH | test PATH | exit CODE | resolve NAME | echo WORDS | cat | hang | tick | ttysize")
		os.Exit(2)
	}
	arg := func(i int) string {
		if len(os.Args) > i {
			return os.Args[i]
		}
		return ""
	}
	switch os.Args[1] {
	case "serve":
		serve(arg(2))
	case "ignore-term":
		// Ignores SIGTERM (only SIGKILL ends it), printing what it got.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		for s := range sigs {
			fmt.Println("got", s)
		}
	case "touch":
		if err := os.WriteFile(arg(2), []byte("x"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "rm":
		if err := os.Remove(arg(2)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "test":
		if _, err := os.Stat(arg(2)); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	case "exit":
		code, _ := strconv.Atoi(arg(2))
		fmt.Printf("exiting with %d\n", code)
		os.Exit(code)
	case "resolve":
		addrs, err := net.LookupHost(arg(2))
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println(strings.Join(addrs, " "))
	case "echo":
		fmt.Println(strings.Join(os.Args[2:], " "))
	case "cat":
		io.Copy(os.Stdout, os.Stdin)
	case "hang":
		// Sleeps until killed (a bare select{} would be a deadlock to the
		// runtime).
		for {
			time.Sleep(time.Hour)
		}
	case "ttysize":
		// Prints the size of the terminal on stdout once it has one.
		for i := 0; i < 100; i++ {
			var ws [4]uint16
			_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, 1, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
			if errno == 0 && ws[0] != 0 {
				fmt.Printf("%d %d\n", ws[1], ws[0])
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		fmt.Println("no terminal size")
		os.Exit(1)
	case "tick":
		// Prints a numbered line every 100ms until killed.
		for i := 0; ; i++ {
			fmt.Printf("tick %d\n", i)
			time.Sleep(100 * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}

// serve answers /hostname, /env/NAME, /file/PATH, /get?url= and /healthz
// until SIGTERM, then says so and exits 0.
func serve(addr string) {
	ln, err := net.Listen("tcp", addr)
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") })
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	go http.Serve(ln, mux)
	fmt.Println("serving on", ln.Addr())
	fmt.Println("got", <-term)
	os.Exit(0)
}
