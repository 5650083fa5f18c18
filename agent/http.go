package agent

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/stead-io/stead/acl"
	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/api"
)

// maxImageArchive bounds an uploaded image archive.
const maxImageArchive = 4 << 30

// handler serves the agent's HTTP API (see api.ExecProtocol for the list)
// and its metrics on GET /metrics.
//
// When the agent has a token (Config.Token), every request but GET
// /v1/health must carry a token: the agent's own, or one the servers know
// (authorize). Over TLS, callers present a certificate of the cluster that
// is not an agent's.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "node": a.cfg.NodeName})
	})
	mux.HandleFunc("GET /v1/logs/{ns}/{pod}", a.serveLogs)
	mux.HandleFunc("POST /v1/exec/{ns}/{pod}", a.serveExec)
	mux.HandleFunc("GET /v1/images", a.serveListImages)
	mux.HandleFunc("POST /v1/images", a.serveImportImages)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.metrics.registry, promhttp.HandlerOpts{}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			if id, ok := api.PeerIdentity(r.TLS); !ok || id.Role == api.CertAgent {
				fail(w, apierrors.NewForbidden(schema.GroupResource{Resource: "agent"}, a.cfg.NodeName,
					errors.New("the agent's API takes client and server certificates of the cluster, not another agent's")))
				return
			}
		}
		need := accessOf(r)
		if need != accessOpen && a.cfg.Token != "" {
			if err := a.authorize(r, need); err != nil {
				fail(w, err)
				return
			}
		}
		// Metrics say how a starting agent is doing too.
		if r.URL.Path != "/metrics" {
			select {
			case <-a.ready:
			default:
				fail(w, apierrors.NewServiceUnavailable("the agent is starting; retry in a few seconds"))
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// access is what a request to the agent's API needs of its token.
type access int

const (
	// accessOpen needs no token: liveness.
	accessOpen access = iota
	// accessRead needs a read-only or management token: logs, the image
	// list and metrics.
	accessRead
	// accessWrite needs a management token: exec, image import and
	// anything else.
	accessWrite
)

// accessOf says what r needs, by its method and path as the API's router
// matches them; what it does not name needs a management token.
func accessOf(r *http.Request) access {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	if method != http.MethodGet {
		return accessWrite
	}
	p := acl.ParsePath(r.URL.EscapedPath())
	switch {
	case len(p) == 2 && p[0] == "v1" && p[1] == "health":
		return accessOpen
	case len(p) == 4 && p[0] == "v1" && p[1] == "logs",
		len(p) == 2 && p[0] == "v1" && p[1] == "images",
		len(p) == 1 && p[0] == "metrics":
		return accessRead
	}
	return accessWrite
}

// authorize checks the token r carries for need: the agent's own token
// (compared in constant time) may do everything; any other is asked of the
// servers (tokenChecker): a management token may do everything, a
// read-only one may read, and an agent token, of this node or another,
// nothing. Nothing else is let through: 401 without a valid token, 403
// with one whose role does not allow the request.
func (a *Agent) authorize(r *http.Request, need access) error {
	h := r.Header.Get("Authorization")
	if h == "" {
		return apierrors.NewUnauthorized("this agent needs a token: pass --token or set STEAD_TOKEN")
	}
	secret, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return apierrors.NewUnauthorized("the Authorization header is not \"Bearer TOKEN\"")
	}
	secret = strings.TrimSpace(secret)
	if subtle.ConstantTimeCompare([]byte(secret), []byte(a.cfg.Token)) == 1 {
		return nil
	}
	source, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		source = r.RemoteAddr
	}
	tok, err := a.tokens.check(r.Context(), secret, source)
	if err != nil {
		if apierrors.IsUnauthorized(err) {
			a.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", err)
		}
		return err
	}
	var refused string
	switch tok.Role {
	case api.TokenManagement:
		return nil
	case api.TokenReadOnly:
		if need == accessRead {
			return nil
		}
		refused = fmt.Sprintf("token %s is read-only: it may not %s %s on node %s", tok.ID, r.Method, r.URL.Path, a.cfg.NodeName)
	case api.TokenAgent:
		refused = fmt.Sprintf("token %s belongs to the agent of node %s: it may not use the API of node %s's agent", tok.ID, tok.Node, a.cfg.NodeName)
	default:
		refused = fmt.Sprintf("token %s has role %q, which the agent does not know", tok.ID, tok.Role)
	}
	a.log.Warn("request forbidden", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "token", tok.ID, "reason", refused)
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden,
		Reason: metav1.StatusReasonForbidden, Message: refused}}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}

