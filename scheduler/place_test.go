package scheduler

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Test fixtures for Place. Nodes are Ready with 4 CPU, 4Gi and 110 pods
// allocatable unless an option says otherwise; pods belong to the
// StatefulSet their name says ("web-1" to set "web", UID "uid-web") in
// namespace "default".

type plNodeOpt func(*corev1.Node)

func plNode(name string, opts ...plNodeOpt) *corev1.Node {
	n := &corev1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("4"),
				corev1.ResourceMemory: resource.MustParse("4Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func plCordoned(n *corev1.Node) { n.Spec.Unschedulable = true }

func plReady(s corev1.ConditionStatus) plNodeOpt {
	return func(n *corev1.Node) { n.Status.Conditions[0].Status = s }
}

func plNoConditions(n *corev1.Node) { n.Status.Conditions = nil }

func plAlloc(cpu, mem string) plNodeOpt {
	return func(n *corev1.Node) {
		n.Status.Allocatable[corev1.ResourceCPU] = resource.MustParse(cpu)
		n.Status.Allocatable[corev1.ResourceMemory] = resource.MustParse(mem)
	}
}

func plMaxPods(max string) plNodeOpt {
	return func(n *corev1.Node) { n.Status.Allocatable[corev1.ResourcePods] = resource.MustParse(max) }
}

func plNoPodsLimit(n *corev1.Node) { delete(n.Status.Allocatable, corev1.ResourcePods) }

func plLabels(kv ...string) plNodeOpt {
	return func(n *corev1.Node) {
		for i := 0; i < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
	}
}

func plTaint(key, value string, effect corev1.TaintEffect) plNodeOpt {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	}
}

type plPodOpt func(*corev1.Pod)

func plPod(name string, opts ...plPodOpt) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-pod-" + name)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodPending},
	}
	plOwner(setOf(name))(p)
	for _, o := range opts {
		o(p)
	}
	return p
}

func setOf(name string) string {
	return name[:strings.LastIndexByte(name, '-')]
}

// plOwner makes set the pod's controller and sets the app label to it.
func plOwner(set string) plPodOpt {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "StatefulSet", Name: set, UID: types.UID("uid-" + set), Controller: &yes,
		}}
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels["app"] = set
	}
}

func plNoOwner(p *corev1.Pod) { p.OwnerReferences = nil }

// plApp sets the pod's app label.
func plApp(app string) plPodOpt { return func(p *corev1.Pod) { p.Labels["app"] = app } }

func plNS(ns string) plPodOpt { return func(p *corev1.Pod) { p.Namespace = ns } }

func plOn(node string) plPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeName = node
		p.Status.Phase = corev1.PodRunning
	}
}

func plTerminating(p *corev1.Pod) {
	ts := metav1.Unix(1_700_000_000, 0)
	p.DeletionTimestamp = &ts
}

func plPhase(ph corev1.PodPhase) plPodOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func plList(cpu, mem string) corev1.ResourceList {
	l := corev1.ResourceList{}
	if cpu != "" {
		l[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		l[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return l
}

// plReq sets the requests of the first container.
func plReq(cpu, mem string) plPodOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Requests = plList(cpu, mem) }
}

// plLimit sets the limits of the first container.
func plLimit(cpu, mem string) plPodOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Limits = plList(cpu, mem) }
}

// plContainer adds an app container with requests.
func plContainer(cpu, mem string) plPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{
			Name: fmt.Sprintf("app%d", len(p.Spec.Containers)), Resources: corev1.ResourceRequirements{Requests: plList(cpu, mem)},
		})
	}
}

// plInit adds an init container with requests; sidecar makes it a
// restartable init container.
func plInit(cpu, mem string, sidecar bool) plPodOpt {
	return func(p *corev1.Pod) {
		c := corev1.Container{Name: fmt.Sprintf("init%d", len(p.Spec.InitContainers)), Resources: corev1.ResourceRequirements{Requests: plList(cpu, mem)}}
		if sidecar {
			always := corev1.ContainerRestartPolicyAlways
			c.RestartPolicy = &always
		}
		p.Spec.InitContainers = append(p.Spec.InitContainers, c)
	}
}

func plHostPort(port int32, proto corev1.Protocol, ip string) plPodOpt {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: proto, HostIP: ip})
	}
}

func plContainerPort(port int32) plPodOpt {
	return func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
}

func plHostNetwork(p *corev1.Pod) { p.Spec.HostNetwork = true }

func plSelector(kv ...string) plPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			p.Spec.NodeSelector[kv[i]] = kv[i+1]
		}
	}
}

func plExpr(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
}

// plNodeAffinity sets required node affinity; each argument is one term.
func plNodeAffinity(terms ...corev1.NodeSelectorTerm) plPodOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		p.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}
	}
}

func plTerm(exprs ...corev1.NodeSelectorRequirement) corev1.NodeSelectorTerm {
	return corev1.NodeSelectorTerm{MatchExpressions: exprs}
}

