package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// step is one probe outcome at a time, and the verdict and next due time
// the tracker must have after it.
type step struct {
	at          int
	ok          bool
	wantResult  Result
	wantChanged bool
	wantNext    int // seconds after t0; -1 means on hold
}

func TestTracker(t *testing.T) {
	cases := []struct {
		name      string
		kind      Kind
		spec      corev1.Probe
		wantFirst int
		steps     []step
	}{
		{
			name:      "readiness defaults: one success makes ready, three failures unready",
			kind:      Readiness,
			spec:      corev1.Probe{},
			wantFirst: 0,
			steps: []step{
				{at: 0, ok: true, wantResult: Success, wantChanged: true, wantNext: 10},
				{at: 10, ok: false, wantResult: Success, wantNext: 20},
				{at: 20, ok: false, wantResult: Success, wantNext: 30},
				{at: 30, ok: false, wantResult: Failure, wantChanged: true, wantNext: 40},
				{at: 40, ok: false, wantResult: Failure, wantNext: 50},
				{at: 50, ok: true, wantResult: Success, wantChanged: true, wantNext: 60},
			},
		},
		{
			name:      "readiness successThreshold 2 and initial delay",
			kind:      Readiness,
			spec:      corev1.Probe{InitialDelaySeconds: 5, PeriodSeconds: 2, SuccessThreshold: 2, FailureThreshold: 1},
			wantFirst: 5,
			steps: []step{
				{at: 5, ok: true, wantResult: Failure, wantNext: 7},
				{at: 7, ok: true, wantResult: Success, wantChanged: true, wantNext: 9},
				{at: 9, ok: false, wantResult: Failure, wantChanged: true, wantNext: 11},
				{at: 11, ok: true, wantResult: Failure, wantNext: 13},
				{at: 13, ok: false, wantResult: Failure, wantNext: 15},
				{at: 15, ok: true, wantResult: Failure, wantNext: 17},
				{at: 17, ok: true, wantResult: Success, wantChanged: true, wantNext: 19},
			},
		},
		{
			name:      "liveness fails after failureThreshold in a row, then holds",
			kind:      Liveness,
			spec:      corev1.Probe{PeriodSeconds: 1, FailureThreshold: 2, SuccessThreshold: 5},
			wantFirst: 0,
			steps: []step{
				{at: 0, ok: false, wantResult: Success, wantNext: 1},
				{at: 1, ok: true, wantResult: Success, wantNext: 2},
				{at: 2, ok: false, wantResult: Success, wantNext: 3},
				{at: 3, ok: false, wantResult: Failure, wantChanged: true, wantNext: -1},
			},
		},
		{
			name:      "startup passes once, fails after threshold",
			kind:      Startup,
			spec:      corev1.Probe{PeriodSeconds: 3, FailureThreshold: 2},
			wantFirst: 0,
			steps: []step{
				{at: 0, ok: false, wantResult: Unknown, wantNext: 3},
				{at: 3, ok: true, wantResult: Success, wantChanged: true, wantNext: 6},
			},
		},
		{
			name:      "startup failing holds",
			kind:      Startup,
			spec:      corev1.Probe{PeriodSeconds: 3, FailureThreshold: 2},
			wantFirst: 0,
			steps: []step{
				{at: 0, ok: false, wantResult: Unknown, wantNext: 3},
				{at: 3, ok: false, wantResult: Failure, wantChanged: true, wantNext: -1},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(tc.kind, &tc.spec, t0, Initial(tc.kind))
			if got := tr.Next(); !got.Equal(at(tc.wantFirst)) {
				t.Fatalf("first probe due %v, want t0+%ds", got.Sub(t0), tc.wantFirst)
			}
			if tc.wantFirst > 0 && tr.Due(at(tc.wantFirst-1)) {
				t.Fatalf("due before the initial delay")
			}
			for i, s := range tc.steps {
				if !tr.Due(at(s.at)) {
					t.Fatalf("step %d: not due at t0+%ds (next %v)", i, s.at, tr.Next().Sub(t0))
				}
				changed := tr.Record(s.ok, "boom", at(s.at))
				if tr.Result() != s.wantResult || changed != s.wantChanged {
					t.Fatalf("step %d (ok=%v at %ds): result %v changed %v, want %v %v", i, s.ok, s.at, tr.Result(), changed, s.wantResult, s.wantChanged)
				}
				if s.wantNext < 0 {
					if !tr.Next().IsZero() || tr.Due(at(s.at+1000)) {
						t.Fatalf("step %d: want on hold, next %v", i, tr.Next())
					}
					continue
				}
				if !tr.Next().Equal(at(s.wantNext)) {
					t.Fatalf("step %d: next %v, want t0+%ds", i, tr.Next().Sub(t0), s.wantNext)
				}
			}
		})
	}
}

