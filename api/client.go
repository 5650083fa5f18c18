package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultAddr is where the CLI looks for a server when neither --server nor
// STEAD_ADDR says otherwise: the HTTP API of `stead dev`.
const DefaultAddr = "127.0.0.1:7470"

// Client talks to a Stead server's HTTP API. It is safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
	// Token, when set, is sent as a bearer token.
	Token string
}

// NewClient returns a client for the server at addr, given as host:port or
// as an http(s) URL.
func NewClient(addr string) (*Client, error) {
	return NewClientWithOptions(addr, ClientOptions{})
}

// ClientOptions configure a Client beyond its server's address.
type ClientOptions struct {
	// TLS, when set, is used to dial the server over TLS: an address
	// without a scheme then means https, and an http:// address is
	// refused. (*TLS).ClientConfig makes one that checks the server's
	// role.
	TLS *tls.Config
	// Token is sent as a bearer token.
	Token string
}

// NewClientWithOptions returns a client for the server at addr, given as
// host:port or as an http(s) URL.
func NewClientWithOptions(addr string, o ClientOptions) (*Client, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	if !strings.Contains(addr, "://") {
		if o.TLS != nil {
			addr = "https://" + addr
		} else {
			addr = "http://" + addr
		}
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("server address %q is not host:port or a URL", addr)
	}
	hc := &http.Client{}
	switch {
	case u.Scheme == "https" && o.TLS != nil:
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = o.TLS
		hc.Transport = tr
	case u.Scheme == "http" && o.TLS != nil:
		return nil, fmt.Errorf("server address %q says http, but TLS is configured: use https:// or host:port", addr)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("server address %q: scheme %q is not http or https", addr, u.Scheme)
	}
	return &Client{base: u, http: hc, Token: o.Token}, nil
}

// Addr returns the server address the client talks to.
func (c *Client) Addr() string { return c.base.Host }

// Path returns the URL path of a resource: the collection when name is
// empty, and a subresource such as "scale" when sub is set. A namespaced
// resource with an empty namespace addresses every namespace.
func Path(r Resource, ns, name, sub string) string {
	p := "/v1"
	if r.Namespaced && ns != "" {
		p += "/namespaces/" + url.PathEscape(ns)
	}
	p += "/" + r.Name
	if name != "" {
		p += "/" + url.PathEscape(name)
		if sub != "" {
			p += "/" + sub
		}
	}
	return p
}

// ListOptions narrow and block a list.
type ListOptions struct {
	// LabelSelector is a Kubernetes label selector: "app=nginx,tier!=db".
	LabelSelector string
	// FieldSelector selects by metadata.name, metadata.namespace,
	// spec.nodeName or status.phase: "spec.nodeName=node-a".
	FieldSelector string
	// Index, when non-zero, makes the call block until what the list
	// reads (its kind, or with FieldSelector spec.nodeName=N that node's
	// pods) changed past it, or Wait elapses (a blocking query).
	Index uint64
	// Wait bounds a blocking query; the server caps it.
	Wait time.Duration
	// Consistent has the leader answer, once it has confirmed with a
	// quorum that it leads and holds every write acknowledged before the
	// call (?consistent=true); a server answers from its own replica
	// otherwise, which may lag. It cannot be combined with Index.
	Consistent bool
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.Consistent {
		q.Set("consistent", "true")
	}
	if o.Index > 0 {
		q.Set("index", strconv.FormatUint(o.Index, 10))
		if o.Wait > 0 {
			q.Set("wait", o.Wait.String())
		}
	}
	return q
}

// Get reads one object into out and returns the state index it was read at.
func (c *Client) Get(ctx context.Context, r Resource, ns, name string, out any) (uint64, error) {
	return c.Do(ctx, http.MethodGet, Path(r, ns, name, ""), nil, nil, out)
}

// GetConsistent is Get answered as ListOptions.Consistent says: by the
// leader, with every write acknowledged before the call.
func (c *Client) GetConsistent(ctx context.Context, r Resource, ns, name string, out any) (uint64, error) {
	return c.Do(ctx, http.MethodGet, Path(r, ns, name, ""), url.Values{"consistent": {"true"}}, nil, out)
}

// List reads a collection. With opts.Index set it blocks until the state
// moves past that index (or the wait ends) before answering.
func (c *Client) List(ctx context.Context, r Resource, ns string, opts ListOptions) (*List, uint64, error) {
	var l List
	idx, err := c.Do(ctx, http.MethodGet, Path(r, ns, "", ""), opts.query(), nil, &l)
	if err != nil {
		return nil, 0, err
	}
	return &l, idx, nil
}

// Put creates or replaces one object and decodes the stored object into out.
func (c *Client) Put(ctx context.Context, r Resource, ns, name string, obj, out any) (uint64, error) {
	body, err := json.Marshal(obj)
	if err != nil {
		return 0, err
	}
	return c.Do(ctx, http.MethodPut, Path(r, ns, name, ""), nil, body, out)
}

