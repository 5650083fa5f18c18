package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stead-io/stead/api"
)

// normalized returns the lines of a description with their indentation
// kept and the tab writer's padding between fields squeezed to one space.
func normalized(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		indent := len(l) - len(strings.TrimLeft(l, " "))
		out = append(out, strings.Repeat(" ", indent)+strings.Join(strings.Fields(l), " "))
	}
	return out
}

// wantLines checks that every wanted line appears in the description, in
// the order given.
func wantLines(t *testing.T, desc string, want ...string) {
	t.Helper()
	lines := normalized(desc)
	i := 0
	for _, w := range want {
		for i < len(lines) && lines[i] != w {
			i++
		}
		if i == len(lines) {
			t.Errorf("description lacks %q (in this order); got:\n%s", w, desc)
			return
		}
		i++
	}
}

// lackLines checks that no line of the description contains any of subs.
func lackLines(t *testing.T, desc string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if strings.Contains(desc, s) {
			t.Errorf("description contains %q; got:\n%s", s, desc)
		}
	}
}

func newEvent(kind, name, reason, message string, last time.Duration, count int32) corev1.Event {
	return corev1.Event{
		ObjectMeta:     objectMeta(name+"."+reason, last),
		InvolvedObject: corev1.ObjectReference{Kind: kind, Name: name, Namespace: "default"},
		Type:           corev1.EventTypeNormal, Reason: reason, Message: message,
		Source:         corev1.EventSource{Component: "statefulset-controller"},
		FirstTimestamp: ago(last + time.Duration(count-1)*time.Minute), LastTimestamp: ago(last), Count: count,
	}
}

// webSet is the StatefulSet of Kubernetes' documentation, with a partition.
func webSet() *appsv1.StatefulSet {
	s := newSet("web", 1, 3, 5*time.Minute, corev1.Container{
		Name: "nginx", Image: "nginx:1.27",
		Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 80}},
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "hello"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}},
	})
	s.UID = "set-uid"
	s.Labels = map[string]string{"app": "web"}
	s.Annotations = map[string]string{"team": "storage"}
	s.Spec.Template.Labels = map[string]string{"app": "web"}
	s.Spec.ServiceName = "nginx"
	s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: pointerTo(int32(1))},
	}
	s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "www"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: pointerTo("local"),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}}
	return s
}

// setPod returns pod ordinal ord of webSet in the given phase.
func webPod(ord int, phase corev1.PodPhase) *corev1.Pod {
	p := runningPod(api.ReplicaName("web", ord), 5*time.Minute)
	p.UID = types.UID("pod-uid-" + p.Name)
	p.Labels = map[string]string{"app": "web"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "set-uid", Controller: pointerTo(true)}}
	p.Spec.Volumes = []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: api.VolumeName("www", "web", ord)},
	}}}
	p.Status.Phase = phase
	return p
}

