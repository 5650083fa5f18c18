package httpapi

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// TestDeleteClaim: deleting a claim marks it Terminating with its
// finalizers rather than removing it, a second delete changes nothing,
// and a put of the claim (an agent recording its holder) cannot undo the
// deletion.
func TestDeleteClaim(t *testing.T) {
	ts := startServer(t, "s1", true)
	ctx := context.Background()
	pvcs := res(t, "persistentvolumeclaims")
	claim := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: "www-web-0", Namespace: "default"},
	}
	if _, err := ts.client.Put(ctx, pvcs, "default", "www-web-0", claim, nil); err != nil {
		t.Fatal(err)
	}
	get := func() *corev1.PersistentVolumeClaim {
		c, ok := raftstore.GetOf[*corev1.PersistentVolumeClaim](ts.store.View(), raftstore.PersistentVolumeClaims, "default", "www-web-0")
		if !ok {
			t.Fatal("claim www-web-0 removed at once")
		}
		return c
	}
	if _, err := ts.client.Delete(ctx, pvcs, "default", "www-web-0", api.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deleted := get()
	want := []string{scheduler.FinalizerClaimProtection, scheduler.FinalizerVolumeData}
	if deleted.DeletionTimestamp == nil || !slices.Equal(deleted.Finalizers, want) {
		t.Fatalf("claim after delete: deletionTimestamp %v, finalizers %v; want set and %v", deleted.DeletionTimestamp, deleted.Finalizers, want)
	}
	if _, err := ts.client.Delete(ctx, pvcs, "default", "www-web-0", api.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if again := get(); again.ResourceVersion != deleted.ResourceVersion {
		t.Errorf("a second delete changed the claim: version %s, was %s", again.ResourceVersion, deleted.ResourceVersion)
	}
	undo := deleted.DeepCopy()
	undo.DeletionTimestamp = nil
	undo.Annotations = map[string]string{"stead.io/attached-node": "node-a"}
	if _, err := ts.client.Put(ctx, pvcs, "default", "www-web-0", undo, nil); err != nil {
		t.Fatal(err)
	}
	if after := get(); after.DeletionTimestamp == nil || after.Annotations["stead.io/attached-node"] != "node-a" {
		t.Errorf("after a put without deletionTimestamp: deletionTimestamp %v, annotations %v; want it still deleted, with the put's annotations",
			after.DeletionTimestamp, after.Annotations)
	}
}
