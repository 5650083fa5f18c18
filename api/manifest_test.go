package api

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ids renders objects as "Kind namespace/name" in order.
func ids(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, fmt.Sprintf("%s %s/%s", o.GetObjectKind().GroupVersionKind().Kind, o.GetNamespace(), o.GetName()))
	}
	return out
}

// wantWebSet is the concepts page's StatefulSet "web" as the Kubernetes API
// server stores it.
func wantWebSet() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptrTo[int32](3),
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			ServiceName: "nginx",
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptrTo[int64](10),
					Containers: []corev1.Container{{
						Name:                     "nginx",
						Image:                    "registry.k8s.io/nginx-slim:0.24",
						Ports:                    []corev1.ContainerPort{{ContainerPort: 80, Name: "web", Protocol: corev1.ProtocolTCP}},
						VolumeMounts:             []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}},
						ImagePullPolicy:          corev1.PullIfNotPresent,
						TerminationMessagePath:   "/dev/termination-log",
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
					}},
					RestartPolicy:   corev1.RestartPolicyAlways,
					DNSPolicy:       corev1.DNSClusterFirst,
					SecurityContext: &corev1.PodSecurityContext{},
					SchedulerName:   "default-scheduler",
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "www"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: ptrTo("my-storage-class"),
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
					},
					VolumeMode: ptrTo(corev1.PersistentVolumeFilesystem),
				},
				Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
			}},
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](0)},
			},
			RevisionHistoryLimit: ptrTo[int32](10),
			MinReadySeconds:      10,
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
}

// wantNginxService is the concepts page's headless Service "nginx" as the
// Kubernetes API server stores it (less the IP families it allocates).
func wantNginxService() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "nginx", Namespace: "default", Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.ServiceSpec{
			Ports:                 []corev1.ServicePort{{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)}},
			ClusterIP:             "None",
			Selector:              map[string]string{"app": "nginx"},
			Type:                  corev1.ServiceTypeClusterIP,
			SessionAffinity:       corev1.ServiceAffinityNone,
			InternalTrafficPolicy: ptrTo(corev1.ServiceInternalTrafficPolicyCluster),
		},
	}
}

func TestDecodeDocsExamples(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		ids   []string
		check func(t *testing.T, objs []Object)
	}{
		{
			name: "concepts page web and nginx",
			file: "web.yaml",
			ids:  []string{"Service default/nginx", "StatefulSet default/web"},
			check: func(t *testing.T, objs []Object) {
				if diff := cmp.Diff(wantNginxService(), objs[0]); diff != "" {
					t.Errorf("service (-want +got):\n%s", diff)
				}
				if !equality.Semantic.DeepEqual(wantWebSet(), objs[1]) {
					t.Errorf("set (-want +got):\n%s", cmp.Diff(wantWebSet(), objs[1]))
				}
			},
		},
		{
			name: "basic tutorial at apps/v1beta1 gets its selector, labels and OnDelete from the template",
			file: "web-v1beta1.yaml",
			ids:  []string{"Service default/nginx", "StatefulSet default/web"},
			check: func(t *testing.T, objs []Object) {
				want := wantWebSet()
				want.Labels = map[string]string{"app": "nginx"}
				want.Spec.Replicas = ptrTo[int32](2)
				want.Spec.MinReadySeconds = 0
				want.Spec.Template.Spec.TerminationGracePeriodSeconds = ptrTo[int64](30)
				want.Spec.Template.Spec.Containers[0].Image = "gcr.io/google_containers/nginx-slim:0.8"
				want.Spec.VolumeClaimTemplates[0].Spec.StorageClassName = nil
				want.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
				if !equality.Semantic.DeepEqual(want, objs[1]) {
					t.Errorf("set (-want +got):\n%s", cmp.Diff(want, objs[1]))
				}
			},
		},
		{
			name: "concepts page at apps/v1beta2 defaults like apps/v1",
			file: "web-v1beta2.yaml",
			ids:  []string{"Service default/nginx", "StatefulSet default/web"},
			check: func(t *testing.T, objs []Object) {
				want := wantWebSet()
				want.Spec.MinReadySeconds = 0
				want.Spec.Template.Spec.Containers[0].Image = "gcr.io/google_containers/nginx-slim:0.8"
				if !equality.Semantic.DeepEqual(want, objs[1]) {
					t.Errorf("set (-want +got):\n%s", cmp.Diff(want, objs[1]))
				}
			},
		},
		{
			name: "mysql services, one headless and one not",
			file: "mysql-services.yaml",
			ids:  []string{"Service default/mysql", "Service default/mysql-read"},
			check: func(t *testing.T, objs []Object) {
				read := objs[1].(*corev1.Service)
				if read.Spec.ClusterIP != "" || read.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("mysql-read clusterIP %q type %q, want \"\" and ClusterIP", read.Spec.ClusterIP, read.Spec.Type)
				}
				want := []corev1.ServicePort{{Name: "mysql", Port: 3306, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(3306)}}
				if diff := cmp.Diff(want, read.Spec.Ports); diff != "" {
					t.Errorf("mysql-read ports (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "zookeeper without its disruption budget",
			file: "zookeeper-no-pdb.yaml",
			ids:  []string{"Service default/zk-hs", "Service default/zk-cs", "StatefulSet default/zk"},
			check: func(t *testing.T, objs []Object) {
				c := objs[2].(*appsv1.StatefulSet).Spec.Template.Spec.Containers[0]
				if c.ImagePullPolicy != corev1.PullAlways {
					t.Errorf("imagePullPolicy %q, want the manifest's Always", c.ImagePullPolicy)
				}
				wantProbe := &corev1.Probe{
					ProbeHandler:        corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"sh", "-c", "zookeeper-ready 2181"}}},
					InitialDelaySeconds: 10, TimeoutSeconds: 5, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
				}
				if diff := cmp.Diff(wantProbe, c.ReadinessProbe); diff != "" {
					t.Errorf("readiness probe (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantProbe, c.LivenessProbe); diff != "" {
					t.Errorf("liveness probe (-want +got):\n%s", diff)
				}
				if cpu := c.Resources.Requests[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("500m")) != 0 {
					t.Errorf("cpu request %s, want 500m", cpu.String())
				}
				gotPorts := c.Ports
				for _, p := range gotPorts {
					if p.Protocol != corev1.ProtocolTCP {
						t.Errorf("port %s protocol %q, want TCP", p.Name, p.Protocol)
					}
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests(readTestdata(t, tt.file))
			if err != nil {
				t.Fatalf("DecodeManifests: %v", err)
			}
			if diff := cmp.Diff(tt.ids, ids(objs)); diff != "" {
				t.Fatalf("objects (-want +got):\n%s", diff)
			}
			tt.check(t, objs)
		})
	}
}