func TestDescribeStatefulSet(t *testing.T) {
	s := webSet()
	stranger := runningPod("web-9", time.Minute) // matches the selector, has no owner
	stranger.Labels = map[string]string{"app": "web"}
	pods := controlledPods(s, []corev1.Pod{*webPod(0, corev1.PodRunning), *webPod(1, corev1.PodPending), *webPod(2, corev1.PodFailed), *stranger})
	events := eventsFor([]corev1.Event{
		newEvent("StatefulSet", "web", "SuccessfulCreate", "create Pod web-0 in StatefulSet web successful", time.Minute, 1),
		newEvent("Pod", "web", "Scheduled", "about a pod that shares the set's name", time.Minute, 1),
		newEvent("StatefulSet", "web", "RecreatingFailedPod", "StatefulSet default/web is recreating failed Pod web-2", 10*time.Second, 3),
	}, "StatefulSet", s)

	desc := describeStatefulSet(s, pods, events, testNow)
	wantLines(t, desc,
		"Name: web",
		"Namespace: default",
		"CreationTimestamp: Sun, 01 Mar 2026 11:55:00 +0000",
		"Selector: app=web",
		"Labels: app=web",
		"Annotations: team: storage",
		"Replicas: 3 desired | 3 total",
		"Update Strategy: RollingUpdate",
		"  Partition: 1",
		"Pods Status: 1 Running / 1 Waiting / 0 Succeeded / 1 Failed",
		"Pod Template:",
		"  Labels: app=web",
		"  Containers:",
		"   nginx:",
		"    Image: nginx:1.27",
		"    Port: 80/TCP (web)",
		"    Host Port: 0/TCP (web)",
		"    Environment:",
		"      GREETING: hello",
		"      POD_NAME: (v1:metadata.name)",
		"    Mounts:",
		"      /usr/share/nginx/html from www (rw)",
		"  Volumes: <none>",
		"Volume Claims:",
		"  Name: www",
		"  StorageClass: local",
		"  Labels: <none>",
		"  Annotations: <none>",
		"  Capacity: 1Gi",
		"  Access Modes: [ReadWriteOnce]",
		"Events:",
		"  Type Reason Age From Message",
		"  ---- ------ ---- ---- -------",
		"  Normal SuccessfulCreate 60s statefulset-controller create Pod web-0 in StatefulSet web successful",
		"  Normal RecreatingFailedPod 10s (x3 over 2m10s) statefulset-controller StatefulSet default/web is recreating failed Pod web-2",
	)
	lackLines(t, desc, "about a pod that shares")
	// The fields of the first block line up as kubectl's tab writer
	// aligns them: after the longest label, CreationTimestamp, plus two.
	if !strings.Contains(desc, "\nReplicas:           3 desired | 3 total\n") {
		t.Errorf("Replicas line is not aligned with CreationTimestamp:\n%s", desc)
	}
}

func TestDescribeStatefulSetWithoutEvents(t *testing.T) {
	desc := describeStatefulSet(webSet(), nil, nil, testNow)
	wantLines(t, desc, "Pods Status: 0 Running / 0 Waiting / 0 Succeeded / 0 Failed")
	lackLines(t, desc, "Events:")
	desc = describeStatefulSet(webSet(), nil, []corev1.Event{}, testNow)
	wantLines(t, desc, "Events: <none>")
}

