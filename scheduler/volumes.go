package scheduler

import (
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
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