func TestDecodeDocsExamplesRefused(t *testing.T) {
	t.Run("mysql mounts a configMap", func(t *testing.T) {
		_, err := DecodeManifests(readTestdata(t, "mysql-statefulset.yaml"))
		inv := asInvalid(t, err)
		want := `document 1 (line 1): StatefulSet.apps "mysql" is invalid: spec.template.spec.volumes[1]: Unsupported value: "configMap": supported values: "emptyDir", "hostPath"`
		if err.Error() != want {
			t.Errorf("error\n got: %s\nwant: %s", err, want)
		}
		if diff := cmp.Diff([]string{"FieldValueNotSupported spec.template.spec.volumes[1]"}, fieldErrors(inv.Errors)); diff != "" {
			t.Errorf("field errors (-want +got):\n%s", diff)
		}
	})
	t.Run("zookeeper holds a disruption budget", func(t *testing.T) {
		_, err := DecodeManifests(readTestdata(t, "zookeeper.yaml"))
		de := asDecode(t, err)
		if de.Doc != 3 || de.Line != 30 {
			t.Errorf("document %d line %d, want 3 and 30", de.Doc, de.Line)
		}
		want := `document 3 (line 30): "zk-pdb": kind "PodDisruptionBudget" (policy/v1) is not supported; supported kinds: StatefulSet (apps/v1, apps/v1beta1, apps/v1beta2), Service (v1)`
		if err.Error() != want {
			t.Errorf("error\n got: %s\nwant: %s", err, want)
		}
	})
}

// TestExampleWebIsTheConceptsPage checks that examples/web.yaml is the
// concepts page's manifest with one change: its image, which no registry
// serves here, is the example web server `make run` builds.
func TestExampleWebIsTheConceptsPage(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "examples", "web.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(readTestdata(t, "web.yaml")),
		"        image: registry.k8s.io/nginx-slim:0.24\n",
		"        image: stead.local/examples/web:1 # the docs run registry.k8s.io/nginx-slim:0.24; `make run` builds this one from examples/webserver\n", 1)
	if string(example) != want {
		t.Error("examples/web.yaml is not api/testdata/web.yaml with the example image")
	}
}

// fieldErrors renders a list as "Type path" lines.
func fieldErrors(errs field.ErrorList) []string {
	var out []string
	for _, e := range errs {
		out = append(out, string(e.Type)+" "+e.Field)
	}
	return out
}

func asInvalid(t *testing.T, err error) *InvalidError {
	t.Helper()
	var inv *InvalidError
	if !errors.As(err, &inv) {
		t.Fatalf("error %v (%T), want an *InvalidError", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	return inv
}

func asDecode(t *testing.T, err error) *DecodeError {
	t.Helper()
	var de *DecodeError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T), want a *DecodeError", err, err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	return de
}

// baseSet is a minimal valid StatefulSet, as a user writes it.
func baseSet() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			ServiceName: "nginx",
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:         "nginx",
					Image:        "registry.k8s.io/nginx-slim:0.24",
					Ports:        []corev1.ContainerPort{{ContainerPort: 80, Name: "web"}},
					VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}},
				}}},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "www"},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
					},
				},
			}},
		},
	}
}

func baseService() *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec: corev1.ServiceSpec{
			Ports:     []corev1.ServicePort{{Name: "web", Port: 80}},
			ClusterIP: "None",
			Selector:  map[string]string{"app": "nginx"},
		},
	}
}

// manifest renders objects as a YAML stream.
func manifest(t testing.TB, objs ...any) []byte {
	t.Helper()
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return []byte(strings.Join(docs, "---\n"))
}

func setWith(mutate func(s *appsv1.StatefulSet)) *appsv1.StatefulSet {
	s := baseSet()
	mutate(s)
	return s
}

func serviceWith(mutate func(s *corev1.Service)) *corev1.Service {
	s := baseService()
	mutate(s)
	return s
}

