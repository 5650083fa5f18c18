package scheduler

import (
	"flag"
	"fmt"
	"math/rand"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

var (
	placeSeed   = flag.Int64("place.seed", 0, "seed of the random Place clusters (0 picks one from the clock)")
	placeRounds = flag.Int("place.rounds", 400, "random clusters TestPlaceRandom tries")
)

// TestPlaceRandom places random pods on random clusters and checks, with a
// second, plainer implementation of the rules, that every assignment was
// feasible when it was made, that the node chosen had the fewest pods of the
// pod's set among the feasible ones, that a pod left pending fit nowhere,
// that no node ends over-committed, and that the input's order does not
// matter. Replay a failure with -place.seed.
func TestPlaceRandom(t *testing.T) {
	seed := *placeSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	rounds := *placeRounds
	if testing.Short() {
		rounds /= 4
	}
	t.Logf("seed %d (replay with: go test ./scheduler -run TestPlaceRandom -place.seed %d)", seed, seed)
	rng := rand.New(rand.NewSource(seed))
	seen := map[string]int{}
	for round := range rounds {
		in := randomCluster(rng)
		before := plDeepCopy(in)
		got := Place(in)
		if !reflect.DeepEqual(in, before) {
			t.Fatalf("round %d: Place modified its input", round)
		}
		if err := checkPlacement(in, got, seen); err != nil {
			t.Fatalf("round %d: %v\ninput:\n%s\nresult:\n%s", round, err, describeInput(in), strings.Join(plSummary(got), "\n"))
		}
		for range 3 {
			if again := Place(plShuffled(rng, in)); !reflect.DeepEqual(again, got) {
				t.Fatalf("round %d: shuffled input gave another result:\n%s\nwant:\n%s", round,
					strings.Join(plSummary(again), "\n"), strings.Join(plSummary(got), "\n"))
			}
		}
	}
	t.Logf("exercised: %v", seen)
}

func randomCluster(rng *rand.Rand) PlaceInput {
	var in PlaceInput
	nodes := 1 + rng.Intn(6)
	for i := range nodes {
		opts := []plNodeOpt{
			plAlloc(strconv.Itoa(1+rng.Intn(8)), fmt.Sprintf("%dGi", 1+rng.Intn(12))),
			plLabels("zone", fmt.Sprintf("z%d", rng.Intn(3)), "gen", strconv.Itoa(rng.Intn(10))),
		}
		switch rng.Intn(12) {
		case 0:
			opts = append(opts, plReady(corev1.ConditionFalse))
		case 1:
			opts = append(opts, plReady(corev1.ConditionUnknown))
		case 2:
			opts = append(opts, plNoConditions)
		}
		if rng.Intn(10) == 0 {
			opts = append(opts, plCordoned)
		}
		if rng.Intn(20) == 0 {
			opts = append(opts, plTaint(corev1.TaintNodeOutOfService, "nodeshutdown", corev1.TaintEffectNoExecute))
		}
		if rng.Intn(6) == 0 {
			opts = append(opts, plTaint("dedicated", "db", corev1.TaintEffectNoSchedule))
		}
		switch rng.Intn(3) {
		case 0:
			opts = append(opts, plMaxPods(strconv.Itoa(2+rng.Intn(6))))
		case 1:
			opts = append(opts, plNoPodsLimit)
		}
		in.Nodes = append(in.Nodes, plNode(fmt.Sprintf("n%d", i), opts...))
	}

	sets := []string{"web", "db", "cache"}
	used := map[string]bool{}
	name := func() string {
		for {
			n := api.ReplicaName(sets[rng.Intn(len(sets))], rng.Intn(12))
			if !used[n] {
				used[n] = true
				return n
			}
		}
	}
	// Bound pods, each within what its node has left, so that the cluster
	// starts without over-commitment.
	bound := rng.Intn(10)
	for range bound {
		n := in.Nodes[rng.Intn(len(in.Nodes))]
		p := randomPod(rng, name(), n.Name)
		if !refFitsResources(p, n, podsOn(in.Pods, n.Name)) {
			continue
		}
		switch rng.Intn(8) {
		case 0:
			plTerminating(p)
		case 1:
			plPhase(corev1.PodFailed)(p)
		}
		in.Pods = append(in.Pods, p)
	}
	pending := 1 + rng.Intn(10)
	for range pending {
		p := randomPod(rng, name(), "")
		if rng.Intn(3) == 0 {
			claim := api.VolumeName("data", setOf(p.Name), ordinalOfName(p.Name))
			plMount(claim)(p)
			switch rng.Intn(5) {
			case 0: // missing
			case 1:
				in.Claims = append(in.Claims, plClaim(claim, ""))
			default:
				in.Claims = append(in.Claims, plClaim(claim, fmt.Sprintf("n%d", rng.Intn(nodes+1))))
			}
		}
		in.Pending = append(in.Pending, p)
	}
	return in
}

func ordinalOfName(name string) int {
	_, ord, _ := api.ParseOrdinal(name)
	return ord
}

func randomPod(rng *rand.Rand, name, node string) *corev1.Pod {
	var opts []plPodOpt
	cpu := []string{"", "100m", "500m", "1", "2"}[rng.Intn(5)]
	mem := []string{"", "256Mi", "1Gi", "2Gi"}[rng.Intn(4)]
	if rng.Intn(4) == 0 {
		opts = append(opts, plLimit(cpu, mem))
	} else {
		opts = append(opts, plReq(cpu, mem))
	}
	if rng.Intn(5) == 0 {
		opts = append(opts, plInit([]string{"", "1", "3"}[rng.Intn(3)], []string{"", "512Mi", "3Gi"}[rng.Intn(3)], false))
	}
	if rng.Intn(5) == 0 {
		opts = append(opts, plHostPort([]int32{80, 443}[rng.Intn(2)], []corev1.Protocol{"", corev1.ProtocolUDP}[rng.Intn(2)], ""))
	}
	if rng.Intn(8) == 0 {
		opts = append(opts, plHostNetwork, plContainerPort([]int32{80, 443}[rng.Intn(2)]))
	}
	if rng.Intn(5) == 0 {
		opts = append(opts, plSelector("zone", fmt.Sprintf("z%d", rng.Intn(3))))
	}
	if rng.Intn(5) == 0 {
		opts = append(opts, plNodeAffinity(plTerm(plExpr("gen", corev1.NodeSelectorOpGt, strconv.Itoa(rng.Intn(10))))))
	}
	if rng.Intn(4) == 0 {
		opts = append(opts, plAntiAffinity(plPodTerm(corev1.LabelHostname, []string{"web", "db", "cache"}[rng.Intn(3)])))
	}
	if rng.Intn(4) == 0 {
		opts = append(opts, plTolerate("dedicated", corev1.TolerationOpEqual, "db", corev1.TaintEffectNoSchedule))
	}
	if node != "" {
		opts = append(opts, plOn(node))
	}
	return plPod(name, opts...)
}

func podsOn(pods []*corev1.Pod, node string) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == node && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			out = append(out, p)
		}
	}
	return out
}

