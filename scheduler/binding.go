package scheduler

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/raftstore"
)

// place binds pending pods to nodes with Place and commits the bindings in
// one transaction. Each binding stamps the pod's fencing generation with the
// log index that commits it. Pods that fit nowhere get PodScheduled=False
// with the scheduler's reason, as kubectl describe shows it.
func (c *Controller) place(ctx context.Context, v *raftstore.View, now time.Time) error {
	in, pods := placeInput(v)
	if len(in.Pending) == 0 {
		return nil
	}
	res := Place(in)

	// A claim's volume is used by one node at a time: a pod whose claim is
	// still attached to another node that is not fenced waits, Pending,
	// until that node's agent detached it or the node is fenced.
	claims := IndexClaims(in.Claims)
	fenced := c.nodeFenced(in.Nodes)
	var ops []raftstore.Op
	changed := map[[2]string]bool{}
	for _, a := range res.Assignments {
		if msg := HeldElsewhere(pods[a.Pod], a.Node, claims, fenced); msg != "" {
			res.Unschedulable = append(res.Unschedulable, Unschedulable{Pod: a.Pod, Reason: ReasonVolumeAttached, Message: msg})
			continue
		}
		// The binding pins the claims of node-local volumes to the node and
		// forgets holders that are fenced, in the same transaction.
		for _, pvc := range BoundClaims(pods[a.Pod], a.Node, claims, fenced) {
			key := [2]string{pvc.Namespace, pvc.Name}
			if changed[key] {
				continue
			}
			changed[key] = true
			op, err := PutOp(raftstore.PersistentVolumeClaims, pvc, Version(pvc))
			if err != nil {
				return err
			}
			ops = append(ops, op)
			c.log.Info("claim follows its pod's binding", "claim", pvc.Namespace+"/"+pvc.Name, "node", a.Node, "pinned", pvc.Annotations[AnnotationSelectedNode])
		}
		pod := pods[a.Pod].DeepCopy()
		pod.Spec.NodeName = a.Node
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, now)
		op, err := PutOp(raftstore.Pods, pod, Version(pod))
		if err != nil {
			return err
		}
		op.StampGeneration = true
		ops = append(ops, op)
		c.log.Info("bind pod", "pod", a.Pod.String(), "node", a.Node)
	}
	for _, u := range res.Unschedulable {
		pod := pods[u.Pod].DeepCopy()
		want := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: u.Reason, Message: u.Message}
		if !setPodCondition(pod, want, now) {
			continue
		}
		op, err := PutOp(raftstore.Pods, pod, Version(pod))
		if err != nil {
			return err
		}
		ops = append(ops, op)
		c.log.Info("pod unschedulable", "pod", u.Pod.String(), "reason", u.Message)
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: ops})
	if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	if err == nil {
		c.metrics.placements.Add(float64(len(res.Assignments)))
	}
	return err
}

// bindAtCreation places the pods the plans are about to create, and sets
// each one it can place on its node, so that the pod is created bound in
// its set's transaction instead of being created, then bound by a second
// commit. They are placed together with the pods already Pending, in
// Place's order, as place would place them all: a new pod takes no room
// that a Pending pod placed before it would get.
// It leaves Pending (for place, once they exist) the pods it cannot place
// and those whose binding needs more than the pod itself: a claim that
// does not exist yet, is attached to another node or would change with
// the binding.
func (c *Controller) bindAtCreation(v *raftstore.View, plans []planCommit, now time.Time) {
	in, _ := placeInput(v)
	claims := IndexClaims(in.Claims)
	created := map[types.NamespacedName]*corev1.Pod{}
	for _, pc := range plans {
		for _, p := range pc.plan.CreatePods {
			if p.Spec.NodeName != "" || !claimsExist(p, claims) {
				continue
			}
			in.Pending = append(in.Pending, p)
			created[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	if len(created) == 0 {
		return
	}
	fenced := c.nodeFenced(in.Nodes)
	for _, a := range Place(in).Assignments {
		pod := created[a.Pod]
		if pod == nil || HeldElsewhere(pod, a.Node, claims, fenced) != "" || len(BoundClaims(pod, a.Node, claims, fenced)) > 0 {
			continue
		}
		pod.Spec.NodeName = a.Node
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, now)
	}
}

// placeInput is what Place decides from in v: the pods bound to a node,
// those waiting for one (indexed by name in pending), the nodes and the
// claims.
func placeInput(v *raftstore.View) (in PlaceInput, pending map[types.NamespacedName]*corev1.Pod) {
	pending = map[types.NamespacedName]*corev1.Pod{}
	for _, p := range raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, "") {
		switch {
		case p.Spec.NodeName != "":
			in.Pods = append(in.Pods, p)
		case p.DeletionTimestamp == nil:
			in.Pending = append(in.Pending, p)
			pending[types.NamespacedName{Namespace: p.Namespace, Name: p.Name}] = p
		}
	}
	in.Nodes = raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "")
	in.Claims = raftstore.ListOf[*corev1.PersistentVolumeClaim](v, raftstore.PersistentVolumeClaims, "")
	return in, pending
}

// claimsExist reports whether every claim pod mounts is in claims and not
// being deleted.
func claimsExist(pod *corev1.Pod, claims ClaimIndex) bool {
	for _, name := range podClaims(pod) {
		if c := claims[[2]string{pod.Namespace, name}]; c == nil || c.DeletionTimestamp != nil {
			return false
		}
	}
	return true
}

// nodeFenced is the Failover rule for nodes, with this leader's leases.
func (c *Controller) nodeFenced(nodes []*corev1.Node) func(string) bool {
	if c.leases == nil {
		return nodeFenced(nodes, func(string) time.Duration { return 0 }, 0, 0)
	}
	return nodeFenced(nodes, c.leases.Age, c.leases.TTL(), c.fenceMargin)
}

// setPodCondition sets condition want on pod (a copy the caller owns) and
// reports whether anything changed. The transition time moves only when the
// status does.
func setPodCondition(pod *corev1.Pod, want corev1.PodCondition, now time.Time) bool {
	for i, c := range pod.Status.Conditions {
		if c.Type != want.Type {
			continue
		}
		if c.Status == want.Status && c.Reason == want.Reason && c.Message == want.Message {
			return false
		}
		want.LastTransitionTime = c.LastTransitionTime
		if c.Status != want.Status {
			want.LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
		}
		pod.Status.Conditions[i] = want
		return true
	}
	want.LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
	pod.Status.Conditions = append(pod.Status.Conditions, want)
	return true
}
