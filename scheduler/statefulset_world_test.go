package scheduler

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The test world: a namespace holding one set and its objects, into which
// plans are applied the way the Raft state machine applies them, and whose
// pods tests move through their lifecycle by hand.

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type setOption func(*appsv1.StatefulSet)

// newSet returns a StatefulSet "web" in namespace "default" with every API
// default applied, as the decoder hands it to the controller.
func newSet(replicas int32, opts ...setOption) *appsv1.StatefulSet {
	partition := int32(0)
	limit := int32(10)
	set := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web", Namespace: "default", UID: "set-uid-1", Generation: 1,
		},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					Containers:    []corev1.Container{{Name: "nginx", Image: "nginx:A"}},
					RestartPolicy: corev1.RestartPolicyAlways,
				},
			},
			ServiceName:          "nginx",
			PodManagementPolicy:  appsv1.OrderedReadyPodManagement,
			UpdateStrategy:       appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: &partition}},
			RevisionHistoryLimit: &limit,
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
		},
	}
	for _, o := range opts {
		o(set)
	}
	return set
}

func parallel(set *appsv1.StatefulSet) { set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement }

func onDelete(set *appsv1.StatefulSet) {
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
}

func withStart(start int32) setOption {
	return func(set *appsv1.StatefulSet) { set.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start} }
}

func withMinReady(sec int32) setOption {
	return func(set *appsv1.StatefulSet) { set.Spec.MinReadySeconds = sec }
}

func withPartition(p int32) setOption {
	return func(set *appsv1.StatefulSet) { set.Spec.UpdateStrategy.RollingUpdate.Partition = &p }
}

func withImage(image string) setOption {
	return func(set *appsv1.StatefulSet) { set.Spec.Template.Spec.Containers[0].Image = image }
}

func withPolicy(whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) setOption {
	return func(set *appsv1.StatefulSet) {
		set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: whenDeleted, WhenScaled: whenScaled,
		}
	}
}

// withClaim adds a volumeClaimTemplate "www" of 1Gi.
func withClaim(set *appsv1.StatefulSet) {
	set.Spec.VolumeClaimTemplates = append(set.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "www", Labels: map[string]string{"tier": "data"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			},
		},
	})
}

const (
	deleteRetain = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	deleteDelete = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
)

type world struct {
	t      testing.TB
	set    *appsv1.StatefulSet
	pods   map[string]*corev1.Pod
	claims map[string]*corev1.PersistentVolumeClaim
	revs   map[string]*appsv1.ControllerRevision
	now    time.Time
	uids   int
	// strict makes apply fail the test when a plan creates a pod whose name
	// is taken or deletes a pod that is already terminating.
	strict bool
	// lingerClaims makes deleted claims stay, being deleted, until a test
	// removes them; otherwise they go at once.
	lingerClaims bool
}

func newWorld(t testing.TB, set *appsv1.StatefulSet) *world {
	return &world{
		t: t, set: set, now: t0, strict: true,
		pods:   map[string]*corev1.Pod{},
		claims: map[string]*corev1.PersistentVolumeClaim{},
		revs:   map[string]*appsv1.ControllerRevision{},
	}
}

func (w *world) newUID(kind string) types.UID {
	w.uids++
	return types.UID(kind + "-uid-" + strconv.Itoa(w.uids))
}

func (w *world) input() Input {
	in := Input{Set: w.set, Now: w.now}
	for _, name := range sortedKeys(w.pods) {
		in.Pods = append(in.Pods, w.pods[name])
	}
	for _, name := range sortedKeys(w.claims) {
		in.Claims = append(in.Claims, w.claims[name])
	}
	for _, name := range sortedKeys(w.revs) {
		in.Revisions = append(in.Revisions, w.revs[name])
	}
	return in
}

// sync runs one reconcile and applies its plan. The plan must not depend
// on whether the pods come as a list or indexed, as the controller passes
// them, nor on the list's order or on pods of other namespaces.
func (w *world) sync() Plan {
	w.t.Helper()
	in := w.input()
	p := Reconcile(in)
	// A pod that the set would adopt, were it in the set's namespace.
	stranger := orphan("web-0", true)
	stranger.Namespace = "elsewhere"
	mixed := append(slices.Clone(in.Pods), stranger)
	slices.Reverse(mixed)
	indexed := in
	indexed.Pods, indexed.PodIndex = nil, IndexPods(mixed, w.set.Namespace)
	if q := Reconcile(indexed); !reflect.DeepEqual(p, q) {
		w.t.Fatalf("the plan from indexed pods differs:\n%s\nfrom the list:\n%s",
			strings.Join(summary(q), "\n"), strings.Join(summary(p), "\n"))
	}
	w.apply(p)
	return p
}

