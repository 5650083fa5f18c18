package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
)

// TestStatefulSetControllerE2E checks the StatefulSet controller's rules
// (SEMANTICS.md F and H, and Stead's answer to P1) on a real `stead dev`:
// pods run in containerd, their readiness comes from HTTP probes, and the
// tests turn readiness off and on with `stead exec`. Each scenario has a set
// of its own; they run two at a time. What they assert about order is
// checked on every state the API shows while it happens, read with blocking
// queries.
func TestStatefulSetControllerE2E(t *testing.T) {
	e := startE2EDev(t)
	tests := []struct {
		name string
		run  func(t *testing.T, e *e2eCluster)
	}{
		{"F49 OrderedReady creates each pod after its predecessor is Ready", testOrderedCreation},
		{"F51 scale down deletes from the highest ordinal, one at a time", testOrderedScaleDown},
		{"F49 an unready pod halts scale up", testHaltWhileUnready},
		{"F53 Parallel creates and deletes pods that are never Ready", testParallelBurst},
		{"H63 rolling update replaces pods from the highest ordinal", testRollingUpdate},
		{"H66 partition updates only the ordinals at or above it", testPartitionCanary},
		{"H68 OnDelete updates a pod only when it is deleted", testOnDelete},
		{"I74 rollout undo returns to the prior revision", testRollback},
		{"P1 undo replaces a pod that never becomes Ready", func(t *testing.T, e *e2eCluster) {
			testStuckRollout(t, e, "stuck-ready", func(s *e2eSet) { s.NotReady = true },
				func(p podView) bool { return p.Phase == corev1.PodRunning && !p.Ready })
		}},
		{"P1 undo replaces a pod whose image does not exist", func(t *testing.T, e *e2eCluster) {
			testStuckRollout(t, e, "stuck-image", func(s *e2eSet) { s.Image = "stead.local/e2e/missing:1" },
				func(p podView) bool { return p.Waiting == "ErrImagePull" || p.Waiting == "ImagePullBackOff" })
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			tt.run(t, e)
			t.Logf("passed in %v", time.Since(start).Round(100*time.Millisecond))
		})
	}
}

// appearance checks F.49 on each pod of set the first time a view shows it
// (a pod seen again with another uid was replaced, which these scenarios
// never do): pod o appears only while pod o-1 is Ready, and its creation
// time is not before the time o-1 became Ready. It records the order in
// which pods appeared.
type appearance struct {
	set   string
	seen  map[string]string // pod name → uid
	order []string
}

func newAppearance(set string, already setView) *appearance {
	return &appearance{set: set, seen: uids(already)}
}

func (a *appearance) check(t *testing.T, v setView, replicas int) {
	t.Helper()
	for ord := range replicas {
		p, ok := v.pod(a.set, ord)
		if !ok || a.seen[p.Name] == p.UID {
			continue
		}
		if a.seen[p.Name] != "" {
			t.Errorf("%s was replaced: uid %s, then %s: %s", p.Name, a.seen[p.Name], p.UID, v)
		}
		a.seen[p.Name] = p.UID
		a.order = append(a.order, p.Name)
		if ord == 0 {
			continue
		}
		prev, ok := v.pod(a.set, ord-1)
		if !ok || !prev.Ready {
			t.Errorf("F.49: %s appeared while %s was not Ready: %s", p.Name, api.ReplicaName(a.set, ord-1), v)
			continue
		}
		// Both times are stored to the second: a pod created after its
		// predecessor became Ready cannot show an earlier second.
		if p.Created.Before(prev.ReadySince) {
			t.Errorf("F.49: %s created at %s, before %s became Ready at %s", p.Name,
				p.Created.Format(time.TimeOnly), prev.Name, prev.ReadySince.Format(time.TimeOnly))
		}
	}
}

// names returns the pod names of set for the ordinals given.
func podNames(set string, ords ...int) []string {
	var out []string
	for _, o := range ords {
		out = append(out, api.ReplicaName(set, o))
	}
	return out
}