func plPodTerm(key, app string, namespaces ...string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		TopologyKey:   key,
		Namespaces:    namespaces,
	}
}

// plAntiAffinity adds required pod anti-affinity terms.
func plAntiAffinity(terms ...corev1.PodAffinityTerm) plPodOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		if p.Spec.Affinity.PodAntiAffinity == nil {
			p.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a := p.Spec.Affinity.PodAntiAffinity
		a.RequiredDuringSchedulingIgnoredDuringExecution = append(a.RequiredDuringSchedulingIgnoredDuringExecution, terms...)
	}
}

// plAffinity adds required pod affinity terms.
func plAffinity(terms ...corev1.PodAffinityTerm) plPodOpt {
	return func(p *corev1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &corev1.Affinity{}
		}
		if p.Spec.Affinity.PodAffinity == nil {
			p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{}
		}
		a := p.Spec.Affinity.PodAffinity
		a.RequiredDuringSchedulingIgnoredDuringExecution = append(a.RequiredDuringSchedulingIgnoredDuringExecution, terms...)
	}
}

func plTolerate(key string, op corev1.TolerationOperator, value string, effect corev1.TaintEffect) plPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: op, Value: value, Effect: effect})
	}
}

func plMount(claim string) plPodOpt {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{
			Name:         "v" + claim,
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}},
		})
	}
}

// plClaim returns a claim in namespace default, pinned to node unless node
// is empty.
func plClaim(name, node string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-claim-" + name)},
	}
	if node != "" {
		c.Annotations = map[string]string{AnnotationSelectedNode: node}
	}
	return c
}

func plNodes(names ...string) []*corev1.Node {
	out := make([]*corev1.Node, len(names))
	for i, n := range names {
		out[i] = plNode(n)
	}
	return out
}

// plSummary renders a result as lines: "ns/pod -> node" for assignments,
// then "ns/pod: Reason: message" for pods that fit nowhere.
func plSummary(r PlaceResult) []string {
	var out []string
	for _, a := range r.Assignments {
		out = append(out, a.Pod.String()+" -> "+a.Node)
	}
	for _, u := range r.Unschedulable {
		out = append(out, u.Pod.String()+": "+u.Reason+": "+u.Message)
	}
	return out
}

func plCheckLines(t *testing.T, got, want []string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("result:\n  got  %s\n  want %s", strings.Join(got, "\n       "), strings.Join(want, "\n       "))
	}
}

// plShuffled returns a copy of in with every slice in a random order.
func plShuffled(rng *rand.Rand, in PlaceInput) PlaceInput {
	out := PlaceInput{
		Pending: append([]*corev1.Pod(nil), in.Pending...),
		Nodes:   append([]*corev1.Node(nil), in.Nodes...),
		Pods:    append([]*corev1.Pod(nil), in.Pods...),
		Claims:  append([]*corev1.PersistentVolumeClaim(nil), in.Claims...),
	}
	rng.Shuffle(len(out.Pending), func(i, j int) { out.Pending[i], out.Pending[j] = out.Pending[j], out.Pending[i] })
	rng.Shuffle(len(out.Nodes), func(i, j int) { out.Nodes[i], out.Nodes[j] = out.Nodes[j], out.Nodes[i] })
	rng.Shuffle(len(out.Pods), func(i, j int) { out.Pods[i], out.Pods[j] = out.Pods[j], out.Pods[i] })
	rng.Shuffle(len(out.Claims), func(i, j int) { out.Claims[i], out.Claims[j] = out.Claims[j], out.Claims[i] })
	return out
}

func plDeepCopy(in PlaceInput) PlaceInput {
	var out PlaceInput
	for _, p := range in.Pending {
		out.Pending = append(out.Pending, p.DeepCopy())
	}
	for _, n := range in.Nodes {
		out.Nodes = append(out.Nodes, n.DeepCopy())
	}
	for _, p := range in.Pods {
		out.Pods = append(out.Pods, p.DeepCopy())
	}
	for _, c := range in.Claims {
		out.Claims = append(out.Claims, c.DeepCopy())
	}
	return out
}

type placeCase struct {
	name string
	in   PlaceInput
	want []string
}

// runPlaceCases checks each case's exact result, that the input is left
// unmodified, and that shuffling every input slice changes nothing.
func runPlaceCases(t *testing.T, cases []placeCase) {
	t.Helper()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := plDeepCopy(tc.in)
			got := Place(tc.in)
			plCheckLines(t, plSummary(got), tc.want)
			if !reflect.DeepEqual(tc.in, before) {
				t.Errorf("Place modified its input")
			}
			rng := rand.New(rand.NewSource(int64(i)))
			for range 10 {
				if again := Place(plShuffled(rng, tc.in)); !reflect.DeepEqual(again, got) {
					t.Fatalf("shuffled input gave another result:\n%s", strings.Join(plSummary(again), "\n"))
				}
			}
		})
	}
}