// DeleteOptions shape a delete, as kubectl's flags do.
type DeleteOptions struct {
	// Cascade is "background" (the default: the object's dependents are
	// deleted too) or "orphan" (they are left running, without an owner).
	Cascade string
	// GracePeriodSeconds overrides the pod's terminationGracePeriodSeconds.
	GracePeriodSeconds *int64
	// UID, when set, deletes the object only if it is still this
	// incarnation; a newer object of the same name answers NotFound.
	UID string
	// Force removes a pod's record without waiting for its node to confirm
	// that it stopped: the operator asserts it is dead.
	Force bool
}

// Delete deletes one object.
func (c *Client) Delete(ctx context.Context, r Resource, ns, name string, opts DeleteOptions) (uint64, error) {
	q := url.Values{}
	if opts.Cascade != "" {
		q.Set("cascade", opts.Cascade)
	}
	if opts.GracePeriodSeconds != nil {
		q.Set("gracePeriodSeconds", strconv.FormatInt(*opts.GracePeriodSeconds, 10))
	}
	if opts.UID != "" {
		q.Set("uid", opts.UID)
	}
	if opts.Force {
		q.Set("force", "true")
	}
	return c.Do(ctx, http.MethodDelete, Path(r, ns, name, ""), q, nil, nil)
}

// Apply sends a manifest (YAML or JSON, several documents allowed) to be
// validated whole and applied all at once. ns is the namespace for objects
// that name none.
func (c *Client) Apply(ctx context.Context, manifest []byte, ns string) (*ApplyResult, error) {
	q := url.Values{}
	if ns != "" {
		q.Set("namespace", ns)
	}
	var res ApplyResult
	if _, err := c.Do(ctx, http.MethodPost, "/v1/apply", q, manifest, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// Status returns which server leads and the state index.
func (c *Client) Status(ctx context.Context) (*ClusterStatus, error) {
	var st ClusterStatus
	if _, err := c.Do(ctx, http.MethodGet, "/v1/status", nil, nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Do sends one request and decodes a JSON answer into out (when out is not
// nil; a write whose answer out would not take asks for none, with
// PreferMinimal). Errors the server reports come back as
// *apierrors.StatusError, so callers can test them with apierrors.IsNotFound
// and friends.
func (c *Client) Do(ctx context.Context, method, path string, q url.Values, body []byte, out any) (uint64, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + path
	u.RawQuery = q.Encode()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		if out == nil {
			req.Header.Set("Prefer", PreferMinimal)
		}
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, c.explain(err)
	}
	defer resp.Body.Close()
	idx, _ := strconv.ParseUint(resp.Header.Get(HeaderIndex), 10, 64)
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return idx, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return idx, decodeStatus(resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return idx, fmt.Errorf("decode answer of %s %s: %w", method, path, err)
		}
	}
	return idx, nil
}

// Stream sends one request with a body read from body (nil for none) and
// returns the answer for the caller to read and close: for what is too
// large or not JSON, such as a snapshot of the state. An answer other
// than 2xx comes back as a *apierrors.StatusError, as from Do.
func (c *Client) Stream(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Response, error) {
	u := *c.base
	u.Path = strings.TrimSuffix(c.base.Path, "/") + path
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.explain(err)
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
		}
		return nil, decodeStatus(resp.StatusCode, data)
	}
	return resp, nil
}

// explain turns a transport failure into advice a person can act on.
func (c *Client) explain(err error) error {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("no server at %s: is 'stead dev' or 'stead server' running? set --server or STEAD_ADDR", c.base.Host)
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Errorf("cannot resolve server %s: %w; set --server or STEAD_ADDR", c.base.Host, err)
	}
	var recErr tls.RecordHeaderError
	if errors.As(err, &recErr) {
		return fmt.Errorf("server %s does not answer TLS: %w; use an http:// address without --tls-* if it serves plain HTTP", c.base.Host, err)
	}
	var authErr x509.UnknownAuthorityError
	if errors.As(err, &authErr) {
		return fmt.Errorf("server %s presented a certificate the CA of --tls-ca did not sign: %w", c.base.Host, err)
	}
	var nameErr x509.HostnameError
	if errors.As(err, &nameErr) {
		return fmt.Errorf("server %s presented a certificate without the role this client expects: %w", c.base.Host, err)
	}
	var certErr x509.CertificateInvalidError
	if errors.As(err, &certErr) {
		return fmt.Errorf("server %s presented an invalid certificate: %w", c.base.Host, err)
	}
	// crypto/tls reports an alert from the server only in its text.
	if strings.Contains(err.Error(), "remote error: tls:") {
		return fmt.Errorf("server %s refused this client's certificate: %w; check --tls-cert and --tls-key", c.base.Host, err)
	}
	return fmt.Errorf("talk to server %s: %w", c.base.Host, err)
}

// decodeStatus turns an error answer into a *apierrors.StatusError.
func decodeStatus(code int, data []byte) error {
	var st metav1.Status
	if err := json.Unmarshal(data, &st); err != nil || st.Message == "" {
		msg := strings.TrimSpace(string(data))
		if msg == "" {
			msg = http.StatusText(code)
		}
		st = metav1.Status{Status: metav1.StatusFailure, Code: int32(code), Message: msg}
	}
	return &apierrors.StatusError{ErrStatus: st}
}
