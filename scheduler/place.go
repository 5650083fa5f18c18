package scheduler

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"

	"github.com/stead-io/stead/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
)

// AnnotationSelectedNode on a volume claim names the node that holds the
// claim's local volume, as the Kubernetes volume scheduler records it. Every
// pod that mounts the claim is pinned to that node.
const AnnotationSelectedNode = "volume.kubernetes.io/selected-node"

// The reasons a node rejects a pod, in kube-scheduler's words (Kubernetes
// 1.37), so that a Pending pod reads as it would under Kubernetes.
const (
	// NodeUnschedulable: the node is cordoned (spec.unschedulable).
	reasonUnschedulable = "node(s) were unschedulable"
	// TaintToleration: a NoSchedule or NoExecute taint the pod does not
	// tolerate. A node that is not Ready carries the not-ready or unreachable
	// taint in Kubernetes, so it is reported the same way.
	reasonTaint = "node(s) had untolerated taint(s)"
	// NodeAffinity: nodeSelector or required node affinity.
	reasonNodeAffinity = "node(s) didn't match Pod's node affinity/selector"
	// NodePorts: a host port already in use on the node.
	reasonHostPorts = "node(s) didn't have free ports for the requested pod ports"
	// NodeResourcesFit, one reason per resource that does not fit.
	reasonTooManyPods  = "Too many pods"
	reasonInsufficient = "Insufficient "
	// VolumeBinding: a local volume lives on another node.
	reasonVolumeNode = "node(s) didn't match PersistentVolume's node affinity"
	// InterPodAffinity.
	reasonPodAffinity          = "node(s) didn't match pod affinity rules"
	reasonPodAntiAffinity      = "node(s) didn't match pod anti-affinity rules"
	reasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
)

// msgNoNodes is kube-scheduler's message when the cluster has no node at all.
const msgNoNodes = "no nodes available to schedule pods"

// Requests that scoring assumes for a container that requests nothing, as
// kube-scheduler does (DefaultMilliCPURequest, DefaultMemoryRequest), so that
// pods without requests still spread by load. Filtering uses real requests.
const (
	scoreDefaultMilliCPU = 100
	scoreDefaultMemory   = 200 * 1024 * 1024
)

// PlaceInput is everything Place knows: the pods waiting for a node, the
// nodes, and what already runs on them. Place never modifies any of it.
type PlaceInput struct {
	// Pending are the pods to place: no spec.nodeName and not terminating.
	// A pod given here that has a node or a deletionTimestamp is skipped
	// and appears in neither bucket of the result.
	Pending []*corev1.Pod
	// Nodes are every known node. A node must be Ready (condition Ready is
	// True), not cordoned and not tainted out-of-service to take a pod.
	Nodes []*corev1.Node
	// Pods are every pod bound to a node (spec.nodeName set), including
	// terminating ones: they hold their resources, host ports and
	// anti-affinity until their object is gone. Pods in phase Succeeded or
	// Failed have no running containers and hold nothing, as in
	// kube-scheduler.
	Pods []*corev1.Pod
	// Claims are the volume claims of the pending pods' namespaces. A claim
	// annotated with AnnotationSelectedNode pins every pod that mounts it
	// to that node. A pending pod that mounts a claim absent from Claims,
	// or one being deleted, is not placed, as in Kubernetes.
	Claims []*corev1.PersistentVolumeClaim
}

// PlaceResult is what one Place call decided. Every pending pod that was
// not skipped is in exactly one of the two buckets.
type PlaceResult struct {
	// Assignments bind pods to nodes, in placement order. Each one was made
	// with the resources, host ports and pods of the assignments before it
	// taken into account, so they are meant to be committed together.
	Assignments []Assignment
	// Unschedulable are the pods that fit on no node, in placement order,
	// with the reason and message of their PodScheduled condition.
	Unschedulable []Unschedulable
}

// Assignment binds one pod to one node.
type Assignment struct {
	// Pod is the pod's namespace and name.
	Pod types.NamespacedName
	// Node is the name of the node chosen.
	Node string
}

// Unschedulable is a pod that fits on no node, and why: what kube-scheduler
// would put in the pod's PodScheduled=False condition.
type Unschedulable struct {
	// Pod is the pod's namespace and name.
	Pod types.NamespacedName
	// Reason is "Unschedulable" (corev1.PodReasonUnschedulable).
	Reason string
	// Message says why each node was rejected, in kube-scheduler's words:
	// "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient memory."
	Message string
}