func TestPlaceSpread(t *testing.T) {
	web := func(ord int, opts ...plPodOpt) *corev1.Pod {
		return plPod(fmt.Sprintf("web-%d", ord), append([]plPodOpt{plReq("500m", "512Mi")}, opts...)...)
	}
	other := func(name, node, cpu string) *corev1.Pod {
		return plPod(name, plOn(node), plReq(cpu, ""))
	}
	runPlaceCases(t, []placeCase{
		{
			name: "ordinals of a set spread over equal nodes in ordinal order",
			in:   PlaceInput{Pending: []*corev1.Pod{web(2), web(0), web(1)}, Nodes: plNodes("c", "a", "b")},
			want: []string{"default/web-0 -> a", "default/web-1 -> b", "default/web-2 -> c"},
		},
		{
			name: "a fourth ordinal goes to the least loaded node",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(3)},
				Nodes:   plNodes("a", "b", "c"),
				Pods: []*corev1.Pod{
					web(0, plOn("a")), web(1, plOn("b")), web(2, plOn("c")),
					other("db-0", "a", "1"), other("db-1", "c", "2"),
				},
			},
			want: []string{"default/web-3 -> b"},
		},
		{
			name: "spread comes before load, load before name",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0), web(1), web(2), web(3)},
				Nodes:   plNodes("a", "b", "c"),
				Pods:    []*corev1.Pod{other("db-0", "a", "1"), other("db-1", "c", "2")},
			},
			// web-0: empty b. web-1: a (1 CPU) over c (2 CPU), b already
			// has web-0. web-2: c, the only node without web. web-3: every
			// node has one; b is the least loaded.
			want: []string{"default/web-0 -> b", "default/web-1 -> a", "default/web-2 -> c", "default/web-3 -> b"},
		},
		{
			name: "pods of another set do not count for spreading",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a")), plPod("db-1", plOn("a")), web(5, plOn("b"))},
			},
			want: []string{"default/web-0 -> a"},
		},
		{
			name: "pods without an owner spread by their labels",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("solo-1", plNoOwner)},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("solo-0", plNoOwner, plOn("a")), plPod("x-0", plOn("b"), plReq("1", "1Gi"))},
			},
			want: []string{"default/solo-1 -> b"},
		},
		{
			// a-0 and z-0 have no owner and the same labels: one group,
			// whose pods are placed with m-0 between them.
			name: "a group's pods spread when other pods are placed between them",
			in: PlaceInput{
				Pending: []*corev1.Pod{
					plPod("z-0", plNoOwner, plApp("solo")), plPod("m-0"), plPod("a-0", plNoOwner, plApp("solo")),
				},
				Nodes: plNodes("a", "b"),
			},
			// a-0: a, by name. m-0: b, less loaded. z-0: b, where no solo pod is.
			want: []string{"default/a-0 -> a", "default/m-0 -> b", "default/z-0 -> b"},
		},
		{
			name: "placement order is namespace, set, numeric ordinal",
			in: PlaceInput{
				// Room for two pods of 1Gi on the only node.
				Pending: []*corev1.Pod{
					web(10, plReq("", "1Gi")), web(2, plReq("", "1Gi")), web(1, plReq("", "1Gi")),
					plPod("api-0", plNS("zzz"), plReq("", "1Gi")),
				},
				Nodes: []*corev1.Node{plNode("a", plAlloc("4", "2Gi"))},
			},
			want: []string{
				"default/web-1 -> a", "default/web-2 -> a",
				"default/web-10: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.",
				"zzz/api-0: Unschedulable: 0/1 nodes are available: 1 Insufficient memory.",
			},
		},
		{
			name: "pods with a node or terminating are not placed",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0, plOn("a")), web(1, plTerminating), web(2)},
				Nodes:   plNodes("a", "b"),
			},
			want: []string{"default/web-2 -> a"},
		},
		{
			name: "no nodes at all",
			in:   PlaceInput{Pending: []*corev1.Pod{web(0)}},
			want: []string{"default/web-0: Unschedulable: no nodes available to schedule pods"},
		},
	})
}

