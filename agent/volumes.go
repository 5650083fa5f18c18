package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/volumes"
)

// VolumeMounter provides the storage behind a pod's persistent volume
// claims on this node.
//
// Concurrency: Mount and Unmount may be called for different pods at once;
// calls for one pod come one at a time.
type VolumeMounter interface {
	// Mount makes the volume of claim available for pod on this node and
	// returns the host directory to bind into its containers. Calling it
	// again for a mounted claim returns the same directory.
	Mount(ctx context.Context, pod *corev1.Pod, claim string) (hostPath string, err error)
	// Unmount releases the claim's volume once pod no longer runs here.
	Unmount(ctx context.Context, pod *corev1.Pod, claim string) error
}

// DirVolumes is the default VolumeMounter: each claim is a directory
// Root/<namespace>/<claim>, created 0755 and kept after the pod is
// deleted, so that an ordinal finds its data again on this node.
type DirVolumes struct {
	Root string
}

// Mount implements VolumeMounter.
func (d DirVolumes) Mount(_ context.Context, pod *corev1.Pod, claim string) (string, error) {
	if !filepath.IsLocal(pod.Namespace) || !filepath.IsLocal(claim) || strings.ContainsRune(claim, '/') {
		return "", fmt.Errorf("volume of claim %q: not a valid claim name", claim)
	}
	dir := filepath.Join(d.Root, pod.Namespace, claim)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("volume of claim %s/%s: %w", pod.Namespace, claim, err)
	}
	return dir, nil
}

// Unmount implements VolumeMounter: the directory stays.
func (DirVolumes) Unmount(context.Context, *corev1.Pod, string) error { return nil }

// volumeSources returns the host path of each of the pod's volumes,
// creating emptyDir volumes under the sandbox and mounting claims.
func (w *podWorker) volumeSources(ctx context.Context, sb string, pod *corev1.Pod) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			dir, err := w.env.volumes.Mount(ctx, pod, v.PersistentVolumeClaim.ClaimName)
			if err != nil {
				return nil, fmt.Errorf("mount volume %s: %w", v.Name, err)
			}
			out[v.Name] = dir
		case v.EmptyDir != nil:
			dir := filepath.Join(w.env.paths.sandbox(sb), "volumes", v.Name)
			if err := emptyDir(dir, v.EmptyDir); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = dir
		case v.HostPath != nil:
			if err := checkHostPath(v.HostPath); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			out[v.Name] = v.HostPath.Path
		default:
			return nil, fmt.Errorf("volume %s: only emptyDir, hostPath and persistentVolumeClaim volumes are supported", v.Name)
		}
	}
	return out, nil
}

