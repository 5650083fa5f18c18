package scheduler

import (
	"maps"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func claimPod(name string, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: c, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

func annotatedClaim(name string, kv ...string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "7"}}
	if len(kv) > 0 {
		c.Annotations = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c.Annotations[kv[i]] = kv[i+1]
	}
	return c
}

// fencedNodes is the Failover rule over: a1 alive, a2 lost past its lease
// and margin, a3 tainted out of service, a4 deleted.
func fencedNodes() func(string) bool {
	nodes := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "a1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a2"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "a3"}, Spec: corev1.NodeSpec{Taints: []corev1.Taint{{Key: TaintOutOfService, Effect: corev1.TaintEffectNoExecute}}}},
	}
	age := map[string]time.Duration{"a1": time.Second, "a2": time.Minute, "a3": time.Second}
	return nodeFenced(nodes, func(n string) time.Duration { return age[n] }, 10*time.Second, 5*time.Second)
}

func TestNodeFenced(t *testing.T) {
	fenced := fencedNodes()
	for node, want := range map[string]bool{"a1": false, "a2": true, "a3": true, "a4": true} {
		if got := fenced(node); got != want {
			t.Errorf("fenced(%s) = %v, want %v", node, got, want)
		}
	}
}

func TestHeldElsewhere(t *testing.T) {
	claims := IndexClaims([]*corev1.PersistentVolumeClaim{
		annotatedClaim("www-web-0"),
		annotatedClaim("www-web-1", AnnotationAttachedNode, "a1", AnnotationAttachedGeneration, "12"),
		annotatedClaim("www-web-2", AnnotationAttachedNode, "a2"),
		annotatedClaim("www-web-3", AnnotationAttachedNode, "a3"),
		annotatedClaim("www-web-4", AnnotationAttachedNode, "a4"),
		annotatedClaim("logs-web-1", AnnotationAttachedNode, "a1"),
	})
	tests := []struct {
		name string
		pod  *corev1.Pod
		node string
		want string
	}{
		{"no claims", claimPod("web-9"), "b1", ""},
		{"claim not attached", claimPod("web-0", "www-web-0"), "b1", ""},
		{"claim unknown", claimPod("web-8", "www-web-8"), "b1", ""},
		{"attached to the target node", claimPod("web-1", "www-web-1"), "a1", ""},
		{"attached to a live node", claimPod("web-1", "www-web-1"), "b1",
			"volume www-web-1 is still attached to node a1 (waiting for it to detach or be fenced)"},
		{"attached to a lost node", claimPod("web-2", "www-web-2"), "b1", ""},
		{"attached to a node out of service", claimPod("web-3", "www-web-3"), "b1", ""},
		{"attached to a deleted node", claimPod("web-4", "www-web-4"), "b1", ""},
		{"second claim held", claimPod("web-1", "www-web-0", "logs-web-1"), "b1",
			"volume logs-web-1 is still attached to node a1 (waiting for it to detach or be fenced)"},
	}
	fenced := fencedNodes()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HeldElsewhere(tt.pod, tt.node, claims, fenced); got != tt.want {
				t.Errorf("HeldElsewhere(%s on %s) = %q, want %q", tt.pod.Name, tt.node, got, tt.want)
			}
		})
	}
}

func TestBoundClaims(t *testing.T) {
	tests := []struct {
		name  string
		claim *corev1.PersistentVolumeClaim
		node  string
		want  map[string]string // annotations of the changed claim; nil: unchanged
	}{
		{"unknown driver is not pinned", annotatedClaim("www-web-0"), "b1", nil},
		{"shared driver is not pinned", annotatedClaim("www-web-0", AnnotationStorageDriver, "shared"), "b1", nil},
		{"image on a shared root is not pinned", annotatedClaim("www-web-0", AnnotationStorageDriver, "image", AnnotationStorageShared, "true"), "b1", nil},
		{"local driver is pinned", annotatedClaim("www-web-0", AnnotationStorageDriver, "local"), "b1",
			map[string]string{AnnotationStorageDriver: "local", AnnotationSelectedNode: "b1"}},
		{"local image is pinned", annotatedClaim("www-web-0", AnnotationStorageDriver, "image"), "b1",
			map[string]string{AnnotationStorageDriver: "image", AnnotationSelectedNode: "b1"}},
		{"pin kept", annotatedClaim("www-web-0", AnnotationStorageDriver, "local", AnnotationSelectedNode, "b1"), "b1", nil},
		{"holder on a fenced node forgotten", annotatedClaim("www-web-0", AnnotationStorageDriver, "shared", AnnotationAttachedNode, "a2", AnnotationAttachedGeneration, "4"), "b1",
			map[string]string{AnnotationStorageDriver: "shared"}},
		{"holder on a live node kept", annotatedClaim("www-web-0", AnnotationStorageDriver, "shared", AnnotationAttachedNode, "a1", AnnotationAttachedGeneration, "4"), "b1", nil},
		{"holder is the target", annotatedClaim("www-web-0", AnnotationStorageDriver, "shared", AnnotationAttachedNode, "b1", AnnotationAttachedGeneration, "4"), "b1", nil},
	}
	fenced := fencedNodes()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(tt.claim.Annotations)
			got := BoundClaims(claimPod("web-0", "www-web-0"), tt.node, IndexClaims([]*corev1.PersistentVolumeClaim{tt.claim}), fenced)
			if !maps.Equal(tt.claim.Annotations, before) {
				t.Fatalf("BoundClaims changed the stored claim: %v", tt.claim.Annotations)
			}
			if tt.want == nil {
				if len(got) != 0 {
					t.Fatalf("BoundClaims = %v, want no change", got[0].Annotations)
				}
				return
			}
			if len(got) != 1 || got[0].Name != "www-web-0" || got[0].ResourceVersion != "7" {
				t.Fatalf("BoundClaims = %v, want www-web-0 at version 7", got)
			}
			if !maps.Equal(got[0].Annotations, tt.want) {
				t.Errorf("annotations = %v, want %v", got[0].Annotations, tt.want)
			}
		})
	}
}
