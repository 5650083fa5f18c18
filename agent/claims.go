package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// What the servers write on a deleted claim (scheduler.FinalizeClaims):
// the agent named by AnnotationDataDeleter deletes the volume's data and
// then removes FinalizerVolumeData.
const (
	// FinalizerVolumeData keeps a deleted claim until its data is deleted
	// (scheduler.FinalizerVolumeData).
	FinalizerVolumeData = "stead.io/volume-data"
	// finalizerClaimProtection keeps it while a pod mounts it
	// (scheduler.FinalizerClaimProtection).
	finalizerClaimProtection = "kubernetes.io/pvc-protection"
	// AnnotationDataDeleter names the node that is to delete the data
	// (scheduler.AnnotationDataDeleter).
	AnnotationDataDeleter = "stead.io/data-deleter"
)

// Claim conditions the agent reports.
const (
	// ConditionDataDeleteError: the node asked to delete a deleted
	// claim's data could not; the message says why. It is retried.
	ConditionDataDeleteError corev1.PersistentVolumeClaimConditionType = "DataDeleteError"
	// ReasonResizeFailed and ReasonShrinkRefused are reasons of the
	// NodeResizeError condition of a claim whose volume could not be
	// grown to its spec.resources.requests.storage.
	ReasonResizeFailed  = "VolumeResizeFailed"
	ReasonShrinkRefused = "VolumeShrinkRefused"
	// ReasonResizeOffline: the kernel does not let the agent grow the
	// mounted filesystem (no CAP_SYS_RESOURCE); it grows when the volume
	// is next mounted, once the pod is restarted.
	ReasonResizeOffline = "VolumeResizeOnRestart"
)

// claimLister follows the claims of the cluster.
type claimLister interface {
	// listClaims returns every claim, blocking until the state passes
	// index when it is not zero, and the index of the answer.
	listClaims(ctx context.Context, index uint64) ([]*corev1.PersistentVolumeClaim, uint64, error)
}

// listClaims implements claimLister.
func (p *serverPool) listClaims(ctx context.Context, index uint64) ([]*corev1.PersistentVolumeClaim, uint64, error) {
	c := p.client()
	list, idx, err := c.List(ctx, claimsResource, "", api.ListOptions{Index: index, Wait: DefaultAssignmentsWait})
	if err != nil {
		p.failed(c, err)
		return nil, 0, err
	}
	out := make([]*corev1.PersistentVolumeClaim, 0, len(list.Items))
	for _, raw := range list.Items {
		var pvc corev1.PersistentVolumeClaim
		if json.Unmarshal(raw, &pvc) == nil {
			out = append(out, &pvc)
		}
	}
	return out, idx, nil
}

// claimSyncInterval is the shortest time between two looks at the
// claims, so that a busy state does not make the agent spin.
const claimSyncInterval = time.Second

// watchClaims follows the claims with blocking queries and hands them to
// the claim volumes' SyncClaims: grow the volumes this node holds to
// their claims' new size, and delete the data of deleted claims this
// node is asked to. A failed look is retried with back-off.
func (a *Agent) watchClaims(ctx context.Context) {
	cv, ok := a.cfg.Volumes.(*ClaimVolumes)
	if !ok {
		return
	}
	var index uint64
	backoff := claimSyncInterval
	for ctx.Err() == nil {
		claims, idx, err := a.servers.listClaims(ctx, index)
		if err == nil {
			index = idx
			err = cv.SyncClaims(ctx, claims, a.cfg.Clock.Now())
		}
		wait := claimSyncInterval
		if err != nil && ctx.Err() == nil {
			a.log.Warn("sync claim volumes; retrying", "error", err, "retry_in", backoff)
			// Look again without waiting for a change.
			index = 0
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = claimSyncInterval
		}
		select {
		case <-ctx.Done():
		case <-a.cfg.Clock.After(wait):
		}
	}
}