// fail answers err as a Kubernetes Status.
func fail(w http.ResponseWriter, err error) {
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		se = apierrors.NewInternalError(err)
	}
	st := se.Status()
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	writeJSON(w, int(st.Code), st)
}

var podsGR = schema.GroupResource{Resource: "pods"}

// podContainer is one container of a pod on this node, as the logs and
// exec endpoints find it.
type podContainer struct {
	// Cur is the latest attempt; Prev the one before, if kept.
	Cur, Prev *containerd.Container
}

// findContainer finds container name of pod ns/podName among the
// containers of its newest sandbox here. An empty name is the pod's only
// container.
func (a *Agent) findContainer(ctx context.Context, ns, podName, name string) (podContainer, error) {
	k := podKey{ns, podName}
	cs, err := a.containers.ListLabeled(ctx, labelPod, k.String())
	if err != nil {
		return podContainer{}, err
	}
	if len(cs) == 0 {
		return podContainer{}, apierrors.NewNotFound(podsGR, podName)
	}
	// The newest sandbox: the highest generation, then the latest start.
	sort.SliceStable(cs, func(i, j int) bool {
		gi, _ := strconv.ParseInt(cs[i].Labels[labelGeneration], 10, 64)
		gj, _ := strconv.ParseInt(cs[j].Labels[labelGeneration], 10, 64)
		return gi < gj
	})
	sb := cs[len(cs)-1].Labels[labelSandbox]
	names := map[string]bool{}
	var mine []containerd.Container
	for _, c := range cs {
		if c.Labels[labelSandbox] != sb {
			continue
		}
		mine = append(mine, c)
		if c.Labels[labelInit] != "true" {
			names[c.Labels[labelContainer]] = true
		}
	}
	if name == "" {
		if rec := readPodRecord(a.paths, sb); rec != nil && len(rec.Spec.Containers) > 0 {
			if len(rec.Spec.Containers) == 1 {
				name = rec.Spec.Containers[0].Name
			} else if d := rec.Annotations["kubectl.kubernetes.io/default-container"]; d != "" {
				name = d
			}
		} else if len(names) == 1 {
			for n := range names {
				name = n
			}
		}
	}
	if name == "" {
		list := make([]string, 0, len(names))
		for n := range names {
			list = append(list, n)
		}
		sort.Strings(list)
		return podContainer{}, apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: %v", podName, list))
	}
	var out podContainer
	best, second := -1, -1
	for i := range mine {
		c := &mine[i]
		if c.Labels[labelContainer] != name {
			continue
		}
		n, _ := strconv.Atoi(c.Labels[labelAttempt])
		switch {
		case n > best:
			out.Prev, second = out.Cur, best
			out.Cur, best = c, n
		case n > second:
			out.Prev, second = c, n
		}
	}
	if out.Cur == nil {
		return podContainer{}, apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, podName))
	}
	return out, nil
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, podName := r.PathValue("ns"), r.PathValue("pod")
	pc, err := a.findContainer(r.Context(), ns, podName, q.Get("container"))
	if err != nil {
		fail(w, err)
		return
	}
	c := pc.Cur
	if q.Get("previous") == "true" {
		if pc.Prev == nil {
			fail(w, apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", c.Labels[labelContainer], podName)))
			return
		}
		c = pc.Prev
	}
	tail := -1
	if t := q.Get("tail"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < -1 {
			fail(w, apierrors.NewBadRequest(fmt.Sprintf("tail %q is not a number of lines", t)))
			return
		}
		tail = n
	}
	follow := q.Get("follow") == "true" && c == pc.Cur
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w}
	if f, ok := w.(http.Flusher); ok {
		fw.f = f
	}
	running := func(ctx context.Context) bool {
		st, err := a.containers.Inspect(ctx, c.ID)
		return err == nil && st.State == containerd.StateRunning
	}
	if err := streamLog(r.Context(), fw, c.LogPath, tail, follow, running, a.cfg.Clock); err != nil && r.Context().Err() == nil {
		a.log.Warn("stream log", "pod", ns+"/"+podName, "container", c.ID, "error", err)
	}
}

