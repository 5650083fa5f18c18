package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

// Annotations the node agents write on a claim whose volume they attach
// (agent.ClaimVolumes), read here to keep a claim's volume on one node at
// a time and to pin the ordinals of node-local volumes.
const (
	// AnnotationAttachedNode names the node that holds the claim's
	// volume; the agent removes it once it detached the volume.
	AnnotationAttachedNode = "stead.io/attached-node"
	// AnnotationAttachedGeneration is the generation of the pod that
	// attached it.
	AnnotationAttachedGeneration = "stead.io/attached-generation"
	// AnnotationStorageDriver is the driver of the claim's storage class:
	// local, shared or image.
	AnnotationStorageDriver = "stead.io/storage-driver"
	// AnnotationStorageShared is "true" on a claim of an image class on a
	// shared root, whose volume follows its ordinal to any node.
	AnnotationStorageShared = "stead.io/storage-shared"
)

// ReasonVolumeAttached is the PodScheduled=False reason of a pod that
// waits for a claim's volume to be released by another node.
const ReasonVolumeAttached = "VolumeAttached"

// claimPinned reports whether a claim's volume lives on one node only, as
// far as the servers know: its class's driver, recorded by the agent that
// made it, is local, or image on a root that is not shared.
func claimPinned(pvc *corev1.PersistentVolumeClaim) bool {
	switch pvc.Annotations[AnnotationStorageDriver] {
	case "local":
		return true
	case "image":
		return pvc.Annotations[AnnotationStorageShared] != "true"
	}
	return false
}

// podClaims returns the names of the claims pod mounts, in spec order.
func podClaims(pod *corev1.Pod) []string {
	var out []string
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim != nil && !slices.Contains(out, v.PersistentVolumeClaim.ClaimName) {
			out = append(out, v.PersistentVolumeClaim.ClaimName)
		}
	}
	return out
}

// ClaimIndex finds claims by namespace and name.
type ClaimIndex map[[2]string]*corev1.PersistentVolumeClaim

// IndexClaims indexes claims.
func IndexClaims(claims []*corev1.PersistentVolumeClaim) ClaimIndex {
	out := ClaimIndex{}
	for _, c := range claims {
		out[[2]string{c.Namespace, c.Name}] = c
	}
	return out
}

// HeldElsewhere reports why pod may not be bound to node now: one of its
// claims' volumes is attached to another node that is not fenced, so
// binding it would have two nodes use the volume (ReadWriteOnce). The
// empty string means it may be bound. fenced says whether a node has
// stopped its pods for sure (deleted, tainted out of service, or its lease
// and the fence margin ran out: the rule of Failover). HeldElsewhere is
// pure.
func HeldElsewhere(pod *corev1.Pod, node string, claims ClaimIndex, fenced func(node string) bool) string {
	for _, name := range podClaims(pod) {
		pvc := claims[[2]string{pod.Namespace, name}]
		if pvc == nil {
			continue
		}
		holder := pvc.Annotations[AnnotationAttachedNode]
		if holder == "" || holder == node || fenced(holder) {
			continue
		}
		return fmt.Sprintf("volume %s is still attached to node %s (waiting for it to detach or be fenced)", name, holder)
	}
	return ""
}

// BoundClaims returns the claims of pod that change because it is bound
// to node, as copies: a claim of a pinned class gets
// AnnotationSelectedNode = node if it has none, so that every later
// incarnation of its ordinal is placed there; a claim still marked as
// attached to a fenced node loses that mark, since that node no longer
// runs anything. BoundClaims is pure.
func BoundClaims(pod *corev1.Pod, node string, claims ClaimIndex, fenced func(node string) bool) []*corev1.PersistentVolumeClaim {
	var out []*corev1.PersistentVolumeClaim
	for _, name := range podClaims(pod) {
		pvc := claims[[2]string{pod.Namespace, name}]
		if pvc == nil {
			continue
		}
		ann := maps.Clone(pvc.Annotations)
		if ann == nil {
			ann = map[string]string{}
		}
		if claimPinned(pvc) && ann[AnnotationSelectedNode] == "" {
			ann[AnnotationSelectedNode] = node
		}
		if holder := ann[AnnotationAttachedNode]; holder != "" && holder != node && fenced(holder) {
			delete(ann, AnnotationAttachedNode)
			delete(ann, AnnotationAttachedGeneration)
		}
		if maps.Equal(ann, pvc.Annotations) {
			continue
		}
		next := pvc.DeepCopy()
		next.Annotations = ann
		out = append(out, next)
	}
	return out
}