// Place chooses a node for each pending pod. It is a pure function: no
// clock, no randomness, no I/O, and the same input in any order gives the
// same result.
//
// Pods are placed one at a time, ordered by namespace, owning set, ordinal
// and name, so web-0 is placed before web-1; each placement counts for the
// ones after it. A node must pass every filter, in kube-scheduler's order:
// not cordoned; Ready, not out-of-service, and every NoSchedule/NoExecute
// taint tolerated; nodeSelector and required node affinity; free host
// ports; CPU, memory and pod count within allocatable; the node of every
// local volume the pod mounts; required pod affinity and anti-affinity, the
// pod's own and that of the pods already placed. Among the nodes that pass,
// Place prefers the one with the fewest pods of the same owner (so a set's
// ordinals spread across nodes), then the least allocated one, then the
// first by name.
//
// In a cluster of more than minFeasibleNodes nodes, Place looks, as
// kube-scheduler does (percentageOfNodesToScore), only until it found
// feasibleNodesToFind nodes that pass, starting each pod where the one
// before stopped, and chooses among those: placing thousands of pods on
// thousands of nodes then costs a fraction of a scan of every node per pod.
// A pod that fits nowhere still has every node looked at, so its message
// counts them all.
func Place(in PlaceInput) PlaceResult {
	p := newPlacer(in)
	var res PlaceResult
	for _, q := range p.queue(in.Pending) {
		node, msg := p.place(q)
		if node == nil {
			res.Unschedulable = append(res.Unschedulable, Unschedulable{
				Pod:     q.key,
				Reason:  corev1.PodReasonUnschedulable,
				Message: msg,
			})
			continue
		}
		p.assign(q.pod, node)
		res.Assignments = append(res.Assignments, Assignment{Pod: q.key, Node: node.name})
	}
	return res
}

// placer holds the cluster as Place sees it while it places pods one by
// one: each node with what runs on it, assignments of this call included.
type placer struct {
	// nodes sorted by name.
	nodes []*nodeState
	// byName indexes nodes.
	byName map[string]*nodeState
	// placed are the pods bound to a known node, with their node, in a
	// fixed order; assignments made by this call are appended. repelling
	// are those of them with required anti-affinity terms, the only ones
	// that can forbid a node to a pod that has no affinity of its own.
	placed    []placedPod
	repelling []placedPod
	// spread counts, per spread group (see spreadGroup), the group's pods
	// on each node that holds any, by node index.
	spread map[string]map[int]int
	// counts is spread[countsGroup] by node index. Pods are placed in set
	// order, so the pods of one group come one after another, and each
	// looks at hundreds of nodes: an index beats a map lookup per node.
	countsGroup string
	counts      []int
	// claims by namespace/name.
	claims map[types.NamespacedName]*corev1.PersistentVolumeClaim
	// next is the node the next pod's search starts at.
	next int
}

// placedPod is a pod that holds a place on a node, with its required
// anti-affinity terms parsed once.
type placedPod struct {
	pod          *corev1.Pod
	node         *nodeState
	antiAffinity []topologyTerm
}

// nodeState is one node and what it holds.
type nodeState struct {
	node *corev1.Node
	name string
	// index is the node's place in placer.nodes, which are sorted by
	// name: comparing indexes compares names.
	index int
	// down is set when the node is not Ready or is out of service: it
	// takes no pod, whatever the pod tolerates.
	down bool
	// alloc is allocatable CPU and memory; maxPods the allocatable pod
	// count, or -1 when the node does not say.
	alloc   podResources
	maxPods int64
	// requested sums the requests of the pods it holds; scored is the same
	// with scoring's defaults for containers that request nothing.
	requested podResources
	scored    podResources
	pods      int64
	ports     []hostPort
}

// podResources are the amounts Place accounts for.
type podResources struct {
	milliCPU int64
	memory   int64
}

func (r podResources) plus(o podResources) podResources {
	return podResources{milliCPU: r.milliCPU + o.milliCPU, memory: r.memory + o.memory}
}

func (r podResources) max(o podResources) podResources {
	return podResources{milliCPU: max(r.milliCPU, o.milliCPU), memory: max(r.memory, o.memory)}
}

// hostPort is one port a pod takes on its node's network.
type hostPort struct {
	ip       string
	protocol corev1.Protocol
	port     int32
}

// conflicts reports whether two host ports cannot be bound together: same
// protocol and port, and addresses that overlap (0.0.0.0 overlaps all).
func (h hostPort) conflicts(o hostPort) bool {
	if h.port != o.port || h.protocol != o.protocol {
		return false
	}
	return h.ip == o.ip || h.ip == anyIP || o.ip == anyIP
}

const anyIP = "0.0.0.0"

