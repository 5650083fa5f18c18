package api

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaultImagePullPolicy(t *testing.T) {
	tests := []struct {
		image string
		set   corev1.PullPolicy
		want  corev1.PullPolicy
	}{
		{image: "nginx", want: corev1.PullAlways},
		{image: "nginx:latest", want: corev1.PullAlways},
		{image: "registry.k8s.io/nginx-slim:0.24", want: corev1.PullIfNotPresent},
		{image: "localhost:5000/app", want: corev1.PullAlways},
		{image: "localhost:5000/app:1.0", want: corev1.PullIfNotPresent},
		{image: "nginx@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: corev1.PullIfNotPresent},
		{image: "nginx:1.27@sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: corev1.PullIfNotPresent},
		{image: "Not A Reference", want: corev1.PullIfNotPresent},
		{image: "nginx", set: corev1.PullNever, want: corev1.PullNever},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			s := baseSet()
			s.Spec.Template.Spec.Containers[0].Image = tt.image
			s.Spec.Template.Spec.Containers[0].ImagePullPolicy = tt.set
			DefaultStatefulSet(s)
			if got := s.Spec.Template.Spec.Containers[0].ImagePullPolicy; got != tt.want {
				t.Errorf("imagePullPolicy %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaultStatefulSetKeepsWhatIsSet(t *testing.T) {
	s := baseSet()
	s.Spec.Replicas = ptrTo[int32](0)
	s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	s.Spec.RevisionHistoryLimit = ptrTo[int32](0)
	s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
	DefaultStatefulSet(s)
	want := appsv1.StatefulSetSpec{
		Replicas:             ptrTo[int32](0),
		PodManagementPolicy:  appsv1.ParallelPodManagement,
		UpdateStrategy:       appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
		RevisionHistoryLimit: ptrTo[int32](0),
		PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
			WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
		},
	}
	got := appsv1.StatefulSetSpec{
		Replicas:                             s.Spec.Replicas,
		PodManagementPolicy:                  s.Spec.PodManagementPolicy,
		UpdateStrategy:                       s.Spec.UpdateStrategy,
		RevisionHistoryLimit:                 s.Spec.RevisionHistoryLimit,
		PersistentVolumeClaimRetentionPolicy: s.Spec.PersistentVolumeClaimRetentionPolicy,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}

func TestDefaultRollingUpdateWithoutPartition(t *testing.T) {
	s := baseSet()
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType}
	DefaultStatefulSet(s)
	// As upstream: an explicit type keeps a nil rollingUpdate (partition 0).
	if s.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("rollingUpdate %+v, want nil", s.Spec.UpdateStrategy.RollingUpdate)
	}
	s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptrTo(intstr.FromInt32(2))}
	DefaultStatefulSet(s)
	want := &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](0), MaxUnavailable: ptrTo(intstr.FromInt32(2))}
	if diff := cmp.Diff(want, s.Spec.UpdateStrategy.RollingUpdate); diff != "" {
		t.Errorf("rollingUpdate (-want +got):\n%s", diff)
	}
}

func TestDefaultPodTemplate(t *testing.T) {
	s := baseSet()
	pod := &s.Spec.Template.Spec
	pod.Volumes = []corev1.Volume{
		{Name: "scratch"},
		{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}},
	}
	c := &pod.Containers[0]
	c.Env = []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
	c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.0001")}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("web")}}}
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}, PeriodSeconds: 2}
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80), Path: "/quit"}}}
	pod.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.36", Ports: []corev1.ContainerPort{{ContainerPort: 9}}}}
	s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("1.0001Ki")

	DefaultStatefulSet(s)

	wantVolumes := []corev1.Volume{
		{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log", Type: ptrTo(corev1.HostPathUnset)}}},
	}
	if diff := cmp.Diff(wantVolumes, pod.Volumes); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
	if got := c.Env[0].ValueFrom.FieldRef.APIVersion; got != "v1" {
		t.Errorf("fieldRef apiVersion %q, want v1", got)
	}
	if got := c.Resources.Requests[corev1.ResourceCPU]; got.String() != "1m" {
		t.Errorf("cpu request %s, want it rounded up to 1m", got.String())
	}
	wantLiveness := &corev1.Probe{
		ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("web"), Path: "/", Scheme: corev1.URISchemeHTTP}},
		TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
	}
	if diff := cmp.Diff(wantLiveness, c.LivenessProbe); diff != "" {
		t.Errorf("liveness probe (-want +got):\n%s", diff)
	}
	wantStartup := &corev1.Probe{
		ProbeHandler:   corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000, Service: ptrTo("")}},
		TimeoutSeconds: 1, PeriodSeconds: 2, SuccessThreshold: 1, FailureThreshold: 3,
	}
	if diff := cmp.Diff(wantStartup, c.StartupProbe); diff != "" {
		t.Errorf("startup probe (-want +got):\n%s", diff)
	}
	if got := c.Lifecycle.PreStop.HTTPGet; got.Path != "/quit" || got.Scheme != corev1.URISchemeHTTP {
		t.Errorf("preStop httpGet %+v, want path /quit and scheme HTTP", got)
	}
	init := pod.InitContainers[0]
	if init.ImagePullPolicy != corev1.PullIfNotPresent || init.TerminationMessagePath != "/dev/termination-log" || init.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("init container not defaulted: %+v", init)
	}
	if got := s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "1024103m" {
		t.Errorf("storage %s, want 1.0001Ki rounded up to milli units, 1024103m", got.String())
	}
}

func TestDefaultsAreIdempotent(t *testing.T) {
	s := baseSet()
	s.Spec.Template.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}}
	DefaultStatefulSet(s)
	again := s.DeepCopy()
	DefaultStatefulSet(again)
	if !equality.Semantic.DeepEqual(s, again) {
		t.Errorf("second defaulting changed the set:\n%s", cmp.Diff(s, again))
	}
	svc := baseService()
	DefaultService(svc)
	svcAgain := svc.DeepCopy()
	DefaultService(svcAgain)
	if !equality.Semantic.DeepEqual(svc, svcAgain) {
		t.Errorf("second defaulting changed the service:\n%s", cmp.Diff(svc, svcAgain))
	}
}

func TestDefaultService(t *testing.T) {
	s := baseService()
	s.Spec.ClusterIP = ""
	s.Spec.Ports = []corev1.ServicePort{
		{Name: "web", Port: 80},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
	}
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptrTo[int32](10)}}
	DefaultService(s)
	want := corev1.ServiceSpec{
		Ports: []corev1.ServicePort{
			{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")},
		},
		Selector:              map[string]string{"app": "nginx"},
		Type:                  corev1.ServiceTypeClusterIP,
		SessionAffinity:       corev1.ServiceAffinityNone,
		InternalTrafficPolicy: ptrTo(corev1.ServiceInternalTrafficPolicyCluster),
	}
	if diff := cmp.Diff(want, s.Spec); diff != "" {
		t.Errorf("spec (-want +got):\n%s", diff)
	}
}