// nodeFenced returns the rule of Failover as a predicate on node names:
// a node is fenced when it was deleted, an operator tainted it out of
// service, or it sent no heartbeat for the lease's TTL and the fence
// margin.
func nodeFenced(nodes []*corev1.Node, age func(string) time.Duration, ttl, margin time.Duration) func(string) bool {
	byName := map[string]*corev1.Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	return func(name string) bool {
		n, ok := byName[name]
		switch {
		case !ok:
			return true
		case hasTaint(n, TaintOutOfService):
			return true
		}
		return age(name) > ttl+margin
	}
}

// Deleting a claim (SEMANTICS D.33, E.38–E.40, `stead delete volume`)
// follows Kubernetes: the claim is marked (metadata.deletionTimestamp)
// with two finalizers and stays, Terminating, until each is removed; then
// the leader removes the object.
const (
	// FinalizerClaimProtection keeps a deleted claim while a pod that has
	// not terminated mounts it (Kubernetes' pvc-protection). The leader
	// removes it.
	FinalizerClaimProtection = "kubernetes.io/pvc-protection"
	// FinalizerVolumeData keeps a deleted claim until its volume's data is
	// deleted. The agent named by AnnotationDataDeleter removes it once it
	// deleted the data; the leader removes it when there is no data to
	// delete: the claim never got storage (no AnnotationStorageDriver), or
	// its node-local volume's node is gone, and its data with it.
	FinalizerVolumeData = "stead.io/volume-data"
	// AnnotationDataDeleter names the node whose agent is to delete the
	// data of a deleted claim. The leader sets it once no pod mounts the
	// claim and no node holds its volume: the node that made a node-local
	// volume, or for a volume on a shared root the first node by name that
	// is not fenced (chosen again if that one is fenced meanwhile).
	AnnotationDataDeleter = "stead.io/data-deleter"
)

// DeleteClaimOp returns the op that deletes a claim: it is marked
// Terminating with FinalizerClaimProtection and FinalizerVolumeData, and
// FinalizeClaims takes it from there. It returns nil for a claim already
// being deleted.
func DeleteClaimOp(pvc *corev1.PersistentVolumeClaim, now time.Time) (*raftstore.Op, error) {
	if pvc.DeletionTimestamp != nil {
		return nil, nil
	}
	next := pvc.DeepCopy()
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	next.DeletionTimestamp = &ts
	for _, f := range []string{FinalizerClaimProtection, FinalizerVolumeData} {
		if !slices.Contains(next.Finalizers, f) {
			next.Finalizers = append(next.Finalizers, f)
		}
	}
	op, err := PutOp(raftstore.PersistentVolumeClaims, next, Version(pvc))
	return &op, err
}

// ClaimFinalizing is what FinalizeClaims decided for one deleted claim.
type ClaimFinalizing struct {
	// Update is the claim with finalizers removed or the data deleter
	// chosen; nil when neither changes.
	Update *corev1.PersistentVolumeClaim
	// Remove says the claim has no finalizer left: remove the object.
	Remove bool
}

// FinalizeClaims moves each deleted claim (deletionTimestamp set) of
// claims towards its removal, in three steps that each wait for the one
// before:
//
//  1. FinalizerClaimProtection goes once no pod bound to a node that has
//     not terminated (phase other than Succeeded or Failed) mounts the
//     claim.
//  2. With no node holding the volume (AnnotationAttachedNode empty, or
//     for a volume on a shared root, naming a fenced node), the node
//     that is to delete its data is named (AnnotationDataDeleter), or
//     FinalizerVolumeData goes when there is no data to delete.
//  3. With no finalizer left, the claim is removed.
//
// The data is deleted by that node's agent, which removes
// FinalizerVolumeData; nothing here deletes data. nodes are the nodes
// that exist; fenced is the rule of Failover. FinalizeClaims is pure; the
// result is keyed by namespace and name.
func FinalizeClaims(claims []*corev1.PersistentVolumeClaim, pods []*corev1.Pod, nodes []*corev1.Node, fenced func(string) bool) map[[2]string]ClaimFinalizing {
	inUse := map[[2]string]bool{}
	for _, p := range pods {
		// As in Kubernetes, a pod on no node does not count: no agent
		// mounts its claims, and none will while the claim is deleted
		// (binding waits for it).
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		for _, name := range podClaims(p) {
			inUse[[2]string{p.Namespace, name}] = true
		}
	}
	exists := map[string]bool{}
	var names []string
	for _, n := range nodes {
		exists[n.Name] = true
		names = append(names, n.Name)
	}
	slices.Sort(names)
	out := map[[2]string]ClaimFinalizing{}
	for _, c := range claims {
		if c.DeletionTimestamp == nil {
			continue
		}
		key := [2]string{c.Namespace, c.Name}
		next := c.DeepCopy()
		if slices.Contains(next.Finalizers, FinalizerClaimProtection) && !inUse[key] {
			next.Finalizers = without(next.Finalizers, FinalizerClaimProtection)
		}
		if !slices.Contains(next.Finalizers, FinalizerClaimProtection) && slices.Contains(next.Finalizers, FinalizerVolumeData) {
			deleter, noData := dataDeleter(next, exists, names, fenced)
			switch {
			case noData:
				next.Finalizers = without(next.Finalizers, FinalizerVolumeData)
				delete(next.Annotations, AnnotationDataDeleter)
			case deleter != "":
				if next.Annotations == nil {
					next.Annotations = map[string]string{}
				}
				next.Annotations[AnnotationDataDeleter] = deleter
			}
		}
		var f ClaimFinalizing
		if len(next.Finalizers) == 0 {
			f.Remove = true
		} else if !slices.Equal(next.Finalizers, c.Finalizers) || !maps.Equal(next.Annotations, c.Annotations) {
			if len(next.Annotations) == 0 {
				next.Annotations = nil
			}
			f.Update = next
		}
		if f.Remove || f.Update != nil {
			out[key] = f
		}
	}
	return out
}

