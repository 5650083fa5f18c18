package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler"
)

// fleet is a set of simulated agents: each registers a Node, renews its
// lease every two seconds and holds a blocking watch on the pods bound to
// it, all over real HTTP, but runs no containers. The fleet records when
// each pod was first seen on a node.
type fleet struct {
	// base is the API the benchmark writes to (the leader's); each agent
	// heartbeats to and watches one of talk.
	base string
	talk []string
	hc   *http.Client

	want     int
	done     chan struct{} // closed once want pods were bound at once
	doneOnce sync.Once

	mu sync.Mutex
	// node is the node each pod is bound to as its agent last listed it;
	// first the node each pod was first seen on.
	node, first map[string]string
	// moved counts pods seen on a second node.
	moved int
	// watchErrs counts failed watch calls; lastErr is the last one.
	watchErrs int
	lastErr   error
}

func newFleet(base string, talk []string, agents int) *fleet {
	tr := &http.Transport{
		MaxIdleConns:        agents + 256,
		MaxIdleConnsPerHost: agents + 256,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &fleet{base: base, talk: talk, hc: &http.Client{Transport: tr}, node: map[string]string{}, first: map[string]string{}, done: make(chan struct{})}
}

// expect makes done close once n pods are bound as the agents see it.
func (f *fleet) expect(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.want = n
	if len(f.node) >= n {
		f.doneOnce.Do(func() { close(f.done) })
	}
}

// nodeName names agent i.
func nodeName(i int) string { return fmt.Sprintf("node-%05d", i) }

// nodeObject is the Node an agent registers: 32 CPUs, 128 GiB, 110 pods.
func nodeObject(name string) *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("128Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{
			Capacity: res, Allocatable: res,
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}, {Type: corev1.NodeHostName, Address: name}},
		},
	}
	return n
}

// register registers agents [0, n) with `workers` requests at a time,
// calling registered with each agent's number once its node is.
func (f *fleet) register(ctx context.Context, n, workers int, registered func(i int)) error {
	next := atomic.Int64{}
	errc := make(chan error, workers)
	for range workers {
		go func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				name := nodeName(i)
				body, _ := json.Marshal(nodeObject(name))
				err := retry(ctx, func() error {
					return f.call(ctx, http.MethodPut, f.base+"/v1/nodes/"+name, "register-"+name, body)
				})
				if err != nil {
					errc <- fmt.Errorf("register node %s: %w", name, err)
					return
				}
				registered(i)
			}
		}()
	}
	var first error
	for range workers {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// run starts agent i's heartbeat and watch loops until ctx ends, as stead
// agent starts them once its node is registered: the first heartbeat at
// once. watching is marked done once the agent's first watch call has
// answered, so that the agent is waiting on the next one.
func (f *fleet) run(ctx context.Context, i int, seed *rand.Rand, watching *sync.WaitGroup) {
	name := nodeName(i)
	server := f.talk[seed.IntN(len(f.talk))]
	go func() {
		t := time.NewTicker(scheduler.DefaultHeartbeat)
		defer t.Stop()
		for {
			if err := f.call(ctx, http.MethodPost, server+"/v1/nodes/"+name+"/heartbeat", "", nil); err != nil && ctx.Err() == nil {
				f.watchFailed(fmt.Errorf("heartbeat of %s: %w", name, err))
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	go func() {
		var index uint64
		first := true
		mine := map[string]bool{}
		q := url.Values{"fieldSelector": {"spec.nodeName=" + name}}
		for ctx.Err() == nil {
			if index > 0 {
				q.Set("index", strconv.FormatUint(index, 10))
				q.Set("wait", "30s")
			}
			var list api.List
			idx, err := f.get(ctx, server+"/v1/pods?"+q.Encode(), &list)
			if err != nil {
				if ctx.Err() == nil {
					f.watchFailed(fmt.Errorf("watch of %s: %w", name, err))
					// A failed call is retried after a pause, not in a tight loop.
					select {
					case <-ctx.Done():
					case <-time.After(time.Second):
					}
				}
				continue
			}
			index = max(index, idx)
			mine = f.saw(name, mine, list.Items)
			if first {
				first = false
				watching.Done()
			}
		}
	}()
}

// podRef is the part of a pod the fleet reads.
type podRef struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		NodeName string `json:"nodeName"`
	} `json:"spec"`
}

// saw records the pods node's watch returned, given the ones it returned
// before, and returns the new ones.
func (f *fleet) saw(node string, before map[string]bool, items []json.RawMessage) map[string]bool {
	now := make(map[string]bool, len(items))
	for _, it := range items {
		var p podRef
		if json.Unmarshal(it, &p) == nil && p.Spec.NodeName == node {
			now[p.Metadata.Namespace+"/"+p.Metadata.Name] = true
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for key := range before {
		if !now[key] && f.node[key] == node {
			delete(f.node, key)
		}
	}
	for key := range now {
		f.node[key] = node
		if first, ok := f.first[key]; !ok {
			f.first[key] = node
		} else if first != node && !before[key] {
			f.moved++
		}
	}
	if f.want > 0 && len(f.node) >= f.want {
		f.doneOnce.Do(func() { close(f.done) })
	}
	return now
}

// bound returns how many pods the agents see bound.
func (f *fleet) bound() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.node)
}

func (f *fleet) watchFailed(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watchErrs++
	f.lastErr = err
}

// get reads url into out and returns the state index of the answer.
func (f *fleet) get(ctx context.Context, url string, out any) (uint64, error) {
	var idx uint64
	err := f.do(ctx, http.MethodGet, url, "", nil, func(resp *http.Response, body []byte) error {
		idx, _ = strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
		return json.Unmarshal(body, out)
	})
	return idx, err
}

// call sends a write to url. A non-empty requestID lets the server apply
// a retried write once.
func (f *fleet) call(ctx context.Context, method, url, requestID string, body []byte) error {
	return f.do(ctx, method, url, requestID, body, func(*http.Response, []byte) error { return nil })
}

// retry runs call until it succeeds or fails for a reason a retry cannot
// mend (a 4xx answer), for up to retryFor: a leader election or a write
// whose outcome is unknown is retried, as a client would.
func retry(ctx context.Context, call func() error) error {
	ctx, cancel := context.WithTimeout(ctx, retryFor)
	defer cancel()
	for {
		err := call()
		var se *statusError
		if err == nil || errors.As(err, &se) && se.code < 500 {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// statusError is an answer other than 200 OK.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// retryFor bounds the retries of one write.
const retryFor = 2 * time.Minute

func (f *fleet) do(ctx context.Context, method, url, requestID string, body []byte, handle func(*http.Response, []byte) error) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if requestID != "" {
		req.Header.Set("X-Stead-Request-ID", requestID)
	}
	resp, err := f.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s: %s", method, url, resp.Status, bytes.TrimSpace(data))}
	}
	return handle(resp, data)
}