func TestDescribePod(t *testing.T) {
	p := webPod(1, corev1.PodRunning)
	p.Spec.NodeName = "node-1"
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "web", ContainerPort: 80}}
	p.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
	}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}}
	p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80), Scheme: corev1.URISchemeHTTP}},
		PeriodSeconds: 10, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3,
	}
	p.Annotations = map[string]string{api.AnnotationGeneration: "42"}
	p.Status.HostIP = "192.168.1.10"
	p.Status.PodIP = "10.88.0.6"
	p.Status.PodIPs = []corev1.PodIP{{IP: "10.88.0.6"}}
	p.Status.StartTime = pointerTo(ago(5 * time.Minute))
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue},
	}
	p.Status.ContainerStatuses[0].ContainerID = "containerd://abc123"
	p.Status.ContainerStatuses[0].RestartCount = 1
	p.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		Reason: "Error", ExitCode: 137, StartedAt: ago(10 * time.Minute), FinishedAt: ago(6 * time.Minute),
	}}

	t.Run("running", func(t *testing.T) {
		desc := describePod(p, []corev1.Event{}, testNow)
		wantLines(t, desc,
			"Name: web-1",
			"Namespace: default",
			"Node: node-1/192.168.1.10",
			"Start Time: Sun, 01 Mar 2026 11:55:00 +0000",
			"Labels: app=web",
			"Annotations: stead.io/generation: 42",
			"Status: Running",
			"IP: 10.88.0.6",
			"IPs:",
			"  IP: 10.88.0.6",
			"Controlled By: StatefulSet/web",
			"Containers:",
			"  nginx:",
			"    Container ID: containerd://abc123",
			"    Image: nginx:1.27",
			"    Port: 80/TCP (web)",
			"    State: Running",
			"      Started: Sun, 01 Mar 2026 11:55:00 +0000",
			"    Last State: Terminated",
			"      Reason: Error",
			"      Exit Code: 137",
			"      Started: Sun, 01 Mar 2026 11:50:00 +0000",
			"      Finished: Sun, 01 Mar 2026 11:54:00 +0000",
			"    Ready: True",
			"    Restart Count: 1",
			"    Readiness: http-get http://:80/ delay=0s timeout=1s period=10s #success=1 #failure=3",
			"    Environment:",
			"      POD_NAME: web-1 (v1:metadata.name)",
			"    Mounts:",
			"      /usr/share/nginx/html from www (rw)",
			"Conditions:",
			"  Type Status",
			"  PodScheduled True",
			"  Ready True",
			"Volumes:",
			"  www:",
			"    Type: PersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)",
			"    ClaimName: www-web-1",
			"    ReadOnly: false",
			"QoS Class: BestEffort",
			"Node-Selectors: <none>",
			"Tolerations: <none>",
			"Events: <none>",
		)
	})

	t.Run("terminating", func(t *testing.T) {
		q := p.DeepCopy()
		q.DeletionTimestamp = pointerTo(ago(5 * time.Second))
		q.DeletionGracePeriodSeconds = pointerTo(int64(30))
		desc := describePod(q, nil, testNow)
		wantLines(t, desc, "Status: Terminating (lasts 5s)", "Termination Grace Period: 30s")
		lackLines(t, desc, "Status: Running", "Events:")
	})

	t.Run("unscheduled", func(t *testing.T) {
		q := &corev1.Pod{
			ObjectMeta: objectMeta("web-2", time.Second),
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		}
		desc := describePod(q, nil, testNow)
		wantLines(t, desc, "Node: <none>", "Status: Pending", "IP:", "IPs: <none>", "Containers:", "  nginx:", "    Image: nginx:1.27", "    Port: <none>")
		lackLines(t, desc, "Container ID", "Controlled By")
	})
}

func TestDescribeClaim(t *testing.T) {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "www-web-1", Namespace: "default", CreationTimestamp: ago(5 * time.Minute), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: pointerTo("local"),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			VolumeMode:       pointerTo(corev1.PersistentVolumeFilesystem),
		},
		Status: corev1.PersistentVolumeClaimStatus{
			Phase:       corev1.ClaimBound,
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		},
	}
	pods := []corev1.Pod{*webPod(0, corev1.PodRunning), *webPod(1, corev1.PodRunning), *webPod(2, corev1.PodRunning)}
	users := claimUsers(c, pods)
	var names []string
	for _, p := range users {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "web-1" {
		t.Fatalf("claimUsers(www-web-1) = %v, want [web-1]", names)
	}
	desc := describeClaim(c, users, []corev1.Event{}, testNow)
	wantLines(t, desc,
		"Name: www-web-1",
		"Namespace: default",
		"StorageClass: local",
		"Status: Bound",
		"Volume:",
		"Labels: app=web",
		"Annotations: <none>",
		"Finalizers: []",
		"Capacity: 1Gi",
		"Access Modes: RWO",
		"VolumeMode: Filesystem",
		"Used By: web-1",
		"Events: <none>",
	)

	// A claim whose pod owns it but no longer mounts it (the pod is gone
	// from the template) is still used by that pod.
	owned := c.DeepCopy()
	owned.Name = "data-web-0"
	owned.OwnerReferences = []metav1.OwnerReference{{Kind: "Pod", Name: "web-0", UID: "pod-uid-web-0"}}
	if got := claimUsers(owned, pods); len(got) != 1 || got[0].Name != "web-0" {
		t.Errorf("claimUsers(owned by web-0) = %v, want [web-0]", got)
	}
	if got := describeClaim(owned, nil, nil, testNow); !strings.Contains(got, "Used By:       <none>\n") {
		t.Errorf("claim without users lacks \"Used By: <none>\":\n%s", got)
	}
}

