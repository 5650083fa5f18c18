package scheduler

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
)

// deletedClaim is annotatedClaim marked deleted with finalizers.
func deletedClaim(name string, finalizers []string, kv ...string) *corev1.PersistentVolumeClaim {
	c := annotatedClaim(name, kv...)
	ts := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	c.DeletionTimestamp = &ts
	c.Finalizers = finalizers
	return c
}

func TestDeleteClaimOp(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)
	c := annotatedClaim("www-web-0", AnnotationStorageDriver, "image")
	c.Finalizers = []string{"example.com/keep"}
	op, err := DeleteClaimOp(c, now)
	if err != nil || op == nil {
		t.Fatalf("DeleteClaimOp = %v, %v", op, err)
	}
	if c.DeletionTimestamp != nil || len(c.Finalizers) != 1 {
		t.Fatalf("DeleteClaimOp changed the stored claim: %+v", c.ObjectMeta)
	}
	if op.Type != raftstore.OpPut || op.IfVersion != 7 || op.Name != "www-web-0" {
		t.Fatalf("op = %+v, want a put of www-web-0 guarded by version 7", op)
	}
	data, err := op.ObjectJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.PersistentVolumeClaim
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	if got.DeletionTimestamp == nil || !got.DeletionTimestamp.Time.Equal(now.Truncate(time.Second)) {
		t.Errorf("deletionTimestamp = %v, want %v", got.DeletionTimestamp, now.Truncate(time.Second))
	}
	want := []string{"example.com/keep", FinalizerClaimProtection, FinalizerVolumeData}
	if !slices.Equal(got.Finalizers, want) {
		t.Errorf("finalizers = %v, want %v", got.Finalizers, want)
	}
	again, err := DeleteClaimOp(&got, now.Add(time.Minute))
	if err != nil || again != nil {
		t.Errorf("DeleteClaimOp of a claim being deleted = %v, %v; want nothing", again, err)
	}
}