func TestTrackerMessageAndDefaults(t *testing.T) {
	tr := NewTracker(Readiness, &corev1.Probe{}, t0, Initial(Readiness))
	if tr.Timeout() != time.Second || tr.Period() != 10*time.Second {
		t.Errorf("defaults: timeout %v period %v", tr.Timeout(), tr.Period())
	}
	tr.Record(false, "HTTP probe failed with statuscode: 500", t0)
	if tr.Message() != "HTTP probe failed with statuscode: 500" {
		t.Errorf("message %q", tr.Message())
	}
	tr.Record(true, "ignored", at(10))
	if tr.Message() != "" {
		t.Errorf("message after success %q", tr.Message())
	}
	p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt(80)}}}
	if got := NewTracker(Liveness, p, t0, Success).Describe(); got != "http-get http://:80/healthz delay=0s timeout=1s period=10s #success=1 #failure=3" {
		t.Errorf("Describe = %q", got)
	}
}

func TestRunHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") != userAgent || r.Header.Get("X-Probe") != "yes" {
			http.Error(w, "headers "+r.Header.Get("User-Agent"), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "not yet", http.StatusServiceUnavailable) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/fail", http.StatusFound) })
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.invalid/", http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	target := Target{IP: host, Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: int32(port)}}}
	hdr := []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}}

	cases := []struct {
		name    string
		get     corev1.HTTPGetAction
		wantOK  bool
		wantMsg string
	}{
		{"200 with headers, named port", corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("web"), HTTPHeaders: hdr}, true, ""},
		{"503", corev1.HTTPGetAction{Path: "/fail", Port: intstr.FromInt(port)}, false, "HTTP probe failed with statuscode: 503: not yet"},
		{"same-host redirect is followed", corev1.HTTPGetAction{Path: "/redirect", Port: intstr.FromInt(port)}, false, "HTTP probe failed with statuscode: 503: not yet"},
		{"redirect elsewhere counts as success", corev1.HTTPGetAction{Path: "/away", Port: intstr.FromInt(port)}, true, ""},
		{"timeout", corev1.HTTPGetAction{Path: "/slow", Port: intstr.FromInt(port)}, false, "context deadline exceeded"},
		{"unknown port name", corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("nope")}, false, `port "nope" is not a number and no container port has that name`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ok, msg := Run(context.Background(), corev1.ProbeHandler{HTTPGet: &tc.get}, target, 300*time.Millisecond)
			if ok != tc.wantOK || !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("got %v %q, want %v containing %q", ok, msg, tc.wantOK, tc.wantMsg)
			}
		})
	}
}

func TestRunTCPAndExec(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	// The port is closed now: refused.
	ok, msg := Run(context.Background(), corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}, Target{IP: "127.0.0.1"}, time.Second)
	if ok || !strings.Contains(msg, "connection refused") {
		t.Errorf("closed port: %v %q", ok, msg)
	}
	ln, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port, err)
	}
	defer ln.Close()
	if ok, msg := Run(context.Background(), corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt(port)}}, Target{IP: "127.0.0.1"}, time.Second); !ok {
		t.Errorf("open port: %q", msg)
	}

	execTarget := Target{Exec: func(ctx context.Context, cmd []string) (int, []byte, error) {
		switch cmd[0] {
		case "true":
			return 0, nil, nil
		case "false":
			return 1, []byte("not ready\n"), nil
		case "silent":
			return 2, nil, nil
		case "hang":
			<-ctx.Done()
			return -1, nil, ctx.Err()
		}
		return -1, nil, errors.New("exec: no such file")
	}}
	execCases := []struct {
		cmd     string
		wantOK  bool
		wantMsg string
	}{
		{"true", true, ""},
		{"false", false, "not ready"},
		{"silent", false, `command "silent" exited with 2`},
		{"hang", false, `command "hang" timed out after 50ms`},
		{"missing", false, "exec: no such file"},
	}
	for _, tc := range execCases {
		ok, msg := Run(context.Background(), corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{tc.cmd}}}, execTarget, 50*time.Millisecond)
		if ok != tc.wantOK || msg != tc.wantMsg {
			t.Errorf("exec %s: got %v %q, want %v %q", tc.cmd, ok, msg, tc.wantOK, tc.wantMsg)
		}
	}
	if ok, msg := Run(context.Background(), corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9}}, execTarget, time.Second); ok || !strings.Contains(msg, "not supported") {
		t.Errorf("grpc: %v %q", ok, msg)
	}
}
