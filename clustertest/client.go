package clustertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler/httpapi"
)

// Client talks to one server's HTTP API from the harness's own namespace
// (c0), through the switch, so that it is subject to the cluster's
// network like any other client. It is safe for concurrent use.
type Client struct {
	// Server is the name of the server it talks to.
	Server string
	base   string
	hc     *http.Client
}

func newClient(server string, addr string, from *Host) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialIn(ctx, from.NSPath(), network, addr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Client{Server: server, base: "http://" + addr, hc: &http.Client{Transport: tr}}
}

// StatusError is an answer other than 2xx.
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Body) }

// Do sends one request and decodes a JSON answer into out (when not nil);
// it returns the state index the server answered at.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body []byte, out any) (uint64, error) {
	resp, err := c.send(ctx, method, path, q, body)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	idx, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return idx, fmt.Errorf("%s %s on %s: %w", method, path, c.Server, err)
	}
	if resp.StatusCode >= 300 {
		return idx, &StatusError{Code: resp.StatusCode, Body: string(bytes.TrimSpace(data))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return idx, fmt.Errorf("%s %s on %s: decode: %w", method, path, c.Server, err)
		}
	}
	return idx, nil
}

func (c *Client) send(ctx context.Context, method, path string, q url.Values, body []byte) (*http.Response, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", method, path, c.Server, err)
	}
	return resp, nil
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (*api.ClusterStatus, error) {
	var st api.ClusterStatus
	if _, err := c.Do(ctx, http.MethodGet, "/v1/status", nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Apply is POST /v1/apply of a manifest in namespace default.
func (c *Client) Apply(ctx context.Context, manifest []byte) (*api.ApplyResult, error) {
	var res api.ApplyResult
	if _, err := c.Do(ctx, http.MethodPost, "/v1/apply", url.Values{"namespace": {"default"}}, manifest, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// List lists a resource of namespace ns ("" for all or cluster-wide) from
// the server's own state and decodes the items into out, a pointer to a
// slice of pointers to the resource's Go type.
func (c *Client) List(ctx context.Context, resource, ns string, out any) (uint64, error) {
	r, err := api.LookupResource(resource)
	if err != nil {
		return 0, err
	}
	var l api.List
	idx, err := c.Do(ctx, http.MethodGet, api.Path(r, ns, "", ""), nil, nil, &l)
	if err != nil {
		return idx, err
	}
	items, err := json.Marshal(l.Items)
	if err != nil {
		return idx, err
	}
	return idx, json.Unmarshal(items, out)
}

// Get reads one object into out.
func (c *Client) Get(ctx context.Context, resource, ns, name string, out any) (uint64, error) {
	r, err := api.LookupResource(resource)
	if err != nil {
		return 0, err
	}
	return c.Do(ctx, http.MethodGet, api.Path(r, ns, name, ""), nil, nil, out)
}

// GetConsistent reads one object into out with a consistent read
// (?consistent=true): the leader answers, with every write acknowledged
// before the call.
func (c *Client) GetConsistent(ctx context.Context, resource, ns, name string, out any) (uint64, error) {
	r, err := api.LookupResource(resource)
	if err != nil {
		return 0, err
	}
	return c.Do(ctx, http.MethodGet, api.Path(r, ns, name, ""), url.Values{"consistent": {"true"}}, nil, out)
}

// Put writes one object.
func (c *Client) Put(ctx context.Context, resource, ns, name string, obj any) (uint64, error) {
	r, err := api.LookupResource(resource)
	if err != nil {
		return 0, err
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return 0, err
	}
	return c.Do(ctx, http.MethodPut, api.Path(r, ns, name, ""), nil, body, nil)
}

// StateHash is the SHA-256 of the server's own copy of the state (its
// backup at its applied index, GET /v1/operator/snapshot?stale=true) and
// that index.
func (c *Client) StateHash(ctx context.Context) (FSMHash, error) {
	resp, err := c.send(ctx, http.MethodGet, "/v1/operator/snapshot", url.Values{"stale": {"true"}}, nil)
	if err != nil {
		return FSMHash{}, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return FSMHash{}, &StatusError{Code: resp.StatusCode}
	}
	idx, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	sum := resp.Header.Get(httpapi.HeaderSnapshotSHA256)
	if sum == "" || idx == 0 {
		return FSMHash{}, fmt.Errorf("snapshot of %s: no index or checksum in the answer", c.Server)
	}
	return FSMHash{Server: c.Server, Index: idx, SHA256: sum}, nil
}