// dataDeleter returns the node whose agent is to delete the data of a
// deleted claim no pod mounts any more: "" while a node holds its volume
// or no node can reach it. noData says there is no data to delete: the
// claim never got storage, or its node-local volume's node no longer
// exists.
func dataDeleter(c *corev1.PersistentVolumeClaim, exists map[string]bool, nodes []string, fenced func(string) bool) (deleter string, noData bool) {
	if c.Annotations[AnnotationStorageDriver] == "" {
		return "", true
	}
	holder := c.Annotations[AnnotationAttachedNode]
	if claimPinned(c) {
		// Only the node that made it reaches a node-local volume; it
		// deletes the data once its agent detached the volume.
		node := c.Annotations[AnnotationSelectedNode]
		if node == "" {
			node = holder
		}
		if node == "" || !exists[node] {
			return "", true
		}
		if holder != "" {
			return "", false
		}
		return node, false
	}
	// A volume on a shared root: any node reaches it. A fenced holder
	// runs nothing any more (the rule binding follows too).
	if holder != "" && !fenced(holder) {
		return "", false
	}
	if cur := c.Annotations[AnnotationDataDeleter]; cur != "" && exists[cur] && !fenced(cur) {
		return cur, false
	}
	for _, n := range nodes {
		if !fenced(n) {
			return n, false
		}
	}
	return "", false
}

func without(list []string, s string) []string {
	out := make([]string, 0, len(list))
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// finalizeClaims commits what FinalizeClaims decides for the deleted
// claims of v, in one transaction guarded by the versions it decided
// from: if the state moved meanwhile, the next sync decides again.
func (c *Controller) finalizeClaims(ctx context.Context, v *raftstore.View, now time.Time) error {
	var deleted []*corev1.PersistentVolumeClaim
	for _, pvc := range raftstore.ListOf[*corev1.PersistentVolumeClaim](v, raftstore.PersistentVolumeClaims, "") {
		if pvc.DeletionTimestamp != nil {
			deleted = append(deleted, pvc)
		}
	}
	if len(deleted) == 0 {
		return nil
	}
	nodes := raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "")
	res := FinalizeClaims(deleted, raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, ""), nodes, c.nodeFenced(nodes))
	var ops []raftstore.Op
	for _, pvc := range deleted {
		f, ok := res[[2]string{pvc.Namespace, pvc.Name}]
		switch {
		case !ok:
		case f.Remove:
			ops = append(ops, DeleteOp(raftstore.PersistentVolumeClaims, pvc))
			c.log.Info("claim removed", "claim", pvc.Namespace+"/"+pvc.Name)
		default:
			op, err := PutOp(raftstore.PersistentVolumeClaims, f.Update, Version(pvc))
			if err != nil {
				return err
			}
			ops = append(ops, op)
			if d := f.Update.Annotations[AnnotationDataDeleter]; d != "" && d != pvc.Annotations[AnnotationDataDeleter] {
				c.log.Info("claim's data to be deleted", "claim", pvc.Namespace+"/"+pvc.Name, "node", d)
			}
		}
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: ops})
	if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrNotFound) {
		c.log.Debug("claim finalizing refused; state changed", "error", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("finalize deleted claims: %w", err)
	}
	return nil
}