// TestDecodeInvalidObjects feeds objects that decode but break a rule, and
// checks the exact field errors.
func TestDecodeInvalidObjects(t *testing.T) {
	tests := []struct {
		name string
		obj  any
		want []string // "Type path"
		msg  string   // the whole error, when given
	}{
		{
			name: "selector does not match template labels",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Labels = map[string]string{"app": "x"} }),
			want: []string{"FieldValueInvalid spec.template.metadata.labels"},
			msg:  "document 1 (line 1): StatefulSet.apps \"web\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"x\"}: `selector` does not match template `labels`",
		},
		{
			name: "uppercase name",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Name = "Web" }),
			want: []string{"FieldValueInvalid metadata.name"},
			msg:  `document 1 (line 1): StatefulSet.apps "Web" is invalid: metadata.name: Invalid value: "Web": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')`,
		},
		{
			name: "name with dots",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Name = "web.v1" }),
			want: []string{"FieldValueInvalid metadata.name"},
		},
		{
			name: "name of 53 characters",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Name = strings.Repeat("a", 53) }),
			want: []string{"FieldValueInvalid metadata.name"},
			msg: `document 1 (line 1): StatefulSet.apps "` + strings.Repeat("a", 53) + `" is invalid: metadata.name: Invalid value: "` + strings.Repeat("a", 53) +
				`": must be no more than 52 characters, because pods carry the label controller-revision-hash=<name>-<10-character hash>, whose value is limited to 63 characters`,
		},
		{
			name: "name of 64 characters gets one length error",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Name = strings.Repeat("a", 64) }),
			want: []string{"FieldValueInvalid metadata.name"},
		},
		{
			name: "uppercase namespace",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Namespace = "Prod" }),
			want: []string{"FieldValueInvalid metadata.namespace"},
		},
		{
			name: "negative replicas",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Replicas = ptrTo[int32](-1) }),
			want: []string{"FieldValueInvalid spec.replicas"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`,
		},
		{
			name: "negative partition",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](-2)}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate.partition"},
		},
		{
			name: "maxUnavailable 0",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptrTo(intstr.FromInt32(0))}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate.maxUnavailable"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0`,
		},
		{
			name: "maxUnavailable 0%",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptrTo(intstr.FromString("0%"))}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate.maxUnavailable"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: "0%": cannot be 0`,
		},
		{
			name: "maxUnavailable 150%",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptrTo(intstr.FromString("150%"))}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate.maxUnavailable"},
		},
		{
			name: "maxUnavailable not a percentage",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: ptrTo(intstr.FromString("two"))}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate.maxUnavailable"},
		},
		{
			name: "rollingUpdate with OnDelete",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptrTo[int32](1)}}
			}),
			want: []string{"FieldValueInvalid spec.updateStrategy.rollingUpdate"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.updateStrategy.rollingUpdate: Invalid value: {"partition":1}: only allowed for updateStrategy 'RollingUpdate'`,
		},
		{
			name: "unknown update strategy",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = "Recreate" }),
			want: []string{"FieldValueInvalid spec.updateStrategy"},
		},
		{
			name: "unknown pod management policy",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Burst" }),
			want: []string{"FieldValueInvalid spec.podManagementPolicy"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.podManagementPolicy: Invalid value: "Burst": must be 'OrderedReady' or 'Parallel'`,
		},
		{
			name: "unknown retention policy",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: "Keep"}
			}),
			want: []string{"FieldValueNotSupported spec.persistentVolumeClaimRetentionPolicy.whenScaled"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: "Keep": supported values: "Retain", "Delete"`,
		},
		{
			name: "negative ordinals start and minReadySeconds",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: -1}
				s.Spec.MinReadySeconds = -5
			}),
			want: []string{"FieldValueInvalid spec.minReadySeconds", "FieldValueInvalid spec.ordinals.start"},
		},
		{
			name: "last ordinal beyond int32",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: math.MaxInt32 - 1}
				s.Spec.Replicas = ptrTo[int32](2)
			}),
			want: []string{"FieldValueInvalid spec.ordinals.start"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.ordinals.start: Invalid value: 2147483646: ordinals.start + replicas must not exceed 2147483647`,
		},
		{
			name: "name of a million characters",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Name = strings.Repeat("a", 1_000_000) }),
			want: []string{"FieldValueInvalid metadata.name"},
			msg: `document 1 (line 1): StatefulSet.apps "` + strings.Repeat("a", 128) + `...(1000000 bytes)" is invalid: metadata.name: Invalid value: "` + strings.Repeat("a", 128) +
				`...(1000000 bytes)": must be no more than 52 characters, because pods carry the label controller-revision-hash=<name>-<10-character hash>, whose value is limited to 63 characters`,
		},
		{
			name: "generateName",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.GenerateName = "web-" }),
			want: []string{"FieldValueForbidden metadata.generateName"},
		},
		{
			name: "host port other than the container port on the host network",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.HostNetwork = true
				s.Spec.Template.Spec.Containers[0].Ports[0].HostPort = 8080
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].ports[0].hostPort"},
		},
		{
			name: "NUL characters from escapes",
			obj: setWith(func(s *appsv1.StatefulSet) {
				c := &s.Spec.Template.Spec.Containers[0]
				c.Args = []string{"ok", "a\x00b"}
				c.VolumeMounts[0].SubPath = "data\x00"
				s.Spec.Template.Annotations = map[string]string{"note\x00": "x"}
			}),
			want: []string{
				"FieldValueInvalid spec.template.metadata.annotations",
				"FieldValueInvalid spec.template.metadata.annotations",
				"FieldValueInvalid spec.template.spec.containers[0].args[1]",
				"FieldValueInvalid spec.template.spec.containers[0].volumeMounts[0].subPath",
			},
		},
		{
			name: "negative revision history",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.RevisionHistoryLimit = ptrTo[int32](-1) }),
			want: []string{"FieldValueInvalid spec.revisionHistoryLimit"},
		},
		{
			name: "serviceName not a DNS label",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "nginx.svc" }),
			want: []string{"FieldValueInvalid spec.serviceName"},
		},
		{
			name: "no selector",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Selector = nil }),
			want: []string{"FieldValueRequired spec.selector"},
		},
		{
			name: "empty selector",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Selector = &metav1.LabelSelector{} }),
			want: []string{"FieldValueInvalid spec.selector"},
		},
		{
			name: "invalid label value in template",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Labels["tier"] = "front end"
			}),
			want: []string{"FieldValueInvalid spec.template.metadata.labels"},
		},
		{
			name: "restartPolicy Never",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }),
			want: []string{"FieldValueNotSupported spec.template.spec.restartPolicy"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`,
		},
		{
			name: "activeDeadlineSeconds",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.ActiveDeadlineSeconds = ptrTo[int64](60) }),
			want: []string{"FieldValueForbidden spec.template.spec.activeDeadlineSeconds"},
		},
		{
			name: "fencing generation in the template",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Annotations = map[string]string{AnnotationGeneration: "7"}
			}),
			want: []string{"FieldValueForbidden spec.template.metadata.annotations[stead.io/generation]"},
		},
		{
			name: "node name in the template",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.NodeName = "node-1" }),
			want: []string{"FieldValueForbidden spec.template.spec.nodeName"},
		},
		{
			name: "no containers",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers = nil }),
			want: []string{"FieldValueRequired spec.template.spec.containers"},
		},
		{
			name: "duplicate container names",
			obj: setWith(func(s *appsv1.StatefulSet) {
				c := s.Spec.Template.Spec.Containers[0]
				c.Ports = nil
				s.Spec.Template.Spec.Containers = append(s.Spec.Template.Spec.Containers, c)
			}),
			want: []string{"FieldValueDuplicate spec.template.spec.containers[1].name"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.containers[1].name: Duplicate value: "nginx"`,
		},
		{
			name: "init container named like a container",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "nginx", Image: "busybox"}}
			}),
			want: []string{"FieldValueDuplicate spec.template.spec.containers[0].name"},
		},
		{
			name: "container name not a DNS label",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Name = "Nginx_1" }),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].name"},
		},
		{
			name: "no image",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "" }),
			want: []string{"FieldValueRequired spec.template.spec.containers[0].image"},
		},
		{
			name: "image with a trailing space",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Image = "nginx " }),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].image"},
		},
		{
			name: "port out of range",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort = 70000 }),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].ports[0].containerPort"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive`,
		},
		{
			name: "port protocol",
			obj:  setWith(func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].Ports[0].Protocol = "QUIC" }),
			want: []string{"FieldValueNotSupported spec.template.spec.containers[0].ports[0].protocol"},
		},
		{
			name: "subPath with ..",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].SubPath = "data/../../etc"
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].volumeMounts[0].subPath"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.containers[0].volumeMounts[0].subPath: Invalid value: "data/../../etc": must not contain '..'`,
		},
		{
			name: "absolute subPath",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].SubPath = "/etc"
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].volumeMounts[0].subPath"},
		},
		{
			name: "subPathExpr",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].SubPathExpr = "$(POD_NAME)"
			}),
			want: []string{"FieldValueForbidden spec.template.spec.containers[0].volumeMounts[0].subPathExpr"},
		},
		{
			name: "relative mount path",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].MountPath = "usr/share"
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].volumeMounts[0].mountPath"},
		},
		{
			name: "mount of an undeclared volume",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "logs"
			}),
			want: []string{"FieldValueNotFound spec.template.spec.containers[0].volumeMounts[0].name"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.containers[0].volumeMounts[0].name: Not found: "logs"`,
		},
		{
			name: "same mount path twice",
			obj: setWith(func(s *appsv1.StatefulSet) {
				c := &s.Spec.Template.Spec.Containers[0]
				c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "www", MountPath: "/usr/share/nginx/html"})
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].volumeMounts[1].mountPath"},
		},
		{
			name: "emptyDir and hostPath volumes are accepted, a secret is not",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Volumes = []corev1.Volume{
					{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
					{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/log"}}},
					{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db"}}},
				}
			}),
			want: []string{"FieldValueNotSupported spec.template.spec.volumes[2]"},
		},
		{
			name: "hostPath with ..",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Volumes = []corev1.Volume{
					{Name: "logs", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/../etc"}}},
				}
			}),
			want: []string{"FieldValueInvalid spec.template.spec.volumes[0].hostPath.path"},
		},
		{
			name: "volume with two sources",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{
					EmptyDir: &corev1.EmptyDirVolumeSource{}, HostPath: &corev1.HostPathVolumeSource{Path: "/tmp"}}}}
			}),
			want: []string{"FieldValueForbidden spec.template.spec.volumes[0].emptyDir"},
		},
		{
			name: "duplicate volume names",
			obj: setWith(func(s *appsv1.StatefulSet) {
				v := corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
				s.Spec.Template.Spec.Volumes = []corev1.Volume{v, v}
			}),
			want: []string{"FieldValueDuplicate spec.template.spec.volumes[1].name"},
		},
		{
			name: "a volume named like a claim template is replaced, whatever its source",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Volumes = []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "www"}}}}
			}),
			want: nil,
		},
		{
			name: "probe with two handlers",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					Exec:    &corev1.ExecAction{Command: []string{"true"}},
					HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)},
				}}
			}),
			want: []string{"FieldValueForbidden spec.template.spec.containers[0].livenessProbe.httpGet"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: spec.template.spec.containers[0].livenessProbe.httpGet: Forbidden: may not specify more than 1 handler type`,
		},
		{
			name: "probe without handler",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{PeriodSeconds: 5}
			}),
			want: []string{"FieldValueRequired spec.template.spec.containers[0].readinessProbe"},
		},
		{
			name: "liveness probe success threshold",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].LivenessProbe = &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("web")}},
					SuccessThreshold: 2,
				}
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].livenessProbe.successThreshold"},
		},
		{
			name: "probe on a plain init container",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox",
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}}}
			}),
			want: []string{"FieldValueForbidden spec.template.spec.initContainers[0].readinessProbe"},
		},
		{
			name: "env from a secret",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{
					{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
					{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{Key: "pw"}}},
				}
			}),
			want: []string{"FieldValueForbidden spec.template.spec.containers[0].env[1].valueFrom.secretKeyRef"},
		},
		{
			name: "request above limit",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].Resources = corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
					Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")},
				}
			}),
			want: []string{"FieldValueInvalid spec.template.spec.containers[0].resources.requests[memory]"},
		},
		{
			name: "claim template without storage",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests = nil
			}),
			want: []string{"FieldValueRequired spec.volumeClaimTemplates[0].spec.resources.requests[storage]"},
		},
		{
			name: "claim template of zero bytes",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("0")
			}),
			want: []string{"FieldValueInvalid spec.volumeClaimTemplates[0].spec.resources.requests[storage]"},
		},
		{
			name: "claim template without access mode",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Spec.AccessModes = nil
			}),
			want: []string{"FieldValueRequired spec.volumeClaimTemplates[0].spec.accessModes"},
		},
		{
			name: "shared access mode",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
			}),
			want: []string{"FieldValueNotSupported spec.volumeClaimTemplates[0].spec.accessModes[0]"},
		},
		{
			name: "block volume",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Spec.VolumeMode = ptrTo(corev1.PersistentVolumeBlock)
			}),
			want: []string{"FieldValueNotSupported spec.volumeClaimTemplates[0].spec.volumeMode"},
		},
		{
			name: "duplicate claim templates",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates = append(s.Spec.VolumeClaimTemplates, s.Spec.VolumeClaimTemplates[0])
			}),
			want: []string{"FieldValueDuplicate spec.volumeClaimTemplates[1].metadata.name"},
		},
		{
			name: "claim template name not a DNS label",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates[0].Name = "www.data"
				s.Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "www.data"
			}),
			want: []string{"FieldValueInvalid spec.volumeClaimTemplates[0].metadata.name"},
		},
		{
			name: "several problems are all reported",
			obj: setWith(func(s *appsv1.StatefulSet) {
				s.Spec.Replicas = ptrTo[int32](-1)
				s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
			}),
			want: []string{"FieldValueInvalid spec.replicas", "FieldValueNotSupported spec.template.spec.restartPolicy"},
			msg:  `document 1 (line 1): StatefulSet.apps "web" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, spec.template.spec.restartPolicy: Unsupported value: "OnFailure": supported values: "Always"]`,
		},
		{
			name: "service name must start with a letter",
			obj:  serviceWith(func(s *corev1.Service) { s.Name = "1nginx" }),
			want: []string{"FieldValueInvalid metadata.name"},
		},
		{
			name: "node port service",
			obj:  serviceWith(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort; s.Spec.ClusterIP = "" }),
			want: []string{"FieldValueNotSupported spec.type"},
			msg:  `document 1 (line 1): Service "nginx" is invalid: spec.type: Unsupported value: "NodePort": supported values: "ClusterIP"`,
		},
		{
			name: "service without ports",
			obj:  serviceWith(func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "" }),
			want: []string{"FieldValueRequired spec.ports"},
		},
		{
			name: "headless service without ports",
			obj:  serviceWith(func(s *corev1.Service) { s.Spec.Ports = nil }),
			want: nil,
		},
		{
			name: "service ports with one name twice",
			obj: serviceWith(func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "web", Port: 8080})
			}),
			want: []string{"FieldValueDuplicate spec.ports[1].name"},
		},
		{
			name: "service ports with one port twice",
			obj: serviceWith(func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "web2", Port: 80})
			}),
			want: []string{"FieldValueDuplicate spec.ports[1].port"},
		},
		{
			name: "unnamed port among several",
			obj: serviceWith(func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 8080})
			}),
			want: []string{"FieldValueRequired spec.ports[1].name"},
		},
		{
			name: "service port 0 and a bad target port name",
			obj: serviceWith(func(s *corev1.Service) {
				s.Spec.Ports[0].Port = 0
				s.Spec.Ports[0].TargetPort = intstr.FromString("Web_Port")
			}),
			want: []string{"FieldValueInvalid spec.ports[0].port", "FieldValueInvalid spec.ports[0].targetPort"},
		},
		{
			name: "service selector with a bad label",
			obj:  serviceWith(func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "-nginx"} }),
			want: []string{"FieldValueInvalid spec.selector"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifests(manifest(t, tt.obj))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("DecodeManifests: %v", err)
				}
				if len(objs) != 1 {
					t.Fatalf("got %d objects, want 1", len(objs))
				}
				return
			}
			inv := asInvalid(t, err)
			if _, ok := err.(*InvalidError); !ok {
				t.Errorf("error is a %T, want the *InvalidError itself", err)
			}
			if inv.Doc != 1 || inv.Line != 1 {
				t.Errorf("source %+v, want document 1 line 1", inv.Source)
			}
			if diff := cmp.Diff(tt.want, fieldErrors(inv.Errors)); diff != "" {
				t.Errorf("field errors (-want +got):\n%s\n%v", diff, err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.msg)
			}
		})
	}
}