func newPlacer(in PlaceInput) *placer {
	p := &placer{
		byName: make(map[string]*nodeState, len(in.Nodes)),
		spread: make(map[string]map[int]int),
		claims: make(map[types.NamespacedName]*corev1.PersistentVolumeClaim, len(in.Claims)),
	}
	nodes := make([]*corev1.Node, 0, len(in.Nodes))
	for _, n := range in.Nodes {
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool {
		if nodes[i].Name != nodes[j].Name {
			return nodes[i].Name < nodes[j].Name
		}
		return nodes[i].UID < nodes[j].UID
	})
	for _, n := range nodes {
		// A node listed twice counts once.
		if p.byName[n.Name] != nil {
			continue
		}
		ns := newNodeState(n)
		ns.index = len(p.nodes)
		p.byName[n.Name] = ns
		p.nodes = append(p.nodes, ns)
	}

	bound := make([]*corev1.Pod, 0, len(in.Pods))
	for _, pod := range in.Pods {
		if pod == nil || pod.Spec.NodeName == "" || p.byName[pod.Spec.NodeName] == nil {
			continue
		}
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		bound = append(bound, pod)
	}
	// A fixed order keeps everything derived from the placed pods
	// independent of the input's order.
	sort.Slice(bound, func(i, j int) bool { return lessPod(bound[i], bound[j]) })
	for i, pod := range bound {
		if i > 0 && sameKey(bound[i-1], pod) {
			continue
		}
		p.assign(pod, p.byName[pod.Spec.NodeName])
	}

	for _, c := range in.Claims {
		if c == nil {
			continue
		}
		k := types.NamespacedName{Namespace: c.Namespace, Name: c.Name}
		if old := p.claims[k]; old == nil || string(c.UID) < string(old.UID) {
			p.claims[k] = c
		}
	}
	return p
}

func newNodeState(n *corev1.Node) *nodeState {
	ns := &nodeState{
		node:    n,
		name:    n.Name,
		down:    !nodeReady(n) || outOfService(n),
		maxPods: -1,
	}
	a := n.Status.Allocatable
	ns.alloc = podResources{milliCPU: a.Cpu().MilliValue(), memory: a.Memory().Value()}
	if q, ok := a[corev1.ResourcePods]; ok {
		ns.maxPods = q.Value()
	}
	return ns
}

// nodeReady reports whether the node's Ready condition is True. A node that
// reports no Ready condition has not come up yet.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// outOfService reports whether an operator declared the node dead with the
// out-of-service taint. Its pods are being failed over; nothing new goes
// there, whatever the pod tolerates.
func outOfService(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeOutOfService {
			return true
		}
	}
	return false
}

// assign puts pod on node: what later pods see of the node and of the pods
// around them.
func (p *placer) assign(pod *corev1.Pod, node *nodeState) {
	node.add(pod)
	if g := spreadGroup(pod); g != "" {
		if p.spread[g] == nil {
			p.spread[g] = make(map[int]int)
		}
		p.spread[g][node.index]++
		if g == p.countsGroup {
			p.counts[node.index]++
		}
	}
	pp := placedPod{pod: pod, node: node, antiAffinity: antiAffinityTerms(pod)}
	p.placed = append(p.placed, pp)
	if len(pp.antiAffinity) > 0 {
		p.repelling = append(p.repelling, pp)
	}
}

// add accounts for a pod on the node.
func (n *nodeState) add(pod *corev1.Pod) {
	n.requested = n.requested.plus(podRequests(pod, false))
	n.scored = n.scored.plus(podRequests(pod, true))
	n.pods++
	n.ports = append(n.ports, podHostPorts(pod)...)
}

// queued is a pending pod with its place in the queue.
type queued struct {
	pod *corev1.Pod
	key types.NamespacedName
	set string
	ord int
}

// queue returns the pods to place in placement order: by namespace, owning
// set, ordinal and name (then UID, for duplicates).
func (p *placer) queue(pending []*corev1.Pod) []queued {
	q := make([]queued, 0, len(pending))
	for _, pod := range pending {
		if pod == nil || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil {
			continue
		}
		parent, ord, ok := api.ParseOrdinal(pod.Name)
		if !ok {
			parent, ord = pod.Name, -1
		}
		set := parent
		if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
			set = ref.Name
		}
		q = append(q, queued{
			pod: pod,
			key: types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name},
			set: set,
			ord: ord,
		})
	}
	sort.Slice(q, func(i, j int) bool {
		a, b := q[i], q[j]
		if a.key.Namespace != b.key.Namespace {
			return a.key.Namespace < b.key.Namespace
		}
		if a.set != b.set {
			return a.set < b.set
		}
		if a.ord != b.ord {
			return a.ord < b.ord
		}
		if a.key.Name != b.key.Name {
			return a.key.Name < b.key.Name
		}
		return a.pod.UID < b.pod.UID
	})
	// A pod listed twice is placed once.
	seen := make(map[types.NamespacedName]bool, len(q))
	out := q[:0]
	for _, e := range q {
		if seen[e.key] {
			continue
		}
		seen[e.key] = true
		out = append(out, e)
	}
	return out
}