func TestPlaceResources(t *testing.T) {
	small := plAlloc("2", "1Gi")
	// b is busy on CPU, so a pod whose memory request were not seen would
	// go to a.
	busyB := plPod("db-0", plOn("b"), plReq("3", ""))
	ab := func() []*corev1.Node {
		return []*corev1.Node{plNode("a", plAlloc("4", "2Gi")), plNode("b", plAlloc("4", "4Gi"))}
	}
	runPlaceCases(t, []placeCase{
		{
			name: "insufficient memory counted with a cordoned node",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("100m", "2Gi"))},
				Nodes:   []*corev1.Node{plNode("a", small), plNode("b", small), plNode("c", plCordoned)},
			},
			want: []string{"default/web-0: Unschedulable: 0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."},
		},
		{
			name: "one reason per resource short",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("3", "2Gi"))},
				Nodes:   []*corev1.Node{plNode("a", small), plNode("b", plAlloc("2", "8Gi"))},
			},
			want: []string{"default/web-0: Unschedulable: 0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu."},
		},
		{
			name: "requests of bound pods and earlier assignments add up",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("1", "")), plPod("web-1", plReq("1", "")), plPod("web-2", plReq("1", ""))},
				Nodes:   []*corev1.Node{plNode("a", plAlloc("3", "1Gi")), plNode("b", plAlloc("3", "1Gi"))},
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plReq("2", "")), plPod("db-1", plOn("b"), plReq("1500m", ""))},
			},
			// web-0 goes to the less loaded b, web-1 spreads to a; then
			// neither has a CPU left.
			want: []string{
				"default/web-0 -> b", "default/web-1 -> a",
				"default/web-2: Unschedulable: 0/2 nodes are available: 2 Insufficient cpu.",
			},
		},
		{
			name: "pod count limit",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0"), plPod("web-1")},
				Nodes:   []*corev1.Node{plNode("a", plMaxPods("2")), plNode("b", plNoPodsLimit)},
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a")), plPod("db-1", plOn("b")), plPod("db-2", plOn("b"))},
			},
			// web-0 spreads to a (no web pod yet, less loaded); a is then full.
			want: []string{"default/web-0 -> a", "default/web-1 -> b"},
		},
		{
			name: "too many pods",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0")},
				Nodes:   []*corev1.Node{plNode("a", plMaxPods("1"))},
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"))},
			},
			want: []string{"default/web-0: Unschedulable: 0/1 nodes are available: 1 Too many pods."},
		},
		{
			name: "a pod that requests nothing fits a full node",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0")},
				Nodes:   []*corev1.Node{plNode("a", plAlloc("1", "1Gi"))},
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plReq("1", "1Gi"))},
			},
			want: []string{"default/web-0 -> a"},
		},
		{
			name: "requests default to limits",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plLimit("", "3Gi")), plPod("big-0", plLimit("", "5Gi"))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> b", "default/big-0: Unschedulable: 0/2 nodes are available: 2 Insufficient memory."},
		},
		{
			name: "an explicit request wins over the limit",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "1Gi"), plLimit("", "3Gi"))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> a"},
		},
		{
			name: "an init container needing more than the app containers sets the request",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "1Gi"), plInit("", "3Gi", false))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "app containers add up and win over a smaller init container",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "1536Mi"), plContainer("", "1536Mi"), plInit("", "1Gi", false))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "init containers run one at a time",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "1Gi"), plInit("", "1536Mi", false), plInit("", "1536Mi", false))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> a"},
		},
		{
			name: "sidecars run alongside the app containers",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "1536Mi"), plInit("", "1Gi", true))},
				Nodes:   ab(),
				Pods:    []*corev1.Pod{busyB},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "terminating pods still hold their resources, finished pods do not",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "3Gi")), plPod("web-1", plReq("", "3Gi"))},
				Nodes:   []*corev1.Node{plNode("a", plAlloc("4", "4Gi")), plNode("b", plAlloc("4", "4Gi"))},
				Pods: []*corev1.Pod{
					plPod("db-0", plOn("a"), plReq("", "3Gi"), plTerminating),
					plPod("db-1", plOn("b"), plReq("", "3Gi"), plPhase(corev1.PodFailed)),
				},
			},
			want: []string{"default/web-0 -> b", "default/web-1: Unschedulable: 0/2 nodes are available: 2 Insufficient memory."},
		},
		{
			name: "pods bound to unknown nodes are ignored",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "2Gi"))},
				Nodes:   []*corev1.Node{plNode("a", plAlloc("4", "2Gi"))},
				Pods:    []*corev1.Pod{plPod("db-0", plOn("gone"), plReq("", "2Gi"))},
			},
			want: []string{"default/web-0 -> a"},
		},
	})
}

