package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
)

// statusReporter writes pods' statuses to the servers, only when they
// changed, on its own goroutine so that pod workers never wait for a
// server. A status that could not be written is retried with back-off
// until a newer one replaces it.
type statusReporter struct {
	servers *serverPool
	log     hclog.Logger

	mu sync.Mutex
	// pending are statuses to write, by pod.
	pending map[podKey]*corev1.Pod
	// written is the last status written (or found on the server) per pod.
	written map[podKey]writtenStatus
	wake    chan struct{}
}

type writtenStatus struct {
	uid    types.UID
	status corev1.PodStatus
}

func newStatusReporter(servers *serverPool, log hclog.Logger) *statusReporter {
	return &statusReporter{servers: servers, log: log, pending: map[podKey]*corev1.Pod{}, written: map[podKey]writtenStatus{}, wake: make(chan struct{}, 1)}
}

// Set hands over the status st computed for pod. Nothing is sent when it
// equals what the server already holds.
func (r *statusReporter) Set(pod *corev1.Pod, st corev1.PodStatus) {
	k := keyOf(pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.written[k]
	if !ok || w.uid != pod.UID {
		// Nothing written by this process yet: the server's copy counts.
		w = writtenStatus{uid: pod.UID, status: pod.Status}
		r.written[k] = w
	}
	if statusEqual(w.status, st) {
		delete(r.pending, k)
		return
	}
	out := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Status:     st,
	}
	r.pending[k] = out
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Forget drops what the reporter knows about a pod that left the node.
func (r *statusReporter) Forget(k podKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pending, k)
	delete(r.written, k)
}

// run writes pending statuses until ctx ends.
func (r *statusReporter) run(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		failed := false
		for {
			r.mu.Lock()
			var k podKey
			var pod *corev1.Pod
			for k, pod = range r.pending {
				break
			}
			r.mu.Unlock()
			if pod == nil {
				break
			}
			err := r.write(ctx, pod)
			r.mu.Lock()
			if cur := r.pending[k]; cur == pod {
				delete(r.pending, k)
				switch {
				case err == nil:
					r.written[k] = writtenStatus{uid: pod.UID, status: pod.Status}
				case apierrors.IsNotFound(err):
					// The pod is gone; its worker will notice.
				default:
					r.pending[k] = pod
					failed = true
				}
			}
			r.mu.Unlock()
			if err != nil && !apierrors.IsNotFound(err) {
				if ctx.Err() == nil {
					r.log.Warn("report pod status", "pod", k.String(), "error", err)
				}
				break
			}
		}
		wait := time.Duration(0)
		if failed {
			wait = backoff
			backoff = min(2*backoff, 10*time.Second)
		} else {
			backoff = 500 * time.Millisecond
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer:
		}
	}
}

func (r *statusReporter) write(ctx context.Context, pod *corev1.Pod) error {
	c := r.servers.client()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	body, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	_, err = c.Do(rctx, http.MethodPut, api.Path(podsResource, pod.Namespace, pod.Name, "status"), nil, body, nil)
	if err != nil {
		r.servers.failed(c, err)
	}
	return err
}