// place chooses the node for one pod, or returns nil and the message that
// says why no node fits.
func (p *placer) place(q queued) (*nodeState, string) {
	if len(p.nodes) == 0 {
		return nil, msgNoNodes
	}
	c, preMsg := p.newCandidate(q.pod)
	if preMsg != "" {
		return nil, fmt.Sprintf("0/%d nodes are available: %s.", len(p.nodes), preMsg)
	}
	var best *nodeState
	var bestOwners int
	var bestLoad int64
	reasons := make(map[string]int)
	want, found := feasibleNodesToFind(len(p.nodes)), 0
	counts := p.groupCounts(c.group)
	start := p.next
	for i := range p.nodes {
		n := p.nodes[(start+i)%len(p.nodes)]
		if rs := c.filter(n); len(rs) > 0 {
			for _, r := range rs {
				reasons[r]++
			}
			continue
		}
		owners := 0
		if counts != nil {
			owners = counts[n.index]
		}
		load := n.load(c.scored)
		// Of equals, the first by name wins.
		if best == nil || owners < bestOwners || (owners == bestOwners && (load < bestLoad || load == bestLoad && n.index < best.index)) {
			best, bestOwners, bestLoad = n, owners, load
		}
		if found++; found == want {
			p.next = (start + i + 1) % len(p.nodes)
			break
		}
	}
	if best != nil {
		return best, ""
	}
	return nil, fitMessage(len(p.nodes), reasons)
}

// groupCounts returns how many pods of spread group g each node holds, by
// node index, or nil for a pod of no group.
func (p *placer) groupCounts(g string) []int {
	if g == "" {
		return nil
	}
	if p.counts == nil || g != p.countsGroup {
		if p.counts == nil {
			p.counts = make([]int, len(p.nodes))
		} else {
			clear(p.counts)
		}
		for i, n := range p.spread[g] {
			p.counts[i] = n
		}
		p.countsGroup = g
	}
	return p.counts
}

// minFeasibleNodes is the number of nodes up to which Place looks at every
// node for every pod, kube-scheduler's minFeasibleNodesToFind.
const minFeasibleNodes = 100

// feasibleNodesToFind is how many passing nodes Place looks for before it
// chooses, in a cluster of n nodes: all of them up to minFeasibleNodes,
// then kube-scheduler's adaptive share (50 % less 1 % per 125 nodes, at
// least 5 %), never fewer than minFeasibleNodes.
func feasibleNodesToFind(n int) int {
	if n <= minFeasibleNodes {
		return n
	}
	percent := max(50-n/125, 5)
	return max(n*percent/100, minFeasibleNodes)
}

// fitMessage is kube-scheduler's FitError: each reason with the number of
// nodes that gave it, sorted as strings.
func fitMessage(nodes int, reasons map[string]int) string {
	hist := make([]string, 0, len(reasons))
	for r, n := range reasons {
		hist = append(hist, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(hist)
	return fmt.Sprintf("0/%d nodes are available: %s.", nodes, strings.Join(hist, ", "))
}

// load is how allocated the node would be with extra added: the sum of the
// CPU and memory fractions, in millionths. Lower is better.
func (n *nodeState) load(extra podResources) int64 {
	total := n.scored.plus(extra)
	return fraction(total.milliCPU, n.alloc.milliCPU) + fraction(total.memory, n.alloc.memory)
}

// fraction returns used/capacity in millionths, capped at one million.
func fraction(used, capacity int64) int64 {
	const scale = 1_000_000
	if used <= 0 {
		return 0
	}
	if capacity <= 0 || used >= capacity {
		return scale
	}
	hi, lo := bits.Mul64(uint64(used), scale)
	q, _ := bits.Div64(hi, lo, uint64(capacity))
	return int64(q)
}

// candidate is a pending pod with what the filters need, computed once.
type candidate struct {
	pod       *corev1.Pod
	requests  podResources
	scored    podResources
	ports     []hostPort
	group     string
	pins      []string
	nodeTerms []nodeTerm
	// affinity and antiAffinity are the pod's required terms, with the
	// topology values where matching pods run. forbidden holds, per
	// topology key, the values where a placed pod's anti-affinity rejects
	// this pod.
	affinity         []topologyTerm
	antiAffinity     []topologyTerm
	affinityAnywhere bool
	forbidden        map[string]map[string]bool
}

// newCandidate prepares the filters for pod. A non-empty message means the
// pod fits nowhere before any node is looked at (kube-scheduler's
// PreFilter): a claim it mounts is missing or being deleted, or one of its
// affinity terms does not parse.
func (p *placer) newCandidate(pod *corev1.Pod) (*candidate, string) {
	c := &candidate{
		pod:      pod,
		requests: podRequests(pod, false),
		scored:   podRequests(pod, true),
		ports:    podHostPorts(pod),
		group:    spreadGroup(pod),
	}
	for _, v := range pod.Spec.Volumes {
		if v.PersistentVolumeClaim == nil {
			continue
		}
		name := v.PersistentVolumeClaim.ClaimName
		claim := p.claims[types.NamespacedName{Namespace: pod.Namespace, Name: name}]
		if claim == nil {
			return nil, fmt.Sprintf("persistentvolumeclaim %q not found", name)
		}
		if claim.DeletionTimestamp != nil {
			return nil, fmt.Sprintf("persistentvolumeclaim %q is being deleted", name)
		}
		if node := claim.Annotations[AnnotationSelectedNode]; node != "" {
			c.pins = append(c.pins, node)
		}
	}
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
			c.nodeTerms = append(c.nodeTerms, newNodeTerm(t))
		}
		// A required node affinity with no term matches no node.
		if len(c.nodeTerms) == 0 {
			c.nodeTerms = []nodeTerm{{invalid: true}}
		}
	}
	var err error
	if c.affinity, c.antiAffinity, err = p.podTerms(pod); err != nil {
		return nil, err.Error()
	}
	c.affinityAnywhere = matchesAll(c.affinity, pod)
	for _, t := range c.affinity {
		if len(t.values) > 0 {
			c.affinityAnywhere = false
		}
	}
	c.forbidden = p.forbiddenBy(pod)
	return c, ""
}

