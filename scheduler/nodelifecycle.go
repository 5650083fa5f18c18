package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// TaintOutOfService is the taint an operator puts on a node with `stead node
// fence`: the assertion that the node is dead (Kubernetes' out-of-service
// taint, KEP-2268). Its pods are freed at once.
const TaintOutOfService = "node.kubernetes.io/out-of-service"

// DefaultFenceMargin is how long after a node's lease ran out (on the
// leader) its pods stay bound to it. It covers the node's self-fencing:
// the watchdog notices its own lease lapse within a second, counted from
// before the heartbeat was sent, so earlier than the leader; it then kills
// every container at once. The rest is an allowance for clock-rate drift
// and a slow kill on a loaded machine.
const DefaultFenceMargin = 4 * time.Second

// FailoverInput is what the failover rule decides from.
type FailoverInput struct {
	// Nodes are all nodes the state knows.
	Nodes []*corev1.Node
	// Pods are all pods bound to a node.
	Pods []*corev1.Pod
	// LeaseAge says, for a node, how long ago this leader last heard from
	// it (or how long it has led, if it has not heard from it yet).
	LeaseAge func(node string) time.Duration
	// TTL is the lease's duration and Margin the fence margin after it.
	TTL, Margin time.Duration
}

// Freed is a pod the failover rule takes off its node.
type Freed struct {
	Pod  types.NamespacedName
	Node string
	// Reason says why, for the event and the log.
	Reason string
}

// Failover returns the pods that may leave their nodes now (RELIABILITY
// R2): a pod leaves a node only once the node's lease has run out and the
// fence margin passed after it, so the node has stopped the pod itself; or
// at once when an operator fenced the node or deleted it. A node's pods
// are never freed merely because it is slow to answer. The caller removes
// the freed pods' records, and the set controller recreates each ordinal
// with a new, higher generation. The result is ordered by namespace and
// name. Failover is pure.
func Failover(in FailoverInput) []Freed {
	nodes := map[string]*corev1.Node{}
	for _, n := range in.Nodes {
		nodes[n.Name] = n
	}
	var out []Freed
	for _, p := range in.Pods {
		name := p.Spec.NodeName
		if name == "" {
			continue
		}
		key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
		n, ok := nodes[name]
		switch {
		case !ok:
			out = append(out, Freed{key, name, "node " + name + " was deleted"})
		case hasTaint(n, TaintOutOfService):
			out = append(out, Freed{key, name, "node " + name + " was fenced by an operator"})
		default:
			if age := in.LeaseAge(name); age > in.TTL+in.Margin {
				out = append(out, Freed{key, name, fmt.Sprintf("node %s lost: no heartbeat for %s (lease %s + fence margin %s)",
					name, age.Truncate(time.Second), in.TTL, in.Margin)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pod.Namespace != out[j].Pod.Namespace {
			return out[i].Pod.Namespace < out[j].Pod.Namespace
		}
		return out[i].Pod.Name < out[j].Pod.Name
	})
	return out
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// failover removes the records of pods Failover frees, after confirming
// that this server still leads (RELIABILITY R4): a deposed leader must not
// free anything, and the commit itself is refused if it is no longer
// leader by then.
func (c *Controller) failover(ctx context.Context, v *raftstore.View, now time.Time) error {
	freed := Failover(FailoverInput{
		Nodes:    raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, ""),
		Pods:     boundPods(v),
		LeaseAge: c.leases.Age,
		TTL:      c.leases.TTL(),
		Margin:   c.fenceMargin,
	})
	if len(freed) == 0 {
		return nil
	}
	if err := c.store.VerifyLeader(ctx); err != nil {
		return fmt.Errorf("confirm leadership before freeing pods of lost nodes: %w", err)
	}
	var ops []raftstore.Op
	for _, f := range freed {
		pod, ok := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, f.Pod.Namespace, f.Pod.Name)
		if !ok {
			continue
		}
		ops = append(ops, DeleteOp(raftstore.Pods, pod))
		ev := podEvent(pod, corev1.EventTypeWarning, "NodeLost", "freed "+pod.Name+": "+f.Reason, now)
		op, err := PutOp(raftstore.Events, ev, 0)
		if err != nil {
			return err
		}
		ops = append(ops, op)
		c.log.Warn("freeing pod of a lost node", "pod", f.Pod.String(), "node", f.Node, "gen", pod.Annotations[api.AnnotationGeneration], "reason", f.Reason)
	}
	_, err := c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: ops})
	if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	if err == nil {
		c.metrics.freed.Add(float64(len(freed)))
	}
	return err
}

// boundPods returns every pod bound to a node.
func boundPods(v *raftstore.View) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, "") {
		if p.Spec.NodeName != "" {
			out = append(out, p)
		}
	}
	return out
}

// syncNodes commits each node's Ready condition from its lease: True while
// the node heartbeats to this leader, Unknown once its lease ran out, as the
// Kubernetes node lifecycle controller marks a node whose kubelet stopped
// posting status. Only changes are committed.
func (c *Controller) syncNodes(ctx context.Context, v *raftstore.View, now time.Time) error {
	var ops []raftstore.Op
	for _, node := range raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "") {
		c.leases.Saw(node.Name)
		want := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady", Message: "stead agent is posting ready status"}
		if c.leases.Expired(node.Name) {
			want = corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown", Message: "Agent stopped posting node status."}
		}
		updated, changed := setNodeCondition(node, want, now)
		if !changed {
			continue
		}
		c.log.Info("node readiness changed", "node", node.Name, "ready", want.Status, "lease_age", c.leases.Age(node.Name))
		op, err := PutOp(raftstore.Nodes, updated, Version(node))
		if err != nil {
			return err
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		return nil
	}
	// A node's readiness is a failure-detection decision: only a confirmed
	// leader makes it (RELIABILITY R4).
	if err := c.store.VerifyLeader(ctx); err != nil {
		return fmt.Errorf("confirm leadership before changing node readiness: %w", err)
	}
	_, err := c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: ops})
	if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	return err
}

// setNodeCondition returns a copy of node with condition want, and whether
// its status differs from what node holds.
func setNodeCondition(node *corev1.Node, want corev1.NodeCondition, now time.Time) (*corev1.Node, bool) {
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	for _, c := range node.Status.Conditions {
		if c.Type == want.Type && c.Status == want.Status {
			return node, false
		}
	}
	node = node.DeepCopy()
	want.LastHeartbeatTime, want.LastTransitionTime = ts, ts
	var conds []corev1.NodeCondition
	for _, c := range node.Status.Conditions {
		if c.Type != want.Type {
			conds = append(conds, c)
		}
	}
	node.Status.Conditions = append(conds, want)
	return node, true
}
