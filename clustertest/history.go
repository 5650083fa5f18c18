package clustertest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Outcome is how an operation of the history ended.
type Outcome string

// Outcomes, as in Jepsen: ok and fail are certain, info is unknown (a
// timeout or a lost connection: the write may or may not have happened).
const (
	OK      Outcome = "ok"
	Fail    Outcome = "fail"
	Info    Outcome = "info"
	Pending Outcome = ""
)

// Op is one operation of a client.
type Op struct {
	// ID numbers the operations in invocation order.
	ID int
	// Kind says what it did ("put"), Key on what.
	Kind, Key string
	// Server is the server it was sent to.
	Server string
	// Invoke and Complete are CLOCK_MONOTONIC nanoseconds; Complete is 0
	// while pending.
	Invoke, Complete int64
	Outcome          Outcome
	// Index is the state index the server answered at (for ok).
	Index uint64
	Err   string
}

// History records the operations of the test's clients, in invocation
// order, with monotonic times (RELIABILITY 6.1). It is safe for concurrent
// use.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Invoke records the start of an operation and returns its ID.
func (h *History) Invoke(kind, key, server string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := len(h.ops)
	h.ops = append(h.ops, Op{ID: id, Kind: kind, Key: key, Server: server, Invoke: monoNow()})
	return id
}

// Complete records the end of operation id.
func (h *History) Complete(id int, out Outcome, index uint64, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := &h.ops[id]
	op.Complete, op.Outcome, op.Index = monoNow(), out, index
	if err != nil {
		op.Err = err.Error()
	}
}

// Ops returns a copy of the history.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Counts returns how many operations ended each way.
func (h *History) Counts() map[Outcome]int {
	out := map[Outcome]int{}
	for _, op := range h.Ops() {
		out[op.Outcome]++
	}
	return out
}

// outcomeOf classifies the error of a write: nil is ok, a refusal the
// server gave (4xx other than timeouts and throttling) is fail, anything
// else is info.
func outcomeOf(err error) Outcome {
	if err == nil {
		return OK
	}
	var se *StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 && se.Code != http.StatusRequestTimeout && se.Code != http.StatusTooManyRequests {
		return Fail
	}
	return Info
}

// ackLabel marks the objects the writer makes.
const ackLabel = "clustertest/ack"

// ackKey names the n-th object a client writes through server s.
func ackKey(s string, n int) string { return "ack-" + s + "-" + strconv.Itoa(n) }

// StartWriter runs one client per server, each creating a Service object
// through its server every interval (so that a server that hangs holds up
// only its own client), and records every write in h. stop ends them and
// waits.
func (c *Cluster) StartWriter(h *History, interval time.Duration) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range c.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; ; n++ {
				key := ackKey(s, n)
				svc := &corev1.Service{
					TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
					ObjectMeta: metav1.ObjectMeta{Name: key, Namespace: "default", Labels: map[string]string{ackLabel: "true"}},
					Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "none", Port: 80}}},
				}
				id := h.Invoke("put", key, s)
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				idx, err := c.Client(s).Put(ctx, "services", "default", key, svc)
				cancel()
				h.Complete(id, outcomeOf(err), idx, err)
				select {
				case <-quit:
					return
				case <-tick.C:
				}
			}
		}()
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		wg.Wait()
	}
}

// CheckAcked checks, on every server, that every write h records as ok
// is in the server's state, and that no write recorded as fail is.
func (c *Cluster) CheckAcked(h *History) error {
	var errs []error
	ops := h.Ops()
	for _, s := range c.servers {
		if !c.Running(s) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var svcs []*corev1.Service
		_, err := c.Client(s).List(ctx, "services", "default", &svcs)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			continue
		}
		have := map[string]bool{}
		for _, svc := range svcs {
			have[svc.Name] = true
		}
		errs = append(errs, lostAcks(s, ops, have)...)
	}
	return errors.Join(errs...)
}

// lostAcks lists the writes acknowledged but missing from a server's
// state, and the refused ones present in it.
func lostAcks(server string, ops []Op, have map[string]bool) []error {
	var errs []error
	for _, op := range ops {
		switch {
		case op.Kind != "put":
		case op.Outcome == OK && !have[op.Key]:
			errs = append(errs, fmt.Errorf("%s: acknowledged write %s (op %d through %s at index %d) is lost", server, op.Key, op.ID, op.Server, op.Index))
		case op.Outcome == Fail && have[op.Key]:
			errs = append(errs, fmt.Errorf("%s: refused write %s (op %d through %s: %s) is in the state", server, op.Key, op.ID, op.Server, op.Err))
		}
	}
	return errs
}