// filter returns why node n cannot take the pod, or nil when it can. Like
// kube-scheduler it stops at the first plugin that rejects the node, in the
// plugins' order; resources give one reason per resource short.
func (c *candidate) filter(n *nodeState) []string {
	if n.node.Spec.Unschedulable {
		return []string{reasonUnschedulable}
	}
	if n.down || !tolerated(c.pod.Spec.Tolerations, n.node.Spec.Taints) {
		return []string{reasonTaint}
	}
	if !c.matchesNode(n.node) {
		return []string{reasonNodeAffinity}
	}
	for _, want := range c.ports {
		for _, have := range n.ports {
			if want.conflicts(have) {
				return []string{reasonHostPorts}
			}
		}
	}
	if rs := c.fits(n); len(rs) > 0 {
		return rs
	}
	for _, pin := range c.pins {
		if pin != n.name {
			return []string{reasonVolumeNode}
		}
	}
	if !c.satisfiesAffinity(n) {
		return []string{reasonPodAffinity}
	}
	for _, t := range c.antiAffinity {
		if v, ok := topologyValue(n.node, t.key); ok && t.values[v] {
			return []string{reasonPodAntiAffinity}
		}
	}
	// Checked first: filter runs for hundreds of nodes per pod, and even an
	// empty map's range costs an iterator each time.
	if len(c.forbidden) == 0 {
		return nil
	}
	for key, values := range c.forbidden {
		if v, ok := topologyValue(n.node, key); ok && values[v] {
			return []string{reasonExistingAntiAffinity}
		}
	}
	return nil
}

// satisfiesAffinity checks the pod's required affinity: the node must have
// every term's topology key, and a pod the term selects must run in the
// node's topology domain. The first pod of a group that selects itself may
// go anywhere while no pod matches yet, as in kube-scheduler.
func (c *candidate) satisfiesAffinity(n *nodeState) bool {
	found := true
	for _, t := range c.affinity {
		v, ok := topologyValue(n.node, t.key)
		if !ok {
			return false
		}
		if !t.values[v] {
			found = false
		}
	}
	return found || c.affinityAnywhere
}

// fits checks the pod's requests against what is left of the node's
// allocatable, as NodeResourcesFit does: a resource the pod does not
// request always fits.
func (c *candidate) fits(n *nodeState) []string {
	var rs []string
	if n.maxPods >= 0 && n.pods+1 > n.maxPods {
		rs = append(rs, reasonTooManyPods)
	}
	if r := c.requests.milliCPU; r > 0 && r > n.alloc.milliCPU-n.requested.milliCPU {
		rs = append(rs, reasonInsufficient+string(corev1.ResourceCPU))
	}
	if r := c.requests.memory; r > 0 && r > n.alloc.memory-n.requested.memory {
		rs = append(rs, reasonInsufficient+string(corev1.ResourceMemory))
	}
	return rs
}