func TestFinalizeClaims(t *testing.T) {
	both := []string{FinalizerClaimProtection, FinalizerVolumeData}
	data := []string{FinalizerVolumeData}
	running := func(name, node string, claims ...string) *corev1.Pod {
		p := claimPod(name, claims...)
		p.Spec.NodeName = node
		p.Status.Phase = corev1.PodRunning
		return p
	}
	// a1 alive, a2 lost, a3 out of service, a4 gone (fencedNodes).
	nodes := []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "a1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a2"}}, {ObjectMeta: metav1.ObjectMeta{Name: "a3"}}}
	fenced := fencedNodes()
	type want struct {
		remove      bool
		unchanged   bool
		finalizers  []string
		annotations map[string]string
	}
	tests := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		pods  []*corev1.Pod
		want  want
	}{
		{"not deleted", annotatedClaim("www-web-0", AnnotationStorageDriver, "shared"), nil, want{unchanged: true}},
		{"mounted by a running pod", deletedClaim("www-web-0", both, AnnotationStorageDriver, "shared"),
			[]*corev1.Pod{running("web-0", "a1", "www-web-0")}, want{unchanged: true}},
		{"mounted by a terminating pod", deletedClaim("www-web-0", both, AnnotationStorageDriver, "shared"),
			[]*corev1.Pod{func() *corev1.Pod {
				p := running("web-0", "a1", "www-web-0")
				p.DeletionTimestamp = &metav1.Time{}
				return p
			}()}, want{unchanged: true}},
		{"mounted by a pending pod on no node", deletedClaim("www-web-0", both),
			[]*corev1.Pod{claimPod("web-0", "www-web-0")}, want{remove: true}},
		{"mounted only by a failed pod", deletedClaim("www-web-0", both, AnnotationStorageDriver, "shared"),
			[]*corev1.Pod{func() *corev1.Pod {
				p := running("web-0", "a1", "www-web-0")
				p.Status.Phase = corev1.PodFailed
				return p
			}()}, want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "shared", AnnotationDataDeleter: "a1"}}},
		{"pod of another claim", deletedClaim("www-web-0", both),
			[]*corev1.Pod{running("web-1", "a1", "www-web-1")}, want{remove: true}},
		{"never got storage", deletedClaim("www-web-0", both), nil, want{remove: true}},
		{"other finalizer stays", deletedClaim("www-web-0", []string{"example.com/keep", FinalizerClaimProtection, FinalizerVolumeData}), nil,
			want{finalizers: []string{"example.com/keep"}}},
		{"only another finalizer", deletedClaim("www-web-0", []string{"example.com/keep"}), nil, want{unchanged: true}},
		{"no finalizer left", deletedClaim("www-web-0", nil), nil, want{remove: true}},
		{"shared, held by a live node", deletedClaim("www-web-0", both, AnnotationStorageDriver, "shared", AnnotationAttachedNode, "a1"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "shared", AnnotationAttachedNode: "a1"}}},
		{"shared, held by a fenced node", deletedClaim("www-web-0", data, AnnotationStorageDriver, "shared", AnnotationAttachedNode, "a2"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "shared", AnnotationAttachedNode: "a2", AnnotationDataDeleter: "a1"}}},
		{"shared, deleter kept while alive", deletedClaim("www-web-0", data, AnnotationStorageDriver, "shared", AnnotationDataDeleter, "a1"), nil,
			want{unchanged: true}},
		{"shared, deleter chosen again once fenced", deletedClaim("www-web-0", data, AnnotationStorageDriver, "shared", AnnotationDataDeleter, "a2"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "shared", AnnotationDataDeleter: "a1"}}},
		{"image on a shared root", deletedClaim("www-web-0", both, AnnotationStorageDriver, "image", AnnotationStorageShared, "true", AnnotationDataDeleter, "a3"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "image", AnnotationStorageShared: "true", AnnotationDataDeleter: "a1"}}},
		{"local, held by its node", deletedClaim("www-web-0", both, AnnotationStorageDriver, "local", AnnotationSelectedNode, "a2", AnnotationAttachedNode, "a2"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "local", AnnotationSelectedNode: "a2", AnnotationAttachedNode: "a2"}}},
		{"local, its node deletes it even when lost", deletedClaim("www-web-0", data, AnnotationStorageDriver, "local", AnnotationSelectedNode, "a2"), nil,
			want{finalizers: data, annotations: map[string]string{AnnotationStorageDriver: "local", AnnotationSelectedNode: "a2", AnnotationDataDeleter: "a2"}}},
		{"local image on a node that is gone", deletedClaim("www-web-0", data, AnnotationStorageDriver, "image", AnnotationSelectedNode, "a4", AnnotationDataDeleter, "a4"), nil,
			want{remove: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.claim.DeepCopy()
			res := FinalizeClaims([]*corev1.PersistentVolumeClaim{tt.claim}, tt.pods, nodes, fenced)
			if !slices.Equal(tt.claim.Finalizers, before.Finalizers) || !maps.Equal(tt.claim.Annotations, before.Annotations) {
				t.Fatalf("FinalizeClaims changed the stored claim: %+v", tt.claim.ObjectMeta)
			}
			got, ok := res[[2]string{"default", "www-web-0"}]
			switch {
			case tt.want.unchanged:
				if ok {
					t.Fatalf("FinalizeClaims = %+v, want no change", got)
				}
			case tt.want.remove:
				if !ok || !got.Remove {
					t.Fatalf("FinalizeClaims = %+v (found %v), want the claim removed", got, ok)
				}
			default:
				if !ok || got.Remove || got.Update == nil {
					t.Fatalf("FinalizeClaims = %+v (found %v), want an update", got, ok)
				}
				if !slices.Equal(got.Update.Finalizers, tt.want.finalizers) {
					t.Errorf("finalizers = %v, want %v", got.Update.Finalizers, tt.want.finalizers)
				}
				if !maps.Equal(got.Update.Annotations, tt.want.annotations) {
					t.Errorf("annotations = %v, want %v", got.Update.Annotations, tt.want.annotations)
				}
				if got.Update.ResourceVersion != "7" {
					t.Errorf("resourceVersion = %q, want the stored 7", got.Update.ResourceVersion)
				}
			}
		})
	}
}