func testOrderedCreation(t *testing.T, e *e2eCluster) {
	const name = "ordered"
	e.deleteSetOnCleanup(t, name)
	e.apply(t, e2eSet{Name: name, Replicas: 3, Version: "1"}.object())
	seen := newAppearance(name, setView{})
	v := e.follow(t, name, 90*time.Second, "3 pods Ready", func(v setView) bool {
		seen.check(t, v, 3)
		return allReady(v, name, 3, "") && settled(v)
	})
	if want := podNames(name, 0, 1, 2); !slices.Equal(seen.order, want) {
		t.Errorf("pods appeared in the order %v, want %v", seen.order, want)
	}
	// B.14, B.15: identity labels and the revision label.
	for ord := range 3 {
		p, _ := v.pod(name, ord)
		if p.Revision != v.Set.Status.UpdateRevision {
			t.Errorf("%s is at revision %q, want %q", p.Name, p.Revision, v.Set.Status.UpdateRevision)
		}
	}
}

func testOrderedScaleDown(t *testing.T, e *e2eCluster) {
	const name = "scaledown"
	before := e.createReady(t, e2eSet{Name: name, Replicas: 3, Version: "1"})
	e.must(t, "scale", "sts/"+name, "--replicas=1")
	e.follow(t, name, 60*time.Second, "scaled down to "+api.ReplicaName(name, 0), func(v setView) bool {
		for n, p := range v.Pods {
			if p.UID != before.Pods[n].UID {
				t.Fatalf("%s came back (uid %s, was %s): %s", n, p.UID, before.Pods[n].UID, v)
			}
		}
		if p, ok := v.pod(name, 0); !ok || p.Terminating {
			t.Fatalf("%s, in range, is terminating or gone: %s", api.ReplicaName(name, 0), v)
		}
		// F.51: the highest condemned pod goes first, and the next one
		// starts terminating only once it is completely gone.
		p1, ok1 := v.pod(name, 1)
		if _, ok2 := v.pod(name, 2); ok2 && (!ok1 || p1.Terminating) {
			t.Fatalf("F.51: %s terminating or gone while %s is still there: %s",
				api.ReplicaName(name, 1), api.ReplicaName(name, 2), v)
		}
		return len(v.Pods) == 1 && v.Set != nil && v.Set.Status.Replicas == 1 && v.Set.Status.ObservedGeneration == v.Set.Generation
	})
}

func testHaltWhileUnready(t *testing.T, e *e2eCluster) {
	const name = "halt"
	before := e.createReady(t, e2eSet{Name: name, Replicas: 2, Version: "1"})
	pod0 := api.ReplicaName(name, 0)
	untouched := func(v setView) {
		t.Helper()
		for n, uid := range uids(before) {
			if p, ok := v.Pods[n]; !ok || p.UID != uid || p.Terminating {
				t.Fatalf("%s was deleted or replaced: %s", n, v)
			}
		}
	}
	if out, err := e.exec(t, pod0, "unready"); err != nil {
		t.Fatalf("exec %s unready: %v\n%s", pod0, err, out)
	}
	e.follow(t, name, 30*time.Second, pod0+" not Ready", func(v setView) bool {
		p, ok := v.pod(name, 0)
		return ok && !p.Ready
	})
	e.must(t, "scale", "sts/"+name, "--replicas=4")

	// F.49: while halt-0 is not Ready, no pod is created. The controller
	// must have seen the new replica count during the watch, or the
	// absence would prove nothing.
	window := 5 * time.Second
	end := time.Now().Add(window)
	observed := false
	e.follow(t, name, window+30*time.Second, "the scale to 4 observed by the controller", func(v setView) bool {
		untouched(v)
		if len(v.Pods) != 2 {
			t.Fatalf("F.49: a pod was created while %s is not Ready: %s", pod0, v)
		}
		if s := v.Set; s != nil && s.Generation == s.Status.ObservedGeneration && *s.Spec.Replicas == 4 {
			observed = true
		}
		return observed && time.Now().After(end)
	})

	if out, err := e.exec(t, pod0, "ready"); err != nil {
		t.Fatalf("exec %s ready: %v\n%s", pod0, err, out)
	}
	seen := newAppearance(name, before)
	e.follow(t, name, 90*time.Second, "4 pods Ready", func(v setView) bool {
		untouched(v)
		seen.check(t, v, 4)
		return allReady(v, name, 4, "") && settled(v)
	})
	if want := podNames(name, 2, 3); !slices.Equal(seen.order, want) {
		t.Errorf("pods appeared in the order %v, want %v", seen.order, want)
	}
}