// SyncClaims brings this node's claim volumes in line with claims (every
// claim of the cluster, as the servers store them; now stamps the
// conditions it writes):
//
//   - a claim whose volume is attached here and that asks for more than
//     the volume has grows it (image volumes, online), and its
//     status.capacity then says the new size; a volume that cannot grow
//     (no space, a smaller size asked) keeps its size and data and the
//     claim gets a NodeResizeError condition saying why;
//   - a deleted claim this node is asked to delete the data of
//     (AnnotationDataDeleter, once no pod mounts it and no node holds
//     its volume) has its volume deleted, then loses FinalizerVolumeData
//     so that the servers remove it. A volume still attached here is
//     left until it is detached.
func (c *ClaimVolumes) SyncClaims(ctx context.Context, claims []*corev1.PersistentVolumeClaim, now time.Time) error {
	atts, err := c.mgr.Attachments()
	if err != nil {
		return err
	}
	attached := map[string]volumes.Attachment{}
	for _, a := range atts {
		attached[a.Volume.UID] = a
	}
	var errs []error
	for _, pvc := range claims {
		a, isAttached := attached[string(pvc.UID)]
		if !isAttached && c.holdsStale(pvc) {
			gen, _ := strconv.ParseUint(pvc.Annotations[AnnotationAttachedGeneration], 10, 64)
			c.log.Info("clearing a hold this node no longer has", "claim", pvc.Namespace+"/"+pvc.Name, "gen", gen)
			errs = append(errs, c.clearHolder(ctx, podKey{pvc.Namespace, pvc.Name}, gen))
		}
		switch {
		case pvc.DeletionTimestamp != nil:
			if c.deletesData(pvc) && !isAttached {
				errs = append(errs, c.deleteData(ctx, pvc, now))
			}
		case isAttached:
			errs = append(errs, c.grow(ctx, pvc, a.Volume, now))
		}
	}
	return errors.Join(errs...)
}

// holdsStale reports whether pvc names this node as its volume's holder
// though the caller found nothing attached here and no pod assigned here
// mounts it: a detach whose news did not reach the servers (they were
// down, or the agent stopped in between). Such a hold would keep the
// claim's ordinal from starting anywhere else.
func (c *ClaimVolumes) holdsStale(pvc *corev1.PersistentVolumeClaim) bool {
	return pvc.Annotations[AnnotationAttachedNode] == c.node && c.inUse != nil && !c.inUse(pvc.Namespace, pvc.Name)
}

// deletesData reports whether this node is to delete the data of a
// deleted claim now.
func (c *ClaimVolumes) deletesData(pvc *corev1.PersistentVolumeClaim) bool {
	return pvc.Annotations[AnnotationDataDeleter] == c.node &&
		slices.Contains(pvc.Finalizers, FinalizerVolumeData) &&
		!slices.Contains(pvc.Finalizers, finalizerClaimProtection)
}

// deleteData deletes the volume of a deleted claim and removes the
// claim's FinalizerVolumeData. A failure is recorded on the claim as a
// DataDeleteError condition and retried on the next sync.
func (c *ClaimVolumes) deleteData(ctx context.Context, pvc *corev1.PersistentVolumeClaim, now time.Time) error {
	name := pvc.Namespace + "/" + pvc.Name
	err := c.deleteVolume(ctx, pvc)
	if err != nil {
		c.log.Warn("cannot delete the data of a deleted claim", "claim", name, "error", err)
		msg := err.Error()
		return errors.Join(err, c.updateClaim(ctx, pvc, func(next *corev1.PersistentVolumeClaim) bool {
			return setClaimCondition(next, ConditionDataDeleteError, "DeleteFailed", msg, now)
		}))
	}
	c.log.Info("deleted the data of a deleted claim", "claim", name, "uid", pvc.UID)
	return c.updateClaim(ctx, pvc, func(next *corev1.PersistentVolumeClaim) bool {
		if !slices.Contains(next.Finalizers, FinalizerVolumeData) {
			return false
		}
		next.Finalizers = slices.DeleteFunc(next.Finalizers, func(f string) bool { return f == FinalizerVolumeData })
		clearClaimCondition(next, ConditionDataDeleteError)
		return true
	})
}