func TestDescribeService(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: objectMeta("nginx", 5*time.Minute),
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone},
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}
	pod := func(ord int, ip string, ready bool) corev1.Pod {
		p := webPod(ord, corev1.PodRunning)
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		p.Status.PodIP = ip
		if !ready {
			p.Status.Conditions = readyCondition(corev1.ConditionFalse)
		}
		return *p
	}
	pods := []corev1.Pod{pod(0, "10.88.0.5", true), pod(1, "10.88.0.6", false), pod(2, "10.88.0.7", true)}

	desc := describeService(svc, pods, nil, testNow)
	wantLines(t, desc,
		"Name: nginx",
		"Namespace: default",
		"Labels: <none>",
		"Annotations: <none>",
		"Selector: app=web",
		"Type: ClusterIP",
		"IP Families: <none>",
		"IP: None",
		"IPs: None",
		"Port: web 80/TCP",
		"TargetPort: http/TCP",
		"Endpoints: 10.88.0.5:8080,10.88.0.7:8080",
		"Session Affinity: None",
	)

	svc.Spec.PublishNotReadyAddresses = true
	wantLines(t, describeService(svc, pods, nil, testNow), "Endpoints: 10.88.0.5:8080,10.88.0.6:8080,10.88.0.7:8080")

	more := append(pods, pod(3, "10.88.0.8", true))
	wantLines(t, describeService(svc, more, nil, testNow), "Endpoints: 10.88.0.5:8080,10.88.0.6:8080,10.88.0.7:8080 + 1 more...")
}

func TestDescribeNode(t *testing.T) {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", CreationTimestamp: ago(3 * time.Hour)},
		Spec: corev1.NodeSpec{
			Unschedulable: true,
			Taints:        []corev1.Taint{{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}},
			PodCIDR:       "10.88.1.0/24",
		},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady", Message: "agent is posting ready status"}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.10"}, {Type: corev1.NodeHostName, Address: "node-1"}},
			Capacity:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi")},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "stead-0.1.0", ContainerRuntimeVersion: "containerd://1.6.20"},
		},
	}
	finished := webPod(2, corev1.PodSucceeded)
	finished.Spec.NodeName = "node-1"
	elsewhere := webPod(1, corev1.PodRunning)
	elsewhere.Spec.NodeName = "node-2"
	here := webPod(0, corev1.PodRunning)
	here.Spec.NodeName = "node-1"
	pods := nodePods(n, []corev1.Pod{*here, *elsewhere, *finished})

	desc := describeNode(n, pods, []corev1.Event{}, testNow)
	wantLines(t, desc,
		"Name: node-1",
		"Roles: <none>",
		"Labels: <none>",
		"Annotations: <none>",
		"CreationTimestamp: Sun, 01 Mar 2026 09:00:00 +0000",
		"Taints: node.kubernetes.io/unschedulable:NoSchedule",
		"Unschedulable: true",
		"Conditions:",
		"  Type Status LastHeartbeatTime LastTransitionTime Reason Message",
		"Addresses:",
		"  InternalIP: 192.168.1.10",
		"  Hostname: node-1",
		"Capacity:",
		"  cpu: 4",
		"  memory: 8Gi",
		"System Info:",
		"  Container Runtime Version: containerd://1.6.20",
		"  Kubelet Version: stead-0.1.0",
		"PodCIDR: 10.88.1.0/24",
		"Non-terminated Pods: (1 in total)",
		"  Namespace Name Age",
		"  --------- ---- ---",
		"  default web-0 5m",
		"Events: <none>",
	)
}