// emptyDir creates the directory of an emptyDir volume; medium Memory
// mounts a tmpfs there, limited to sizeLimit.
func emptyDir(dir string, e *corev1.EmptyDirVolumeSource) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	if e.Medium != corev1.StorageMediumMemory || isMountPoint(dir) {
		return nil
	}
	opts := "mode=0777"
	if e.SizeLimit != nil && !e.SizeLimit.IsZero() {
		opts += ",size=" + strconv.FormatInt(e.SizeLimit.Value(), 10)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// checkHostPath applies a hostPath volume's type: create what the
// OrCreate types ask for, check the kind of what the others name.
func checkHostPath(h *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	if !filepath.IsAbs(h.Path) {
		return fmt.Errorf("hostPath %q is not absolute", h.Path)
	}
	switch t {
	case corev1.HostPathDirectoryOrCreate:
		return os.MkdirAll(h.Path, 0o755)
	case corev1.HostPathFileOrCreate:
		if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
			return err
		}
		f, err := os.OpenFile(h.Path, os.O_RDONLY|os.O_CREATE, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	case corev1.HostPathUnset:
		return nil
	}
	fi, err := os.Stat(h.Path)
	if err != nil {
		return fmt.Errorf("hostPath type check failed: %w", err)
	}
	m := fi.Mode()
	ok := map[corev1.HostPathType]bool{
		corev1.HostPathDirectory: m.IsDir(),
		corev1.HostPathFile:      m.IsRegular(),
		corev1.HostPathSocket:    m&os.ModeSocket != 0,
		corev1.HostPathCharDev:   m&os.ModeCharDevice != 0,
		corev1.HostPathBlockDev:  m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0,
	}[t]
	if !ok {
		return fmt.Errorf("hostPath type check failed: %s is not a %s", h.Path, t)
	}
	return nil
}

// containerMounts returns the bind mounts of container c: the pod's
// identity files, then its volumeMounts. A subPath is resolved inside its
// volume without following anything out of it (os.Root), and the
// directory found is bind-mounted by its file descriptor onto a path under
// the sandbox, which the container then mounts: a symlink swapped in
// afterwards cannot redirect the mount (CVE-2017-1002101, CVE-2021-25741).
func (w *podWorker) containerMounts(sb string, c *corev1.Container, sources map[string]string, pod *corev1.Pod) ([]containerd.Mount, error) {
	dir := w.env.paths.sandbox(sb)
	mounts := []containerd.Mount{
		{Source: filepath.Join(dir, "hostname"), Destination: "/etc/hostname"},
		{Source: filepath.Join(dir, "hosts"), Destination: "/etc/hosts"},
		{Source: filepath.Join(dir, "resolv.conf"), Destination: "/etc/resolv.conf"},
	}
	for i, vm := range c.VolumeMounts {
		src, ok := sources[vm.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMounts[%d]: the pod has no volume %q", i, vm.Name)
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expandSubPath(vm.SubPathExpr, pod)
		}
		if sub != "" {
			target := filepath.Join(dir, "subpaths", c.Name, strconv.Itoa(i))
			if err := bindSubPath(src, sub, target); err != nil {
				return nil, fmt.Errorf("volumeMounts[%d] (%s, subPath %q): %w", i, vm.Name, sub, err)
			}
			src = target
		}
		mounts = append(mounts, containerd.Mount{Source: src, Destination: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	return mounts, nil
}

// expandSubPath expands $(VAR) in a subPathExpr from the container's
// plain env values (the downward API values the kubelet allows are not
// known here).
func expandSubPath(expr string, pod *corev1.Pod) string {
	return strings.NewReplacer("$(POD_NAME)", pod.Name, "$(POD_NAMESPACE)", pod.Namespace).Replace(expr)
}

// bindSubPath opens sub inside volume through an os.Root, creating it as
// a directory when missing, and bind-mounts it onto target.
func bindSubPath(volume, sub, target string) error {
	if !filepath.IsLocal(sub) {
		return fmt.Errorf("subPath must be a relative path inside the volume without '..'")
	}
	root, err := os.OpenRoot(volume)
	if err != nil {
		return err
	}
	defer root.Close()
	if _, err := root.Lstat(sub); errors.Is(err, os.ErrNotExist) {
		if err := root.MkdirAll(sub, 0o755); err != nil {
			return err
		}
	}
	f, err := root.Open(sub)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	if isMountPoint(target) {
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return err
		}
	}
	if fi.IsDir() {
		err = os.MkdirAll(target, 0o755)
	} else {
		var t *os.File
		if t, err = os.OpenFile(target, os.O_RDONLY|os.O_CREATE, 0o644); err == nil {
			t.Close()
		}
	}
	if err != nil {
		return err
	}
	src := "/proc/self/fd/" + strconv.Itoa(int(f.Fd()))
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s onto %s: %w", sub, target, err)
	}
	return nil
}

// isMountPoint reports whether path is a mount point in this mount
// namespace.
func isMountPoint(path string) bool {
	for _, mp := range mountsUnder(path) {
		if mp == path {
			return true
		}
	}
	return false
}

// mountsUnder returns the mount points at or under dir, deepest first;
// none when the mount table cannot be read.
func mountsUnder(dir string) []string {
	mps, _ := volumes.MountsUnder(dir)
	return mps
}

// unmountAll detaches every mount at or under dir, deepest first.
func unmountAll(dir string) error {
	var errs []error
	for _, mp := range mountsUnder(dir) {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

// Annotations an agent writes on a claim it attached, so that the servers
// know which node holds its volume (at most one at a time) and whether the
// volume pins its ordinal to a node.
const (
	// AnnotationAttachedNode names the node whose agent attached the
	// claim's volume; removed when it detaches.
	AnnotationAttachedNode = "stead.io/attached-node"
	// AnnotationAttachedGeneration is the pod generation that attached it.
	AnnotationAttachedGeneration = "stead.io/attached-generation"
	// AnnotationStorageDriver is the driver of the claim's class (local,
	// shared, image), recorded when the volume is first made.
	AnnotationStorageDriver = "stead.io/storage-driver"
	// AnnotationStorageShared is "true" on a claim of an image class on
	// a shared root: its volume follows its ordinal to any node.
	AnnotationStorageShared = "stead.io/storage-shared"
	// annotationSelectedNode pins the claim's ordinal to the node that
	// holds a volume of a pinned class (scheduler.AnnotationSelectedNode).
	annotationSelectedNode = "volume.kubernetes.io/selected-node"
)

// Waiting reasons of a pod whose claim volume could not be mounted.
const (
	// ReasonFailedMount: the claim, its class or its volume is unusable.
	ReasonFailedMount = "FailedMount"
	// ReasonStaleVolumeGeneration: the volume's fence marker holds a
	// newer generation than the pod's: a newer incarnation attached it,
	// so this one must never start.
	ReasonStaleVolumeGeneration = "StaleVolumeGeneration"
)

// MountError is a claim volume that could not be mounted, with the
// waiting reason the pod reports.
type MountError struct {
	Reason string
	Err    error
}

func (e *MountError) Error() string { return e.Reason + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *MountError) Unwrap() error { return e.Err }

// claimStore reads and writes claims in the replicated state.
type claimStore interface {
	// getClaim returns the claim ns/name (an apierrors NotFound when
	// there is none).
	getClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error)
	// putClaim replaces the claim if its resourceVersion is still the
	// stored one (a Conflict otherwise).
	putClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error
}

var claimsResource, _ = api.LookupResource("persistentvolumeclaims")

// getClaim implements claimStore.
func (p *serverPool) getClaim(ctx context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	c := p.client()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var pvc corev1.PersistentVolumeClaim
	if _, err := c.Get(rctx, claimsResource, ns, name, &pvc); err != nil {
		p.failed(c, err)
		return nil, err
	}
	return &pvc, nil
}

// putClaim implements claimStore.
func (p *serverPool) putClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	c := p.client()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Put(rctx, claimsResource, pvc.Namespace, pvc.Name, pvc, nil); err != nil {
		p.failed(c, err)
		return err
	}
	return nil
}

// ClaimVolumes is the VolumeMounter of an agent with storage classes: a
// claim's volume is kept by a volumes.Manager in the class the claim
// names. Mount creates the volume, attaches it with the pod's generation
// (the fence marker refuses a stale one) and records the holder on the
// claim; Unmount removes the pod's subPath mounts, detaches the volume
// and clears the record.
type ClaimVolumes struct {
	mgr     *volumes.Manager
	classes volumes.Classes
	node    string
	claims  claimStore
	paths   paths
	log     hclog.Logger
	// metrics times attaches; nil observes nothing.
	metrics *agentMetrics
	// inUse reports whether a pod assigned to this node mounts the claim;
	// nil counts every claim as in use.
	inUse func(namespace, claim string) bool

	mu sync.Mutex
	// uncleared are the claims whose volume was detached here but whose
	// holder could not be cleared from the claim yet, with the
	// generation of the attachment: the next Unmount of the claim clears
	// it, though nothing is attached here any more.
	uncleared map[podKey]uint64
}

// newClaimVolumes returns the claim volumes of node, kept under
// dataDir/volumes.
func newClaimVolumes(node, dataDir string, classes volumes.Classes, claims claimStore, log hclog.Logger) (*ClaimVolumes, error) {
	mgr, err := volumes.NewManager(volumes.Options{Node: node, Dir: paths{dataDir}.volumes(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return &ClaimVolumes{mgr: mgr, classes: classes, node: node, claims: claims, paths: paths{dataDir}, log: log.Named("claims")}, nil
}

// Manager is the volumes.Manager that keeps the volumes.
func (c *ClaimVolumes) Manager() *volumes.Manager { return c.mgr }

// Mount implements VolumeMounter.
func (c *ClaimVolumes) Mount(ctx context.Context, pod *corev1.Pod, claim string) (string, error) {
	pvc, err := c.claims.getClaim(ctx, pod.Namespace, claim)
	if err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: fmt.Errorf("claim %s/%s: %w", pod.Namespace, claim, err)}
	}
	v, err := volumes.FromClaim(pvc, c.classes)
	if err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	if pvc, err = c.prepare(ctx, pvc, v); err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	if err := c.mgr.Create(ctx, v); err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	if v.Size, err = c.growDetached(ctx, v); err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	gen := uint64(max(generationOf(pod), 0))
	hostPath, err := c.metrics.attach(ctx, c.mgr, v, gen)
	if errors.Is(err, volumes.ErrStaleGeneration) {
		return "", &MountError{Reason: ReasonStaleVolumeGeneration, Err: err}
	}
	if err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	if err := c.record(ctx, pvc, v, gen); err != nil {
		return "", &MountError{Reason: ReasonFailedMount, Err: err}
	}
	return hostPath, nil
}

// record writes on the claim that this node holds its volume at gen
// (status Bound with its capacity, the attached-node and -generation
// annotations, the class's driver, and for a pinned class the node the
// ordinal is pinned to), with compare-and-swap on its resourceVersion.
// An agent whose token may not write claims only logs it: the volume is
// fenced on its own either way.
func (c *ClaimVolumes) record(ctx context.Context, pvc *corev1.PersistentVolumeClaim, v volumes.Volume, gen uint64) error {
	for range 5 {
		next := attachedClaim(pvc, c.node, v, gen)
		if next == nil {
			return nil
		}
		err := c.claims.putClaim(ctx, next)
		switch {
		case err == nil:
			return nil
		case apierrors.IsForbidden(err):
			c.log.Warn("cannot record the volume's holder on its claim", "claim", v.String(), "error", err)
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("record attachment on claim %s: %w", v, err)
		}
		if pvc, err = c.claims.getClaim(ctx, pvc.Namespace, pvc.Name); err != nil {
			return fmt.Errorf("record attachment on claim %s: %w", v, err)
		}
	}
	return fmt.Errorf("record attachment on claim %s: it keeps changing", v)
}

// attachedClaim returns pvc as it should be once node attached v at gen,
// or nil when it already is.
func attachedClaim(pvc *corev1.PersistentVolumeClaim, node string, v volumes.Volume, gen uint64) *corev1.PersistentVolumeClaim {
	want := map[string]string{
		AnnotationAttachedNode:       node,
		AnnotationAttachedGeneration: strconv.FormatUint(gen, 10),
		AnnotationStorageDriver:      string(v.Class.Driver),
	}
	if v.Class.Driver == volumes.DriverImage && v.Class.Shared {
		want[AnnotationStorageShared] = "true"
	}
	if v.Class.Pinned() && pvc.Annotations[annotationSelectedNode] == "" {
		want[annotationSelectedNode] = node
	}
	changed := pvc.Status.Phase != corev1.ClaimBound
	for k, val := range want {
		if pvc.Annotations[k] != val {
			changed = true
		}
	}
	size := capacityOf(pvc, v.Size)
	if cur, ok := pvc.Status.Capacity[corev1.ResourceStorage]; !ok || cur.Cmp(size) != 0 {
		changed = true
	}
	if len(pvc.Status.AccessModes) != len(pvc.Spec.AccessModes) {
		changed = true
	}
	// A resize that waited for this mount is done once the volume has
	// the size asked for.
	resized := resizedTo(pvc, v)
	if resized && claimCondition(pvc, corev1.PersistentVolumeClaimNodeResizeError) {
		changed = true
	}
	if !changed {
		return nil
	}
	next := pvc.DeepCopy()
	if resized {
		clearClaimCondition(next, corev1.PersistentVolumeClaimNodeResizeError)
	}
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	maps.Copy(next.Annotations, want)
	next.Status.Phase = corev1.ClaimBound
	next.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: size}
	next.Status.AccessModes = slices.Clone(pvc.Spec.AccessModes)
	return next
}

// detachedClaim returns pvc without the holder annotations of node at
// gen, or nil when they are not node's at gen (another node or a newer
// incarnation holds it, or nobody).
func detachedClaim(pvc *corev1.PersistentVolumeClaim, node string, gen uint64) *corev1.PersistentVolumeClaim {
	if pvc.Annotations[AnnotationAttachedNode] != node || pvc.Annotations[AnnotationAttachedGeneration] != strconv.FormatUint(gen, 10) {
		return nil
	}
	next := pvc.DeepCopy()
	delete(next.Annotations, AnnotationAttachedNode)
	delete(next.Annotations, AnnotationAttachedGeneration)
	return next
}

// Unmount implements VolumeMounter: the pod's containers are dead, so
// its subPath mounts are removed, then the volume is detached, unless a
// newer incarnation of the pod attached it meanwhile, and the holder is
// cleared from the claim.
func (c *ClaimVolumes) Unmount(ctx context.Context, pod *corev1.Pod, claim string) error {
	sb := sandboxID(keyOf(pod), incarnationOf(pod))
	if err := volumes.CleanStaging(filepath.Join(c.paths.sandbox(sb), "subpaths")); err != nil {
		return err
	}
	gen := uint64(max(generationOf(pod), 0))
	as, err := c.mgr.Attachments()
	if err != nil {
		return err
	}
	for _, a := range as {
		if a.Volume.Namespace != pod.Namespace || a.Volume.Name != claim || a.Gen > gen {
			continue
		}
		if err := c.detach(ctx, a); err != nil {
			return err
		}
	}
	// An earlier try detached the volume but could not tell the servers.
	key := podKey{pod.Namespace, claim}
	c.mu.Lock()
	held, ok := c.uncleared[key]
	c.mu.Unlock()
	if ok && held <= gen {
		return c.clearHolder(ctx, key, held)
	}
	return nil
}

// detach detaches an attachment and clears it from its claim.
func (c *ClaimVolumes) detach(ctx context.Context, a volumes.Attachment) error {
	if err := c.mgr.Detach(ctx, a.Volume); err != nil {
		return err
	}
	return c.clearHolder(ctx, podKey{a.Volume.Namespace, a.Volume.Name}, a.Gen)
}

// clearHolder removes this node, holding the volume at generation gen,
// from the claim named by key. Until that succeeds, the claim is
// remembered in uncleared.
func (c *ClaimVolumes) clearHolder(ctx context.Context, key podKey, gen uint64) error {
	err := c.clearHolderOnce(ctx, key, gen)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.uncleared == nil {
			c.uncleared = map[podKey]uint64{}
		}
		c.uncleared[key] = gen
		return err
	}
	delete(c.uncleared, key)
	return nil
}

func (c *ClaimVolumes) clearHolderOnce(ctx context.Context, key podKey, gen uint64) error {
	a := key.String()
	for range 5 {
		pvc, err := c.claims.getClaim(ctx, key.Namespace, key.Name)
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("clear attachment of claim %s: %w", a, err)
		}
		next := detachedClaim(pvc, c.node, gen)
		if next == nil {
			return nil
		}
		err = c.claims.putClaim(ctx, next)
		switch {
		case err == nil, apierrors.IsNotFound(err), apierrors.IsForbidden(err):
			return nil
		case !apierrors.IsConflict(err):
			return fmt.Errorf("clear attachment of claim %s: %w", a, err)
		}
	}
	return fmt.Errorf("clear attachment of claim %s: it keeps changing", a)
}

// DetachUnused detaches the volumes attached here whose claims no pod in
// pods (the node's assignments) mounts: what a pod that went away while
// no agent ran left attached. Volumes still in use report ErrBusy.
func (c *ClaimVolumes) DetachUnused(ctx context.Context, pods []*corev1.Pod) error {
	used := map[podKey]bool{}
	for _, p := range pods {
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				used[podKey{p.Namespace, v.PersistentVolumeClaim.ClaimName}] = true
			}
		}
	}
	as, err := c.mgr.Attachments()
	if err != nil {
		return err
	}
	var errs []error
	for _, a := range as {
		if used[podKey{a.Volume.Namespace, a.Volume.Name}] {
			continue
		}
		c.log.Info("detaching the volume of a pod that is gone", "claim", a.Volume.String(), "gen", a.Gen)
		errs = append(errs, c.detach(ctx, a))
	}
	return errors.Join(errs...)
}