// deleteVolume deletes a claim's volume in the class it names, refusing
// if that class's driver is not the one that made it (the class was
// configured anew since): the data would be looked for in the wrong place.
func (c *ClaimVolumes) deleteVolume(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	v, err := volumeOf(pvc, c.classes)
	if err != nil {
		return fmt.Errorf("delete the data of claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
	}
	if d := pvc.Annotations[AnnotationStorageDriver]; d != "" && d != string(v.Class.Driver) {
		return fmt.Errorf("delete the data of claim %s: its volume was made by the %s driver, but class %q on node %s now has the %s driver: configure the class as it was, or delete %s by hand and remove the claim's finalizer %s",
			v, d, v.Class.Name, c.node, v.Class.Driver, c.mgr.VolumeDir(v), FinalizerVolumeData)
	}
	return c.mgr.Delete(ctx, v)
}

// volumeOf is volumes.FromClaim without the size checks, which deleting
// needs not.
func volumeOf(pvc *corev1.PersistentVolumeClaim, classes volumes.Classes) (volumes.Volume, error) {
	p := pvc.DeepCopy()
	if p.Spec.Resources.Requests == nil {
		p.Spec.Resources.Requests = corev1.ResourceList{}
	}
	if q, ok := p.Spec.Resources.Requests[corev1.ResourceStorage]; !ok || q.Sign() <= 0 {
		p.Spec.Resources.Requests[corev1.ResourceStorage] = *resource.NewQuantity(volumes.MinImageSize, resource.BinarySI)
	}
	return volumes.FromClaim(p, classes)
}

// grow grows the attached volume v to its claim's request when that is
// larger, and records the volume's size as the claim's capacity.
func (c *ClaimVolumes) grow(ctx context.Context, pvc *corev1.PersistentVolumeClaim, v volumes.Volume, now time.Time) error {
	if v.Class.Driver != volumes.DriverImage {
		return nil
	}
	want, err := volumes.FromClaim(pvc, c.classes)
	if err != nil {
		return nil // Mount reported it on the pod
	}
	have, err := c.mgr.Size(v)
	if err != nil {
		return err
	}
	target := volumes.ImageSize(want.Size)
	var rerr error
	reason := ReasonResizeFailed
	switch {
	case target > have:
		rerr = c.mgr.Resize(ctx, v, want.Size)
		if rerr == nil {
			have = target
		}
		if errors.Is(rerr, volumes.ErrOnlineResize) {
			reason = ReasonResizeOffline
			rerr = fmt.Errorf("%w; the volume grows to %s when it is next mounted: restart its pod (stead delete pod)", rerr, claimQuantity(pvc))
		}
	case target < have:
		reason = ReasonShrinkRefused
		rerr = fmt.Errorf("volume %s: spec.resources.requests.storage asks for %s, but the volume has %s and image volumes only grow: set it to %s or more",
			v, claimQuantity(pvc), resource.NewQuantity(have, resource.BinarySI), resource.NewQuantity(have, resource.BinarySI))
	}
	if rerr != nil {
		c.log.Warn("cannot resize a claim's volume", "claim", v.String(), "error", rerr)
		msg := rerr.Error()
		err := c.updateClaim(ctx, pvc, func(next *corev1.PersistentVolumeClaim) bool {
			return setClaimCondition(next, corev1.PersistentVolumeClaimNodeResizeError, reason, msg, now)
		})
		if reason != ReasonResizeFailed {
			// Nothing to retry until the claim changes.
			return err
		}
		return errors.Join(rerr, err)
	}
	return c.updateClaim(ctx, pvc, func(next *corev1.PersistentVolumeClaim) bool {
		changed := clearClaimCondition(next, corev1.PersistentVolumeClaimNodeResizeError)
		size := capacityOf(next, have)
		if cur, ok := next.Status.Capacity[corev1.ResourceStorage]; !ok || cur.Cmp(size) != 0 {
			if next.Status.Capacity == nil {
				next.Status.Capacity = corev1.ResourceList{}
			}
			next.Status.Capacity[corev1.ResourceStorage] = size
			changed = true
			c.log.Info("volume resized", "claim", v.String(), "size", size.String())
		}
		return changed
	})
}

// claimQuantity is the claim's requested storage as written.
func claimQuantity(pvc *corev1.PersistentVolumeClaim) string {
	q := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	return q.String()
}

// capacityOf is size as the claim's capacity: the request as written when
// the volume has exactly that ("1Gi"), the byte count otherwise.
func capacityOf(pvc *corev1.PersistentVolumeClaim, size int64) resource.Quantity {
	if q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; ok && q.Value() == size {
		return q
	}
	return *resource.NewQuantity(size, resource.BinarySI)
}

// setClaimCondition sets condition typ True with reason and message,
// reporting whether anything changed; the transition time moves only
// when it was not True before.
func setClaimCondition(pvc *corev1.PersistentVolumeClaim, typ corev1.PersistentVolumeClaimConditionType, reason, msg string, now time.Time) bool {
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	for i := range pvc.Status.Conditions {
		cond := &pvc.Status.Conditions[i]
		if cond.Type != typ {
			continue
		}
		if cond.Status == corev1.ConditionTrue && cond.Reason == reason && cond.Message == msg {
			return false
		}
		if cond.Status != corev1.ConditionTrue {
			cond.LastTransitionTime = ts
		}
		cond.Status, cond.Reason, cond.Message, cond.LastProbeTime = corev1.ConditionTrue, reason, msg, ts
		return true
	}
	pvc.Status.Conditions = append(pvc.Status.Conditions, corev1.PersistentVolumeClaimCondition{
		Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastProbeTime: ts, LastTransitionTime: ts,
	})
	return true
}

// clearClaimCondition removes condition typ, reporting whether it was
// there.
func clearClaimCondition(pvc *corev1.PersistentVolumeClaim, typ corev1.PersistentVolumeClaimConditionType) bool {
	n := len(pvc.Status.Conditions)
	pvc.Status.Conditions = slices.DeleteFunc(pvc.Status.Conditions, func(c corev1.PersistentVolumeClaimCondition) bool { return c.Type == typ })
	if len(pvc.Status.Conditions) == 0 {
		pvc.Status.Conditions = nil
	}
	return len(pvc.Status.Conditions) != n
}

// updateClaim applies change to a copy of pvc and writes it with
// compare-and-swap on its resourceVersion, reading the claim again after
// a conflict. change reports whether it changed anything; a claim that
// is gone, or is another claim of the same name now, is left alone.
func (c *ClaimVolumes) updateClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, change func(*corev1.PersistentVolumeClaim) bool) error {
	uid := pvc.UID
	for range 5 {
		next := pvc.DeepCopy()
		if !change(next) {
			return nil
		}
		err := c.claims.putClaim(ctx, next)
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("update claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
		}
		if pvc, err = c.claims.getClaim(ctx, pvc.Namespace, pvc.Name); apierrors.IsNotFound(err) {
			return nil
		} else if err != nil {
			return fmt.Errorf("update claim %s/%s: %w", pvc.Namespace, pvc.Name, err)
		}
		if pvc.UID != uid {
			return nil
		}
	}
	return fmt.Errorf("update claim %s/%s: it keeps changing", pvc.Namespace, pvc.Name)
}