func (w *world) apply(p Plan) {
	w.t.Helper()
	for _, r := range p.CreateRevisions {
		if _, ok := w.revs[r.Name]; ok {
			w.t.Fatalf("revision %s created twice", r.Name)
		}
		r = r.DeepCopy()
		r.UID = w.newUID("rev")
		r.CreationTimestamp = metav1.NewTime(w.now)
		w.revs[r.Name] = r
	}
	for _, r := range p.UpdateRevisions {
		w.revs[r.Name] = r.DeepCopy()
	}
	for _, c := range p.CreateClaims {
		if _, ok := w.claims[c.Name]; ok {
			w.t.Fatalf("claim %s created twice", c.Name)
		}
		c = c.DeepCopy()
		c.UID = w.newUID("claim")
		w.claims[c.Name] = c
	}
	for _, c := range p.UpdateClaims {
		w.claims[c.Name] = c.DeepCopy()
	}
	for _, pod := range p.UpdatePods {
		w.pods[pod.Name] = pod.DeepCopy()
	}
	for _, pod := range p.CreatePods {
		if old, ok := w.pods[pod.Name]; ok {
			if w.strict {
				w.t.Fatalf("pod %s created while an object of that name exists (terminating=%v)", pod.Name, old.DeletionTimestamp != nil)
			}
			continue
		}
		pod = pod.DeepCopy()
		pod.UID = w.newUID("pod")
		pod.CreationTimestamp = metav1.NewTime(w.now)
		w.pods[pod.Name] = pod
	}
	for _, d := range p.DeletePods {
		pod, ok := w.pods[d.Name]
		if !ok {
			w.t.Fatalf("plan deletes pod %s which does not exist", d.Name)
		}
		if pod.DeletionTimestamp != nil {
			if w.strict {
				w.t.Fatalf("plan deletes pod %s which is already terminating", d.Name)
			}
			continue
		}
		pod = pod.DeepCopy()
		ts := metav1.NewTime(w.now)
		pod.DeletionTimestamp = &ts
		w.pods[d.Name] = pod
	}
	for _, name := range p.DeleteClaims {
		if w.lingerClaims {
			c := w.claims[name].DeepCopy()
			ts := metav1.NewTime(w.now)
			c.DeletionTimestamp = &ts
			w.claims[name] = c
			continue
		}
		delete(w.claims, name)
	}
	for _, name := range p.DeleteRevisions {
		if _, ok := w.revs[name]; !ok {
			w.t.Fatalf("plan deletes revision %s which does not exist", name)
		}
		delete(w.revs, name)
	}
	set := w.set.DeepCopy()
	set.Status = p.Status
	w.set = set
}

// change applies a spec change to the set and bumps its generation.
func (w *world) change(opts ...setOption) {
	set := w.set.DeepCopy()
	for _, o := range opts {
		o(set)
	}
	set.Generation++
	w.set = set
}

func (w *world) scale(n int32) {
	w.change(func(s *appsv1.StatefulSet) { s.Spec.Replicas = &n })
}

func (w *world) pod(name string) *corev1.Pod {
	w.t.Helper()
	p, ok := w.pods[name]
	if !ok {
		w.t.Fatalf("no pod %s", name)
	}
	return p
}

func (w *world) setPhase(name string, phase corev1.PodPhase, ready corev1.ConditionStatus) {
	w.t.Helper()
	p := w.pod(name).DeepCopy()
	p.Status.Phase = phase
	if ready == "" {
		p.Status.Conditions = nil
	} else {
		old := readyCondition(p)
		ltt := metav1.NewTime(w.now)
		if old != nil && old.Status == ready {
			ltt = old.LastTransitionTime
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: ltt}}
	}
	w.pods[name] = p
}

// ready makes pods Running and Ready (since now, if they were not Ready).
func (w *world) ready(names ...string) {
	for _, n := range names {
		w.setPhase(n, corev1.PodRunning, corev1.ConditionTrue)
	}
}

// crash makes pods Running but not Ready (crash loop, failing probe).
func (w *world) crash(names ...string) {
	for _, n := range names {
		w.setPhase(n, corev1.PodRunning, corev1.ConditionFalse)
	}
}

func (w *world) fail(names ...string) {
	for _, n := range names {
		w.setPhase(n, corev1.PodFailed, corev1.ConditionFalse)
	}
}

// gone removes terminating pods (the agent confirmed them dead).
func (w *world) gone(names ...string) {
	w.t.Helper()
	for _, n := range names {
		if w.pod(n).DeletionTimestamp == nil {
			w.t.Fatalf("pod %s is not terminating", n)
		}
		delete(w.pods, n)
	}
}

// goneAll removes every terminating pod.
func (w *world) goneAll() {
	for name, p := range w.pods {
		if p.DeletionTimestamp != nil {
			delete(w.pods, name)
		}
	}
}

func (w *world) addPod(p *corev1.Pod) {
	if p.UID == "" {
		p.UID = w.newUID("pod")
	}
	w.pods[p.Name] = p
}