// The reference rules, written plainly for the shapes randomCluster makes:
// one app container with requests or limits, at most one init container,
// hostPort on the first container, nodeSelector, one Gt node affinity,
// hostname anti-affinity on the app label in the pod's namespace.

func refQuantity(c corev1.Container, name corev1.ResourceName) resource.Quantity {
	if q, ok := c.Resources.Requests[name]; ok {
		return q
	}
	return c.Resources.Limits[name]
}

func refRequests(p *corev1.Pod) (milliCPU, memory int64) {
	for _, c := range p.Spec.Containers {
		cq, mq := refQuantity(c, corev1.ResourceCPU), refQuantity(c, corev1.ResourceMemory)
		milliCPU += cq.MilliValue()
		memory += mq.Value()
	}
	for _, c := range p.Spec.InitContainers {
		cq, mq := refQuantity(c, corev1.ResourceCPU), refQuantity(c, corev1.ResourceMemory)
		milliCPU = max(milliCPU, cq.MilliValue())
		memory = max(memory, mq.Value())
	}
	return milliCPU, memory
}

func refFitsResources(p *corev1.Pod, n *corev1.Node, on []*corev1.Pod) bool {
	var cpu, mem int64
	for _, o := range on {
		c, m := refRequests(o)
		cpu, mem = cpu+c, mem+m
	}
	pc, pm := refRequests(p)
	a := n.Status.Allocatable
	if max, ok := a[corev1.ResourcePods]; ok && int64(len(on)+1) > max.Value() {
		return false
	}
	if pc > 0 && cpu+pc > a.Cpu().MilliValue() {
		return false
	}
	if pm > 0 && mem+pm > a.Memory().Value() {
		return false
	}
	return true
}