// flushWriter flushes after every write, so followed logs arrive as they
// are written.
type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) {
	n, err := fw.w.Write(p)
	if fw.f != nil {
		fw.f.Flush()
	}
	return n, err
}

func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ns, podName := r.PathValue("ns"), r.PathValue("pod")
	cmd := q["command"]
	if len(cmd) == 0 {
		fail(w, apierrors.NewBadRequest("no command given: stead exec POD -- COMMAND [ARGS...]"))
		return
	}
	if r.Header.Get("Upgrade") != api.ExecProtocol {
		fail(w, apierrors.NewBadRequest(fmt.Sprintf("exec needs an upgrade to %s", api.ExecProtocol)))
		return
	}
	pc, err := a.findContainer(r.Context(), ns, podName, q.Get("container"))
	if err != nil {
		fail(w, err)
		return
	}
	if pc.Cur.Status.State != containerd.StateRunning {
		fail(w, apierrors.NewBadRequest(fmt.Sprintf("container %s of pod %s is not running", pc.Cur.Labels[labelContainer], podName)))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		fail(w, apierrors.NewInternalError(errors.New("connection cannot be upgraded")))
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", api.ExecProtocol)
	if err := rw.Flush(); err != nil {
		return
	}
	// The request's context ends with the hijack; the exec lives as long as
	// the connection.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wmu sync.Mutex
	send := func(t api.FrameType, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		if err := api.WriteFrame(rw, t, p); err != nil {
			return err
		}
		return rw.Flush()
	}
	opts := containerd.ExecOptions{
		Cmd:    cmd,
		TTY:    q.Get("tty") == "true",
		Stdout: frameWriter{api.FrameStdout, send},
		Stderr: frameWriter{api.FrameStderr, send},
	}
	var stdinW *io.PipeWriter
	if q.Get("stdin") == "true" {
		var stdinR *io.PipeReader
		stdinR, stdinW = io.Pipe()
		opts.Stdin = stdinR
	}
	resize := make(chan [2]uint16, 1)
	if opts.TTY {
		opts.Resize = resize
	}
	go readClientFrames(rw.Reader, stdinW, resize, cancel)
	code, err := a.containers.Exec(ctx, pc.Cur.ID, opts)
	if err != nil {
		send(api.FrameError, []byte(err.Error()))
		return
	}
	send(api.FrameExit, api.ExitPayload(code))
}

// readClientFrames copies the client's stdin frames into the process and
// passes terminal sizes on (the latest wins); the client going away ends
// the exec.
func readClientFrames(r *bufio.Reader, stdin *io.PipeWriter, resize chan [2]uint16, cancel context.CancelFunc) {
	for {
		t, p, err := api.ReadFrame(r)
		if err != nil {
			if stdin != nil {
				stdin.Close()
			}
			cancel()
			return
		}
		if t == api.FrameResize {
			if w, h, err := api.ParseResize(p); err == nil {
				select {
				case <-resize:
				default:
				}
				resize <- [2]uint16{w, h}
			}
			continue
		}
		if t != api.FrameStdin || stdin == nil {
			continue
		}
		if len(p) == 0 {
			stdin.Close()
			stdin = nil
			continue
		}
		if _, err := stdin.Write(p); err != nil {
			stdin = nil
		}
	}
}

// frameWriter sends what a process writes as frames of one type.
type frameWriter struct {
	t    api.FrameType
	send func(api.FrameType, []byte) error
}

func (f frameWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += api.MaxFrame {
		end := min(off+api.MaxFrame, len(p))
		if err := f.send(f.t, p[off:end]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

func (a *Agent) serveListImages(w http.ResponseWriter, r *http.Request) {
	names, err := a.containers.ListImages(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.ImageList{Node: a.cfg.NodeName, Images: names})
}

func (a *Agent) serveImportImages(w http.ResponseWriter, r *http.Request) {
	names, err := a.containers.ImportArchive(r.Context(), http.MaxBytesReader(w, r.Body, maxImageArchive))
	if err != nil {
		fail(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	a.log.Info("imported images", "images", names)
	writeJSON(w, http.StatusOK, api.ImageList{Node: a.cfg.NodeName, Images: names})
	// Pods waiting for these images need not wait for their back-off.
	a.pokeAll()
}