// prepare makes sure a claim records, before its volume is made, the
// driver that makes it and, for a node-local class, the node it lives on:
// from then on a deletion of the claim waits for that node to delete the
// data. A claim being deleted whose data is no longer kept (the servers
// found none) gets no volume. It returns the claim as stored.
func (c *ClaimVolumes) prepare(ctx context.Context, pvc *corev1.PersistentVolumeClaim, v volumes.Volume) (*corev1.PersistentVolumeClaim, error) {
	for range 5 {
		if pvc.DeletionTimestamp != nil && !slices.Contains(pvc.Finalizers, FinalizerVolumeData) {
			return nil, fmt.Errorf("claim %s is being deleted: no volume is made for it", v)
		}
		want := map[string]string{AnnotationStorageDriver: string(v.Class.Driver)}
		if v.Class.Driver == volumes.DriverImage && v.Class.Shared {
			want[AnnotationStorageShared] = "true"
		}
		if v.Class.Pinned() && pvc.Annotations[annotationSelectedNode] == "" {
			want[annotationSelectedNode] = c.node
		}
		next := pvc.DeepCopy()
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		changed := false
		for k, val := range want {
			if next.Annotations[k] != val {
				next.Annotations[k] = val
				changed = true
			}
		}
		if !changed {
			return pvc, nil
		}
		err := c.claims.putClaim(ctx, next)
		switch {
		case apierrors.IsForbidden(err):
			c.log.Warn("cannot record the volume's driver on its claim", "claim", v.String(), "error", err)
			return pvc, nil
		case err != nil && !apierrors.IsConflict(err):
			return nil, fmt.Errorf("record the driver of claim %s: %w", v, err)
		}
		got, gerr := c.claims.getClaim(ctx, pvc.Namespace, pvc.Name)
		if gerr != nil {
			return nil, fmt.Errorf("record the driver of claim %s: %w", v, gerr)
		}
		if got.UID != pvc.UID {
			return nil, fmt.Errorf("claim %s was deleted and made again while its volume was being made: trying again", v)
		}
		pvc = got
	}
	return nil, fmt.Errorf("record the driver of claim %s: it keeps changing", v)
}

// growDetached grows an image volume to the size its claim asks for
// before it is attached (offline, or online if it is already mounted
// here), and returns the volume's size. A size the class cannot provide
// fails the mount with the reason; the volume keeps its size and data.
func (c *ClaimVolumes) growDetached(ctx context.Context, v volumes.Volume) (int64, error) {
	if v.Class.Driver != volumes.DriverImage {
		return v.Size, nil
	}
	have, err := c.mgr.Size(v)
	if err != nil {
		return 0, err
	}
	if target := volumes.ImageSize(v.Size); target > have {
		if err := c.mgr.Resize(ctx, v, v.Size); err != nil {
			return 0, err
		}
		c.log.Info("volume resized before attaching", "claim", v.String(), "size", target)
		return target, nil
	}
	return have, nil
}

// resizedTo reports whether volume v has the size its claim asks for.
func resizedTo(pvc *corev1.PersistentVolumeClaim, v volumes.Volume) bool {
	q, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return true
	}
	if v.Class.Driver != volumes.DriverImage {
		return v.Size == q.Value()
	}
	return volumes.ImageSize(q.Value()) == v.Size
}

// claimCondition reports whether the claim has condition typ.
func claimCondition(pvc *corev1.PersistentVolumeClaim, typ corev1.PersistentVolumeClaimConditionType) bool {
	return slices.ContainsFunc(pvc.Status.Conditions, func(c corev1.PersistentVolumeClaimCondition) bool { return c.Type == typ })
}
