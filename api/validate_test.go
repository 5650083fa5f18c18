package api

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// storedSet is the base set as stored: defaulted, with a namespace.
func storedSet() *appsv1.StatefulSet {
	s := baseSet()
	s.Namespace = "default"
	DefaultStatefulSet(s)
	return s
}

func TestValidateStatefulSetUpdate(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *appsv1.StatefulSet)
		want   []string // "Type path"; nil: accepted
	}{
		// Mutable fields.
		{name: "replicas", change: func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptrTo[int32](5) }},
		{name: "ordinals", change: func(s *appsv1.StatefulSet) { s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 2} }},
		{name: "template image", change: func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx:1.27" }},
		{name: "template labels still matching", change: func(s *appsv1.StatefulSet) { s.Spec.Template.Labels["tier"] = "web" }},
		{name: "updateStrategy", change: func(s *appsv1.StatefulSet) {
			s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
		}},
		{name: "partition", change: func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo[int32](2) }},
		{name: "revisionHistoryLimit", change: func(s *appsv1.StatefulSet) { s.Spec.RevisionHistoryLimit = ptrTo[int32](3) }},
		{name: "persistentVolumeClaimRetentionPolicy", change: func(s *appsv1.StatefulSet) {
			s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
		}},
		{name: "minReadySeconds", change: func(s *appsv1.StatefulSet) { s.Spec.MinReadySeconds = 30 }},
		{name: "labels and annotations", change: func(s *appsv1.StatefulSet) {
			s.Labels = map[string]string{"team": "db"}
			s.Annotations = map[string]string{"note": "x"}
		}},
		{name: "the same size written otherwise", change: func(s *appsv1.StatefulSet) {
			s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("1024Mi")
		}},

		// Immutable fields.
		{name: "selector", change: func(s *appsv1.StatefulSet) {
			s.Spec.Selector.MatchLabels["tier"] = "web"
			s.Spec.Template.Labels["tier"] = "web"
		}, want: []string{"FieldValueForbidden spec"}},
		{name: "serviceName", change: func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "other" }, want: []string{"FieldValueForbidden spec"}},
		{name: "podManagementPolicy", change: func(s *appsv1.StatefulSet) {
			s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
		}, want: []string{"FieldValueForbidden spec"}},
		{name: "volumeClaimTemplates size", change: func(s *appsv1.StatefulSet) {
			s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		}, want: []string{"FieldValueForbidden spec"}},
		{name: "a new volumeClaimTemplate", change: func(s *appsv1.StatefulSet) {
			c := s.Spec.VolumeClaimTemplates[0].DeepCopy()
			c.Name = "logs"
			s.Spec.VolumeClaimTemplates = append(s.Spec.VolumeClaimTemplates, *c)
		}, want: []string{"FieldValueForbidden spec"}},
		{name: "name", change: func(s *appsv1.StatefulSet) { s.Name = "web2" }, want: []string{"FieldValueInvalid metadata.name"}},
		{name: "namespace", change: func(s *appsv1.StatefulSet) { s.Namespace = "prod" }, want: []string{"FieldValueInvalid metadata.namespace"}},

		// An update must itself be valid.
		{name: "negative replicas", change: func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptrTo[int32](-1) }, want: []string{"FieldValueInvalid spec.replicas"}},
		{name: "template labels leaving the selector", change: func(s *appsv1.StatefulSet) {
			s.Spec.Template.Labels = map[string]string{"app": "other"}
		}, want: []string{"FieldValueInvalid spec.template.metadata.labels"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := storedSet()
			updated := storedSet()
			tt.change(updated)
			before := old.DeepCopy()
			err := ValidateStatefulSetUpdate(old, updated)
			if !cmp.Equal(before, old) {
				t.Errorf("ValidateStatefulSetUpdate changed the old set")
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateStatefulSetUpdate: %v", err)
				}
				return
			}
			inv := asInvalid(t, err)
			if diff := cmp.Diff(tt.want, fieldErrors(inv.Errors)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}

func TestValidateStatefulSetUpdateMessage(t *testing.T) {
	updated := storedSet()
	updated.Spec.ServiceName = "other"
	err := ValidateStatefulSetUpdate(storedSet(), updated)
	want := `StatefulSet.apps "web" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden`
	if err == nil || err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
}

func TestValidateServiceUpdate(t *testing.T) {
	stored := func() *corev1.Service {
		s := baseService()
		s.Namespace = "default"
		DefaultService(s)
		return s
	}
	tests := []struct {
		name   string
		change func(s *corev1.Service)
		want   []string
	}{
		{name: "ports", change: func(s *corev1.Service) {
			s.Spec.Ports[0].Port = 8080
			s.Spec.Ports[0].TargetPort = intstr.FromInt32(8080)
		}},
		{name: "selector", change: func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web"} }},
		{name: "publishNotReadyAddresses", change: func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }},
		{name: "clusterIP left empty", change: func(s *corev1.Service) { s.Spec.ClusterIP = "" }},
		{name: "headless to an address", change: func(s *corev1.Service) { s.Spec.ClusterIP = "10.0.0.7" }, want: []string{"FieldValueInvalid spec.clusterIP"}},
		{name: "name", change: func(s *corev1.Service) { s.Name = "web" }, want: []string{"FieldValueInvalid metadata.name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			updated := stored()
			tt.change(updated)
			err := ValidateServiceUpdate(stored(), updated)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateServiceUpdate: %v", err)
				}
				return
			}
			inv := asInvalid(t, err)
			if diff := cmp.Diff(tt.want, fieldErrors(inv.Errors)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s\n%v", diff, err)
			}
		})
	}
}

