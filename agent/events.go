package agent

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
)

// Event aggregation, as Kubernetes' event correlator does it: a repeat of
// an event (same pod, type, reason and message) increments its count
// instead of making a new one, and a repeated event is written at most
// once per eventRewrite, so that a probe failing every second does not
// write to Raft every second.
const (
	eventFlush   = time.Second
	eventRewrite = 30 * time.Second
	eventForget  = 10 * time.Minute
	maxEvents    = 1024
)

type eventKey struct {
	namespace, pod string
	uid            types.UID
	typ, reason    string
	message        string
}

type eventEntry struct {
	event   *corev1.Event
	dirty   bool
	written time.Time
}

// eventRecorder writes the agent's events about pods (Pulling, Started,
// Unhealthy, BackOff, Killing...), which `stead describe pod` shows.
type eventRecorder struct {
	servers *serverPool
	log     hclog.Logger
	node    string
	clock   Clock

	mu      sync.Mutex
	entries map[eventKey]*eventEntry
	seq     int64
}

func newEventRecorder(servers *serverPool, log hclog.Logger, node string, clock Clock) *eventRecorder {
	return &eventRecorder{servers: servers, log: log, node: node, clock: clock, entries: map[eventKey]*eventEntry{}}
}

// Record notes an event about pod.
func (r *eventRecorder) Record(pod *corev1.Pod, typ, reason, message string) {
	if pod == nil {
		return
	}
	now := metav1.NewTime(r.clock.Now().UTC().Truncate(time.Second))
	k := eventKey{pod.Namespace, pod.Name, pod.UID, typ, reason, message}
	r.mu.Lock()
	defer r.mu.Unlock()
	if e := r.entries[k]; e != nil {
		e.event.Count++
		e.event.LastTimestamp = now
		e.dirty = true
		return
	}
	if len(r.entries) >= maxEvents {
		return
	}
	r.seq++
	e := &corev1.Event{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      pod.Name + "." + strconv.FormatInt(r.clock.Now().UnixNano(), 16) + strconv.FormatInt(r.seq, 16),
			Namespace: pod.Namespace,
		},
		InvolvedObject:      corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Reason:              reason,
		Message:             message,
		Type:                typ,
		Source:              corev1.EventSource{Component: "stead-agent", Host: r.node},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "stead.io/agent",
		ReportingInstance:   r.node,
	}
	r.entries[k] = &eventEntry{event: e, dirty: true}
}

// run writes new and repeated events until ctx ends.
func (r *eventRecorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.clock.After(eventFlush):
		}
		now := r.clock.Now()
		var todo []*corev1.Event
		var entries []*eventEntry
		r.mu.Lock()
		for k, e := range r.entries {
			if !e.dirty && now.Sub(e.event.LastTimestamp.Time) > eventForget {
				delete(r.entries, k)
				continue
			}
			if e.dirty && (e.written.IsZero() || now.Sub(e.written) >= eventRewrite) {
				todo = append(todo, e.event.DeepCopy())
				entries = append(entries, e)
				e.dirty = false
				e.written = now
			}
		}
		r.mu.Unlock()
		for i, ev := range todo {
			if err := r.write(ctx, ev); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Debug("write event", "reason", ev.Reason, "pod", ev.InvolvedObject.Name, "error", err)
				r.mu.Lock()
				entries[i].dirty = true
				entries[i].written = time.Time{}
				r.mu.Unlock()
			}
		}
	}
}

var eventsResource, _ = api.LookupResource("events")

func (r *eventRecorder) write(ctx context.Context, ev *corev1.Event) error {
	c := r.servers.client()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Put(rctx, eventsResource, ev.Namespace, ev.Name, ev, nil)
	if err != nil {
		r.servers.failed(c, err)
	}
	return err
}