func testParallelBurst(t *testing.T, e *e2eCluster) {
	const name = "burst"
	e.deleteSetOnCleanup(t, name)
	e.apply(t, e2eSet{Name: name, Replicas: 3, Version: "1", Parallel: true, NotReady: true}.object())
	neverReady := func(v setView) {
		t.Helper()
		for _, p := range v.Pods {
			if p.Ready {
				t.Fatalf("%s is Ready; its server never is: %s", p.Name, v)
			}
		}
	}
	// F.53: every pod is created without waiting for the others.
	e.follow(t, name, 90*time.Second, "3 pods Running, none Ready", func(v setView) bool {
		neverReady(v)
		for ord := range 3 {
			if p, ok := v.pod(name, ord); !ok || p.Phase != corev1.PodRunning {
				return false
			}
		}
		return true
	})
	// F.53: and every condemned pod deleted, unready as they are (F.51
	// would halt an OrderedReady set here).
	e.must(t, "scale", "sts/"+name, "--replicas=0")
	e.follow(t, name, 60*time.Second, "every pod deleted", func(v setView) bool {
		neverReady(v)
		return len(v.Pods) == 0 && v.Set != nil && v.Set.Status.Replicas == 0 && v.Set.Status.ObservedGeneration == v.Set.Generation
	})
}

// rollout follows a rolling update of set: the order in which its pods are
// replaced and the revisions each ordinal runs. It checks H.63/H.64 on
// every view: a pod is replaced only while every higher ordinal runs the
// update revision, Ready.
type rollout struct {
	set      string
	replicas int
	orig     map[string]string   // uid of each pod before the update
	replaced map[string]bool     // pods replaced so far
	order    []int               // ordinals, in the order they were replaced
	revs     map[string][]string // revisions each pod ran, in order
}

func newRollout(set string, replicas int, before setView) *rollout {
	r := &rollout{set: set, replicas: replicas, orig: uids(before), replaced: map[string]bool{}, revs: map[string][]string{}}
	for n, p := range before.Pods {
		r.revs[n] = []string{p.Revision}
	}
	return r
}

func (r *rollout) check(t *testing.T, v setView) {
	t.Helper()
	if v.Set == nil {
		t.Fatalf("statefulset %s is gone: %s", r.set, v)
	}
	update := v.Set.Status.UpdateRevision
	// Highest first: when two pods are first seen replaced in the same
	// view, the higher one was replaced first, or the check below fails.
	for ord := r.replicas - 1; ord >= 0; ord-- {
		name := api.ReplicaName(r.set, ord)
		p, ok := v.Pods[name]
		if ok && p.Revision != r.revs[name][len(r.revs[name])-1] {
			r.revs[name] = append(r.revs[name], p.Revision)
		}
		if r.replaced[name] || (ok && !p.Terminating && p.UID == r.orig[name]) {
			continue
		}
		r.replaced[name] = true
		r.order = append(r.order, ord)
		for higher := ord + 1; higher < r.replicas; higher++ {
			q, ok := v.pod(r.set, higher)
			if !ok || q.Terminating || !q.Ready || q.Revision != update {
				t.Errorf("H.64: %s replaced while %s was not Ready at the update revision %s: %s",
					name, api.ReplicaName(r.set, higher), update, v)
			}
		}
	}
}