func TestPlaceNodeState(t *testing.T) {
	runPlaceCases(t, []placeCase{
		{
			name: "cordoned and not ready nodes are excluded",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0")},
				Nodes: []*corev1.Node{
					plNode("a", plCordoned), plNode("b", plReady(corev1.ConditionFalse)),
					plNode("c", plReady(corev1.ConditionUnknown)), plNode("d", plNoConditions), plNode("e"),
				},
			},
			want: []string{"default/web-0 -> e"},
		},
		{
			name: "no ready node",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0")},
				Nodes: []*corev1.Node{
					plNode("a", plCordoned), plNode("b", plReady(corev1.ConditionFalse)),
					plNode("c", plReady(corev1.ConditionUnknown)), plNode("d", plNoConditions),
				},
			},
			want: []string{"default/web-0: Unschedulable: 0/4 nodes are available: 1 node(s) were unschedulable, 3 node(s) had untolerated taint(s)."},
		},
		{
			name: "a cordoned node is reported as cordoned even when not ready",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0")},
				Nodes:   []*corev1.Node{plNode("a", plCordoned, plReady(corev1.ConditionFalse))},
			},
			want: []string{"default/web-0: Unschedulable: 0/1 nodes are available: 1 node(s) were unschedulable."},
		},
		{
			name: "out of service excludes even a pod that tolerates everything",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plTolerate("", corev1.TolerationOpExists, "", ""))},
				Nodes:   []*corev1.Node{plNode("a", plTaint(corev1.TaintNodeOutOfService, "nodeshutdown", corev1.TaintEffectNoExecute)), plNode("b")},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "taints need a toleration; PreferNoSchedule does not",
			in: PlaceInput{
				Pending: []*corev1.Pod{
					plPod("web-0"),
					plPod("db-0", plTolerate("dedicated", corev1.TolerationOpEqual, "db", corev1.TaintEffectNoSchedule)),
					plPod("ex-0", plTolerate("dedicated", corev1.TolerationOpExists, "", "")),
					plPod("wrong-0", plTolerate("dedicated", corev1.TolerationOpEqual, "web", corev1.TaintEffectNoSchedule)),
				},
				Nodes: []*corev1.Node{
					plNode("a", plTaint("dedicated", "db", corev1.TaintEffectNoSchedule)),
					plNode("b", plTaint("dedicated", "db", corev1.TaintEffectNoExecute)),
					plNode("c", plTaint("dedicated", "db", corev1.TaintEffectPreferNoSchedule), plCordoned),
				},
			},
			want: []string{
				"default/db-0 -> a", "default/ex-0 -> b",
				"default/web-0: Unschedulable: 0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s).",
				"default/wrong-0: Unschedulable: 0/3 nodes are available: 1 node(s) were unschedulable, 2 node(s) had untolerated taint(s).",
			},
		},
	})
}

func TestPlaceNodeAffinity(t *testing.T) {
	nodes := func() []*corev1.Node {
		return []*corev1.Node{
			plNode("a", plLabels("zone", "z1", "gen", "3")),
			plNode("b", plLabels("zone", "z2", "gen", "5", "gpu", "")),
			plNode("c", plLabels("zone", "z3", "gen", "7", "disk", "ssd")),
		}
	}
	one := func(name string, opt plPodOpt, want string) placeCase {
		return placeCase{name: name, in: PlaceInput{Pending: []*corev1.Pod{plPod("web-0", opt)}, Nodes: nodes()}, want: []string{want}}
	}
	const none = "default/web-0: Unschedulable: 0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
	runPlaceCases(t, []placeCase{
		one("nodeSelector", plSelector("disk", "ssd"), "default/web-0 -> c"),
		one("nodeSelector with two labels", plSelector("zone", "z3", "disk", "ssd"), "default/web-0 -> c"),
		one("nodeSelector matching nothing", plSelector("disk", "hdd"), none),
		one("In", plNodeAffinity(plTerm(plExpr("zone", corev1.NodeSelectorOpIn, "z2", "z3"))), "default/web-0 -> b"),
		one("NotIn", plNodeAffinity(plTerm(plExpr("zone", corev1.NodeSelectorOpNotIn, "z1", "z2"))), "default/web-0 -> c"),
		one("NotIn matches nodes without the label", plNodeAffinity(plTerm(plExpr("disk", corev1.NodeSelectorOpNotIn, "ssd"))), "default/web-0 -> a"),
		one("Exists", plNodeAffinity(plTerm(plExpr("gpu", corev1.NodeSelectorOpExists))), "default/web-0 -> b"),
		one("DoesNotExist", plNodeAffinity(plTerm(
			plExpr("gpu", corev1.NodeSelectorOpDoesNotExist), plExpr("zone", corev1.NodeSelectorOpIn, "z2", "z3"),
		)), "default/web-0 -> c"),
		one("Gt", plNodeAffinity(plTerm(plExpr("gen", corev1.NodeSelectorOpGt, "5"))), "default/web-0 -> c"),
		one("Lt", plNodeAffinity(plTerm(plExpr("gen", corev1.NodeSelectorOpLt, "5"))), "default/web-0 -> a"),
		one("Gt with a value that is not a number matches nothing", plNodeAffinity(plTerm(plExpr("gen", corev1.NodeSelectorOpGt, "x"))), none),
		one("terms are ORed", plNodeAffinity(
			plTerm(plExpr("zone", corev1.NodeSelectorOpIn, "z9")),
			plTerm(plExpr("gen", corev1.NodeSelectorOpGt, "6")),
		), "default/web-0 -> c"),
		one("matchFields on the node name", plNodeAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{
			plExpr(metav1.ObjectNameField, corev1.NodeSelectorOpIn, "b"),
		}}), "default/web-0 -> b"),
		one("an empty term matches nothing", plNodeAffinity(corev1.NodeSelectorTerm{}), none),
		one("nodeSelector and affinity both apply", func(p *corev1.Pod) {
			plSelector("zone", "z1")(p)
			plNodeAffinity(plTerm(plExpr("gen", corev1.NodeSelectorOpGt, "4")))(p)
		}, none),
		{
			name: "node affinity counted with resources",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plReq("", "8Gi"), plSelector("zone", "z1"))},
				Nodes:   nodes(),
			},
			want: []string{"default/web-0: Unschedulable: 0/3 nodes are available: 1 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector."},
		},
	})
}

