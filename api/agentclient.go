package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// AgentClient talks to one node agent's HTTP API (logs, exec, images). It
// is safe for concurrent use.
type AgentClient struct {
	base *url.URL
	http *http.Client
	tls  *tls.Config
	// Token, when set, is sent as a bearer token.
	Token string
}

// NewAgentClient returns a client for the agent at addr (host:port or an
// http URL), as recorded in its node's AnnotationAgentAddr.
func NewAgentClient(addr string) (*AgentClient, error) {
	return NewAgentClientWithOptions(addr, ClientOptions{})
}

// NewAgentClientWithOptions returns a client for the agent at addr. With
// o.TLS (for instance TLS.ClientConfigFor(AgentName(cluster, node))) it
// speaks mutual TLS and checks that the agent is the node's.
func NewAgentClientWithOptions(addr string, o ClientOptions) (*AgentClient, error) {
	if !strings.Contains(addr, "://") {
		scheme := "http://"
		if o.TLS != nil {
			scheme = "https://"
		}
		addr = scheme + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("agent address %q is not host:port", addr)
	}
	c := &AgentClient{base: u, http: &http.Client{}, tls: o.TLS, Token: o.Token}
	if o.TLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLS
		tr.ForceAttemptHTTP2 = false
		c.http.Transport = tr
	}
	return c, nil
}

// Addr is the agent's address.
func (c *AgentClient) Addr() string { return c.base.Host }

func (c *AgentClient) url(path string, q url.Values) string {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + path
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *AgentClient) do(req *http.Request) (*http.Response, error) {
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("talk to agent %s: %w", c.base.Host, err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, decodeStatus(resp.StatusCode, data)
	}
	return resp, nil
}

// LogOptions select what Logs streams, as kubectl logs' flags do.
type LogOptions struct {
	// Container names the container; empty means the pod's only one.
	Container string
	// Follow keeps streaming what the container writes until it stops.
	Follow bool
	// Tail is the number of last lines to send first; negative means all.
	Tail int
	// Previous reads the run before the current one.
	Previous bool
}

// Logs streams a container's log; the caller closes it.
func (c *AgentClient) Logs(ctx context.Context, ns, pod string, opts LogOptions) (io.ReadCloser, error) {
	q := url.Values{}
	if opts.Container != "" {
		q.Set("container", opts.Container)
	}
	if opts.Follow {
		q.Set("follow", "true")
	}
	if opts.Tail >= 0 {
		q.Set("tail", strconv.Itoa(opts.Tail))
	}
	if opts.Previous {
		q.Set("previous", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/logs/"+url.PathEscape(ns)+"/"+url.PathEscape(pod), q), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// ExecOptions say what to run in a container and where its streams go.
type ExecOptions struct {
	// Container names the container; empty means the pod's only one.
	Container string
	// Command is the program and its arguments.
	Command []string
	// TTY gives the process a terminal; its output arrives on Stdout.
	TTY bool
	// Stdin, when set, is copied to the process; its end closes the
	// process's standard input.
	Stdin io.Reader
	// Stdout and Stderr receive the process's output (discarded when nil).
	Stdout, Stderr io.Writer
	// Resize carries terminal sizes (width, height) to pass on.
	Resize <-chan [2]uint16
}

// Exec runs a command in a pod's container and returns its exit code.
func (c *AgentClient) Exec(ctx context.Context, ns, pod string, opts ExecOptions) (int, error) {
	q := url.Values{"command": opts.Command}
	if opts.Container != "" {
		q.Set("container", opts.Container)
	}
	if opts.TTY {
		q.Set("tty", "true")
	}
	if opts.Stdin != nil {
		q.Set("stdin", "true")
	}
	target := c.url("/v1/exec/"+url.PathEscape(ns)+"/"+url.PathEscape(pod), q)
	req, err := http.NewRequest(http.MethodPost, target, nil)
	if err != nil {
		return -1, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", ExecProtocol)
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	var conn net.Conn
	if c.tls != nil {
		d := tls.Dialer{Config: c.tls}
		conn, err = d.DialContext(ctx, "tcp", c.base.Host)
	} else {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "tcp", c.base.Host)
	}
	if err != nil {
		return -1, fmt.Errorf("talk to agent %s: %w", c.base.Host, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if err := req.Write(conn); err != nil {
		return -1, fmt.Errorf("talk to agent %s: %w", c.base.Host, err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return -1, fmt.Errorf("talk to agent %s: %w", c.base.Host, err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return -1, decodeStatus(resp.StatusCode, data)
	}
	var wmu sync.Mutex
	send := func(t FrameType, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return WriteFrame(conn, t, p)
	}
	if opts.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := opts.Stdin.Read(buf)
				if n > 0 {
					if send(FrameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					send(FrameStdin, nil)
					return
				}
			}
		}()
	}
	if opts.Resize != nil {
		go func() {
			for sz := range opts.Resize {
				if send(FrameResize, ResizePayload(sz[0], sz[1])) != nil {
					return
				}
			}
		}()
	}
	stdout, stderr := opts.Stdout, opts.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		t, p, err := ReadFrame(br)
		if err != nil {
			if ctx.Err() != nil {
				return -1, ctx.Err()
			}
			return -1, fmt.Errorf("exec in %s/%s: the agent closed the connection: %w", ns, pod, err)
		}
		switch t {
		case FrameStdout:
			stdout.Write(p)
		case FrameStderr:
			stderr.Write(p)
		case FrameExit:
			return ParseExit(p)
		case FrameError:
			return -1, fmt.Errorf("exec in %s/%s: %s", ns, pod, p)
		}
	}
}

// ImportImage sends an OCI or Docker archive for the agent to import.
func (c *AgentClient) ImportImage(ctx context.Context, archive io.Reader) (*ImageList, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("/v1/images", nil), archive)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-tar")
	return c.images(req)
}

// ListImages names the images in the agent's store.
func (c *AgentClient) ListImages(ctx context.Context) (*ImageList, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url("/v1/images", nil), nil)
	if err != nil {
		return nil, err
	}
	return c.images(req)
}

func (c *AgentClient) images(req *http.Request) (*ImageList, error) {
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var l ImageList
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return nil, fmt.Errorf("decode answer of agent %s: %w", c.base.Host, err)
	}
	return &l, nil
}