// wantOrder checks which ordinals were replaced, in which order, and that
// each of them ran exactly the revisions from and then to.
func (r *rollout) wantOrder(t *testing.T, from, to string, ords ...int) {
	t.Helper()
	if !slices.Equal(r.order, ords) {
		t.Errorf("pods replaced in the ordinal order %v, want %v", r.order, ords)
	}
	for _, ord := range ords {
		name := api.ReplicaName(r.set, ord)
		if want := []string{from, to}; !slices.Equal(r.revs[name], want) {
			t.Errorf("%s ran revisions %v, want %v", name, r.revs[name], want)
		}
	}
}

// updateRevisionChanged reports whether the controller has computed the
// update revision of the set's current spec, and that it is not old.
func updateRevisionChanged(v setView, old string) bool {
	s := v.Set
	return s != nil && s.Status.ObservedGeneration == s.Generation && s.Status.UpdateRevision != old
}

func testRollingUpdate(t *testing.T, e *e2eCluster) {
	const name = "roll"
	s := e2eSet{Name: name, Replicas: 3, Version: "1"}
	before := e.createReady(t, s)
	revA := before.Set.Status.UpdateRevision

	s.Version = "2"
	e.apply(t, s.object())
	// As a user would: wait for the rollout with `stead rollout status`.
	type result struct {
		out string
		err error
	}
	status := make(chan result, 1)
	go func() {
		out, err := e.run(t, 150*time.Second, "rollout", "status", "sts/"+name)
		status <- result{out, err}
	}()

	r := newRollout(name, 3, before)
	after := e.follow(t, name, 120*time.Second, "every pod at the new revision", func(v setView) bool {
		r.check(t, v)
		return updateRevisionChanged(v, revA) && allReady(v, name, 3, v.Set.Status.UpdateRevision) && settled(v)
	})
	revB := after.Set.Status.UpdateRevision
	r.wantOrder(t, revA, revB, 2, 1, 0)
	// H.70: the rollout complete, the update revision became current.
	if after.Set.Status.CurrentRevision != revB || after.Set.Status.CurrentReplicas != 3 || after.Set.Status.UpdatedReplicas != 3 {
		t.Errorf("status after the rollout: current %s (%d pods), update %s (%d pods); want both %s with 3",
			after.Set.Status.CurrentRevision, after.Set.Status.CurrentReplicas, revB, after.Set.Status.UpdatedReplicas, revB)
	}
	res := <-status
	// H.71, kubectl's words: the defaulted partition (0) makes it a
	// partitioned roll out.
	lines := strings.Split(strings.TrimSpace(res.out), "\n")
	if want := "partitioned roll out complete: 3 new pods have been updated..."; res.err != nil || lines[len(lines)-1] != want {
		t.Errorf("stead rollout status: %v, last line %q, want exit 0 and %q; output:\n%s", res.err, lines[len(lines)-1], want, res.out)
	}
}