func refPorts(p *corev1.Pod) map[string]bool {
	out := map[string]bool{}
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			hp := port.HostPort
			if p.Spec.HostNetwork {
				hp = port.ContainerPort
			}
			if hp == 0 {
				continue
			}
			proto := port.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			out[fmt.Sprintf("%s/%d", proto, hp)] = true
		}
	}
	return out
}

func refAntiApps(p *corev1.Pod) []string {
	var out []string
	if p.Spec.Affinity != nil && p.Spec.Affinity.PodAntiAffinity != nil {
		for _, t := range p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			out = append(out, t.LabelSelector.MatchLabels["app"])
		}
	}
	return out
}

// refFits reports whether node n can take pod p next to the pods on it,
// and the claims.
func refFits(p *corev1.Pod, n *corev1.Node, on []*corev1.Pod, claims map[string]*corev1.PersistentVolumeClaim) bool {
	ready := false
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			ready = c.Status == corev1.ConditionTrue
		}
	}
	if !ready || n.Spec.Unschedulable {
		return false
	}
	for _, taint := range n.Spec.Taints {
		if taint.Key == corev1.TaintNodeOutOfService {
			return false
		}
		ok := false
		for _, tol := range p.Spec.Tolerations {
			ok = ok || (tol.Key == taint.Key && tol.Value == taint.Value && tol.Effect == taint.Effect)
		}
		if !ok {
			return false
		}
	}
	for k, v := range p.Spec.NodeSelector {
		if n.Labels[k] != v {
			return false
		}
	}
	if a := p.Spec.Affinity; a != nil && a.NodeAffinity != nil {
		e := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
		have, _ := strconv.Atoi(n.Labels[e.Key])
		want, _ := strconv.Atoi(e.Values[0])
		if have <= want {
			return false
		}
	}
	ports := refPorts(p)
	for _, o := range on {
		for k := range refPorts(o) {
			if ports[k] {
				return false
			}
		}
	}
	if !refFitsResources(p, n, on) {
		return false
	}
	for _, v := range p.Spec.Volumes {
		c := claims[v.PersistentVolumeClaim.ClaimName]
		if c == nil {
			return false
		}
		if pin := c.Annotations[AnnotationSelectedNode]; pin != "" && pin != n.Name {
			return false
		}
	}
	for _, o := range on {
		for _, app := range refAntiApps(p) {
			if o.Labels["app"] == app {
				return false
			}
		}
		for _, app := range refAntiApps(o) {
			if p.Labels["app"] == app {
				return false
			}
		}
	}
	return true
}

var fitCount = regexp.MustCompile(`(?:: |, )(\d+) `)

