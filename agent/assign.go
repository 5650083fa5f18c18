package agent

import (
	"context"
	"encoding/json"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
)

// watchAssignments follows the pods bound to this node with blocking
// queries and hands them to their workers. When the servers cannot be
// reached it keeps the last assignments: running pods are never stopped
// for want of an answer.
func (a *Agent) watchAssignments(ctx context.Context) {
	var index uint64
	backoff := time.Second
	selector := "spec.nodeName=" + a.cfg.NodeName
	for ctx.Err() == nil {
		c := a.servers.client()
		// After a lapse of the lease, read the assignments at once rather
		// than wait for a change, and from the leader (a consistent read):
		// pods wait for that fresh list to start, and a follower that
		// lags could still list a pod the leader gave to another node.
		opts := api.ListOptions{FieldSelector: selector, Index: index, Wait: DefaultAssignmentsWait}
		if a.lapsedAt.Load() != nil {
			opts = api.ListOptions{FieldSelector: selector, Consistent: true}
		}
		sent := time.Now()
		list, idx, err := c.List(ctx, podsResource, "", opts)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.servers.failed(c, err)
			a.log.Warn("watch assignments; keeping the last ones", "server", c.Addr(), "error", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
			case <-a.cfg.Clock.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			continue
		}
		backoff = time.Second
		var pods []*corev1.Pod
		for _, p := range podsOf(list.Items) {
			if p.Spec.NodeName == a.cfg.NodeName {
				pods = append(pods, p)
			}
		}
		// A server that restarted, or another server, may be behind: take
		// what it says and block from there.
		index = idx
		// The workers get the list before it counts as read afresh: a
		// worker the lease gate lets start a container must already know
		// whether its pod is still assigned here.
		a.dispatch(ctx, pods)
		a.listedFrom.Store(&sent)
	}
}

// confirmDeleted removes the record of a pod the node finished stopping.
func (a *Agent) confirmDeleted(ctx context.Context, pod *corev1.Pod) error {
	c := a.servers.client()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.Delete(rctx, podsResource, pod.Namespace, pod.Name, api.DeleteOptions{Force: true, UID: string(pod.UID)})
	if err != nil {
		a.servers.failed(c, err)
	}
	return err
}

// podsOf decodes a list of pods, skipping any that does not decode.
func podsOf(items []json.RawMessage) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(items))
	for _, raw := range items {
		var p corev1.Pod
		if json.Unmarshal(raw, &p) == nil {
			out = append(out, &p)
		}
	}
	return out
}