func TestPlaceHostPorts(t *testing.T) {
	runPlaceCases(t, []placeCase{
		{
			name: "a host port in use moves the pod to another node",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plHostPort(8080, corev1.ProtocolTCP, ""))},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plHostPort(8080, "", "")), plPod("db-1", plOn("b"), plReq("3", "3Gi"))},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "an assignment earlier in the same call takes its port",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("x-0", plHostPort(9000, "", "")), plPod("y-0", plHostPort(9000, "", ""))},
				Nodes:   plNodes("a"),
			},
			want: []string{
				"default/x-0 -> a",
				"default/y-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
			},
		},
		{
			name: "other protocol or other address does not conflict, any address does",
			in: PlaceInput{
				Pending: []*corev1.Pod{
					plPod("udp-0", plHostPort(53, corev1.ProtocolUDP, "")),
					plPod("ip-0", plHostPort(80, "", "10.0.0.2")),
					plPod("any-0", plHostPort(80, "", "0.0.0.0")),
				},
				Nodes: plNodes("a"),
				Pods:  []*corev1.Pod{plPod("db-0", plOn("a"), plHostPort(53, corev1.ProtocolTCP, ""), plHostPort(80, "", "10.0.0.1"))},
			},
			want: []string{
				"default/ip-0 -> a", "default/udp-0 -> a",
				"default/any-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
			},
		},
		{
			name: "terminating pods still hold their ports",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plHostPort(8080, "", ""))},
				Nodes:   plNodes("a"),
				Pods:    []*corev1.Pod{plPod("web-9", plOn("a"), plHostPort(8080, "", ""), plTerminating)},
			},
			want: []string{"default/web-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		},
		{
			name: "container ports of host-network pods are host ports",
			in: PlaceInput{
				Pending: []*corev1.Pod{
					plPod("net-0", plHostNetwork, plContainerPort(80)),
					plPod("pod-0", plContainerPort(80)),
					plPod("port-0", plHostPort(80, "", "")),
				},
				Nodes: plNodes("a"),
				Pods:  []*corev1.Pod{plPod("db-0", plOn("a"), plHostNetwork, plContainerPort(5432))},
			},
			want: []string{
				"default/net-0 -> a", "default/pod-0 -> a",
				"default/port-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
			},
		},
		{
			name: "host-network pods conflict with each other",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("pg-0", plHostNetwork, plContainerPort(5432))},
				Nodes:   plNodes("a"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plHostNetwork, plContainerPort(5432))},
			},
			want: []string{"default/pg-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports."},
		},
	})
}

func TestPlacePodAffinity(t *testing.T) {
	host := corev1.LabelHostname
	web := func(ord int, opts ...plPodOpt) *corev1.Pod {
		return plPod(fmt.Sprintf("web-%d", ord), append([]plPodOpt{plAntiAffinity(plPodTerm(host, "web"))}, opts...)...)
	}
	// b is loaded, so that load alone would send a pod to a.
	loadB := plPod("load-0", plOn("b"), plReq("3", "3Gi"))
	runPlaceCases(t, []placeCase{
		{
			name: "anti-affinity on hostname keeps ordinals apart, also within one call",
			in:   PlaceInput{Pending: []*corev1.Pod{web(0), web(1), web(2)}, Nodes: plNodes("a", "b")},
			want: []string{
				"default/web-0 -> a", "default/web-1 -> b",
				"default/web-2: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.",
			},
		},
		{
			name: "anti-affinity against another set's pods",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0", plAntiAffinity(plPodTerm(host, "db")))},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a")), loadB},
			},
			want: []string{"default/cache-0 -> b"},
		},
		{
			name: "anti-affinity counts terminating pods",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{web(0, plOn("a"), plTerminating, plReq("", "")), loadB},
			},
			want: []string{"default/web-0 -> b"},
		},
		{
			name: "anti-affinity looks in the pod's own namespace by default",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0", plAntiAffinity(plPodTerm(host, "db")))},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plNS("other")), loadB},
			},
			want: []string{"default/cache-0 -> a"},
		},
		{
			name: "anti-affinity in named namespaces",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0", plAntiAffinity(plPodTerm(host, "db", "other")))},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plNS("other")), loadB},
			},
			want: []string{"default/cache-0 -> b"},
		},
		{
			name: "an existing pod's anti-affinity keeps the pod away",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0")},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plAntiAffinity(plPodTerm(host, "cache"))), loadB},
			},
			want: []string{"default/cache-0 -> b"},
		},
		{
			name: "an existing pod's anti-affinity is reported as such",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0")},
				Nodes:   plNodes("a"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("a"), plAntiAffinity(plPodTerm(host, "cache")))},
			},
			want: []string{"default/cache-0: Unschedulable: 0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."},
		},
		{
			name: "anti-affinity on a zone label",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("cache-0", plAntiAffinity(plPodTerm("zone", "db")))},
				Nodes: []*corev1.Node{
					plNode("a", plLabels("zone", "z1")), plNode("b", plLabels("zone", "z1")),
					plNode("c", plLabels("zone", "z2"), plAlloc("8", "8Gi")), plNode("d"),
				},
				Pods: []*corev1.Pod{plPod("db-0", plOn("b")), plPod("load-0", plOn("c"), plReq("7", "7Gi")), plPod("load-1", plOn("d"), plReq("3", "3Gi"))},
			},
			// a shares b's zone; c and d qualify (d has no zone at all); d
			// is less loaded.
			want: []string{"default/cache-0 -> d"},
		},
		{
			name: "affinity on hostname follows the pods it selects",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("sidecar-0", plAffinity(plPodTerm(host, "db")))},
				Nodes:   plNodes("a", "b", "c"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("c"), plReq("3", "3Gi"))},
			},
			want: []string{"default/sidecar-0 -> c"},
		},
		{
			name: "affinity with no matching pod anywhere",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("sidecar-0", plAffinity(plPodTerm(host, "db")))},
				Nodes:   plNodes("a", "b"),
			},
			want: []string{"default/sidecar-0: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match pod affinity rules."},
		},
		{
			name: "the first pod of a group with affinity to itself goes anywhere, the next follow it",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plAffinity(plPodTerm(host, "web"))), plPod("web-1", plAffinity(plPodTerm(host, "web")))},
				Nodes:   plNodes("a", "b"),
			},
			want: []string{"default/web-0 -> a", "default/web-1 -> a"},
		},
	})
}