func TestEventsFor(t *testing.T) {
	s := webSet()
	old := newEvent("StatefulSet", "web", "SuccessfulDelete", "about the set deleted before", time.Hour, 1)
	old.InvolvedObject.UID = "an-earlier-set"
	evs := []corev1.Event{
		newEvent("StatefulSet", "web", "SuccessfulCreate", "about web", time.Minute, 1),
		newEvent("Pod", "web", "Scheduled", "about a pod named web", time.Minute, 1),
		newEvent("StatefulSet", "db", "SuccessfulCreate", "about db", time.Minute, 1),
		old,
	}
	got := eventsFor(evs, "StatefulSet", s)
	if len(got) != 1 || got[0].Message != "about web" {
		t.Errorf("eventsFor(StatefulSet web) = %v, want only the event about web", got)
	}
}

func TestDescribeCommand(t *testing.T) {
	objs := testCluster()
	web := webSet()
	objs["statefulsets"] = []metav1.Object{web}
	objs["pods"] = []metav1.Object{webPod(0, corev1.PodRunning), webPod(1, corev1.PodPending), runningPod("db-0", time.Minute)}
	sc := newEvent("StatefulSet", "web", "SuccessfulCreate", "create Pod web-1 in StatefulSet web successful", time.Minute, 1)
	pe := newEvent("Pod", "web-0", "Started", "Started container nginx", 2*time.Minute, 1)
	objs["events"] = []metav1.Object{&sc, &pe}
	objs["namespaces"] = []metav1.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Status: corev1.NamespaceStatus{Phase: corev1.NamespaceActive}}}
	srv := httptest.NewServer(&fakeAPI{t: t, index: 3, objs: objs})
	defer srv.Close()
	c, err := api.NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		r := describeRun{opts: describeOptions{showEvents: true}, client: c, ns: "default", out: &out, errOut: &errOut, now: func() time.Time { return testNow }}
		err := r.run(context.Background(), args)
		return out.String(), err
	}

	t.Run("a set with its pods and its own events", func(t *testing.T) {
		desc, err := describe("sts", "web")
		if err != nil {
			t.Fatal(err)
		}
		wantLines(t, desc,
			"Name: web",
			"Pods Status: 1 Running / 1 Waiting / 0 Succeeded / 0 Failed",
			"  Normal SuccessfulCreate 60s statefulset-controller create Pod web-1 in StatefulSet web successful",
		)
		lackLines(t, desc, "Started container nginx")
	})

	t.Run("a name prefix describes every match", func(t *testing.T) {
		desc, err := describe("pods", "web")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(desc, "Name:") || !strings.Contains(desc, "\n\n\nName:") {
			t.Errorf("descriptions are not separated as kubectl separates them:\n%s", desc)
		}
		wantLines(t, desc, "Name: web-0", "  Normal Started 2m statefulset-controller Started container nginx", "Name: web-1", "Events: <none>")
		lackLines(t, desc, "db-0")
	})

	t.Run("TYPE/NAME", func(t *testing.T) {
		desc, err := describe("pod/web-1")
		if err != nil {
			t.Fatal(err)
		}
		wantLines(t, desc, "Name: web-1", "Status: Pending", "Controlled By: StatefulSet/web")
	})

	t.Run("kinds without a describer are printed as YAML", func(t *testing.T) {
		desc, err := describe("namespaces", "default")
		if err != nil {
			t.Fatal(err)
		}
		want := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: default\nspec: {}\nstatus:\n  phase: Active\n"
		if desc != want {
			t.Errorf("describe ns default:\n%s\nwant:\n%s", desc, want)
		}
	})

	t.Run("nothing matches", func(t *testing.T) {
		desc, err := describe("pods", "nope")
		if err == nil || err.Error() != `pods "nope" not found` {
			t.Errorf("describe pods nope = %v, want pods \"nope\" not found", err)
		}
		if desc != "" {
			t.Errorf("describe pods nope printed %q", desc)
		}
	})
}