// checkPlacement replays the result in placement order against the
// reference rules.
func checkPlacement(in PlaceInput, got PlaceResult, seen map[string]int) error {
	order := append([]*corev1.Pod(nil), in.Pending...)
	sort.Slice(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if setOf(a.Name) != setOf(b.Name) {
			return setOf(a.Name) < setOf(b.Name)
		}
		return ordinalOfName(a.Name) < ordinalOfName(b.Name)
	})
	assigned := map[string]string{}
	var assignOrder []string
	for _, a := range got.Assignments {
		if _, dup := assigned[a.Pod.Name]; dup {
			return fmt.Errorf("%s assigned twice", a.Pod)
		}
		assigned[a.Pod.Name] = a.Node
		assignOrder = append(assignOrder, a.Pod.Name)
	}
	pending := map[string]string{}
	for _, u := range got.Unschedulable {
		if _, dup := assigned[u.Pod.Name]; dup {
			return fmt.Errorf("%s both assigned and unschedulable", u.Pod)
		}
		if u.Reason != corev1.PodReasonUnschedulable {
			return fmt.Errorf("%s: reason %q", u.Pod, u.Reason)
		}
		pending[u.Pod.Name] = u.Message
	}
	if len(assigned)+len(pending) != len(in.Pending) {
		return fmt.Errorf("%d pods in, %d assigned and %d unschedulable out", len(in.Pending), len(assigned), len(pending))
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range in.Claims {
		claims[c.Name] = c
	}
	on := map[string][]*corev1.Pod{}
	for _, n := range in.Nodes {
		on[n.Name] = podsOn(in.Pods, n.Name)
	}
	var replayed []string
	for _, p := range order {
		var feasible []string
		fewest := -1
		owners := map[string]int{}
		for _, n := range in.Nodes {
			if !refFits(p, n, on[n.Name], claims) {
				continue
			}
			feasible = append(feasible, n.Name)
			for _, o := range on[n.Name] {
				if setOf(o.Name) == setOf(p.Name) {
					owners[n.Name]++
				}
			}
			if fewest < 0 || owners[n.Name] < fewest {
				fewest = owners[n.Name]
			}
		}
		node, ok := assigned[p.Name]
		if !ok {
			if len(feasible) > 0 {
				return fmt.Errorf("%s left pending (%s) but fits on %v", p.Name, pending[p.Name], feasible)
			}
			// Every node gives at least one reason; one short of both
			// CPU and memory gives two.
			msg := pending[p.Name]
			if !strings.HasPrefix(msg, fmt.Sprintf("0/%d nodes are available: ", len(in.Nodes))) {
				return fmt.Errorf("%s: message %q", p.Name, msg)
			}
			if m := fitCount.FindAllStringSubmatch(msg, -1); len(m) > 0 {
				sum := 0
				for _, g := range m {
					n, _ := strconv.Atoi(g[1])
					if n > len(in.Nodes) {
						return fmt.Errorf("%s: message %q counts %d of %d nodes", p.Name, msg, n, len(in.Nodes))
					}
					sum += n
				}
				if sum < len(in.Nodes) {
					return fmt.Errorf("%s: message %q counts %d nodes of %d", p.Name, msg, sum, len(in.Nodes))
				}
				seen["unschedulable"]++
			} else {
				seen["unschedulable before filters"]++
			}
			continue
		}
		var chosen *corev1.Node
		for _, n := range in.Nodes {
			if n.Name == node {
				chosen = n
			}
		}
		if chosen == nil || !refFits(p, chosen, on[node], claims) {
			return fmt.Errorf("%s assigned to %s, which does not fit it (feasible: %v)", p.Name, node, feasible)
		}
		if owners[node] != fewest {
			return fmt.Errorf("%s assigned to %s with %d pods of its set; feasible %v have as few as %d", p.Name, node, owners[node], feasible, fewest)
		}
		seen["assigned"]++
		if len(feasible) > 1 {
			seen["assigned with a choice"]++
		}
		on[node] = append(on[node], p)
		replayed = append(replayed, p.Name)
	}
	if !reflect.DeepEqual(replayed, assignOrder) {
		return fmt.Errorf("assignments in order %v, want placement order %v", assignOrder, replayed)
	}
	// Nothing ends over-committed.
	for _, n := range in.Nodes {
		var cpu, mem int64
		for _, p := range on[n.Name] {
			c, m := refRequests(p)
			cpu, mem = cpu+c, mem+m
		}
		a := n.Status.Allocatable
		if cpu > a.Cpu().MilliValue() || mem > a.Memory().Value() {
			return fmt.Errorf("node %s over-committed: %dm CPU, %d bytes", n.Name, cpu, mem)
		}
		if max, ok := a[corev1.ResourcePods]; ok && int64(len(on[n.Name])) > max.Value() {
			return fmt.Errorf("node %s holds %d pods, allocatable %d", n.Name, len(on[n.Name]), max.Value())
		}
	}
	return nil
}

func describeInput(in PlaceInput) string {
	var b strings.Builder
	for _, n := range in.Nodes {
		ready := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Status == corev1.ConditionTrue {
				ready = "Ready"
			}
		}
		fmt.Fprintf(&b, "node %s %s unschedulable=%v taints=%v labels=%v alloc=%v/%v/%v\n", n.Name, ready, n.Spec.Unschedulable,
			n.Spec.Taints, n.Labels, n.Status.Allocatable.Cpu(), n.Status.Allocatable.Memory(), n.Status.Allocatable.Pods())
	}
	pod := func(kind string, p *corev1.Pod) {
		c, m := refRequests(p)
		fmt.Fprintf(&b, "%s %s node=%q phase=%s deleting=%v req=%dm/%d ports=%v sel=%v anti=%v tol=%d vols=%d\n", kind, p.Name,
			p.Spec.NodeName, p.Status.Phase, p.DeletionTimestamp != nil, c, m, refPorts(p), p.Spec.NodeSelector, refAntiApps(p),
			len(p.Spec.Tolerations), len(p.Spec.Volumes))
	}
	for _, p := range in.Pods {
		pod("bound", p)
	}
	for _, p := range in.Pending {
		pod("pending", p)
	}
	for _, c := range in.Claims {
		fmt.Fprintf(&b, "claim %s pin=%q\n", c.Name, c.Annotations[AnnotationSelectedNode])
	}
	return b.String()
}