func testPartitionCanary(t *testing.T, e *e2eCluster) {
	const name = "canary"
	s := e2eSet{Name: name, Replicas: 3, Version: "1", Partition: 2}
	before := e.createReady(t, s)
	revA := before.Set.Status.UpdateRevision

	// H.66: with partition 2 only canary-2 is updated.
	s.Version = "2"
	e.apply(t, s.object())
	r := newRollout(name, 3, before)
	mid := e.follow(t, name, 90*time.Second, "the canary at the new revision", func(v setView) bool {
		r.check(t, v)
		if !updateRevisionChanged(v, revA) {
			return false
		}
		revB := v.Set.Status.UpdateRevision
		p2, _ := v.pod(name, 2)
		return allReady(v, name, 3, "") && p2.Revision == revB && v.Set.Status.UpdatedReplicas == 1 && v.Set.Status.ReadyReplicas == 3
	})
	revB := mid.Set.Status.UpdateRevision
	r.wantOrder(t, revA, revB, 2)
	for _, ord := range []int{0, 1} {
		if p, _ := mid.pod(name, ord); p.Revision != revA {
			t.Errorf("H.66: %s, below the partition, is at revision %s, want %s", p.Name, p.Revision, revA)
		}
	}
	if mid.Set.Status.CurrentRevision != revA {
		t.Errorf("current revision %s during the canary, want %s", mid.Set.Status.CurrentRevision, revA)
	}
	out := e.must(t, "rollout", "status", "sts/"+name, "--watch=false")
	if want := "partitioned roll out complete: 1 new pods have been updated...\n"; out != want {
		t.Errorf("stead rollout status with partition 2 printed %q, want %q", out, want)
	}

	// Lowering the partition to 0 finishes the rollout: canary-1, then
	// canary-0.
	s.Partition = 0
	e.apply(t, s.object())
	r = newRollout(name, 3, mid)
	after := e.follow(t, name, 90*time.Second, "every pod at the new revision", func(v setView) bool {
		r.check(t, v)
		return allReady(v, name, 3, revB) && settled(v) && v.Set.Status.UpdateRevision == revB
	})
	r.wantOrder(t, revA, revB, 1, 0)
	if p, _ := after.pod(name, 2); p.UID != mid.Pods[p.Name].UID {
		t.Errorf("the canary %s was replaced again: %s", p.Name, after)
	}
}

func testOnDelete(t *testing.T, e *e2eCluster) {
	const name = "ondelete"
	s := e2eSet{Name: name, Replicas: 3, Version: "1", OnDelete: true}
	before := e.createReady(t, s)
	revA := before.Set.Status.UpdateRevision
	pod1 := api.ReplicaName(name, 1)
	untouched := func(v setView, except string) {
		t.Helper()
		for n, uid := range uids(before) {
			if n == except {
				continue
			}
			if p, ok := v.Pods[n]; !ok || p.UID != uid || p.Terminating || p.Revision != revA {
				t.Fatalf("H.68: %s was replaced under OnDelete: %s", n, v)
			}
		}
	}

	s.Version = "2"
	e.apply(t, s.object())
	// H.68: the controller takes the new template as its update revision
	// and replaces nothing; watched for a few seconds more after that.
	var end time.Time
	mid := e.follow(t, name, 60*time.Second, "the new revision observed, pods untouched", func(v setView) bool {
		untouched(v, "")
		if end.IsZero() && updateRevisionChanged(v, revA) {
			end = time.Now().Add(3 * time.Second)
		}
		return !end.IsZero() && time.Now().After(end)
	})
	revB := mid.Set.Status.UpdateRevision
	// H.71: rollout status is refused for OnDelete, as kubectl does.
	if out, err := e.run(t, 30*time.Second, "rollout", "status", "sts/"+name); err == nil ||
		!strings.Contains(out, "rollout status is only available for RollingUpdate strategy type") {
		t.Errorf("stead rollout status of an OnDelete set: %v, %q; want a failure naming RollingUpdate", err, out)
	}

	e.must(t, "delete", "pod", pod1)
	e.follow(t, name, 60*time.Second, pod1+" back at the new revision", func(v setView) bool {
		untouched(v, pod1)
		p, ok := v.Pods[pod1]
		return ok && p.UID != before.Pods[pod1].UID && p.Ready && p.Revision == revB && len(v.Pods) == 3
	})
}

