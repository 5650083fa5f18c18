package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
)

// testNow is the clock of every printer test.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ago returns the time d before testNow.
func ago(d time.Duration) metav1.Time { return metav1.NewTime(testNow.Add(-d)) }

func pointerTo[T any](v T) *T { return &v }

// mustResource looks a resource up by name.
func mustResource(t *testing.T, name string) api.Resource {
	t.Helper()
	res, err := api.LookupResource(name)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// toObject encodes a typed object as the server would send it and decodes
// it as the CLI reads it.
func toObject(t *testing.T, m metav1.Object) object {
	t.Helper()
	var res api.Resource
	switch m.(type) {
	case *appsv1.StatefulSet:
		res = mustResource(t, "statefulsets")
	case *corev1.Pod:
		res = mustResource(t, "pods")
	case *corev1.Service:
		res = mustResource(t, "services")
	case *corev1.PersistentVolumeClaim:
		res = mustResource(t, "persistentvolumeclaims")
	case *appsv1.ControllerRevision:
		res = mustResource(t, "controllerrevisions")
	case *corev1.Event:
		res = mustResource(t, "events")
	case *corev1.Node:
		res = mustResource(t, "nodes")
	case *corev1.Namespace:
		res = mustResource(t, "namespaces")
	case *api.Server:
		res = mustResource(t, "servers")
	default:
		t.Fatalf("no resource for %T", m)
	}
	raw := encodeWithType(t, res, m)
	o, err := decodeObject(res, raw)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// encodeWithType marshals m with the apiVersion and kind of res, as every
// stored object carries them.
func encodeWithType(t *testing.T, res api.Resource, m any) json.RawMessage {
	t.Helper()
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	fields["apiVersion"], _ = json.Marshal(res.APIVersion)
	fields["kind"], _ = json.Marshal(res.Kind)
	data, err = json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func toObjects(t *testing.T, ms ...metav1.Object) []object {
	t.Helper()
	out := make([]object, 0, len(ms))
	for _, m := range ms {
		out = append(out, toObject(t, m))
	}
	return out
}

func objectMeta(name string, created time.Duration) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(created)}
}

func readyCondition(s corev1.ConditionStatus) []corev1.PodCondition {
	return []corev1.PodCondition{{Type: corev1.PodReady, Status: s}}
}

func runningPod(name string, created time.Duration) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: objectMeta(name, created),
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: readyCondition(corev1.ConditionTrue),
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "nginx", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(created)}},
			}},
		},
	}
}

func newSet(name string, ready, replicas int32, created time.Duration, containers ...corev1.Container) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: objectMeta(name, created),
		Spec: appsv1.StatefulSetSpec{
			Replicas: pointerTo(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: containers}},
		},
		Status: appsv1.StatefulSetStatus{Replicas: replicas, ReadyReplicas: ready},
	}
}