func TestValidateUndefaulted(t *testing.T) {
	// A caller that forgets the defaults gets errors, not a panic.
	err := ValidateStatefulSet(&appsv1.StatefulSet{})
	inv := asInvalid(t, err)
	want := []string{
		"FieldValueRequired metadata.name",
		"FieldValueRequired metadata.namespace",
		"FieldValueRequired spec.podManagementPolicy",
		"FieldValueRequired spec.updateStrategy",
		"FieldValueRequired spec.replicas",
		"FieldValueRequired spec.selector",
		"FieldValueNotSupported spec.template.spec.restartPolicy",
		"FieldValueRequired spec.template.spec.containers",
		"FieldValueNotSupported spec.template.spec.dnsPolicy",
	}
	if diff := cmp.Diff(want, fieldErrors(inv.Errors)); diff != "" {
		t.Errorf("field errors (-want +got):\n%s", diff)
	}
}

func TestSpecEqual(t *testing.T) {
	tests := []struct {
		name   string
		change func(s *appsv1.StatefulSet)
		equal  bool
	}{
		{name: "unchanged", change: func(*appsv1.StatefulSet) {}, equal: true},
		{name: "labels, annotations and status", change: func(s *appsv1.StatefulSet) {
			s.Labels = map[string]string{"team": "db"}
			s.Annotations = map[string]string{"note": "x"}
			s.Status.Replicas = 3
		}, equal: true},
		{name: "a quantity written otherwise", change: func(s *appsv1.StatefulSet) {
			s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("1024Mi")
		}, equal: true},
		{name: "an empty list for none", change: func(s *appsv1.StatefulSet) {
			s.Spec.Template.Spec.Volumes = []corev1.Volume{}
		}, equal: true},
		{name: "replicas", change: func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptrTo[int32](4) }},
		{name: "image", change: func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx" }},
		{name: "template annotation", change: func(s *appsv1.StatefulSet) {
			s.Spec.Template.Annotations = map[string]string{AnnotationRestartedAt: "2024-01-01T00:00:00Z"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := storedSet()
			tt.change(b)
			if got := SpecEqual(storedSet(), b); got != tt.equal {
				t.Errorf("SpecEqual = %v, want %v", got, tt.equal)
			}
		})
	}
	a, b := baseService(), baseService()
	if !ServiceSpecEqual(a, b) {
		t.Error("ServiceSpecEqual of equal services = false")
	}
	b.Spec.PublishNotReadyAddresses = true
	if ServiceSpecEqual(a, b) {
		t.Error("ServiceSpecEqual after publishNotReadyAddresses changed = true")
	}
}

func TestInvalidErrorStatus(t *testing.T) {
	s := storedSet()
	s.Spec.Replicas = ptrTo[int32](-1)
	err := ValidateStatefulSet(s)
	if !apierrors.IsInvalid(err) {
		t.Errorf("apierrors.IsInvalid(%v) = false", err)
	}
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %T, want *InvalidError", err)
	}
	want := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  `StatefulSet.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`,
		Reason:   metav1.StatusReasonInvalid,
		Code:     422,
		Details: &metav1.StatusDetails{
			Group: "apps",
			Kind:  "StatefulSet",
			Name:  "web",
			Causes: []metav1.StatusCause{{
				Type:    metav1.CauseTypeFieldValueInvalid,
				Message: "Invalid value: -1: must be greater than or equal to 0",
				Field:   "spec.replicas",
			}},
		},
	}
	if diff := cmp.Diff(want, inv.Status()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
}

func TestDecodeErrorFormat(t *testing.T) {
	tests := []struct {
		err  *DecodeError
		want string
	}{
		{&DecodeError{Err: ErrTooLarge}, "manifest exceeds a limit"},
		{&DecodeError{Source: Source{Doc: 2}, Err: errUnknownField}, "document 2: unknown field"},
		{&DecodeError{Source: Source{Doc: 2, Line: 9, Item: 3}, Kind: "Service", Name: "a", Path: "spec.x", Err: errUnknownField},
			`document 2 (line 9), item 3: Service "a": spec.x: unknown field`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		if !errors.Is(tt.err, ErrInvalid) {
			t.Errorf("errors.Is(%q, ErrInvalid) = false", tt.want)
		}
	}
}

func TestShorten(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{in: "web", want: "web"},
		{in: strings.Repeat("a", 128), want: strings.Repeat("a", 128)},
		{in: strings.Repeat("a", 129), want: strings.Repeat("a", 128) + "...(129 bytes)"},
		// 127 bytes then a 2-byte rune: the cut falls before the rune.
		{in: strings.Repeat("a", 127) + "éé", want: strings.Repeat("a", 127) + "...(131 bytes)"},
	}
	for _, tt := range tests {
		if got := shorten(tt.in); got != tt.want {
			t.Errorf("shorten(%d bytes) = %q, want %q", len(tt.in), got, tt.want)
		}
	}
}