// settle syncs until nothing changes, making every Pending pod Ready and
// letting every terminating pod go before each sync, with time passing
// past minReadySeconds.
func (w *world) settle() {
	w.t.Helper()
	w.settleLog()
}

// podNames lists the pods of the world, by ordinal; terminating ones marked.
func (w *world) podNames() []string {
	var names []string
	for name, p := range w.pods {
		if p.DeletionTimestamp != nil {
			name += "(terminating)"
		}
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return byOrdinal(names[i], names[j]) })
	return names
}

// revisionOf is the name of the revision a template with the given image
// gets in this world (collision count 0).
func revisionOf(image string) string {
	set := newSet(1, withImage(image))
	r, err := newRevision(set, 1, 0)
	if err != nil {
		panic(err)
	}
	return r.Name
}

// summary renders a plan's actions as lines, in plan order, so tests can
// compare exactly which objects a sync touches.
func summary(p Plan) []string {
	var out []string
	for _, r := range p.CreateRevisions {
		out = append(out, fmt.Sprintf("create revision %s #%d", r.Name, r.Revision))
	}
	for _, r := range p.UpdateRevisions {
		out = append(out, fmt.Sprintf("update revision %s #%d", r.Name, r.Revision))
	}
	for _, c := range p.CreateClaims {
		out = append(out, "create claim "+c.Name+refsSummary(c.OwnerReferences))
	}
	for _, c := range p.UpdateClaims {
		out = append(out, "update claim "+c.Name+refsSummary(c.OwnerReferences))
	}
	for _, pod := range p.UpdatePods {
		out = append(out, "update "+pod.Name)
	}
	for _, pod := range p.CreatePods {
		out = append(out, "create "+pod.Name+" @"+pod.Labels[api.LabelRevisionHash])
	}
	for _, d := range p.DeletePods {
		out = append(out, "delete "+d.Name+" ("+string(d.Reason)+")")
	}
	for _, name := range p.DeleteClaims {
		out = append(out, "delete claim "+name)
	}
	for _, name := range p.DeleteRevisions {
		out = append(out, "delete revision "+name)
	}
	return out
}

func refsSummary(refs []metav1.OwnerReference) string {
	if len(refs) == 0 {
		return " refs=[]"
	}
	var parts []string
	for _, r := range refs {
		parts = append(parts, r.Kind+"/"+r.Name)
	}
	return " refs=[" + strings.Join(parts, ",") + "]"
}

func blockedSummary(p Plan) []string {
	var out []string
	for _, b := range p.Blocked {
		out = append(out, b.Reason)
	}
	return out
}

// expand replaces $A, $B, ... with revision names for images nginx:A, nginx:B, ...
func expand(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		for _, v := range []string{"A", "B", "C", "D"} {
			l = strings.ReplaceAll(l, "$"+v, revisionOf("nginx:"+v))
		}
		out[i] = l
	}
	return out
}

func equalLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkLines(t testing.TB, what string, got, want []string) {
	t.Helper()
	if !equalLines(got, want) {
		t.Errorf("%s:\n got  %q\n want %q", what, got, want)
	}
}

// settleLog is settle, returning the actions of every sync in order.
func (w *world) settleLog() []string {
	w.t.Helper()
	var log []string
	for i := 0; i < 200; i++ {
		w.progress()
		p := w.sync()
		log = append(log, summary(p)...)
		w.now = w.now.Add(time.Duration(w.set.Spec.MinReadySeconds)*time.Second + time.Second)
		if len(summary(p)) == 0 && !p.StatusChanged {
			return log
		}
	}
	w.t.Fatalf("set did not settle")
	return nil
}

// progress makes every Pending pod Ready and lets every terminating pod go.
func (w *world) progress() {
	for name, pod := range w.pods {
		if pod.Status.Phase == corev1.PodPending && pod.DeletionTimestamp == nil {
			w.ready(name)
		}
	}
	w.goneAll()
}

// userDelete marks a pod Terminating, as `stead delete pod` does.
func (w *world) userDelete(names ...string) {
	for _, n := range names {
		p := w.pod(n).DeepCopy()
		ts := metav1.NewTime(w.now)
		p.DeletionTimestamp = &ts
		w.pods[n] = p
	}
}

func deepCopyInput(in Input) Input {
	out := Input{Set: in.Set.DeepCopy(), Now: in.Now}
	for _, p := range in.Pods {
		out.Pods = append(out.Pods, p.DeepCopy())
	}
	for _, c := range in.Claims {
		out.Claims = append(out.Claims, c.DeepCopy())
	}
	for _, r := range in.Revisions {
		out.Revisions = append(out.Revisions, r.DeepCopy())
	}
	return out
}

func equalJSON(t testing.TB, a, b interface{}) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(ja) == string(jb)
}