// tolerated reports whether every NoSchedule and NoExecute taint is
// tolerated. PreferNoSchedule taints only affect preference in Kubernetes;
// Place ignores them.
func tolerated(tols []corev1.Toleration, taints []corev1.Taint) bool {
	for i := range taints {
		t := &taints[i]
		if t.Effect != corev1.TaintEffectNoSchedule && t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if !toleratesTaint(tols, t) {
			return false
		}
	}
	return true
}

// toleratesTaint is Toleration.ToleratesTaint for any of tols, without the
// alpha comparison operators (Lt, Gt), which Kubernetes leaves off by
// default.
func toleratesTaint(tols []corev1.Toleration, t *corev1.Taint) bool {
	for _, tol := range tols {
		if tol.Effect != "" && tol.Effect != t.Effect {
			continue
		}
		if tol.Key != "" && tol.Key != t.Key {
			continue
		}
		switch tol.Operator {
		case "", corev1.TolerationOpEqual:
			if tol.Value == t.Value {
				return true
			}
		case corev1.TolerationOpExists:
			return true
		}
	}
	return false
}

// matchesNode checks nodeSelector and required node affinity: every
// nodeSelector label, and at least one node selector term.
func (c *candidate) matchesNode(node *corev1.Node) bool {
	// Most pods select no node: answer them without ranging an empty map
	// for every node looked at.
	if len(c.pod.Spec.NodeSelector) == 0 && len(c.nodeTerms) == 0 {
		return true
	}
	for k, v := range c.pod.Spec.NodeSelector {
		if have, ok := node.Labels[k]; !ok || have != v {
			return false
		}
	}
	if len(c.nodeTerms) == 0 {
		return true
	}
	for _, t := range c.nodeTerms {
		if t.matches(node) {
			return true
		}
	}
	return false
}

// nodeTerm is one parsed NodeSelectorTerm: its expressions over node labels
// and its fields (only metadata.name exists). The requirements are ANDed.
type nodeTerm struct {
	labels labels.Selector
	fields labels.Selector
	// invalid terms (an operator or value that does not parse, or no
	// requirement at all) match no node, as in Kubernetes.
	invalid bool
}

func newNodeTerm(t corev1.NodeSelectorTerm) nodeTerm {
	if len(t.MatchExpressions) == 0 && len(t.MatchFields) == 0 {
		return nodeTerm{invalid: true}
	}
	ls, err := nodeRequirements(t.MatchExpressions)
	if err != nil {
		return nodeTerm{invalid: true}
	}
	fs, err := nodeRequirements(t.MatchFields)
	if err != nil {
		return nodeTerm{invalid: true}
	}
	for _, f := range t.MatchFields {
		if f.Key != metav1.ObjectNameField || (f.Operator != corev1.NodeSelectorOpIn && f.Operator != corev1.NodeSelectorOpNotIn) {
			return nodeTerm{invalid: true}
		}
	}
	return nodeTerm{labels: ls, fields: fs}
}

// nodeRequirements turns node selector requirements into a label selector,
// as nodeaffinity.NodeSelector does.
func nodeRequirements(reqs []corev1.NodeSelectorRequirement) (labels.Selector, error) {
	sel := labels.NewSelector()
	for _, r := range reqs {
		var op selection.Operator
		switch r.Operator {
		case corev1.NodeSelectorOpIn:
			op = selection.In
		case corev1.NodeSelectorOpNotIn:
			op = selection.NotIn
		case corev1.NodeSelectorOpExists:
			op = selection.Exists
		case corev1.NodeSelectorOpDoesNotExist:
			op = selection.DoesNotExist
		case corev1.NodeSelectorOpGt:
			op = selection.GreaterThan
		case corev1.NodeSelectorOpLt:
			op = selection.LessThan
		default:
			return nil, fmt.Errorf("node selector operator %q: not supported", r.Operator)
		}
		req, err := labels.NewRequirement(r.Key, op, r.Values)
		if err != nil {
			return nil, fmt.Errorf("node selector requirement %q: %w", r.Key, err)
		}
		sel = sel.Add(*req)
	}
	return sel, nil
}

func (t nodeTerm) matches(node *corev1.Node) bool {
	if t.invalid {
		return false
	}
	return t.labels.Matches(labels.Set(node.Labels)) &&
		t.fields.Matches(labels.Set{metav1.ObjectNameField: node.Name})
}

// topologyTerm is a required pod (anti-)affinity term: which pods it
// selects, in which namespaces, and the topology values of the nodes where
// such pods run.
type topologyTerm struct {
	key        string
	selector   labels.Selector
	namespaces map[string]bool
	nsSelector labels.Selector
	values     map[string]bool
}

