package api

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Object is what a manifest decodes to: a Kubernetes object with metadata.
// DecodeManifests returns *appsv1.StatefulSet and *corev1.Service values.
type Object interface {
	metav1.Object
	runtime.Object
}

// The kinds users may apply, with the apiVersion they are stored at.
const (
	KindStatefulSet = "StatefulSet"
	KindService     = "Service"

	// APIVersionApps is the version every StatefulSet is converted to.
	APIVersionApps = "apps/v1"
	// APIVersionCore is the version of Services.
	APIVersionCore = "v1"
)

// SpecEqual reports whether two StatefulSets have semantically equal specs
// (quantities compared by value, nil and empty lists alike). A change of
// anything but the spec (labels, annotations, status) does not bump a set's
// generation, as in Kubernetes.
func SpecEqual(a, b *appsv1.StatefulSet) bool {
	return equality.Semantic.DeepEqual(a.Spec, b.Spec)
}

// ServiceSpecEqual reports whether two Services have semantically equal
// specs.
func ServiceSpecEqual(a, b *corev1.Service) bool {
	return equality.Semantic.DeepEqual(a.Spec, b.Spec)
}