func TestPlaceLocalVolumes(t *testing.T) {
	web := func(ord int) *corev1.Pod {
		return plPod(fmt.Sprintf("web-%d", ord), plMount(fmt.Sprintf("www-web-%d", ord)))
	}
	runPlaceCases(t, []placeCase{
		{
			name: "a local volume pins its ordinal, against spreading",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0), web(1), web(2)},
				Nodes:   plNodes("a", "b", "c"),
				Claims:  []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "c"), plClaim("www-web-1", "c"), plClaim("www-web-2", "")},
			},
			want: []string{"default/web-0 -> c", "default/web-1 -> c", "default/web-2 -> a"},
		},
		{
			name: "pinned to a node that is not ready",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   []*corev1.Node{plNode("a"), plNode("b"), plNode("c", plReady(corev1.ConditionFalse))},
				Claims:  []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "c")},
			},
			want: []string{"default/web-0: Unschedulable: 0/3 nodes are available: 1 node(s) had untolerated taint(s), 2 node(s) didn't match PersistentVolume's node affinity."},
		},
		{
			name: "pinned to a node that is gone",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   plNodes("a", "b"),
				Claims:  []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "c")},
			},
			want: []string{"default/web-0: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match PersistentVolume's node affinity."},
		},
		{
			name: "pinned to a full node",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plMount("www-web-0"), plReq("", "1Gi"))},
				Nodes:   plNodes("a", "b"),
				Pods:    []*corev1.Pod{plPod("db-0", plOn("b"), plReq("", "4Gi"))},
				Claims:  []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "b")},
			},
			want: []string{"default/web-0: Unschedulable: 0/2 nodes are available: 1 Insufficient memory, 1 node(s) didn't match PersistentVolume's node affinity."},
		},
		{
			name: "two claims pinned to different nodes",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plMount("www-web-0"), plMount("log-web-0"))},
				Nodes:   plNodes("a", "b"),
				Claims:  []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "a"), plClaim("log-web-0", "b")},
			},
			want: []string{"default/web-0: Unschedulable: 0/2 nodes are available: 2 node(s) didn't match PersistentVolume's node affinity."},
		},
		{
			name: "a claim of another namespace does not pin",
			in: PlaceInput{
				Pending: []*corev1.Pod{plPod("web-0", plNS("prod"), plMount("www-web-0")), web(0)},
				Nodes:   plNodes("a", "b"),
				Claims: []*corev1.PersistentVolumeClaim{plClaim("www-web-0", "b"), func() *corev1.PersistentVolumeClaim {
					c := plClaim("www-web-0", "")
					c.Namespace, c.UID = "prod", "uid-prod-www"
					return c
				}()},
			},
			want: []string{"default/web-0 -> b", "prod/web-0 -> a"},
		},
		{
			name: "a missing claim keeps the pod pending",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   plNodes("a", "b", "c"),
			},
			want: []string{`default/web-0: Unschedulable: 0/3 nodes are available: persistentvolumeclaim "www-web-0" not found.`},
		},
		{
			name: "a claim being deleted keeps the pod pending",
			in: PlaceInput{
				Pending: []*corev1.Pod{web(0)},
				Nodes:   plNodes("a"),
				Claims: []*corev1.PersistentVolumeClaim{func() *corev1.PersistentVolumeClaim {
					c := plClaim("www-web-0", "a")
					ts := metav1.Unix(1_700_000_000, 0)
					c.DeletionTimestamp = &ts
					return c
				}()},
			},
			want: []string{`default/web-0: Unschedulable: 0/1 nodes are available: persistentvolumeclaim "www-web-0" is being deleted.`},
		},
	})
}