// TestDecodeMalformed feeds text that does not decode.
func TestDecodeMalformed(t *testing.T) {
	web := string(readTestdata(t, "web.yaml"))
	tests := []struct {
		name    string
		input   string
		opts    DecodeOptions
		doc     int
		path    string
		msg     string // the whole error
		tooMuch bool   // errors.Is(err, ErrTooLarge)
	}{
		{
			name: "misspelt field",
			input: strings.Replace(web, "        image: registry.k8s.io/nginx-slim:0.24\n",
				"        image: registry.k8s.io/nginx-slim:0.24\n        imagePullPolcy: Always\n", 1),
			doc:  2,
			path: "spec.template.spec.containers[0].imagePullPolcy",
			msg:  `document 2 (line 15): StatefulSet "web": spec.template.spec.containers[0].imagePullPolcy: unknown field`,
		},
		{
			name:  "field in the wrong case",
			input: "apiVersion: v1\nkind: Service\nmetadata:\n  name: nginx\nspec:\n  clusterIp: None\n",
			doc:   1,
			path:  "spec.clusterIp",
			msg:   `document 1 (line 1): Service "nginx": spec.clusterIp: unknown field`,
		},
		{
			name:  "duplicate key",
			input: "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  name: b\n",
			doc:   1,
			msg:   `document 1 (line 1): invalid YAML: unmarshal errors:` + "\n" + `  line 5: key "name" already set in map`,
		},
		{
			name:  "unsupported kind",
			input: "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n",
			doc:   1,
			msg:   `document 1 (line 1): "web": kind "Deployment" (apps/v1) is not supported; supported kinds: StatefulSet (apps/v1, apps/v1beta1, apps/v1beta2), Service (v1)`,
		},
		{
			name:  "StatefulSet at an unknown version",
			input: "apiVersion: apps/v2\nkind: StatefulSet\nmetadata:\n  name: web\n",
			doc:   1,
			msg:   `document 1 (line 1): "web": kind "StatefulSet" (apps/v2) is not supported; supported kinds: StatefulSet (apps/v1, apps/v1beta1, apps/v1beta2), Service (v1)`,
		},
		{
			name:  "missing kind",
			input: "apiVersion: apps/v1\nmetadata:\n  name: web\n",
			doc:   1,
			path:  "kind",
			msg:   `document 1 (line 1): "web": kind: kind is not set (apiVersion apps/v1)`,
		},
		{
			name:  "missing apiVersion",
			input: "kind: StatefulSet\nmetadata:\n  name: web\n",
			doc:   1,
			path:  "apiVersion",
			msg:   `document 1 (line 1): StatefulSet "web": apiVersion: apiVersion is not set`,
		},
		{
			name:  "neither",
			input: "# a set\nmetadata:\n  name: web\n",
			doc:   1,
			msg:   `document 1 (line 2): "web": apiVersion and kind are not set`,
		},
		{
			name:  "kind is not a string",
			input: "apiVersion: v1\nkind: [Service]\n",
			doc:   1,
			path:  "kind",
			msg:   `document 1 (line 1): kind: must be a string, not a list`,
		},
		{
			name:  "a list at the top",
			input: "- apiVersion: v1\n  kind: Service\n",
			doc:   1,
			msg:   `document 1 (line 1): a manifest document must be a mapping with apiVersion and kind, not a list`,
		},
		{
			name:  "replicas of the wrong type",
			input: strings.Replace(web, "replicas: 3", "replicas: three", 1),
			doc:   2,
			path:  "spec.replicas",
			msg:   `document 2 (line 15): StatefulSet "web": spec.replicas: got string, want an integer (int32)`,
		},
		{
			name:  "replicas beyond int32",
			input: strings.Replace(web, "replicas: 3", "replicas: 99999999999", 1),
			doc:   2,
			path:  "spec.replicas",
			msg:   `document 2 (line 15): StatefulSet "web": spec.replicas: got number 99999999999, want an integer (int32)`,
		},
		{
			name:  "storage that does not parse",
			input: strings.Replace(web, "storage: 1Gi", "storage: one gigabyte", 1),
			doc:   2,
			msg:   `document 2 (line 15): StatefulSet "web": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`,
		},
		{
			name:  "namespace conflicting with -n",
			input: strings.Replace(web, "metadata:\n  name: web\n", "metadata:\n  name: web\n  namespace: prod\n", 1),
			opts:  DecodeOptions{Namespace: "staging"},
			doc:   2,
			path:  "metadata.namespace",
			msg:   `document 2 (line 15): StatefulSet "web": metadata.namespace: the namespace from the provided object "prod" does not match the namespace "staging". You must pass '--namespace=prod' to perform this operation`,
		},
		{
			name:  "content after the separator",
			input: "--- apiVersion: v1\nkind: Service\n",
			doc:   1,
			msg:   `document 1 (line 1): content after the document separator "---" on line 1; start the document on the next line`,
		},
		{
			name:  "NUL byte",
			input: web + "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x\x00y\n",
			doc:   3,
			msg:   `document 3 (line 51): NUL byte at line 54: a manifest must be text`,
		},
		{
			name:  "NUL byte in JSON",
			input: `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}}` + "\n" + `{"apiVersion": "v1", "kind": "Ser` + "\x00" + `vice"}`,
			doc:   2,
			msg:   `document 2 (line 2): NUL byte at line 2: a manifest must be text`,
		},
		{
			name:    "5 MiB",
			input:   web + "# " + strings.Repeat("x", 5<<20) + "\n",
			msg:     fmt.Sprintf(`manifest exceeds a limit: the manifest is %d bytes, more than the limit of 4194304 (4 MiB)`, len(web)+5<<20+3),
			tooMuch: true,
		},
		{
			name:    "a document over 1 MiB",
			input:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\n  annotations:\n    a: " + strings.Repeat("x", 1<<20) + "\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: the document is 1048650 bytes, more than the limit of 1048576 (1 MiB)`,
			tooMuch: true,
		},
		{
			name:    "1001 documents",
			input:   strings.Repeat("a: b\n---\n", 1001),
			msg:     `manifest exceeds a limit: the manifest holds more than 1000 documents`,
			tooMuch: true,
		},
		{
			name:    "nesting 10000 deep in block style",
			input:   "apiVersion: v1\nkind: Service\nspec:\n  ports:\n  " + strings.Repeat("- ", 10000) + "x\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: nesting deeper than 64 levels`,
			tooMuch: true,
		},
		{
			name:    "nesting 5000 deep in block style",
			input:   "apiVersion: v1\nkind: Service\nspec:\n  ports:\n  " + strings.Repeat("- ", 5000) + "x\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: nesting deeper than 64 levels`,
			tooMuch: true,
		},
		{
			name:    "nesting 9000 deep in flow style",
			input:   "apiVersion: v1\nkind: Service\nmetadata:\n  labels: " + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + "\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: nesting deeper than 64 levels`,
			tooMuch: true,
		},
		{
			name:    "nesting 10000 deep in JSON",
			input:   `{"apiVersion": "v1", "kind": "Service", "spec": ` + strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10001),
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: nesting deeper than 64 levels`,
			tooMuch: true,
		},
		{
			name:    "nesting just over the limit",
			input:   "apiVersion: v1\nkind: Service\nmetadata:\n  labels: " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: nesting deeper than 64 levels`,
			tooMuch: true,
		},
		{
			name:    "billion laughs",
			input:   billionLaughs(9, 10),
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: more than 100000 YAML nodes once aliases (*name) are expanded`,
			tooMuch: true,
		},
		{
			name:    "one long string aliased many times",
			input:   "apiVersion: v1\nkind: Service\nmetadata:\n  name: &n " + strings.Repeat("x", 100_000) + "\n  labels: [" + strings.Repeat("*n, ", 30) + "*n]\n",
			doc:     1,
			msg:     `document 1 (line 1): manifest exceeds a limit: more than 2097152 bytes once aliases (*name) are expanded`,
			tooMuch: true,
		},
		{
			name:  "an alias of itself",
			input: "a: &a [*a]\n",
			doc:   1,
			msg:   `document 1 (line 1): invalid YAML: anchor 'a' value contains itself`,
		},
		{
			name:  "a List in a List",
			input: `{"apiVersion": "v1", "kind": "List", "items": [{"apiVersion": "v1", "kind": "List", "items": []}]}`,
			doc:   1,
			msg:   `document 1 (line 1), item 1: List: a List may not hold another List`,
		},
		{
			name:  "a bad item in a List",
			input: "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Service\n  metadata: {name: a}\n  spec: {clusterIP: None}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: b}\n  spec: {bogus: 1}\n",
			doc:   1,
			path:  "spec.bogus",
			msg:   `document 1 (line 1), item 2: Service "b": spec.bogus: unknown field`,
		},
		{
			name:  "the same object twice",
			input: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: None}}\n---\n" + "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  clusterIP: None\n",
			doc:   2,
			path:  "metadata.name",
			msg:   `document 2 (line 6): Service "a": metadata.name: Service default/a is also defined by document 1 (line 1), item 1`,
		},
		{
			name:  "JSON syntax error in a later object",
			input: `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}}` + "\n" + `{"apiVersion": "v1", "kind": "Service",}`,
			doc:   2,
			msg:   `document 2 (line 2): invalid JSON at byte 40: invalid character '}' looking for beginning of object key string`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifestsWith([]byte(tt.input), tt.opts)
			if err == nil {
				t.Fatalf("DecodeManifests returned %v and no error", ids(objs))
			}
			if objs != nil {
				t.Errorf("objects %v returned with an error", ids(objs))
			}
			de := asDecode(t, err)
			if _, ok := err.(*DecodeError); !ok {
				t.Errorf("error is a %T, want the *DecodeError itself", err)
			}
			if de.Doc != tt.doc {
				t.Errorf("document %d, want %d", de.Doc, tt.doc)
			}
			if de.Path != tt.path {
				t.Errorf("path %q, want %q", de.Path, tt.path)
			}
			if err.Error() != tt.msg {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.msg)
			}
			if got := errors.Is(err, ErrTooLarge); got != tt.tooMuch {
				t.Errorf("errors.Is(err, ErrTooLarge) = %v, want %v", got, tt.tooMuch)
			}
		})
	}
}

// billionLaughs builds the classic alias bomb: levels of fan aliases each,
// fan^levels strings once expanded.
func billionLaughs(levels, fan int) string {
	var b strings.Builder
	b.WriteString("a0: &a0 [lol]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < fan; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// TestAliasBombMemory checks that refusing an alias bomb costs little
// memory, since the limits are checked without expanding anything.
func TestAliasBombMemory(t *testing.T) {
	bombs := map[string]string{
		"billion laughs": billionLaughs(9, 10),
		"wide":           "a: &a {x: [1, 2, 3]}\nb: [" + strings.Repeat("*a, ", 200_000) + "*a]\n",
	}
	for name, bomb := range bombs {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := DecodeManifests([]byte(bomb))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v, want ErrTooLarge", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 512<<20 {
				t.Errorf("refusing it allocated %d MiB", alloc>>20)
			}
			if testing.Verbose() {
				t.Logf("allocated %d MiB", (after.TotalAlloc-before.TotalAlloc)>>20)
			}
		})
	}
}

func TestDecodeStreams(t *testing.T) {
	svc := func(name string) string {
		return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n  clusterIP: None\n", name)
	}
	tests := []struct {
		name  string
		input string
		opts  DecodeOptions
		ids   []string
	}{
		{name: "empty", input: "", ids: nil},
		{name: "comments only", input: "# nothing here\n---\n# nor here\n", ids: nil},
		{name: "separators and blank documents", input: "---\n\n---\n" + svc("a") + "---\n---\n" + svc("b") + "...\n", ids: []string{"Service default/a", "Service default/b"}},
		{name: "a null document", input: "~\n---\n" + svc("a"), ids: []string{"Service default/a"}},
		{name: "CRLF line ends", input: strings.ReplaceAll(svc("a")+"---\n"+svc("b"), "\n", "\r\n"), ids: []string{"Service default/a", "Service default/b"}},
		{name: "byte order mark", input: "\ufeff" + svc("a"), ids: []string{"Service default/a"}},
		{name: "namespace from the manifest", input: strings.Replace(svc("a"), "  name: a\n", "  name: a\n  namespace: prod\n", 1), ids: []string{"Service prod/a"}},
		{name: "namespace from -n", input: svc("a"), opts: DecodeOptions{Namespace: "prod"}, ids: []string{"Service prod/a"}},
		{
			name:  "the same namespace in the manifest and -n",
			input: strings.Replace(svc("a"), "  name: a\n", "  name: a\n  namespace: prod\n", 1),
			opts:  DecodeOptions{Namespace: "prod"},
			ids:   []string{"Service prod/a"},
		},
		{
			name:  "one JSON object",
			input: `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}}`,
			ids:   []string{"Service default/a"},
		},
		{
			name: "JSON objects one after another",
			input: `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}}
{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "annotations": {"x": "}{\"["}}, "spec": {"clusterIP": "None"}}`,
			ids: []string{"Service default/a", "Service default/b"},
		},
		{
			name: "a JSON List",
			input: `{"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": [
				{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"clusterIP": "None"}},
				{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b", "namespace": "prod"}, "spec": {"clusterIP": "None"}}]}`,
			ids: []string{"Service default/a", "Service prod/b"},
		},
		{
			name:  "flow-style YAML starting with a brace",
			input: `{apiVersion: v1, kind: Service, metadata: {name: a}, spec: {clusterIP: None}}`,
			ids:   []string{"Service default/a"},
		},
		{
			name:  "anchors and aliases within limits",
			input: "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels: &l {app: web}\nspec:\n  clusterIP: None\n  selector: *l\n",
			ids:   []string{"Service default/a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, err := DecodeManifestsWith([]byte(tt.input), tt.opts)
			if err != nil {
				t.Fatalf("DecodeManifests: %v", err)
			}
			if diff := cmp.Diff(tt.ids, ids(objs)); diff != "" {
				t.Errorf("objects (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeReportsEveryBadDocument(t *testing.T) {
	input := "apiVersion: v1\nkind: Service\nmetadata:\n  name: Bad\nspec:\n  clusterIP: None\n" +
		"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: good\nspec:\n  clusterIP: None\n" +
		"---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n"
	objs, err := DecodeManifests([]byte(input))
	if objs != nil {
		t.Errorf("objects %v returned with an error", ids(objs))
	}
	want := `document 1 (line 1): Service "Bad" is invalid: metadata.name: Invalid value: "Bad": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')` + "\n" +
		`document 3 (line 15): "web": kind "Deployment" (apps/v1) is not supported; supported kinds: StatefulSet (apps/v1, apps/v1beta1, apps/v1beta2), Service (v1)`
	if err == nil || err.Error() != want {
		t.Errorf("error\n got: %v\nwant: %s", err, want)
	}
}

func TestDecodeDropsServerFields(t *testing.T) {
	set := baseSet()
	set.UID = "1234"
	set.Generation = 7
	set.ResourceVersion = "42"
	set.CreationTimestamp = metav1.Date(2024, 1, 2, 3, 4, 5, 0, metav1.Now().Location())
	set.DeletionTimestamp = &set.CreationTimestamp
	set.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	set.Status = appsv1.StatefulSetStatus{Replicas: 3, CurrentRevision: "web-abc"}
	objs, err := DecodeManifests(manifest(t, set))
	if err != nil {
		t.Fatal(err)
	}
	got := objs[0].(*appsv1.StatefulSet)
	if got.UID != "" || got.Generation != 0 || !got.CreationTimestamp.IsZero() || got.DeletionTimestamp != nil || got.ManagedFields != nil {
		t.Errorf("server fields kept: %+v", got.ObjectMeta)
	}
	if got.ResourceVersion != "42" {
		t.Errorf("resourceVersion %q, want the manifest's 42", got.ResourceVersion)
	}
	if !equality.Semantic.DeepEqual(got.Status, appsv1.StatefulSetStatus{}) {
		t.Errorf("status kept: %+v", got.Status)
	}
}

func TestDecodeConcurrently(t *testing.T) {
	web := readTestdata(t, "web.yaml")
	bomb := []byte(billionLaughs(9, 10))
	deep := []byte("a: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n")
	errs := make(chan error, 24)
	for i := 0; i < 8; i++ {
		go func() {
			objs, err := DecodeManifests(web)
			if err == nil && len(objs) != 2 {
				err = fmt.Errorf("web.yaml gave %d objects", len(objs))
			}
			errs <- err
		}()
		go func() {
			_, err := DecodeManifests(bomb)
			if !errors.Is(err, errTooManyNodes) {
				errs <- fmt.Errorf("alias bomb: %v", err)
				return
			}
			errs <- nil
		}()
		go func() {
			_, err := DecodeManifests(deep)
			if !errors.Is(err, errTooDeep) {
				errs <- fmt.Errorf("deep: %v", err)
				return
			}
			errs <- nil
		}()
	}
	for i := 0; i < 24; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestDecodeRefusesEscapedNUL(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{
			name:  "YAML escape",
			input: "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  annotations:\n    note: \"x\\0y\"\nspec:\n  clusterIP: None\n",
			want:  `document 1 (line 1): Service "a" is invalid: metadata.annotations[note]: Invalid value: "x\x00y": must not contain a NUL character`,
		},
		{
			name:  "JSON escape",
			input: `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "w\u0000", "port": 80}]}}`,
			want:  `document 1 (line 1): Service "a" is invalid: [spec.ports[0].name: Invalid value: "w\x00": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?'), spec.ports[0].name: Invalid value: "w\x00": must not contain a NUL character]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeManifests([]byte(tt.input))
			asInvalid(t, err)
			if err.Error() != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", err, tt.want)
			}
		})
	}
}
