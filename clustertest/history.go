package clustertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

// Kinds of operations.
const (
	// KindPut creates a key that did not exist, with a value no other put
	// writes.
	KindPut = "put"
	// KindGet reads a key: whether it exists, and its value.
	KindGet = "get"
)

// Op is one operation of a client.
type Op struct {
	// ID numbers the operations in invocation order.
	ID int
	// Kind says what it did (KindPut, KindGet), Key on what.
	Kind, Key string
	// Server is the server it was sent to.
	Server string
	// Invoke and Complete are CLOCK_MONOTONIC nanoseconds; Complete is 0
	// while pending.
	Invoke, Complete int64
	Outcome          Outcome
	// Index is the state index the server answered at (for ok).
	Index uint64
	// Value is what a put wrote, or what an ok get read (empty when the
	// key did not exist: Found is false).
	Value string
	Found bool
	Err   string
}

// History records the operations of the test's clients, in invocation
// order, with monotonic times (RELIABILITY 6.1). It is safe for concurrent
// use.
type History struct {
	mu  sync.Mutex
	ops []Op
	// puts are the keys put so far, in invocation order; written counts
	// them per server.
	puts    []string
	written map[string]int
}

// Invoke records the start of an operation and returns its ID.
func (h *History) Invoke(kind, key, server string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.invoke(Op{Kind: kind, Key: key, Server: server})
}

// InvokePut records the start of a put of key through server and returns
// its ID and the value it must write, unique to it.
func (h *History) InvokePut(key, server string) (int, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := len(h.ops)
	value := "op" + strconv.Itoa(id)
	h.invoke(Op{Kind: KindPut, Key: key, Server: server, Value: value})
	if h.written == nil {
		h.written = map[string]int{}
	}
	h.puts = append(h.puts, key)
	h.written[server]++
	return id, value
}

func (h *History) invoke(op Op) int {
	op.ID, op.Invoke = len(h.ops), monoNow()
	h.ops = append(h.ops, op)
	return op.ID
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

// CompleteGet records the end of get id: whether it found its key, and
// the value it read.
func (h *History) CompleteGet(id int, out Outcome, index uint64, found bool, value string, err error) {
	h.Complete(id, out, index, err)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops[id].Found, h.ops[id].Value = found, value
}

// readKey picks the key a reader asks for next: one a writer is about to
// put (absent, or racing its put), the newest put's (often still in
// flight), or any earlier one.
func (h *History) readKey(rnd *rand.Rand, servers []string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(h.puts)
	switch r := rnd.IntN(4); {
	case n == 0 || r == 0:
		s := servers[rnd.IntN(len(servers))]
		return ackKey(s, h.written[s])
	case r == 1:
		return h.puts[n-1]
	default:
		return h.puts[rnd.IntN(n)]
	}
}

// Ops returns a copy of the history.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Counts returns how many operations of a kind ended each way.
func (h *History) Counts(kind string) map[Outcome]int {
	out := map[Outcome]int{}
	for _, op := range h.Ops() {
		if op.Kind == kind {
			out[op.Outcome]++
		}
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

// ackLabel marks the objects the writer makes; valueLabel holds the
// value of the put that made one.
const (
	ackLabel   = "clustertest/ack"
	valueLabel = "clustertest/value"
)

// ackKey names the n-th object a client writes through server s.
func ackKey(s string, n int) string { return "ack-" + s + "-" + strconv.Itoa(n) }

// StartWriter runs two clients per server, so that a server that hangs
// holds up only its own: a writer creating a Service object through its
// server every interval, and a reader reading a key through its server
// every interval with a consistent read (readKey picks which; the seed of
// its choices is logged). Every operation is recorded in h. stop ends
// them and waits.
func (c *Cluster) StartWriter(h *History, interval time.Duration) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	seed := uint64(time.Now().UnixNano())
	c.Logf("history: readers seeded with %d", seed)
	every := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for {
				f()
				select {
				case <-quit:
					return
				case <-tick.C:
				}
			}
		}()
	}
	for i, s := range c.servers {
		n := 0
		every(func() {
			c.put(h, s, ackKey(s, n))
			n++
		})
		rnd := rand.New(rand.NewPCG(seed, uint64(i)))
		every(func() { c.get(h, s, h.readKey(rnd, c.servers)) })
	}
	var once sync.Once
	return func() {
		once.Do(func() { close(quit) })
		wg.Wait()
	}
}

// put creates Service key through server s.
func (c *Cluster) put(h *History, s, key string) {
	id, value := h.InvokePut(key, s)
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: key, Namespace: "default", Labels: map[string]string{ackLabel: "true", valueLabel: value}},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "none", Port: 80}}},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	idx, err := c.Client(s).Put(ctx, "services", "default", key, svc)
	h.Complete(id, outcomeOf(err), idx, err)
}

// get reads Service key through server s with a consistent read. The
// server's 404 for that very object is an ok answer: the key is absent.
func (c *Cluster) get(h *History, s, key string) {
	id := h.Invoke(KindGet, key, s)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var svc corev1.Service
	idx, err := c.Client(s).GetConsistent(ctx, "services", "default", key, &svc)
	switch {
	case err == nil:
		h.CompleteGet(id, OK, idx, true, svc.Labels[valueLabel], nil)
	case isNotFound(err, key):
		h.CompleteGet(id, OK, idx, false, "", nil)
	default:
		h.CompleteGet(id, outcomeOf(err), idx, false, "", err)
	}
}

// isNotFound reports whether err is the API's answer that object name
// does not exist (and not, say, a 404 for an unknown path).
func isNotFound(err error, name string) bool {
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		return false
	}
	var st metav1.Status
	if json.Unmarshal([]byte(se.Body), &st) != nil {
		return false
	}
	return st.Reason == metav1.StatusReasonNotFound && st.Details != nil && st.Details.Name == name
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
		case op.Kind != KindPut:
		case op.Outcome == OK && !have[op.Key]:
			errs = append(errs, fmt.Errorf("%s: acknowledged write %s (op %d through %s at index %d) is lost", server, op.Key, op.ID, op.Server, op.Index))
		case op.Outcome == Fail && have[op.Key]:
			errs = append(errs, fmt.Errorf("%s: refused write %s (op %d through %s: %s) is in the state", server, op.Key, op.ID, op.Server, op.Err))
		}
	}
	return errs
}
