package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Target is the container a probe or a lifecycle hook runs against.
type Target struct {
	// IP is the pod's address, where httpGet and tcpSocket handlers
	// connect unless they name a host.
	IP string
	// Ports are the container's ports, to resolve named ports.
	Ports []corev1.ContainerPort
	// Exec runs cmd in the container and returns its exit code and
	// combined output.
	Exec func(ctx context.Context, cmd []string) (code int, output []byte, err error)
}

// maxOutput bounds the output kept in a failure message.
const maxOutput = 10 << 10

// userAgent is what HTTP probes send, as the kubelet sends kube-probe/<v>.
const userAgent = "kube-probe/stead"

// Run executes one probe handler against target, bounded by timeout, and
// reports whether it passed and, when it did not, why, in the words
// kubectl describe shows after "Liveness probe failed: ".
func Run(ctx context.Context, h corev1.ProbeHandler, target Target, timeout time.Duration) (ok bool, message string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		return runExec(ctx, h.Exec.Command, target, timeout)
	case h.HTTPGet != nil:
		return runHTTP(ctx, h.HTTPGet, target)
	case h.TCPSocket != nil:
		return runTCP(ctx, h.TCPSocket, target)
	case h.GRPC != nil:
		return false, "gRPC probes are not supported by Stead; use exec, httpGet or tcpSocket"
	}
	return false, "the probe has no handler"
}

// RunLifecycle runs a postStart or preStop hook; its error says why it
// failed. Sleep hooks are the caller's: they need its clock.
func RunLifecycle(ctx context.Context, h *corev1.LifecycleHandler, target Target, timeout time.Duration) error {
	ph := corev1.ProbeHandler{Exec: h.Exec, HTTPGet: h.HTTPGet, TCPSocket: h.TCPSocket}
	if ph.Exec == nil && ph.HTTPGet == nil && ph.TCPSocket == nil {
		return nil
	}
	if ok, msg := Run(ctx, ph, target, timeout); !ok {
		return errors.New(msg)
	}
	return nil
}

func runExec(ctx context.Context, cmd []string, target Target, timeout time.Duration) (bool, string) {
	if target.Exec == nil {
		return false, "exec probes need a running container"
	}
	code, out, err := target.Exec(ctx, cmd)
	if len(out) > maxOutput {
		out = out[:maxOutput]
	}
	if ctx.Err() != nil {
		return false, fmt.Sprintf("command %q timed out after %s", strings.Join(cmd, " "), timeout)
	}
	if err != nil {
		return false, err.Error()
	}
	if code != 0 {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = fmt.Sprintf("command %q exited with %d", strings.Join(cmd, " "), code)
		}
		return false, msg
	}
	return true, ""
}

// resolvePort turns a port number or name into a number.
func resolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q is not a number and no container port has that name", p.StrVal)
}

func runHTTP(ctx context.Context, g *corev1.HTTPGetAction, target Target) (bool, string) {
	port, err := resolvePort(g.Port, target.Ports)
	if err != nil {
		return false, err.Error()
	}
	host := g.Host
	if host == "" {
		host = target.IP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return false, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			Proxy:             nil,
		},
		// Redirects are followed on the same host only, as the kubelet
		// does; a redirect elsewhere counts as the probe's (3xx) answer.
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 || r.URL.Hostname() != via[0].URL.Hostname() {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	msg := fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	if b := strings.TrimSpace(string(body)); b != "" {
		msg += ": " + b
	}
	return false, msg
}

func runTCP(ctx context.Context, s *corev1.TCPSocketAction, target Target) (bool, string) {
	port, err := resolvePort(s.Port, target.Ports)
	if err != nil {
		return false, err.Error()
	}
	host := s.Host
	if host == "" {
		host = target.IP
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false, err.Error()
	}
	conn.Close()
	return true, ""
}