func TestPodStatus(t *testing.T) {
	container := corev1.Container{Name: "app", Image: "app:1"}
	withStatuses := func(phase corev1.PodPhase, statuses ...corev1.ContainerStatus) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: objectMeta("web-0", time.Minute),
			Spec:       corev1.PodSpec{Containers: []corev1.Container{container}},
			Status:     corev1.PodStatus{Phase: phase, ContainerStatuses: statuses},
		}
		for range len(statuses) - 1 {
			p.Spec.Containers = append(p.Spec.Containers, container)
		}
		return p
	}
	waiting := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	running := corev1.ContainerStatus{
		Name: "app", Ready: true,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: ago(time.Minute)}},
	}
	terminated := func(reason string, code, signal int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			Reason: reason, ExitCode: code, Signal: signal,
		}}}
	}

	tests := []struct {
		name                    string
		pod                     *corev1.Pod
		ready, status, restarts string
	}{
		{
			name:  "unscheduled pod is Pending",
			pod:   withStatuses(corev1.PodPending),
			ready: "0/1", status: "Pending", restarts: "0",
		},
		{
			name:  "waiting reason replaces the phase",
			pod:   withStatuses(corev1.PodPending, waiting("ContainerCreating")),
			ready: "0/1", status: "ContainerCreating", restarts: "0",
		},
		{
			name:  "image pull failure",
			pod:   withStatuses(corev1.PodPending, waiting("ErrImagePull")),
			ready: "0/1", status: "ErrImagePull", restarts: "0",
		},
		{
			name: "running and ready",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodRunning, running)
				p.Status.Conditions = readyCondition("True")
				return p
			}(),
			ready: "1/1", status: "Running", restarts: "0",
		},
		{
			name: "crash loop counts restarts and says when the last was",
			pod: func() *corev1.Pod {
				s := waiting("CrashLoopBackOff")
				s.RestartCount = 4
				s.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(30 * time.Second)}
				return withStatuses(corev1.PodRunning, s)
			}(),
			ready: "0/1", status: "CrashLoopBackOff", restarts: "4 (30s ago)",
		},
		{
			name:  "terminated without a reason shows the exit code",
			pod:   withStatuses(corev1.PodRunning, terminated("", 2, 0)),
			ready: "0/1", status: "ExitCode:2", restarts: "0",
		},
		{
			name:  "terminated by a signal",
			pod:   withStatuses(corev1.PodRunning, terminated("", 137, 9)),
			ready: "0/1", status: "Signal:9", restarts: "0",
		},
		{
			name: "deletion in progress is Terminating",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodRunning, running)
				p.DeletionTimestamp = pointerTo(ago(5 * time.Second))
				return p
			}(),
			ready: "1/1", status: "Terminating", restarts: "0",
		},
		{
			name: "a finished pod being deleted keeps its reason",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodSucceeded, terminated("Completed", 0, 0))
				p.DeletionTimestamp = pointerTo(ago(5 * time.Second))
				return p
			}(),
			ready: "0/1", status: "Completed", restarts: "0",
		},
		{
			name: "a pod of a lost node being deleted is Unknown",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodRunning, running)
				p.Status.Reason = "NodeLost"
				p.DeletionTimestamp = pointerTo(ago(5 * time.Second))
				return p
			}(),
			ready: "1/1", status: "Unknown", restarts: "0",
		},
		{
			name: "a completed container next to a running one is NotReady without the Ready condition",
			pod: func() *corev1.Pod {
				return withStatuses(corev1.PodRunning, running, terminated("Completed", 0, 0))
			}(),
			ready: "1/2", status: "NotReady", restarts: "0",
		},
		{
			name: "a completed container next to a running one is Running with the Ready condition",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodRunning, running, terminated("Completed", 0, 0))
				p.Status.Conditions = readyCondition(corev1.ConditionTrue)
				return p
			}(),
			ready: "1/2", status: "Running", restarts: "0",
		},
		{
			name: "init container running shows init progress",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodPending)
				p.Spec.InitContainers = []corev1.Container{{Name: "init-a"}, {Name: "init-b"}}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{
					{Name: "init-a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}},
					{Name: "init-b", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
				}
				return p
			}(),
			ready: "0/1", status: "Init:1/2", restarts: "0",
		},
		{
			name: "failed init container names its reason",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodPending)
				p.Spec.InitContainers = []corev1.Container{{Name: "init-a"}}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{
					Name: "init-a", RestartCount: 2,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
				}}
				return p
			}(),
			ready: "0/1", status: "Init:CrashLoopBackOff", restarts: "2",
		},
		{
			name: "init container exit code without a reason",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodPending)
				p.Spec.InitContainers = []corev1.Container{{Name: "init-a"}}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{
					Name: "init-a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 3}},
				}}
				return p
			}(),
			ready: "0/1", status: "Init:ExitCode:3", restarts: "0",
		},
		{
			name: "a started sidecar counts as a ready container",
			pod: func() *corev1.Pod {
				p := withStatuses(corev1.PodRunning, running)
				p.Status.Conditions = readyCondition(corev1.ConditionTrue)
				p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: pointerTo(corev1.ContainerRestartPolicyAlways)}}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{
					Name: "proxy", Ready: true, Started: pointerTo(true),
					State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
				}}
				return p
			}(),
			ready: "2/2", status: "Running", restarts: "0",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ready, status, restarts := podStatus(tt.pod, testNow)
			if ready != tt.ready || status != tt.status || restarts != tt.restarts {
				t.Errorf("podStatus = (%q, %q, %q), want (%q, %q, %q)", ready, status, restarts, tt.ready, tt.status, tt.restarts)
			}
		})
	}
}

