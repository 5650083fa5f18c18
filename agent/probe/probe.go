// Package probe runs a container's liveness, readiness and startup probes
// with the meaning Kubernetes gives their fields.
//
// A Tracker holds one probe of one run of a container (one container ID):
// when the next probe is due (initialDelaySeconds after the start, then
// every periodSeconds), and the verdict after successThreshold consecutive
// successes or failureThreshold consecutive failures. It reads no clock:
// callers pass the time in, so the agent's tests drive it with a fake
// clock. Run executes one probe handler (exec, httpGet, tcpSocket) against
// a container with its timeout.
package probe

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Kind is the purpose of a probe.
type Kind string

// The three probes of a container.
const (
	Liveness  Kind = "Liveness"
	Readiness Kind = "Readiness"
	Startup   Kind = "Startup"
)

// Result is a probe's verdict.
type Result int8

// Verdicts.
const (
	// Unknown: no verdict yet (a startup probe that has not run).
	Unknown Result = iota
	// Success: the probe passed successThreshold times in a row.
	Success
	// Failure: the probe failed failureThreshold times in a row.
	Failure
)

func (r Result) String() string {
	switch r {
	case Success:
		return "success"
	case Failure:
		return "failure"
	}
	return "unknown"
}

// Kubernetes' defaults for unset probe fields.
const (
	DefaultPeriod           = 10 * time.Second
	DefaultTimeout          = 1 * time.Second
	DefaultSuccessThreshold = 1
	DefaultFailureThreshold = 3
)

// Initial is the verdict a probe has before it first runs, as in the
// kubelet: a container is not ready until its readiness probe passes, is
// alive until its liveness probe fails, and has not started until its
// startup probe passes.
func Initial(k Kind) Result {
	switch k {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	}
	return Unknown
}

// Tracker applies one probe's timing and thresholds to one run of a
// container. It is not safe for concurrent use.
type Tracker struct {
	kind    Kind
	spec    corev1.Probe
	next    time.Time
	result  Result
	last    Result
	run     int32
	onHold  bool
	message string
}

// NewTracker starts tracking probe spec of kind for a container that
// started at startedAt, with the verdict initial until thresholds say
// otherwise (Initial(kind), or the verdict a restarted agent knew).
func NewTracker(kind Kind, spec *corev1.Probe, startedAt time.Time, initial Result) *Tracker {
	s := *spec
	if s.PeriodSeconds <= 0 {
		s.PeriodSeconds = int32(DefaultPeriod / time.Second)
	}
	if s.TimeoutSeconds <= 0 {
		s.TimeoutSeconds = int32(DefaultTimeout / time.Second)
	}
	if s.SuccessThreshold <= 0 || kind != Readiness {
		// Liveness and startup probes must use 1 (API validation).
		s.SuccessThreshold = DefaultSuccessThreshold
	}
	if s.FailureThreshold <= 0 {
		s.FailureThreshold = DefaultFailureThreshold
	}
	return &Tracker{
		kind:   kind,
		spec:   s,
		next:   startedAt.Add(time.Duration(s.InitialDelaySeconds) * time.Second),
		result: initial,
	}
}

// Kind is the probe's kind.
func (t *Tracker) Kind() Kind { return t.kind }

// Handler is what the probe runs.
func (t *Tracker) Handler() corev1.ProbeHandler { return t.spec.ProbeHandler }

// Result is the current verdict.
func (t *Tracker) Result() Result { return t.result }

// Message explains the last failed probe ("" after a success).
func (t *Tracker) Message() string { return t.message }

// Timeout bounds one probe.
func (t *Tracker) Timeout() time.Duration { return time.Duration(t.spec.TimeoutSeconds) * time.Second }

// Period is the time between probes.
func (t *Tracker) Period() time.Duration { return time.Duration(t.spec.PeriodSeconds) * time.Second }

// Next is when the next probe is due; the zero time when the probe is on
// hold (a liveness or startup probe that failed: the container will be
// restarted and gets a new Tracker).
func (t *Tracker) Next() time.Time {
	if t.onHold {
		return time.Time{}
	}
	return t.next
}

// Due reports whether a probe should run at now.
func (t *Tracker) Due(now time.Time) bool { return !t.onHold && !now.Before(t.next) }

// Record takes the outcome of a probe that ran at now and reports whether
// the verdict changed. msg explains a failure.
func (t *Tracker) Record(ok bool, msg string, now time.Time) (changed bool) {
	t.next = now.Add(t.Period())
	r := Failure
	if ok {
		r = Success
		msg = ""
	}
	t.message = msg
	if r == t.last {
		t.run++
	} else {
		t.last, t.run = r, 1
	}
	if (r == Failure && t.run < t.spec.FailureThreshold) || (r == Success && t.run < t.spec.SuccessThreshold) {
		return false
	}
	changed = t.result != r
	t.result = r
	if r == Failure && t.kind != Readiness {
		// The container will be restarted; stop probing this run of it.
		t.onHold = true
		t.run = 0
	}
	return changed
}

// Describe says what the probe checks, as kubectl describe prints it:
// "http-get http://:80/healthz delay=0s timeout=1s period=10s #success=1 #failure=3".
func (t *Tracker) Describe() string {
	return fmt.Sprintf("%s delay=%ds timeout=%ds period=%ds #success=%d #failure=%d", handlerString(t.spec.ProbeHandler),
		t.spec.InitialDelaySeconds, t.spec.TimeoutSeconds, t.spec.PeriodSeconds, t.spec.SuccessThreshold, t.spec.FailureThreshold)
}

func handlerString(h corev1.ProbeHandler) string {
	switch {
	case h.Exec != nil:
		return fmt.Sprintf("exec %v", h.Exec.Command)
	case h.HTTPGet != nil:
		scheme := "http"
		if h.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		return fmt.Sprintf("http-get %s://%s:%s%s", scheme, h.HTTPGet.Host, h.HTTPGet.Port.String(), h.HTTPGet.Path)
	case h.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s", h.TCPSocket.Host, h.TCPSocket.Port.String())
	case h.GRPC != nil:
		return fmt.Sprintf("grpc <pod>:%d", h.GRPC.Port)
	}
	return "unknown"
}