func TestPlaceRequests(t *testing.T) {
	cases := []struct {
		name     string
		pod      *corev1.Pod
		milliCPU int64
		memory   int64
	}{
		{"nothing requested", plPod("w-0"), 0, 0},
		{"requests", plPod("w-0", plReq("250m", "64Mi")), 250, 64 << 20},
		{"limits only", plPod("w-0", plLimit("1", "1Gi")), 1000, 1 << 30},
		{"request and limit", plPod("w-0", plReq("100m", ""), plLimit("1", "1Gi")), 100, 1 << 30},
		{"containers add up", plPod("w-0", plReq("250m", "64Mi"), plContainer("750m", "64Mi")), 1000, 128 << 20},
		{"init max per resource", plPod("w-0", plReq("1", "64Mi"), plInit("500m", "1Gi", false)), 1000, 1 << 30},
		{"sidecar adds to apps and to later inits", plPod("w-0", plReq("1", "64Mi"), plInit("100m", "64Mi", true), plInit("2", "64Mi", false)), 2100, 128 << 20},
		{"overhead", func() *corev1.Pod {
			p := plPod("w-0", plReq("1", "64Mi"))
			p.Spec.Overhead = plList("100m", "16Mi")
			return p
		}(), 1100, 80 << 20},
		{"pod-level resources", func() *corev1.Pod {
			p := plPod("w-0", plReq("1", "64Mi"))
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: plList("3", "")}
			return p
		}(), 3000, 64 << 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := podRequests(tc.pod, false)
			if got.milliCPU != tc.milliCPU || got.memory != tc.memory {
				t.Errorf("podRequests = %dm CPU %d bytes, want %dm %d", got.milliCPU, got.memory, tc.milliCPU, tc.memory)
			}
		})
	}
}

func TestPlaceFitMessageSortsAsStrings(t *testing.T) {
	// kube-scheduler sorts "count reason" as strings: 10 before 2.
	got := fitMessage(12, map[string]int{"Insufficient memory": 2, reasonUnschedulable: 10})
	want := "0/12 nodes are available: 10 node(s) were unschedulable, 2 Insufficient memory."
	if got != want {
		t.Errorf("fitMessage = %q, want %q", got, want)
	}
}

func TestFeasibleNodesToFind(t *testing.T) {
	for _, tc := range []struct{ nodes, want int }{
		{0, 0}, {3, 3}, {100, 100}, {101, 100}, {250, 120}, {1000, 420}, {5000, 500}, {6000, 300}, {20000, 1000},
	} {
		if got := feasibleNodesToFind(tc.nodes); got != tc.want {
			t.Errorf("feasibleNodesToFind(%d) = %d, want %d", tc.nodes, got, tc.want)
		}
	}
}

// TestPlaceManyNodes: on 1,000 equal nodes Place looks at 420 passing
// nodes per pod, each search starting where the last stopped; a set's
// ordinals still land on distinct nodes, sets do not pile onto the first
// nodes by name, and a pod that fits nowhere counts every node.
func TestPlaceManyNodes(t *testing.T) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("n%04d", i)
	}
	var pending []*corev1.Pod
	for s := range 20 {
		for ord := range 10 {
			pending = append(pending, plPod(fmt.Sprintf("s%02d-%d", s, ord), plOwner(fmt.Sprintf("s%02d", s)), plReq("100m", "64Mi")))
		}
	}
	pending = append(pending, plPod("huge-0", plReq("1000", "")))
	res := Place(PlaceInput{Pending: pending, Nodes: plNodes(names...)})
	if len(res.Assignments) != 200 {
		t.Fatalf("%d assignments, want 200; unschedulable: %v", len(res.Assignments), res.Unschedulable)
	}
	// Every node starts empty, so each pod takes an empty node: the 200
	// pods take 200 distinct nodes.
	used := map[string]string{}
	for _, a := range res.Assignments {
		if other, ok := used[a.Node]; ok {
			t.Errorf("%s and %s both on %s", other, a.Pod.Name, a.Node)
		}
		used[a.Node] = a.Pod.Name
	}
	// The first search (n0000..n0419) picks n0000, the second starts at
	// n0420 and picks it.
	if got := res.Assignments[0].Node + "," + res.Assignments[1].Node; got != "n0000,n0420" {
		t.Errorf("first two pods on %s, want n0000,n0420", got)
	}
	want := "0/1000 nodes are available: 1000 Insufficient cpu."
	if len(res.Unschedulable) != 1 || res.Unschedulable[0].Message != want {
		t.Errorf("unschedulable %+v, want huge-0 with %q", res.Unschedulable, want)
	}
}
