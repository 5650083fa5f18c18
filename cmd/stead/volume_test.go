package main

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestResizedClaim(t *testing.T) {
	claim := func(size, driver string) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data-db-0", ResourceVersion: "9"}}
		if size != "" {
			c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
		}
		if driver != "" {
			c.Annotations = map[string]string{"stead.io/storage-driver": driver}
		}
		return c
	}
	deleting := claim("1Gi", "image")
	deleting.DeletionTimestamp = &metav1.Time{Time: time.Unix(1, 0)}
	tests := []struct {
		name    string
		claim   *corev1.PersistentVolumeClaim
		size    string
		want    string // the new request; "" for no change
		wantErr string
	}{
		{"grow an image volume", claim("1Gi", "image"), "2Gi", "2Gi", ""},
		{"grow a volume not made yet", claim("1Gi", ""), "1536Mi", "1536Mi", ""},
		{"set a size where none was", claim("", ""), "1Gi", "1Gi", ""},
		{"same size", claim("1Gi", "image"), "1024Mi", "", ""},
		{"shrink", claim("1Gi", "image"), "512Mi", "",
			"volume default/data-db-0 cannot shrink from 1Gi to 512Mi: spec.resources.requests.storage only grows; give 1Gi or more"},
		{"local driver", claim("1Gi", "local"), "2Gi", "",
			"volume default/data-db-0 is kept by the local driver, whose size is advisory: only volumes of image classes can be resized (spec.resources.requests.storage left unchanged)"},
		{"shared driver", claim("1Gi", "shared"), "2Gi", "",
			"volume default/data-db-0 is kept by the shared driver, whose size is advisory: only volumes of image classes can be resized (spec.resources.requests.storage left unchanged)"},
		{"being deleted", deleting, "2Gi", "", "volume default/data-db-0 is being deleted: it cannot be resized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.claim.DeepCopy()
			got, err := resizedClaim(tt.claim, resource.MustParse(tt.size))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || got != nil {
					t.Fatalf("resizedClaim = %v, %v; want error %q", got, err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if q1, q2 := tt.claim.Spec.Resources.Requests[corev1.ResourceStorage], before.Spec.Resources.Requests[corev1.ResourceStorage]; q1.Cmp(q2) != 0 {
				t.Errorf("the claim read was changed: %s, was %s", q1.String(), q2.String())
			}
			if tt.want == "" {
				if got != nil {
					t.Errorf("resizedClaim = %v, want no change", got.Spec.Resources.Requests)
				}
				return
			}
			q := got.Spec.Resources.Requests[corev1.ResourceStorage]
			if q.String() != tt.want || got.ResourceVersion != "9" {
				t.Errorf("request = %s at version %s, want %s at the version read (9)", q.String(), got.ResourceVersion, tt.want)
			}
		})
	}
}
