package scheduler

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time                       { return c.now }
func (c *fakeClock) After(time.Duration) <-chan time.Time { return make(chan time.Time) }

const controllerSetYAML = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels: {app: nginx}
  serviceName: nginx
  replicas: 2
  template:
    metadata:
      labels: {app: nginx}
    spec:
      containers:
      - name: nginx
        image: nginx:1
        volumeMounts:
        - {name: www, mountPath: /data}
  volumeClaimTemplates:
  - metadata: {name: www}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
`

func storeSet(t *testing.T, store *raftstore.Store, clock *fakeClock) *appsv1.StatefulSet {
	t.Helper()
	objs, err := api.DecodeManifests([]byte(controllerSetYAML))
	if err != nil {
		t.Fatal(err)
	}
	set := objs[0].(*appsv1.StatefulSet)
	stampNew(set, clock.now)
	op, err := PutOp(raftstore.StatefulSets, set, 0)
	if err != nil {
		t.Fatal(err)
	}
	raftstoretest.Apply(t, store, op)
	got, _ := raftstore.GetOf[*appsv1.StatefulSet](store.View(), raftstore.StatefulSets, "default", "web")
	return got
}

func podNames(v *raftstore.View) string {
	var names []string
	for _, p := range raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, "default") {
		names = append(names, p.Name)
	}
	return strings.Join(names, ",")
}

// markReady records pod name as Running and Ready since now, as its agent would.
func markReady(t *testing.T, store *raftstore.Store, name string, now time.Time) {
	t.Helper()
	pod, _ := raftstore.GetOf[*corev1.Pod](store.View(), raftstore.Pods, "default", name)
	pod = pod.DeepCopy()
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}}
	op, err := PutOp(raftstore.Pods, pod, Version(pod))
	if err != nil {
		t.Fatal(err)
	}
	raftstoretest.Apply(t, store, op)
}

func TestControllerCommitsPlansInOrder(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock})
	ctx := context.Background()
	storeSet(t, store, clock)

	sync := func() {
		t.Helper()
		if _, err := c.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	v := store.View()
	if got := podNames(v); got != "web-0" {
		t.Fatalf("after first sync pods are %q, want web-0 only", got)
	}
	pod, _ := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, "default", "web-0")
	if pod.UID == "" || pod.Spec.Hostname != "web-0" || pod.Spec.Subdomain != "nginx" || pod.Labels[api.LabelPodIndex] != "0" {
		t.Errorf("web-0 as created: uid %q hostname %q subdomain %q labels %v", pod.UID, pod.Spec.Hostname, pod.Spec.Subdomain, pod.Labels)
	}
	if _, ok := v.Get(raftstore.PersistentVolumeClaims, "default", "www-web-0"); !ok {
		t.Error("claim www-web-0 not created with web-0")
	}
	revs := raftstore.ListOf[*appsv1.ControllerRevision](v, raftstore.ControllerRevisions, "default")
	if len(revs) != 1 || pod.Labels[api.LabelRevisionHash] != revs[0].Name {
		t.Errorf("revisions %d, pod revision label %q", len(revs), pod.Labels[api.LabelRevisionHash])
	}
	set, _ := raftstore.GetOf[*appsv1.StatefulSet](v, raftstore.StatefulSets, "default", "web")
	if set.Status.Replicas != 1 || set.Status.ObservedGeneration != 1 || set.Status.UpdateRevision != revs[0].Name {
		t.Errorf("status after first sync: %+v", set.Status)
	}
	var reasons []string
	for _, e := range raftstore.ListOf[*corev1.Event](v, raftstore.Events, "default") {
		reasons = append(reasons, e.Reason+":"+e.Message)
	}
	if !strings.Contains(strings.Join(reasons, ";"), "SuccessfulCreate:create Pod web-0 in StatefulSet web successful") {
		t.Errorf("events: %v", reasons)
	}

	// Nothing changes until web-0 is Ready: the sync commits nothing.
	before := store.View().Index()
	sync()
	if after := store.View().Index(); after != before {
		t.Errorf("a sync with nothing to do committed: index %d -> %d", before, after)
	}

	markReady(t, store, "web-0", clock.now)
	sync()
	if got := podNames(store.View()); got != "web-0,web-1" {
		t.Fatalf("after web-0 Ready pods are %q, want web-0,web-1", got)
	}

	// A cascading delete: the controller deletes the pods, then the set.
	set, _ = raftstore.GetOf[*appsv1.StatefulSet](store.View(), raftstore.StatefulSets, "default", "web")
	set = set.DeepCopy()
	ts := metav1.NewTime(clock.now)
	set.DeletionTimestamp = &ts
	op, _ := PutOp(raftstore.StatefulSets, set, Version(set))
	raftstoretest.Apply(t, store, op)
	sync()
	sync()
	v = store.View()
	if got := podNames(v); got != "" {
		t.Errorf("pods after cascading delete: %q", got)
	}
	if _, ok := v.Get(raftstore.StatefulSets, "default", "web"); ok {
		t.Error("set still stored once its pods are gone")
	}
	if _, ok := v.Get(raftstore.PersistentVolumeClaims, "default", "www-web-0"); !ok {
		t.Error("Retain policy: claim www-web-0 deleted with the set")
	}
}

func TestControllerCollectsOldEvents(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock})
	set := storeSet(t, store, clock)
	for i, at := range []time.Time{clock.now.Add(-2 * time.Hour), clock.now.Add(-30 * time.Minute)} {
		op, err := PutOp(raftstore.Events, setEvent(set, Event{Type: "Normal", Reason: []string{"Old", "Recent"}[i]}, at), 0)
		if err != nil {
			t.Fatal(err)
		}
		raftstoretest.Apply(t, store, op)
	}
	if _, err := c.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range raftstore.ListOf[*corev1.Event](store.View(), raftstore.Events, "default") {
		if e.Reason == "Old" || e.Reason == "Recent" {
			reasons = append(reasons, e.Reason)
		}
	}
	if strings.Join(reasons, ",") != "Recent" {
		t.Errorf("events kept: %v, want only Recent", reasons)
	}
}

func TestControllerMarksNodesByLease(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	leases := NewLeases(clock, 10*time.Second)
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock, Leases: leases})
	for _, name := range []string{"a", "b"} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		stampNew(n, clock.now)
		op, _ := PutOp(raftstore.Nodes, n, 0)
		raftstoretest.Apply(t, store, op)
	}
	ready := func() string {
		var out []string
		for _, n := range raftstore.ListOf[*corev1.Node](store.View(), raftstore.Nodes, "") {
			st := "none"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					st = string(c.Status)
				}
			}
			out = append(out, n.Name+"="+st)
		}
		return strings.Join(out, ",")
	}
	sync := func() {
		t.Helper()
		if _, err := c.SyncOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	if got := ready(); got != "a=True,b=True" {
		t.Fatalf("at the leader's start: %s", got)
	}
	clock.now = clock.now.Add(8 * time.Second)
	leases.Renew("a")
	clock.now = clock.now.Add(5 * time.Second) // b silent for 13 s, a for 5 s
	sync()
	if got := ready(); got != "a=True,b=Unknown" {
		t.Fatalf("after b's lease ran out: %s", got)
	}
	before := store.View().Index()
	sync()
	if store.View().Index() != before {
		t.Error("an unchanged node state was committed again")
	}
	leases.Renew("b")
	sync()
	if got := ready(); got != "a=True,b=True" {
		t.Fatalf("after b heartbeats again: %s", got)
	}

	// A node that registers, Ready, when the leader has led for longer
	// than a TTL has a whole TTL for its first heartbeat.
	leases.Renew("a")
	leases.Renew("b")
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Status: corev1.NodeStatus{
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	stampNew(n, clock.now)
	op, _ := PutOp(raftstore.Nodes, n, 0)
	raftstoretest.Apply(t, store, op)
	sync()
	if got := ready(); got != "a=True,b=True,c=True" {
		t.Fatalf("a node registered %s after the leader's start: %s", 13*time.Second, got)
	}
	clock.now = clock.now.Add(10*time.Second + time.Millisecond)
	leases.Renew("a")
	leases.Renew("b")
	sync()
	if got := ready(); got != "a=True,b=True,c=Unknown" {
		t.Fatalf("a TTL after c registered without a heartbeat: %s", got)
	}
}

func TestControllerBindsPodsWithAGeneration(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock})
	ctx := context.Background()
	storeSet(t, store, clock)
	if _, err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	pod, _ := raftstore.GetOf[*corev1.Pod](store.View(), raftstore.Pods, "default", "web-0")
	var sched *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			sched = &pod.Status.Conditions[i]
		}
	}
	if pod.Spec.NodeName != "" || sched == nil || sched.Status != corev1.ConditionFalse || sched.Message != "no nodes available to schedule pods" {
		t.Fatalf("web-0 without nodes: node %q condition %+v", pod.Spec.NodeName, sched)
	}

	storeReadyNodes(t, store, clock, "node-a", "node-b")
	if _, err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	pod, _ = raftstore.GetOf[*corev1.Pod](store.View(), raftstore.Pods, "default", "web-0")
	if pod.Spec.NodeName != "node-a" {
		t.Fatalf("web-0 bound to %q, want node-a", pod.Spec.NodeName)
	}
	if gen := pod.Annotations[api.AnnotationGeneration]; gen == "" || gen != pod.ResourceVersion {
		t.Errorf("generation %q, want the binding's log index %s", gen, pod.ResourceVersion)
	}
	markReady(t, store, "web-0", clock.now)
	if _, err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	// web-1 is created and spread onto the other node in the same pass.
	pod1, _ := raftstore.GetOf[*corev1.Pod](store.View(), raftstore.Pods, "default", "web-1")
	if pod1 == nil || pod1.Spec.NodeName != "node-b" {
		t.Fatalf("web-1: %+v", pod1)
	}
}

func resourceMust(s string) resource.Quantity { return resource.MustParse(s) }

// storeReadyNodes stores Ready nodes of 2 CPUs, 4Gi and 110 pods each.
func storeReadyNodes(t *testing.T, store *raftstore.Store, clock *fakeClock, names ...string) {
	t.Helper()
	for _, name := range names {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resourceMust("2"), corev1.ResourceMemory: resourceMust("4Gi"), corev1.ResourcePods: resourceMust("110")},
		}}
		stampNew(n, clock.now)
		op, _ := PutOp(raftstore.Nodes, n, 0)
		raftstoretest.Apply(t, store, op)
	}
}

func TestControllerFailsOverAfterTheFenceMargin(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	leases := NewLeases(clock, 8*time.Second)
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock, Leases: leases, FenceMargin: 4 * time.Second})
	ctx := context.Background()
	storeReadyNodes(t, store, clock, "node-a", "node-b")
	storeSet(t, store, clock)
	sync := func() {
		t.Helper()
		if _, err := c.SyncOnce(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sync()
	web0 := func() *corev1.Pod {
		p, _ := raftstore.GetOf[*corev1.Pod](store.View(), raftstore.Pods, "default", "web-0")
		return p
	}
	first := web0()
	if first.Spec.NodeName != "node-a" {
		t.Fatalf("web-0 on %q, want node-a", first.Spec.NodeName)
	}
	// node-b keeps heartbeating; node-a falls silent.
	for range 11 {
		clock.now = clock.now.Add(time.Second)
		leases.Renew("node-b")
		sync()
		if p := web0(); p == nil || p.UID != first.UID {
			t.Fatalf("web-0 moved %v after node-a fell silent, before lease + margin", clock.now.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
		}
	}
	clock.now = clock.now.Add(2 * time.Second)
	leases.Renew("node-b")
	sync() // frees web-0
	sync() // recreates and binds it
	moved := web0()
	if moved == nil || moved.UID == first.UID || moved.Spec.NodeName != "node-b" {
		t.Fatalf("after lease + margin web-0 is %+v, want a new pod on node-b", moved)
	}
	g1, g2 := first.Annotations[api.AnnotationGeneration], moved.Annotations[api.AnnotationGeneration]
	if Version(&metav1.ObjectMeta{ResourceVersion: g2}) <= Version(&metav1.ObjectMeta{ResourceVersion: g1}) {
		t.Errorf("generation did not grow: %s then %s", g1, g2)
	}
	var lost bool
	for _, e := range raftstore.ListOf[*corev1.Event](store.View(), raftstore.Events, "default") {
		lost = lost || (e.Reason == "NodeLost" && e.InvolvedObject.Name == "web-0")
	}
	if !lost {
		t.Error("no NodeLost event recorded on web-0")
	}
}

// TestControllerCreatesPodsBound: pods whose claims exist (here: no claims)
// are placed before they are created and created bound, in their set's
// transaction: one commit per pod instead of a creation and a binding.
// A pod whose claim the same plan creates is bound after it.
func TestControllerCreatesPodsBound(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock})
	ctx := context.Background()
	storeReadyNodes(t, store, clock, "node-a", "node-b")
	set := parallelSetWithoutClaims(t, 3)
	stampNew(set, clock.now)
	op, err := PutOp(raftstore.StatefulSets, set, 0)
	if err != nil {
		t.Fatal(err)
	}
	raftstoretest.Apply(t, store, op)
	before := store.View().Index()
	if _, err := c.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	v := store.View()
	var got []string
	for _, p := range raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, "default") {
		got = append(got, p.Name+"@"+p.Spec.NodeName)
		created, _ := strconv.ParseUint(p.ResourceVersion, 10, 64)
		if created != before+1 || p.Annotations[api.AnnotationGeneration] != p.ResourceVersion {
			t.Errorf("%s: resourceVersion %s generation %q, want both %d: created bound by the set's plan, the first commit of the pass",
				p.Name, p.ResourceVersion, p.Annotations[api.AnnotationGeneration], before+1)
		}
	}
	if want := "web-0@node-a,web-1@node-b,web-2@node-a"; strings.Join(got, ",") != want {
		t.Errorf("pods %s, want %s", strings.Join(got, ","), want)
	}
}

// parallelSetWithoutClaims is controllerSetYAML's set with replicas
// ordinals, Parallel pod management and no volume claims.
func parallelSetWithoutClaims(t *testing.T, replicas int) *appsv1.StatefulSet {
	t.Helper()
	objs, err := api.DecodeManifests([]byte(strings.Replace(controllerSetYAML, "replicas: 2",
		fmt.Sprintf("replicas: %d\n  podManagementPolicy: Parallel", replicas), 1)))
	if err != nil {
		t.Fatal(err)
	}
	set := objs[0].(*appsv1.StatefulSet)
	set.Spec.VolumeClaimTemplates = nil
	set.Spec.Template.Spec.Containers[0].VolumeMounts = nil
	return set
}

// TestControllerCreatesPodsBoundAfterPendingOnes: a Pending pod that Place
// orders first keeps its claim on the room a new pod would take.
func TestControllerCreatesPodsBoundAfterPendingOnes(t *testing.T) {
	store := raftstoretest.NewStore(t)
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c := NewController(ControllerConfig{Store: store, Logger: raftstoretest.Logger(t), Clock: clock})
	storeReadyNodes(t, store, clock, "node-a") // 2 CPUs
	needs2 := corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("2")}}
	solo := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "solo"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x", Resources: needs2}}}}
	stampNew(solo, clock.now)
	op, _ := PutOp(raftstore.Pods, solo, 0)
	raftstoretest.Apply(t, store, op)

	set := parallelSetWithoutClaims(t, 1)
	set.Spec.Template.Spec.Containers[0].Resources = needs2
	stampNew(set, clock.now)
	op, _ = PutOp(raftstore.StatefulSets, set, 0)
	raftstoretest.Apply(t, store, op)
	if _, err := c.SyncOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range raftstore.ListOf[*corev1.Pod](store.View(), raftstore.Pods, "default") {
		got = append(got, p.Name+"@"+p.Spec.NodeName)
	}
	if want := "solo@node-a,web-0@"; strings.Join(got, ",") != want {
		t.Errorf("pods %s, want %s: the Pending pod placed first, the new one waiting", strings.Join(got, ","), want)
	}
}