func TestTables(t *testing.T) {
	crashing := func() *corev1.Pod {
		p := runningPod("web-2", 2*time.Minute)
		p.Spec.NodeName = "node-2"
		p.Status.PodIP = "10.88.0.7"
		p.Status.Conditions = readyCondition(corev1.ConditionFalse)
		p.Status.ContainerStatuses[0] = corev1.ContainerStatus{
			Name: "nginx", RestartCount: 3,
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, FinishedAt: ago(45 * time.Second)}},
		}
		return p
	}
	placed := func(p *corev1.Pod, node, ip string) *corev1.Pod {
		p.Spec.NodeName = node
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		return p
	}
	inNamespace := func(p *corev1.Pod, ns string) *corev1.Pod {
		p.Namespace = ns
		return p
	}
	claim := func(name string, phase corev1.PersistentVolumeClaimPhase, created time.Duration, capacity string) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{
			ObjectMeta: objectMeta(name, created),
			Spec: corev1.PersistentVolumeClaimSpec{
				StorageClassName: pointerTo("local"),
				AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			},
			Status: corev1.PersistentVolumeClaimStatus{Phase: phase},
		}
		if capacity != "" {
			c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(capacity)}
			c.Status.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
		}
		return c
	}
	node := func(name string, ready corev1.ConditionStatus, version string) *corev1.Node {
		return &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ago(3 * time.Hour)},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
				NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: version},
			},
		}
	}
	controlPlane := func(n *corev1.Node) *corev1.Node {
		n.Labels = map[string]string{"node-role.kubernetes.io/control-plane": ""}
		return n
	}

	tests := []struct {
		name      string
		objs      []metav1.Object
		opts      tableOptions
		noHeaders bool
		want      string
	}{
		{
			name: "statefulsets",
			objs: []metav1.Object{newSet("web", 2, 3, 5*time.Minute), newSet("db", 1, 1, 3*time.Hour)},
			want: "" +
				"NAME   READY   AGE\n" +
				"web    2/3     5m\n" +
				"db     1/1     3h\n",
		},
		{
			name: "statefulsets wide",
			objs: []metav1.Object{
				newSet("web", 2, 3, 5*time.Minute, corev1.Container{Name: "nginx", Image: "nginx:1.27"}),
				newSet("db", 1, 1, 3*time.Hour, corev1.Container{Name: "postgres", Image: "postgres:16"}, corev1.Container{Name: "exporter", Image: "exporter:1"}),
			},
			opts: tableOptions{wide: true},
			want: "" +
				"NAME   READY   AGE   CONTAINERS          IMAGES\n" +
				"web    2/3     5m    nginx               nginx:1.27\n" +
				"db     1/1     3h    postgres,exporter   postgres:16,exporter:1\n",
		},
		{
			name: "pods wide",
			objs: []metav1.Object{
				placed(runningPod("web-0", 5*time.Minute), "node-1", "10.88.0.5"),
				&corev1.Pod{
					ObjectMeta: objectMeta("web-1", 10*time.Second),
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx"}}},
					Status:     corev1.PodStatus{Phase: corev1.PodPending},
				},
				crashing(),
			},
			opts: tableOptions{wide: true},
			want: "" +
				"NAME    READY   STATUS             RESTARTS      AGE   IP          NODE\n" +
				"web-0   1/1     Running            0             5m    10.88.0.5   node-1\n" +
				"web-1   0/1     Pending            0             10s   <none>      <none>\n" +
				"web-2   0/1     CrashLoopBackOff   3 (45s ago)   2m    10.88.0.7   node-2\n",
		},
		{
			name: "pods of all namespaces",
			objs: []metav1.Object{runningPod("web-0", 5*time.Minute), inNamespace(runningPod("db-0", 5*time.Minute), "tenant-a")},
			opts: tableOptions{withNamespace: true},
			want: "" +
				"NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE\n" +
				"default     web-0   1/1     Running   0          5m\n" +
				"tenant-a    db-0    1/1     Running   0          5m\n",
		},
		{
			name: "pods among several kinds carry their kind",
			objs: []metav1.Object{runningPod("web-0", 5*time.Minute)},
			opts: tableOptions{withKind: true},
			want: "" +
				"NAME        READY   STATUS    RESTARTS   AGE\n" +
				"pod/web-0   1/1     Running   0          5m\n",
		},
		{
			name: "services: headless shows None, node ports and protocols",
			objs: []metav1.Object{
				&corev1.Service{
					ObjectMeta: objectMeta("nginx", 5*time.Minute),
					Spec: corev1.ServiceSpec{
						ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
						Ports: []corev1.ServicePort{{Name: "web", Port: 80}},
					},
				},
				&corev1.Service{
					ObjectMeta: objectMeta("edge", 3*time.Hour),
					Spec: corev1.ServiceSpec{
						Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.11",
						Ports: []corev1.ServicePort{
							{Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP},
							{Port: 53, Protocol: corev1.ProtocolUDP},
						},
					},
				},
			},
			want: "" +
				"NAME    TYPE        CLUSTER-IP   EXTERNAL-IP   PORT(S)               AGE\n" +
				"nginx   ClusterIP   None         <none>        80/TCP                5m\n" +
				"edge    NodePort    10.96.0.11   <none>        80:30080/TCP,53/UDP   3h\n",
		},
		{
			name: "persistent volume claims",
			objs: []metav1.Object{
				claim("www-web-0", corev1.ClaimBound, 5*time.Minute, "1Gi"),
				claim("www-web-1", corev1.ClaimPending, 10*time.Second, ""),
			},
			want: "" +
				"NAME        STATUS    VOLUME   CAPACITY   ACCESS MODES   STORAGECLASS   AGE\n" +
				"www-web-0   Bound              1Gi        RWO            local          5m\n" +
				"www-web-1   Pending                                      local          10s\n",
		},
		{
			name: "controller revisions name their set",
			objs: []metav1.Object{&appsv1.ControllerRevision{
				ObjectMeta: metav1.ObjectMeta{
					Name: "web-6d4f8", Namespace: "default", CreationTimestamp: ago(5 * time.Minute),
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", Controller: pointerTo(true)}},
				},
				Revision: 2,
			}},
			want: "" +
				"NAME        CONTROLLER             REVISION   AGE\n" +
				"web-6d4f8   statefulset.apps/web   2          5m\n",
		},
		{
			name: "events",
			objs: []metav1.Object{
				&corev1.Event{
					ObjectMeta:     objectMeta("web-2.1", time.Minute),
					InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-2"},
					Type:           corev1.EventTypeWarning, Reason: "BackOff", Message: "Back-off restarting failed container\n",
					LastTimestamp: ago(30 * time.Second),
				},
				&corev1.Event{
					ObjectMeta:     objectMeta("web.1", time.Minute),
					InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Name: "web"},
					Type:           corev1.EventTypeNormal, Reason: "SuccessfulCreate", Message: "create Pod web-0 in StatefulSet web successful",
					LastTimestamp: ago(2 * time.Minute),
				},
			},
			want: "" +
				"LAST SEEN   TYPE      REASON             OBJECT            MESSAGE\n" +
				"2m          Normal    SuccessfulCreate   statefulset/web   create Pod web-0 in StatefulSet web successful\n" +
				"30s         Warning   BackOff            pod/web-2         Back-off restarting failed container\n",
		},
		{
			name: "events wide",
			objs: []metav1.Object{&corev1.Event{
				ObjectMeta:     objectMeta("web-0.1", time.Minute),
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "web-0", FieldPath: "spec.containers{nginx}"},
				Type:           corev1.EventTypeNormal, Reason: "Started", Message: "Started container nginx",
				Source:         corev1.EventSource{Component: "agent", Host: "node-1"},
				FirstTimestamp: ago(3 * time.Minute), LastTimestamp: ago(time.Minute), Count: 2,
			}},
			opts: tableOptions{wide: true},
			want: "" +
				"LAST SEEN   TYPE     REASON    OBJECT      SUBOBJECT                SOURCE          MESSAGE                   FIRST SEEN   COUNT   NAME\n" +
				"60s         Normal   Started   pod/web-0   spec.containers{nginx}   agent, node-1   Started container nginx   3m           2       web-0.1\n",
		},
		{
			name: "nodes: roles, cordoned and not ready",
			objs: []metav1.Object{
				controlPlane(node("node-1", corev1.ConditionTrue, "stead-0.1.0")),
				func() *corev1.Node {
					n := node("node-2", corev1.ConditionTrue, "stead-0.1.0")
					n.Spec.Unschedulable = true
					return n
				}(),
				node("node-3", corev1.ConditionFalse, ""),
			},
			want: "" +
				"NAME     STATUS                     ROLES           AGE   VERSION\n" +
				"node-1   Ready                      control-plane   3h    stead-0.1.0\n" +
				"node-2   Ready,SchedulingDisabled   <none>          3h    stead-0.1.0\n" +
				"node-3   NotReady                   <none>          3h    \n",
		},
		{
			name: "nodes wide",
			objs: []metav1.Object{func() *corev1.Node {
				n := controlPlane(node("node-1", corev1.ConditionTrue, "stead-0.1.0"))
				n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}}
				n.Status.NodeInfo.OSImage = "Debian GNU/Linux 13"
				n.Status.NodeInfo.KernelVersion = "6.12.0"
				n.Status.NodeInfo.ContainerRuntimeVersion = "containerd://1.6.20"
				return n
			}()},
			opts: tableOptions{wide: true},
			want: "" +
				"NAME     STATUS   ROLES           AGE   VERSION       INTERNAL-IP    EXTERNAL-IP   OS-IMAGE              KERNEL-VERSION   CONTAINER-RUNTIME\n" +
				"node-1   Ready    control-plane   3h    stead-0.1.0   192.168.1.10   <none>        Debian GNU/Linux 13   6.12.0           containerd://1.6.20\n",
		},
		{
			name: "namespaces",
			objs: []metav1.Object{
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default", CreationTimestamp: ago(3 * time.Hour)}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}},
				&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-a", CreationTimestamp: ago(5 * time.Minute), DeletionTimestamp: pointerTo(ago(time.Second))}},
			},
			want: "" +
				"NAME       STATUS        AGE\n" +
				"default    Active        3h\n" +
				"tenant-a   Terminating   5m\n",
		},
		{
			name: "servers",
			objs: []metav1.Object{&api.Server{
				ObjectMeta: metav1.ObjectMeta{Name: "s1", CreationTimestamp: ago(3 * time.Hour)},
				Spec:       api.ServerSpec{RaftAddr: "10.0.0.1:7471", HTTPAddr: "10.0.0.1:7470"},
			}},
			want: "" +
				"NAME   RAFT-ADDRESS    HTTP-ADDRESS    AGE\n" +
				"s1     10.0.0.1:7471   10.0.0.1:7470   3h\n",
		},
		{
			name: "no headers, with labels",
			objs: []metav1.Object{func() *appsv1.StatefulSet {
				s := newSet("web", 2, 3, 5*time.Minute)
				s.Labels = map[string]string{"tier": "web", "app": "nginx"}
				return s
			}()},
			opts:      tableOptions{showLabels: true},
			noHeaders: true,
			want:      "web   2/3   5m    app=nginx,tier=web\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := toObjects(t, tt.objs...)
			if objs[0].res.Kind == "Event" {
				sortEvents(objs)
			}
			var b bytes.Buffer
			if err := printTable(&b, objs, tt.opts, tt.noHeaders, testNow); err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != tt.want {
				t.Errorf("table:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestQualifiedNames(t *testing.T) {
	objs := toObjects(t,
		newSet("web", 0, 1, time.Minute),
		runningPod("web-0", time.Minute),
		&corev1.Service{ObjectMeta: objectMeta("nginx", time.Minute)},
		&corev1.PersistentVolumeClaim{ObjectMeta: objectMeta("www-web-0", time.Minute)},
		&api.Server{ObjectMeta: metav1.ObjectMeta{Name: "s1"}},
	)
	var b bytes.Buffer
	if err := printNames(&b, objs); err != nil {
		t.Fatal(err)
	}
	want := "statefulset.apps/web\npod/web-0\nservice/nginx\npersistentvolumeclaim/www-web-0\nserver.stead.io/s1\n"
	if b.String() != want {
		t.Errorf("-o name:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPrintDocumentJSON(t *testing.T) {
	objs := toObjects(t, newSet("web", 2, 3, time.Minute), newSet("db", 1, 1, time.Minute))

	t.Run("several objects make a List shaped like kubectl's", func(t *testing.T) {
		var b bytes.Buffer
		if err := printDocument(&b, outputJSON, objs, false); err != nil {
			t.Fatal(err)
		}
		var list struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				ResourceVersion *string `json:"resourceVersion"`
			} `json:"metadata"`
			Items []appsv1.StatefulSet `json:"items"`
		}
		if err := json.Unmarshal(b.Bytes(), &list); err != nil {
			t.Fatalf("decode %s: %v", b.String(), err)
		}
		if list.APIVersion != "v1" || list.Kind != "List" || list.Metadata.ResourceVersion == nil || *list.Metadata.ResourceVersion != "" {
			t.Errorf("list envelope = %s %s %v, want v1 List with resourceVersion \"\"", list.APIVersion, list.Kind, list.Metadata.ResourceVersion)
		}
		var names []string
		var ready []int32
		for _, s := range list.Items {
			names = append(names, s.Name)
			ready = append(ready, s.Status.ReadyReplicas)
			if s.Kind != "StatefulSet" || s.APIVersion != "apps/v1" {
				t.Errorf("item %s has kind %s/%s, want apps/v1 StatefulSet", s.Name, s.APIVersion, s.Kind)
			}
		}
		if strings.Join(names, ",") != "web,db" || ready[0] != 2 || ready[1] != 1 {
			t.Errorf(".items[].metadata.name = %v, .status.readyReplicas = %v; want [web db], [2 1]", names, ready)
		}
		if !strings.HasPrefix(b.String(), "{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n") {
			t.Errorf("List JSON does not start like kubectl's (sorted keys, four spaces):\n%s", b.String())
		}
	})

	t.Run("one named object is printed alone", func(t *testing.T) {
		var b bytes.Buffer
		if err := printDocument(&b, outputJSON, objs[:1], true); err != nil {
			t.Fatal(err)
		}
		var s appsv1.StatefulSet
		if err := json.Unmarshal(b.Bytes(), &s); err != nil {
			t.Fatal(err)
		}
		if s.Kind != "StatefulSet" || s.Name != "web" || s.Status.ReadyReplicas != 2 {
			t.Errorf("object = %s %s ready %d, want StatefulSet web ready 2", s.Kind, s.Name, s.Status.ReadyReplicas)
		}
	})

	t.Run("keys sorted and indented as kubectl prints them", func(t *testing.T) {
		raw := json.RawMessage(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0","resourceVersion":"12"},"spec":{"terminationGracePeriodSeconds":30}}`)
		o, err := decodeObject(mustResource(t, "pods"), raw)
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := printDocument(&b, outputJSON, []object{o}, true); err != nil {
			t.Fatal(err)
		}
		want := `{
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web-0",
        "resourceVersion": "12"
    },
    "spec": {
        "terminationGracePeriodSeconds": 30
    }
}
`
		if b.String() != want {
			t.Errorf("json:\n%s\nwant:\n%s", b.String(), want)
		}
	})
}

func TestPrintDocumentYAML(t *testing.T) {
	res := mustResource(t, "pods")
	var objs []object
	for _, raw := range []string{
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-0"}}`,
		`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web-1"},"status":{"phase":"Running"}}`,
	} {
		o, err := decodeObject(res, json.RawMessage(raw))
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o)
	}
	tests := []struct {
		name   string
		objs   []object
		single bool
		want   string
	}{
		{
			name: "list", objs: objs,
			want: `apiVersion: v1
items:
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-0
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-1
  status:
    phase: Running
kind: List
metadata:
  resourceVersion: ""
`,
		},
		{
			name: "one object", objs: objs[1:], single: true,
			want: `apiVersion: v1
kind: Pod
metadata:
  name: web-1
status:
  phase: Running
`,
		},
		{
			name: "empty list", objs: nil,
			want: `apiVersion: v1
items: []
kind: List
metadata:
  resourceVersion: ""
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printDocument(&b, outputYAML, tt.objs, tt.single); err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("yaml:\n%s\nwant:\n%s", b.String(), tt.want)
			}
		})
	}
}

func TestCheckOutput(t *testing.T) {
	for _, ok := range []string{"", "wide", "json", "yaml", "name"} {
		if err := checkOutput(ok); err != nil {
			t.Errorf("checkOutput(%q) = %v, want nil", ok, err)
		}
	}
	err := checkOutput("jsonpath={.items}")
	if err == nil || !strings.Contains(err.Error(), "allowed formats are: json,name,wide,yaml") {
		t.Errorf("checkOutput(jsonpath) = %v, want the allowed formats", err)
	}
}

func TestTableWidthsGrow(t *testing.T) {
	var tb table
	var b bytes.Buffer
	if err := tb.write(&b, []string{"NAME", "STATUS", "AGE"}, []string{"web-0", "Running", "1s"}); err != nil {
		t.Fatal(err)
	}
	// A later, wider row widens its column; the narrower ones keep the
	// width the header set.
	if err := tb.write(&b, []string{"web-10", "CrashLoopBackOff", "1s"}, []string{"web-1", "Pending", "1s"}); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME    STATUS    AGE\n" +
		"web-0   Running   1s\n" +
		"web-10   CrashLoopBackOff   1s\n" +
		"web-1    Pending            1s\n"
	if b.String() != want {
		t.Errorf("rows:\n%s\nwant:\n%s", b.String(), want)
	}
}