// newTopologyTerm parses term for a pod of namespace ns with labels
// podLabels (for matchLabelKeys and mismatchLabelKeys).
func newTopologyTerm(term corev1.PodAffinityTerm, ns string, podLabels map[string]string) (topologyTerm, error) {
	t := topologyTerm{key: term.TopologyKey, selector: labels.Nothing()}
	if term.LabelSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
		if err != nil {
			return t, fmt.Errorf("pod affinity term %q: %w", term.TopologyKey, err)
		}
		// matchLabelKeys and mismatchLabelKeys select on the pod's own
		// values, as the API server merges them into the selector.
		for _, k := range term.MatchLabelKeys {
			if v, ok := podLabels[k]; ok {
				r, err := labels.NewRequirement(k, selection.In, []string{v})
				if err != nil {
					return t, fmt.Errorf("pod affinity term %q: %w", term.TopologyKey, err)
				}
				sel = sel.Add(*r)
			}
		}
		for _, k := range term.MismatchLabelKeys {
			if v, ok := podLabels[k]; ok {
				r, err := labels.NewRequirement(k, selection.NotIn, []string{v})
				if err != nil {
					return t, fmt.Errorf("pod affinity term %q: %w", term.TopologyKey, err)
				}
				sel = sel.Add(*r)
			}
		}
		t.selector = sel
	}
	if term.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		if err != nil {
			return t, fmt.Errorf("pod affinity term %q: %w", term.TopologyKey, err)
		}
		t.nsSelector = sel
	}
	t.values = make(map[string]bool)
	t.namespaces = make(map[string]bool, len(term.Namespaces))
	for _, n := range term.Namespaces {
		t.namespaces[n] = true
	}
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		t.namespaces[ns] = true
	}
	return t, nil
}

// matches reports whether pod, of namespace ns, is selected by the term.
// Namespace objects are not part of Place's input, so a namespace selector
// sees only the label every namespace carries, its name.
func (t topologyTerm) matches(pod *corev1.Pod, ns string) bool {
	inNS := t.namespaces[ns]
	if !inNS && t.nsSelector != nil {
		inNS = t.nsSelector.Matches(labels.Set{corev1.LabelMetadataName: ns})
	}
	return inNS && t.selector.Matches(labels.Set(pod.Labels))
}

// podTerms parses the pod's required affinity and anti-affinity terms and
// records where the pods they select run. As in kube-scheduler, an affinity
// term counts only pods that match all of the pod's affinity terms; an
// anti-affinity term counts the pods it matches.
func (p *placer) podTerms(pod *corev1.Pod) (affinity, anti []topologyTerm, err error) {
	a := pod.Spec.Affinity
	if a == nil {
		return nil, nil, nil
	}
	if a.PodAffinity != nil {
		for _, term := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			t, err := newTopologyTerm(term, pod.Namespace, pod.Labels)
			if err != nil {
				return nil, nil, err
			}
			affinity = append(affinity, t)
		}
		for _, pp := range p.placed {
			if !matchesAll(affinity, pp.pod) {
				continue
			}
			for _, t := range affinity {
				if v, ok := topologyValue(pp.node.node, t.key); ok {
					t.values[v] = true
				}
			}
		}
	}
	if a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			t, err := newTopologyTerm(term, pod.Namespace, pod.Labels)
			if err != nil {
				return nil, nil, err
			}
			for _, pp := range p.placed {
				if !t.matches(pp.pod, pp.pod.Namespace) {
					continue
				}
				if v, ok := topologyValue(pp.node.node, t.key); ok {
					t.values[v] = true
				}
			}
			anti = append(anti, t)
		}
	}
	return affinity, anti, nil
}

// matchesAll reports whether every term selects pod.
func matchesAll(terms []topologyTerm, pod *corev1.Pod) bool {
	for _, t := range terms {
		if !t.matches(pod, pod.Namespace) {
			return false
		}
	}
	return true
}

// forbiddenBy returns, per topology key, the topology values where a placed
// pod's required anti-affinity selects pod.
func (p *placer) forbiddenBy(pod *corev1.Pod) map[string]map[string]bool {
	var out map[string]map[string]bool
	for _, pp := range p.repelling {
		for _, t := range pp.antiAffinity {
			if !t.matches(pod, pod.Namespace) {
				continue
			}
			v, ok := topologyValue(pp.node.node, t.key)
			if !ok {
				continue
			}
			if out == nil {
				out = make(map[string]map[string]bool)
			}
			if out[t.key] == nil {
				out[t.key] = make(map[string]bool)
			}
			out[t.key][v] = true
		}
	}
	return out
}

// antiAffinityTerms parses a placed pod's required anti-affinity terms. A
// term that does not parse selects nothing.
func antiAffinityTerms(pod *corev1.Pod) []topologyTerm {
	a := pod.Spec.Affinity
	if a == nil || a.PodAntiAffinity == nil {
		return nil
	}
	var out []topologyTerm
	for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
		if t, err := newTopologyTerm(term, pod.Namespace, pod.Labels); err == nil {
			out = append(out, t)
		}
	}
	return out
}