func testRollback(t *testing.T, e *e2eCluster) {
	const name = "undo"
	s := e2eSet{Name: name, Replicas: 3, Version: "1"}
	before := e.createReady(t, s)
	revA := before.Set.Status.UpdateRevision
	s.Version = "2"
	e.apply(t, s.object())
	mid := e.follow(t, name, 120*time.Second, "every pod at the new revision", func(v setView) bool {
		return updateRevisionChanged(v, revA) && allReady(v, name, 3, v.Set.Status.UpdateRevision) && settled(v)
	})
	revB := mid.Set.Status.UpdateRevision

	if out := e.must(t, "rollout", "undo", "sts/"+name); out != "statefulset.apps/"+name+" rolled back\n" {
		t.Errorf("stead rollout undo printed %q", out)
	}
	r := newRollout(name, 3, mid)
	after := e.follow(t, name, 120*time.Second, "every pod back at the prior revision", func(v setView) bool {
		r.check(t, v)
		return v.Set != nil && v.Set.Status.UpdateRevision == revA && allReady(v, name, 3, revA) && settled(v)
	})
	r.wantOrder(t, revB, revA, 2, 1, 0)
	if env := after.Set.Spec.Template.Spec.Containers[0].Env; len(env) != 1 || env[0].Value != "1" {
		t.Errorf("template after undo has env %v, want VERSION=1", env)
	}
	// I.74: the prior revision is reused, with the next revision number;
	// no third revision is made.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, _, err := e.c.List(ctx, e2eResource(t, "controllerrevisions"), e2eNamespace, api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, raw := range l.Items {
		var rev appsv1.ControllerRevision
		if err := json.Unmarshal(raw, &rev); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(rev.Name, name+"-") {
			got[rev.Name] = rev.Revision
		}
	}
	if want := map[string]int64{revA: 3, revB: 2}; !maps.Equal(got, want) {
		t.Errorf("revisions of %s: %v, want %v", name, got, want)
	}
}

// testStuckRollout updates set name to a template whose pod never becomes
// Ready (spoil changes it; stuck says a pod is in the state it causes),
// checks that the rollout stops at name-2, and then that `stead rollout
// undo` alone brings the set back: the controller replaces the stuck pod.
func testStuckRollout(t *testing.T, e *e2eCluster, name string, spoil func(*e2eSet), stuck func(podView) bool) {
	s := e2eSet{Name: name, Replicas: 3, Version: "1"}
	before := e.createReady(t, s)
	revA := before.Set.Status.UpdateRevision
	pod2 := api.ReplicaName(name, 2)
	lowerUntouched := func(v setView) {
		t.Helper()
		for _, n := range podNames(name, 0, 1) {
			if p, ok := v.Pods[n]; !ok || p.UID != before.Pods[n].UID || p.Terminating || p.Revision != revA {
				t.Fatalf("%s was touched: %s", n, v)
			}
		}
	}

	spoil(&s)
	e.apply(t, s.object())
	mid := e.follow(t, name, 90*time.Second, pod2+" stuck at the new revision", func(v setView) bool {
		lowerUntouched(v)
		p, ok := v.Pods[pod2]
		return updateRevisionChanged(v, revA) && ok && p.UID != before.Pods[pod2].UID &&
			p.Revision == v.Set.Status.UpdateRevision && stuck(p) && v.Set.Status.ReadyReplicas == 2
	})
	stuckUID := mid.Pods[pod2].UID
	out := e.must(t, "rollout", "status", "sts/"+name, "--watch=false")
	if want := fmt.Sprintf("Waiting for 1 pods to be ready... (waiting for %s to be Running and Ready)\n", pod2); out != want {
		t.Errorf("stead rollout status while stuck printed %q, want %q", out, want)
	}

	// P1: rolling back is all it takes.
	e.must(t, "rollout", "undo", "sts/"+name)
	e.follow(t, name, 90*time.Second, "back at the prior revision, 3 pods Ready", func(v setView) bool {
		lowerUntouched(v)
		p, ok := v.Pods[pod2]
		return ok && p.UID != stuckUID && v.Set.Status.UpdateRevision == revA && allReady(v, name, 3, revA) && settled(v)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, _, err := e.c.List(ctx, e2eResource(t, "events"), e2eNamespace, api.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var replacing []string
	for _, raw := range l.Items {
		var ev corev1.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.InvolvedObject.Name == name && ev.Reason == "ReplacingStuckPod" {
			replacing = append(replacing, ev.Message)
		}
	}
	if len(replacing) != 1 || !strings.Contains(replacing[0], "Pod "+pod2+",") {
		t.Errorf("ReplacingStuckPod events of %s: %q, want one naming %s", name, replacing, pod2)
	}
}
