package agent

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/volumes"
)

// memClaims is a claimStore in memory whose writes can be made to fail, as
// they do while no server answers.
type memClaims struct {
	mu      sync.Mutex
	claims  map[string]*corev1.PersistentVolumeClaim
	rv      int
	failPut bool
}

func (m *memClaims) getClaim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.claims[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "persistentvolumeclaims"}, name)
	}
	return c.DeepCopy(), nil
}

func (m *memClaims) putClaim(_ context.Context, pvc *corev1.PersistentVolumeClaim) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failPut {
		return errors.New("no server answers")
	}
	key := pvc.Namespace + "/" + pvc.Name
	if cur := m.claims[key]; cur != nil && cur.ResourceVersion != pvc.ResourceVersion {
		return apierrors.NewConflict(schema.GroupResource{Resource: "persistentvolumeclaims"}, pvc.Name, errors.New("changed"))
	}
	m.rv++
	pvc = pvc.DeepCopy()
	pvc.ResourceVersion = resource.NewQuantity(int64(m.rv), resource.DecimalSI).String()
	m.claims[key] = pvc
	return nil
}

func (m *memClaims) holder(t *testing.T) string {
	t.Helper()
	c, err := m.getClaim(context.Background(), "default", "data-web-0")
	if err != nil {
		t.Fatal(err)
	}
	if c.Annotations[AnnotationAttachedNode] == "" {
		return ""
	}
	return c.Annotations[AnnotationAttachedNode] + "@" + c.Annotations[AnnotationAttachedGeneration]
}

func newHolderEnv(t *testing.T) (*ClaimVolumes, *memClaims, *corev1.Pod) {
	t.Helper()
	dir := t.TempDir()
	classes, err := volumes.ParseClasses([]string{"disk=local,default"})
	if err != nil {
		t.Fatal(err)
	}
	store := &memClaims{claims: map[string]*corev1.PersistentVolumeClaim{}}
	store.putClaim(context.Background(), &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data-web-0", Namespace: "default", UID: types.UID("uid-data-web-0")},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	})
	cv, err := newClaimVolumes("node-a", dir, classes, store, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	pod := webPod("web-0", 7)
	pod.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-0"}}}}
	return cv, store, pod
}

// TestUnmountClearsTheHolderLater: a detach whose news could not reach the
// servers is told by the next Unmount, though nothing is attached any more.
func TestUnmountClearsTheHolderLater(t *testing.T) {
	cv, store, pod := newHolderEnv(t)
	ctx := context.Background()
	if _, err := cv.Mount(ctx, pod, "data-web-0"); err != nil {
		t.Fatal(err)
	}
	if got := store.holder(t); got != "node-a@7" {
		t.Fatalf("holder after mount %q, want node-a@7", got)
	}
	store.failPut = true
	if err := cv.Unmount(ctx, pod, "data-web-0"); err == nil {
		t.Fatal("unmount told nobody and reported success")
	}
	if as, _ := cv.mgr.Attachments(); len(as) != 0 {
		t.Fatalf("still attached: %+v", as)
	}
	store.failPut = false
	if err := cv.Unmount(ctx, pod, "data-web-0"); err != nil {
		t.Fatal(err)
	}
	if got := store.holder(t); got != "" {
		t.Errorf("holder after the second unmount %q, want none", got)
	}
}

// TestSyncClaimsClearsStaleHolds: a claim that names this node as holder
// while nothing is attached here is cleared, unless a pod assigned here
// mounts it (it may be attaching).
func TestSyncClaimsClearsStaleHolds(t *testing.T) {
	cv, store, pod := newHolderEnv(t)
	ctx := context.Background()
	if _, err := cv.Mount(ctx, pod, "data-web-0"); err != nil {
		t.Fatal(err)
	}
	// The volume was detached here, but the claim kept naming this node
	// (the agent stopped before it could tell the servers).
	as, _ := cv.mgr.Attachments()
	for _, a := range as {
		if err := cv.mgr.Detach(ctx, a.Volume); err != nil {
			t.Fatal(err)
		}
	}
	sync := func() {
		t.Helper()
		c, _ := store.getClaim(ctx, "default", "data-web-0")
		if err := cv.SyncClaims(ctx, []*corev1.PersistentVolumeClaim{c}, pod.CreationTimestamp.Time); err != nil {
			t.Fatal(err)
		}
	}
	inUse := true
	cv.inUse = func(ns, claim string) bool { return inUse }
	sync()
	if got := store.holder(t); got != "node-a@7" {
		t.Fatalf("a claim a pod here mounts lost its holder: %q", got)
	}
	inUse = false
	sync()
	if got := store.holder(t); got != "" {
		t.Errorf("stale holder %q kept, want none", got)
	}
}