// topologyValue returns the node's value for a topology key. The hostname
// key is the node itself, whatever its label says.
func topologyValue(node *corev1.Node, key string) (string, bool) {
	if key == corev1.LabelHostname {
		return node.Name, true
	}
	v, ok := node.Labels[key]
	return v, ok
}

// podRequests returns what the pod asks of its node, as Kubernetes computes
// it: a container's request defaults to its limit; the pod needs the sum of
// its app containers and sidecars, or the most any init container needs
// while it runs (with the sidecars started before it), whichever is more,
// plus the pod overhead. Pod-level resources replace the containers' sum.
// With scoring set, a container that requests no CPU or memory counts
// kube-scheduler's defaults instead, for scoring only.
func podRequests(pod *corev1.Pod, scoring bool) podResources {
	var apps, sidecars, init podResources
	for i := range pod.Spec.Containers {
		apps = apps.plus(containerRequests(&pod.Spec.Containers[i], scoring))
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := containerRequests(c, scoring)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars = sidecars.plus(r)
			init = init.max(sidecars)
			continue
		}
		init = init.max(r.plus(sidecars))
	}
	total := apps.plus(sidecars).max(init)
	if pr := pod.Spec.Resources; pr != nil {
		if q, ok := request(pr.Requests, pr.Limits, corev1.ResourceCPU); ok {
			total.milliCPU = q.MilliValue()
		}
		if q, ok := request(pr.Requests, pr.Limits, corev1.ResourceMemory); ok {
			total.memory = q.Value()
		}
	}
	if o := pod.Spec.Overhead; o != nil {
		total = total.plus(podResources{milliCPU: o.Cpu().MilliValue(), memory: o.Memory().Value()})
	}
	return total
}

// containerRequests returns one container's requests, defaulted from its
// limits.
func containerRequests(c *corev1.Container, scoring bool) podResources {
	var r podResources
	if q, ok := request(c.Resources.Requests, c.Resources.Limits, corev1.ResourceCPU); ok {
		r.milliCPU = q.MilliValue()
	}
	if q, ok := request(c.Resources.Requests, c.Resources.Limits, corev1.ResourceMemory); ok {
		r.memory = q.Value()
	}
	if scoring {
		if r.milliCPU == 0 {
			r.milliCPU = scoreDefaultMilliCPU
		}
		if r.memory == 0 {
			r.memory = scoreDefaultMemory
		}
	}
	return r
}

// request returns the request for name, or its limit when only the limit is
// set, as the API server defaults it.
func request(requests, limits corev1.ResourceList, name corev1.ResourceName) (resource.Quantity, bool) {
	if q, ok := requests[name]; ok {
		return q, true
	}
	q, ok := limits[name]
	return q, ok
}

// podHostPorts returns the host ports the pod binds: the hostPort of its
// containers' ports (sidecars included), and every container port of a
// host-network pod.
func podHostPorts(pod *corev1.Pod) []hostPort {
	var out []hostPort
	add := func(c *corev1.Container) {
		for _, p := range c.Ports {
			port := p.HostPort
			if pod.Spec.HostNetwork && port == 0 {
				port = p.ContainerPort
			}
			if port <= 0 {
				continue
			}
			h := hostPort{ip: p.HostIP, protocol: p.Protocol, port: port}
			if h.ip == "" {
				h.ip = anyIP
			}
			if h.protocol == "" {
				h.protocol = corev1.ProtocolTCP
			}
			out = append(out, h)
		}
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	return out
}

// Labels that differ between the pods of one set and so do not say which
// set a pod belongs to.
var identityLabels = map[string]bool{
	api.LabelPodName:      true,
	api.LabelPodIndex:     true,
	api.LabelRevisionHash: true,
}

// spreadGroup names the group whose pods Place spreads across nodes: the
// pod's controller (its UID), or for a pod without one its namespace and
// labels, leaving out the labels that name one pod or one revision. A pod
// with neither belongs to no group.
func spreadGroup(pod *corev1.Pod) string {
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		return "uid:" + string(ref.UID)
	}
	keys := make([]string, 0, len(pod.Labels))
	for k := range pod.Labels {
		if !identityLabels[k] {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("labels:")
	b.WriteString(pod.Namespace)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, pod.Labels[k])
	}
	return b.String()
}

// lessPod orders pods by namespace, name and UID.
func lessPod(a, b *corev1.Pod) bool {
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.UID < b.UID
}

// sameKey reports whether two pods have the same namespace and name.
func sameKey(a, b *corev1.Pod) bool {
	return a.Namespace == b.Namespace && a.Name == b.Name
}
