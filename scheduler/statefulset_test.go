package scheduler

import (
	"testing"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type reconcileCase struct {
	name string
	set  *appsv1.StatefulSet
	// setup brings the world to the state under test; the case then runs
	// one more sync and compares its plan.
	setup   func(w *world)
	want    []string // summary lines, $A… are revision names
	blocked []string // blocked reasons, $A… expanded
}

func runReconcileCases(t *testing.T, cases []reconcileCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.set)
			if tc.setup != nil {
				tc.setup(w)
			}
			p := w.sync()
			checkLines(t, "plan", summary(p), expand(tc.want))
			checkLines(t, "blocked", blockedSummary(p), expand(tc.blocked))
		})
	}
}

func settled(w *world) { w.settle() }

func orphan(name string, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{
			"app": "web", api.LabelRevisionHash: revisionOf("nginx:A"),
		}},
		Status: corev1.PodStatus{Phase: corev1.PodPending},
	}
	if ready {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-time.Hour))}}
	}
	return p
}

func TestReconcileCreation(t *testing.T) {
	runReconcileCases(t, []reconcileCase{
		{
			name:    "F.48b OrderedReady creates one pod per sync, lowest ordinal first",
			set:     newSet(3),
			want:    []string{"create revision $A #1", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "F.53 Parallel creates every missing pod at once",
			set:  newSet(3, parallel),
			want: []string{"create revision $A #1", "create web-0 @$A", "create web-1 @$A", "create web-2 @$A"},
		},
		{
			name: "B.10 ordinals.start shifts the range (Parallel)",
			set:  newSet(3, parallel, withStart(2)),
			want: []string{"create revision $A #1", "create web-2 @$A", "create web-3 @$A", "create web-4 @$A"},
		},
		{
			name:    "B.10 ordinals.start shifts the range (OrderedReady)",
			set:     newSet(3, withStart(2)),
			want:    []string{"create revision $A #1", "create web-2 @$A"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name:    "F.49 a Pending pod blocks the next creation",
			set:     newSet(3),
			setup:   func(w *world) { w.sync() },
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name:    "F.49 Ready pod lets the next one be created",
			set:     newSet(3),
			setup:   func(w *world) { w.sync(); w.ready("web-0") },
			want:    []string{"create web-1 @$A"},
			blocked: []string{"waiting for web-1 to be Running and Ready"},
		},
		{
			name: "F.49 a pod that became unready blocks creation of later ordinals",
			set:  newSet(3),
			setup: func(w *world) {
				w.sync()
				w.ready("web-0")
				w.sync()
				w.ready("web-1")
				w.crash("web-0")
			},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "F.48f G.58 minReadySeconds: Ready but not yet Available blocks",
			set:  newSet(3, withMinReady(10)),
			setup: func(w *world) {
				w.sync()
				w.ready("web-0")
				w.now = w.now.Add(10 * time.Second) // exactly 10 s: not yet more than minReadySeconds
			},
			blocked: []string{"waiting for web-0 to be Available (Ready for 10s)"},
		},
		{
			name: "F.48f G.58 minReadySeconds: Available after more than minReadySeconds",
			set:  newSet(3, withMinReady(10)),
			setup: func(w *world) {
				w.sync()
				w.ready("web-0")
				w.now = w.now.Add(10*time.Second + time.Millisecond)
			},
			want:    []string{"create web-1 @$A"},
			blocked: []string{"waiting for web-1 to be Running and Ready"},
		},
		{
			name: "F.50 predecessor recreated while its successor is unready (OrderedReady)",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.crash("web-1")
				w.userDelete("web-0")
				w.gone("web-0")
			},
			want:    []string{"create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "F.48a failed pod is deleted, successors wait (OrderedReady)",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.fail("web-1")
			},
			want:    []string{"delete web-1 (failed)"},
			blocked: []string{"waiting for failed pod web-1 to be deleted and recreated"},
		},
		{
			name: "F.48a failed pod is recreated once its object is gone",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.fail("web-1")
				w.sync()
				w.gone("web-1")
			},
			want:    []string{"create web-1 @$A"},
			blocked: []string{"waiting for web-1 to be Running and Ready"},
		},
		{
			name: "F.48a Succeeded counts as failed (Parallel)",
			set:  newSet(3, parallel),
			setup: func(w *world) {
				w.settle()
				w.setPhase("web-2", corev1.PodSucceeded, corev1.ConditionFalse)
				w.fail("web-0")
			},
			want: []string{"delete web-0 (failed)", "delete web-2 (failed)"},
			blocked: []string{
				"waiting for failed pod web-0 to be deleted and recreated",
				"waiting for failed pod web-2 to be deleted and recreated",
			},
		},
		{
			name: "F.48d B.12 a terminating pod blocks and is not replaced (OrderedReady)",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.userDelete("web-1")
			},
			blocked: []string{"waiting for web-1 to terminate"},
		},
		{
			name: "F.54 B.12 Parallel does not replace a pod until its object is gone",
			set:  newSet(3, parallel),
			setup: func(w *world) {
				w.settle()
				w.userDelete("web-1")
			},
		},
		{
			name: "F.54 Parallel replaces a pod once its object is gone",
			set:  newSet(3, parallel),
			setup: func(w *world) {
				w.settle()
				w.userDelete("web-1")
				w.sync()
				w.gone("web-1")
			},
			want: []string{"create web-1 @$A"},
		},
		{
			name: "F.53 Parallel creates despite unhealthy pods",
			set:  newSet(3, parallel),
			setup: func(w *world) {
				w.sync()
				w.crash("web-0")
				w.userDelete("web-2")
				w.gone("web-2")
			},
			want: []string{"create web-2 @$A"},
		},
	})
}

func TestReconcileScaleDown(t *testing.T) {
	runReconcileCases(t, []reconcileCase{
		{
			name:    "F.51 scale-down deletes the highest ordinal first",
			set:     newSet(4),
			setup:   func(w *world) { w.settle(); w.scale(2) },
			want:    []string{"delete web-3 (scale down)"},
			blocked: []string{"waiting for web-3 to terminate before scaling down further"},
		},
		{
			name: "F.51 the next deletion waits until the previous pod is gone",
			set:  newSet(4),
			setup: func(w *world) {
				w.settle()
				w.scale(2)
				w.sync()
			},
			blocked: []string{"waiting for web-3 to terminate before scaling down further"},
		},
		{
			name: "F.51 scale-down continues once the pod is gone",
			set:  newSet(4),
			setup: func(w *world) {
				w.settle()
				w.scale(2)
				w.sync()
				w.gone("web-3")
			},
			want:    []string{"delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
		{
			name: "F.51 all pods unready: scaling to 0 deletes nothing",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.crash("web-0", "web-1", "web-2")
				w.scale(0)
			},
			blocked: []string{"waiting for web-0 to be Running and Ready before scaling down"},
		},
		{
			name: "F.51 unhealthy highest condemned pod is deleted when it is the first unhealthy pod",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.crash("web-2")
				w.scale(2)
			},
			want:    []string{"delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
		{
			name: "F.51 unhealthy highest condemned pod waits for a lower unhealthy one",
			set:  newSet(4),
			setup: func(w *world) {
				w.settle()
				w.crash("web-2", "web-3")
				w.scale(2)
			},
			blocked: []string{"waiting for web-2 to be Running and Ready before scaling down"},
		},
		{
			name: "F.49 F.51 an unready in-range pod halts scale-down",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.crash("web-0")
				w.scale(2)
			},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "F.53 Parallel deletes every condemned pod at once, healthy or not",
			set:  newSet(4, parallel),
			setup: func(w *world) {
				w.settle()
				w.crash("web-3", "web-1")
				w.scale(1)
			},
			want: []string{"delete web-3 (scale down)", "delete web-2 (scale down)", "delete web-1 (scale down)"},
		},
		{
			name: "F.52 a failed condemned pod is deleted, not recreated",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.fail("web-2")
				w.scale(2)
			},
			want:    []string{"delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
		{
			name: "F.52 scaling takes precedence over updates",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.scale(2)
			},
			want:    []string{"create revision $B #2", "delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
	})
}

func TestReconcileOrdinalsStartChange(t *testing.T) {
	// B.17: start 0→2 with replicas 2→3 behaves like a scale: new ordinals
	// are created in order first, then the old ones removed from the top.
	for _, tc := range []struct {
		name      string
		set       *appsv1.StatefulSet
		change    func(w *world)
		want      []string
		wantFinal []string
	}{
		{
			name: "B.17 start 0→2, replicas 2→3",
			set:  newSet(2),
			change: func(w *world) {
				w.change(withStart(2))
				w.scale(3)
			},
			want:      []string{"create web-2 @$A", "create web-3 @$A", "create web-4 @$A", "delete web-1 (scale down)", "delete web-0 (scale down)"},
			wantFinal: []string{"web-2", "web-3", "web-4"},
		},
		{
			name:      "B.17 start 2→4 replaces web-2, web-3 with web-4, web-5",
			set:       newSet(2, withStart(2)),
			change:    func(w *world) { w.change(withStart(4)) },
			want:      []string{"create web-4 @$A", "create web-5 @$A", "delete web-3 (scale down)", "delete web-2 (scale down)"},
			wantFinal: []string{"web-4", "web-5"},
		},
		{
			name:      "B.17 start 3→2 replaces web-3, web-4 with web-2, web-3",
			set:       newSet(2, withStart(3)),
			change:    func(w *world) { w.change(withStart(2)) },
			want:      []string{"create web-2 @$A", "delete web-4 (scale down)"},
			wantFinal: []string{"web-2", "web-3"},
		},
		{
			name: "B.17 removing ordinals (start 3→0)",
			set:  newSet(2, withStart(3)),
			change: func(w *world) {
				w.change(func(s *appsv1.StatefulSet) { s.Spec.Ordinals = nil })
			},
			want:      []string{"create web-0 @$A", "create web-1 @$A", "delete web-4 (scale down)", "delete web-3 (scale down)"},
			wantFinal: []string{"web-0", "web-1"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.set)
			w.settle()
			tc.change(w)
			checkLines(t, "actions", w.settleLog(), expand(tc.want))
			checkLines(t, "pods", w.podNames(), tc.wantFinal)
		})
	}
}

func TestReconcileAdoption(t *testing.T) {
	other := func(p *corev1.Pod) *corev1.Pod {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "rs-uid", Controller: &yes}}
		return p
	}
	runReconcileCases(t, []reconcileCase{
		{
			name:    "M.97 a matching orphan is adopted and the missing ordinal created",
			set:     newSet(2),
			setup:   func(w *world) { w.addPod(orphan("web-1", true)) },
			want:    []string{"create revision $A #1", "update web-1", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name:    "M.101 an adopted orphan outside the range is condemned",
			set:     newSet(1),
			setup:   func(w *world) { w.settle(); w.addPod(orphan("web-3", true)) },
			want:    []string{"update web-3", "delete web-3 (scale down)"},
			blocked: []string{"waiting for web-3 to terminate"},
		},
		{
			name: "M.97 a terminating orphan is not adopted",
			set:  newSet(1),
			setup: func(w *world) {
				w.settle()
				o := orphan("web-3", true)
				ts := metav1.NewTime(t0)
				o.DeletionTimestamp = &ts
				w.addPod(o)
			},
			want:    nil,
			blocked: nil,
		},
		{
			name: "M.96 B.11 a pod whose name does not parse as <set>-<ordinal> is ignored",
			set:  newSet(1),
			setup: func(w *world) {
				w.settle()
				w.addPod(orphan("web-01", true))
				w.addPod(orphan("webx-1", true))
				w.addPod(orphan("web", true))
			},
		},
		{
			name: "M.98 M.99 an owned pod that stops matching is released and its name stays taken",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				p := w.pod("web-1").DeepCopy()
				p.Labels["app"] = "debug"
				w.pods["web-1"] = p
			},
			want:    []string{"update web-1"},
			blocked: []string{"pod web-1 exists but does not belong to statefulset web"},
		},
		{
			name: "M.97 M.100 a pod controlled by another controller is ignored",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.userDelete("web-1")
				w.gone("web-1")
				w.addPod(other(orphan("web-1", true)))
			},
			blocked: []string{"pod web-1 exists but does not belong to statefulset web"},
		},
		{
			name: "M.97 orphans are not adopted by a set being deleted",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.addPod(orphan("web-2", true))
				w.change(func(s *appsv1.StatefulSet) { ts := metav1.NewTime(t0); s.DeletionTimestamp = &ts })
			},
			want: []string{"delete web-0 (set deleted)", "delete web-1 (set deleted)"},
		},
		{
			name: "B.14 identity labels stripped by a user are put back",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				p := w.pod("web-1").DeepCopy()
				delete(p.Labels, api.LabelPodName)
				p.Labels[api.LabelPodIndex] = "7"
				w.pods["web-1"] = p
			},
			want: []string{"update web-1"},
		},
	})
}

func TestReconcileAdoptionDetails(t *testing.T) {
	w := newWorld(t, newSet(2))
	w.settle()
	p := w.pod("web-1").DeepCopy()
	delete(p.Labels, api.LabelPodName)
	delete(p.Labels, api.LabelPodIndex)
	p.OwnerReferences = nil // orphaned, e.g. by `delete --cascade=orphan` and re-create
	w.pods["web-1"] = p

	plan := w.sync()
	if len(plan.UpdatePods) != 1 {
		t.Fatalf("UpdatePods = %v, want web-1 once", summary(plan))
	}
	u := plan.UpdatePods[0]
	if ref := metav1.GetControllerOf(u); ref == nil || ref.UID != w.set.UID || ref.Kind != "StatefulSet" || ref.Name != "web" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("adopted pod's controller ref = %+v, want StatefulSet web %s blocking", ref, w.set.UID)
	}
	if u.Labels[api.LabelPodName] != "web-1" || u.Labels[api.LabelPodIndex] != "1" {
		t.Errorf("adopted pod's labels = %v, want identity labels put back", u.Labels)
	}
	if len(p.OwnerReferences) != 0 || p.Labels[api.LabelPodName] != "" {
		t.Errorf("Reconcile modified the input pod: %+v", p.ObjectMeta)
	}
}

func TestReconcileCreatedPod(t *testing.T) {
	set := newSet(1, withClaim, withStart(3), func(s *appsv1.StatefulSet) {
		s.Spec.Template.Annotations = map[string]string{"note": "x"}
		s.Spec.Template.Spec.Volumes = []corev1.Volume{
			{Name: "www", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}
	})
	plan := Reconcile(Input{Set: set, Now: t0})
	if len(plan.CreatePods) != 1 {
		t.Fatalf("plan = %v, want one pod", summary(plan))
	}
	pod := plan.CreatePods[0]
	if len(plan.CreateRevisions) != 1 {
		t.Fatalf("plan = %v, want one revision", summary(plan))
	}
	rev := plan.CreateRevisions[0].Name
	checks := []struct {
		what      string
		got, want interface{}
	}{
		{"name", pod.Name, "web-3"},
		{"namespace", pod.Namespace, "default"},
		{"kind", pod.Kind + " " + pod.APIVersion, "Pod v1"},
		{"B.13 hostname", pod.Spec.Hostname, "web-3"},
		{"B.13 subdomain", pod.Spec.Subdomain, "nginx"},
		{"B.14 pod-name label", pod.Labels[api.LabelPodName], "web-3"},
		{"B.14 pod-index label", pod.Labels[api.LabelPodIndex], "3"},
		{"B.15 revision label", pod.Labels[api.LabelRevisionHash], rev},
		{"B.16 template label", pod.Labels["app"], "web"},
		{"B.16 template annotation", pod.Annotations["note"], "x"},
		{"image", pod.Spec.Containers[0].Image, "nginx:A"},
		{"phase", pod.Status.Phase, corev1.PodPending},
		{"nodeName", pod.Spec.NodeName, ""},
		{"D.30 volumes", len(pod.Spec.Volumes), 2},
		{"D.30 claim volume replaces template volume", pod.Spec.Volumes[0].Name + "=" + pod.Spec.Volumes[0].PersistentVolumeClaim.ClaimName, "www=www-web-3"},
		{"D.30 other template volumes kept", pod.Spec.Volumes[1].Name, "config"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.UID != "set-uid-1" || ref.APIVersion != "apps/v1" || ref.Kind != "StatefulSet" || ref.Name != "web" ||
		ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("B.15 owner reference = %+v", pod.OwnerReferences)
	}
	if set.Spec.Template.Labels[api.LabelPodName] != "" || set.Spec.Template.Spec.Hostname != "" {
		t.Errorf("Reconcile modified the set's template")
	}

	if len(plan.CreateClaims) != 1 {
		t.Fatalf("claims = %v, want www-web-3", summary(plan))
	}
	c := plan.CreateClaims[0]
	if c.Name != "www-web-3" || c.Namespace != "default" || c.Labels["tier"] != "data" || c.Labels["app"] != "web" ||
		c.Spec.Resources.Requests.Storage().String() != "1Gi" || len(c.OwnerReferences) != 0 {
		t.Errorf("D.29 claim = %+v", c)
	}
	if len(set.Spec.VolumeClaimTemplates[0].Labels) != 1 {
		t.Errorf("Reconcile modified the claim template's labels: %v", set.Spec.VolumeClaimTemplates[0].Labels)
	}
}

func TestReconcileEvents(t *testing.T) {
	w := newWorld(t, newSet(2, withClaim))
	p := w.sync()
	want := []Event{
		{corev1.EventTypeNormal, "SuccessfulCreate", "create Claim www-web-0 Pod web-0 in StatefulSet web success"},
		{corev1.EventTypeNormal, "SuccessfulCreate", "create Pod web-0 in StatefulSet web successful"},
	}
	checkEvents(t, p.Events, want)

	w.settle()
	w.fail("web-1")
	checkEvents(t, w.sync().Events, []Event{
		{corev1.EventTypeWarning, "RecreatingFailedPod", "StatefulSet default/web is recreating failed Pod web-1"},
		{corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod web-1 in StatefulSet web successful"},
	})
}

func checkEvents(t *testing.T, got, want []Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("events = %+v, want %+v", got, want)
		return
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestReconcileRollingUpdate(t *testing.T) {
	runReconcileCases(t, []reconcileCase{
		{
			name:    "H.63 update deletes the highest outdated pod first",
			set:     newSet(3),
			setup:   func(w *world) { w.settle(); w.change(withImage("nginx:B")) },
			want:    []string{"create revision $B #2", "delete web-2 (update)"},
			blocked: []string{"waiting for web-2 to be recreated at revision $B"},
		},
		{
			name: "H.63 the deleted pod is recreated at the update revision",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.gone("web-2")
			},
			want:    []string{"create web-2 @$B"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "H.64 the next pod is updated once the updated one is Ready",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.gone("web-2")
				w.sync()
				w.ready("web-2")
			},
			want:    []string{"delete web-1 (update)"},
			blocked: []string{"waiting for web-1 to be recreated at revision $B"},
		},
		{
			name: "H.64 G.58 the updated pod must also be Available",
			set:  newSet(3, withMinReady(30)),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.gone("web-2")
				w.sync()
				w.ready("web-2")
				w.now = w.now.Add(29 * time.Second)
			},
			blocked: []string{"waiting for web-2 to be Available (Ready for 30s)"},
		},
		{
			name: "H.62 with partition 0 a dead not-yet-updated pod comes back at the update revision",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync() // deletes web-2
				w.userDelete("web-0")
				w.goneAll()
			},
			want:    []string{"create web-0 @$B"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "H.65 H.66 below the partition a dead pod comes back at the current revision",
			set:  newSet(4),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"), withPartition(2))
				w.settle()
				w.fail("web-0")
				w.sync()
				w.gone("web-0")
			},
			want:    []string{"create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "H.65 H.66 at or above the partition a dead pod comes back at the update revision",
			set:  newSet(4),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"), withPartition(2))
				w.settle()
				w.fail("web-2")
				w.sync()
				w.gone("web-2")
			},
			want:    []string{"create web-2 @$B"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "H.66 B.18 partition is relative to ordinals.start",
			set:  newSet(3, withStart(5)),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"), withPartition(2))
				w.settle()
				w.fail("web-6", "web-7")
				w.sync()
				w.gone("web-6")
			},
			want:    []string{"create web-6 @$A"},
			blocked: []string{"waiting for web-6 to be Running and Ready"},
		},
		{
			name:  "H.66 partition above replicas updates no pod",
			set:   newSet(3),
			setup: func(w *world) { w.settle(); w.change(withImage("nginx:B"), withPartition(5)) },
			want:  []string{"create revision $B #2"},
		},
		{
			name: "H.67 in OrderedReady an unready pod keeps the update from starting",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.crash("web-0")
				w.change(withImage("nginx:B"))
				w.change(func(s *appsv1.StatefulSet) {
					s.Annotations = map[string]string{api.AnnotationReplaceStuckPods: "false"}
				})
			},
			want:    []string{"create revision $B #2"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "H.67 in Parallel the update deletes the top outdated pod even if it crash-loops",
			set:  newSet(3, parallel),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.gone("web-2")
				w.sync()
				w.ready("web-2")
				w.crash("web-1")
			},
			want:    []string{"delete web-1 (update)"},
			blocked: []string{"waiting for web-1 to be recreated at revision $B"},
		},
		{
			name:  "H.68 OnDelete never deletes a pod for an update",
			set:   newSet(3, onDelete),
			setup: func(w *world) { w.settle(); w.change(withImage("nginx:B")) },
			want:  []string{"create revision $B #2"},
		},
		{
			name: "H.62 H.68 OnDelete recreates a deleted pod at the update revision",
			set:  newSet(3, onDelete),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.userDelete("web-0")
				w.gone("web-0")
			},
			want:    []string{"create web-0 @$B"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "H.69 maxUnavailable 2 deletes the two highest outdated pods",
			set:  newSet(4, withMaxUnavailable(intstr.FromInt32(2))),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
			},
			want: []string{"create revision $B #2", "delete web-3 (update)", "delete web-2 (update)"},
		},
		{
			name: "H.69 maxUnavailable percentage rounds down (30% of 4 = 1)",
			set:  newSet(4, withMaxUnavailable(intstr.FromString("30%"))),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
			},
			want: []string{"create revision $B #2", "delete web-3 (update)"},
		},
		{
			name: "H.69 maxUnavailable percentage rounds down (50% of 4 = 2)",
			set:  newSet(4, withMaxUnavailable(intstr.FromString("50%"))),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
			},
			want: []string{"create revision $B #2", "delete web-3 (update)", "delete web-2 (update)"},
		},
		{
			name: "H.69 maxUnavailable percentage has a floor of 1 (10% of 4)",
			set:  newSet(4, withMaxUnavailable(intstr.FromString("10%"))),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
			},
			want: []string{"create revision $B #2", "delete web-3 (update)"},
		},
		{
			name: "H.69 unavailable pods below the partition use up maxUnavailable",
			set:  newSet(4, parallel, withMaxUnavailable(intstr.FromInt32(2))),
			setup: func(w *world) {
				w.settle()
				w.crash("web-0")
				w.change(withImage("nginx:B"), withPartition(2))
			},
			want: []string{"create revision $B #2", "delete web-3 (update)"},
		},
		{
			name: "H.69 more unavailable pods than maxUnavailable stops the update",
			set:  newSet(4, parallel, withMaxUnavailable(intstr.FromInt32(1))),
			setup: func(w *world) {
				w.settle()
				w.crash("web-0", "web-1")
				w.change(withImage("nginx:B"))
			},
			want:    []string{"create revision $B #2"},
			blocked: []string{"waiting for unavailable pods (2, maxUnavailable 1), first web-0"},
		},
		{
			name: "I.72 scaling creates no revision",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.scale(3)
				w.change(withMinReady(5), withPartition(1))
				w.now = w.now.Add(time.Minute)
			},
			want:    []string{"create web-2 @$A"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
	})
}

func withMaxUnavailable(v intstr.IntOrString) setOption {
	return func(set *appsv1.StatefulSet) { set.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = &v }
}

func TestRolloutOrderAndCompletion(t *testing.T) {
	// H.63, H.64, H.70: a full rollout goes from the highest ordinal down,
	// one pod at a time, and then promotes the update revision.
	w := newWorld(t, newSet(3))
	w.settle()
	w.change(withImage("nginx:B"))
	checkLines(t, "rollout", w.settleLog(), expand([]string{
		"create revision $B #2",
		"delete web-2 (update)", "create web-2 @$B",
		"delete web-1 (update)", "create web-1 @$B",
		"delete web-0 (update)", "create web-0 @$B",
	}))
	st := w.set.Status
	if st.CurrentRevision != revisionOf("nginx:B") || st.UpdateRevision != st.CurrentRevision || st.CurrentReplicas != 3 || st.UpdatedReplicas != 3 {
		t.Errorf("H.70 status after rollout = %+v", st)
	}

	// H.66: lowering the partition step by step is a phased rollout.
	w = newWorld(t, newSet(3))
	w.settle()
	w.change(withImage("nginx:B"), withPartition(2))
	checkLines(t, "partition 2", w.settleLog(), expand([]string{"create revision $B #2", "delete web-2 (update)", "create web-2 @$B"}))
	if st := w.set.Status; st.CurrentRevision != revisionOf("nginx:A") || st.UpdatedReplicas != 1 || st.CurrentReplicas != 2 {
		t.Errorf("H.70 a partitioned rollout is not complete: status %+v", st)
	}
	w.change(withPartition(1))
	checkLines(t, "partition 1", w.settleLog(), expand([]string{"delete web-1 (update)", "create web-1 @$B"}))
	w.change(withPartition(0))
	checkLines(t, "partition 0", w.settleLog(), expand([]string{"delete web-0 (update)", "create web-0 @$B"}))
	if st := w.set.Status; st.CurrentRevision != revisionOf("nginx:B") || st.CurrentReplicas != 3 {
		t.Errorf("H.70 status after the last phase = %+v", st)
	}
}

func TestReplaceStuckPods(t *testing.T) {
	// P1: a rollout to B left web-2 crash-looping at B. The user rolls back
	// to A or fixes forward to C.
	stuck := func(opts ...setOption) func(w *world) {
		return func(w *world) {
			w.settle()
			w.change(withImage("nginx:B"))
			w.sync()
			w.gone("web-2")
			w.sync()
			w.crash("web-2")
			w.change(opts...)
		}
	}
	off := func(s *appsv1.StatefulSet) {
		s.Annotations = map[string]string{api.AnnotationReplaceStuckPods: "false"}
	}
	runReconcileCases(t, []reconcileCase{
		{
			name:    "P1 H.67 a pod crash-looping at the update revision just blocks",
			set:     newSet(3),
			setup:   stuck(),
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name:    "P1 rollback replaces the stuck pod (on by default)",
			set:     newSet(3),
			setup:   stuck(withImage("nginx:A")),
			want:    []string{"update revision $A #3", "delete web-2 (stuck rollout)"},
			blocked: []string{"waiting for web-2, stuck at revision $B, to be replaced at revision $A"},
		},
		{
			name:    "P1 fixing forward replaces the stuck pod",
			set:     newSet(3),
			setup:   stuck(withImage("nginx:C")),
			want:    []string{"create revision $C #3", "delete web-2 (stuck rollout)"},
			blocked: []string{"waiting for web-2, stuck at revision $B, to be replaced at revision $C"},
		},
		{
			name:    "P1 off by annotation: the forced-rollback trap of Kubernetes",
			set:     newSet(3),
			setup:   stuck(withImage("nginx:A"), off),
			want:    []string{"update revision $A #3"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "P1 a pod that never left Pending (image pull) is replaced",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.gone("web-2")
				w.sync() // web-2 created at B, stays Pending
				w.change(withImage("nginx:A"))
			},
			want:    []string{"update revision $A #3", "delete web-2 (stuck rollout)"},
			blocked: []string{"waiting for web-2, stuck at revision $B, to be replaced at revision $A"},
		},
		{
			name: "P1 the replaced pod comes back at the update revision",
			set:  newSet(3),
			setup: func(w *world) {
				stuck(withImage("nginx:A"))(w)
				w.sync()
				w.gone("web-2")
			},
			want:    []string{"create web-2 @$A"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "P1 not for a pod whose position calls for the current revision",
			set:  newSet(3),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"), withPartition(2))
				w.settle()
				w.crash("web-1")
				w.change(withImage("nginx:C"))
			},
			want:    []string{"create revision $C #3"},
			blocked: []string{"waiting for web-1 to be Running and Ready"},
		},
		{
			name: "P1 not for OnDelete",
			set:  newSet(3, onDelete),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.sync()
				w.userDelete("web-2")
				w.gone("web-2")
				w.sync()
				w.crash("web-2")
				w.change(withImage("nginx:A"))
			},
			want:    []string{"update revision $A #3"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "P1 not for a terminating pod",
			set:  newSet(3),
			setup: func(w *world) {
				stuck(withImage("nginx:A"))(w)
				w.userDelete("web-2")
			},
			want:    []string{"update revision $A #3"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
	})
}

func TestReconcileSetDeletion(t *testing.T) {
	deleted := func(s *appsv1.StatefulSet) { ts := metav1.NewTime(t0); s.DeletionTimestamp = &ts }

	t.Run("K.88 cascading delete removes every pod at once, then the revisions", func(t *testing.T) {
		w := newWorld(t, newSet(3))
		w.settle()
		w.crash("web-0")
		w.change(deleted, withImage("nginx:B"))
		p := w.sync()
		checkLines(t, "first sync", summary(p), []string{"delete web-0 (set deleted)", "delete web-1 (set deleted)", "delete web-2 (set deleted)"})
		if p.DeletionComplete {
			t.Errorf("DeletionComplete with pods left")
		}
		checkLines(t, "while terminating", summary(w.sync()), nil)
		w.goneAll()
		p = w.sync()
		checkLines(t, "after pods gone", summary(p), expand([]string{"delete revision $A"}))
		if !p.DeletionComplete {
			t.Errorf("DeletionComplete = false with no pods left")
		}
	})

	t.Run("K.88 orphan deletion leaves the pods alone", func(t *testing.T) {
		w := newWorld(t, newSet(2))
		w.settle()
		w.change(deleted, func(s *appsv1.StatefulSet) { s.Finalizers = []string{metav1.FinalizerOrphanDependents} })
		p := w.sync()
		checkLines(t, "plan", summary(p), nil)
		if p.DeletionComplete {
			t.Errorf("DeletionComplete for an orphaning delete")
		}
	})

	t.Run("E.38 whenDeleted=Delete: claims go once no pod mounts them", func(t *testing.T) {
		w := newWorld(t, newSet(2, withClaim, withPolicy(deleteDelete, deleteRetain)))
		w.settle()
		w.change(deleted)
		checkLines(t, "first sync", summary(w.sync()), []string{"delete web-0 (set deleted)", "delete web-1 (set deleted)"})
		w.gone("web-1")
		checkLines(t, "web-1 gone", summary(w.sync()), []string{"delete claim www-web-1"})
		w.gone("web-0")
		checkLines(t, "all gone", summary(w.sync()), expand([]string{"delete claim www-web-0", "delete revision $A"}))
	})

	t.Run("E.36 Retain: claims stay after the set is deleted", func(t *testing.T) {
		w := newWorld(t, newSet(2, withClaim))
		w.settle()
		w.change(deleted)
		w.sync()
		w.goneAll()
		checkLines(t, "all gone", summary(w.sync()), expand([]string{"delete revision $A"}))
		if len(w.claims) != 2 {
			t.Errorf("claims = %v, want www-web-0 and www-web-1 kept", sortedKeys(w.claims))
		}
	})
}

func TestReconcileClaims(t *testing.T) {
	runReconcileCases(t, []reconcileCase{
		{
			name:    "E.37 Retain/Retain: claims are created without owners",
			set:     newSet(2, withClaim),
			want:    []string{"create revision $A #1", "create claim www-web-0 refs=[]", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name:    "E.38 whenDeleted=Delete: claims are owned by the set",
			set:     newSet(2, withClaim, withPolicy(deleteDelete, deleteRetain)),
			want:    []string{"create revision $A #1", "create claim www-web-0 refs=[StatefulSet/web]", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name:    "E.39 whenScaled=Delete: in-range claims have no owner",
			set:     newSet(2, withClaim, withPolicy(deleteRetain, deleteDelete)),
			want:    []string{"create revision $A #1", "create claim www-web-0 refs=[]", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name:    "E.39 E.42 whenScaled=Delete: the condemned pod owns its claim before it is deleted",
			set:     newSet(3, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup:   func(w *world) { w.settle(); w.scale(2) },
			want:    []string{"update claim www-web-2 refs=[Pod/web-2]", "delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
		{
			name: "E.39 the claim is garbage once its pod is gone",
			set:  newSet(3, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				w.scale(2)
				w.sync()
				w.gone("web-2")
			},
			want: []string{"delete claim www-web-2"},
		},
		{
			name:    "E.40 Delete/Delete: the condemned claim moves from the set to the pod",
			set:     newSet(3, withClaim, withPolicy(deleteDelete, deleteDelete)),
			setup:   func(w *world) { w.settle(); w.scale(2) },
			want:    []string{"update claim www-web-2 refs=[Pod/web-2]", "delete web-2 (scale down)"},
			blocked: []string{"waiting for web-2 to terminate"},
		},
		{
			name: "E.41 a pod deleted for failure keeps its claim",
			set:  newSet(3, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				w.fail("web-1")
				w.sync()
				w.gone("web-1")
			},
			want:    []string{"create web-1 @$A"},
			blocked: []string{"waiting for web-1 to be Running and Ready"},
		},
		{
			name: "E.43 a claim still owned by the previous pod blocks re-creation until it is gone",
			set:  newSet(3, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				w.scale(2)
				w.sync()
				w.gone("web-2")
				w.scale(3)
			},
			want:    []string{"delete claim www-web-2"},
			blocked: []string{"waiting for claim www-web-2 of a previous web-2 to be deleted"},
		},
		{
			name: "E.43 once the stale claim is gone the pod gets a fresh one",
			set:  newSet(3, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				w.scale(2)
				w.sync()
				w.gone("web-2")
				w.scale(3)
				w.sync()
			},
			want:    []string{"create claim www-web-2 refs=[]", "create web-2 @$A"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "E.44 another controller: the set's reference is scrubbed, the other kept",
			set:  newSet(1, withClaim, withPolicy(deleteDelete, deleteRetain)),
			setup: func(w *world) {
				w.settle()
				c := w.claims["www-web-0"].DeepCopy()
				yes := true
				c.OwnerReferences = append(c.OwnerReferences, metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Backup", Name: "b", UID: "backup-uid", Controller: &yes})
				w.claims[c.Name] = c
			},
			want: []string{"update claim www-web-0 refs=[Backup/b]"},
		},
		{
			name: "E.44 another controller: nothing more to do once scrubbed",
			set:  newSet(1, withClaim, withPolicy(deleteDelete, deleteRetain)),
			setup: func(w *world) {
				w.settle()
				yes := true
				c := w.claims["www-web-0"].DeepCopy()
				c.OwnerReferences = []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Backup", Name: "b", UID: "backup-uid", Controller: &yes}}
				w.claims[c.Name] = c
			},
		},
		{
			name: "E.44 a stale reference to an earlier set of the same name is left alone",
			set:  newSet(1, withClaim, withPolicy(deleteDelete, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				yes := true
				c := w.claims["www-web-0"].DeepCopy()
				c.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", UID: "old-set-uid", Controller: &yes}}
				w.claims[c.Name] = c
			},
		},
		{
			name: "E.45 changing the policy fixes the references of existing claims",
			set:  newSet(2, withClaim),
			setup: func(w *world) {
				w.settle()
				w.change(withPolicy(deleteDelete, deleteRetain))
			},
			want: []string{"update claim www-web-0 refs=[StatefulSet/web]", "update claim www-web-1 refs=[StatefulSet/web]"},
		},
		{
			name: "E.45 back to Retain removes them",
			set:  newSet(2, withClaim, withPolicy(deleteDelete, deleteRetain)),
			setup: func(w *world) {
				w.settle()
				w.change(withPolicy(deleteRetain, deleteRetain))
			},
			want: []string{"update claim www-web-0 refs=[]", "update claim www-web-1 refs=[]"},
		},
		{
			name: "E.46 an adopted orphan outside the range takes its claim with it",
			set:  newSet(1, withClaim, withPolicy(deleteRetain, deleteDelete)),
			setup: func(w *world) {
				w.settle()
				o := orphan("web-1", true)
				o.Spec.Volumes = []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "www-web-1"}}}}
				w.addPod(o)
				w.claims["www-web-1"] = newClaim(w.set, &w.set.Spec.VolumeClaimTemplates[0], 1)
			},
			want:    []string{"update claim www-web-1 refs=[Pod/web-1]", "update web-1", "delete web-1 (scale down)"},
			blocked: []string{"waiting for web-1 to terminate"},
		},
		{
			name: "D.32 an existing claim is reused as it is",
			set:  newSet(1, withClaim),
			setup: func(w *world) {
				c := newClaim(w.set, &w.set.Spec.VolumeClaimTemplates[0], 0)
				c.Spec.StorageClassName = new(string)
				w.claims[c.Name] = c
			},
			want:    []string{"create revision $A #1", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "D.33 a claim being deleted blocks the pod's creation",
			set:  newSet(1, withClaim),
			setup: func(w *world) {
				c := newClaim(w.set, &w.set.Spec.VolumeClaimTemplates[0], 0)
				ts := metav1.NewTime(t0)
				c.DeletionTimestamp = &ts
				w.claims[c.Name] = c
			},
			want:    []string{"create revision $A #1"},
			blocked: []string{"waiting for claim www-web-0 to finish deleting before creating web-0"},
		},
		{
			name: "D.34 a Pending pod gets its missing claim back",
			set:  newSet(1, withClaim),
			setup: func(w *world) {
				w.sync()
				delete(w.claims, "www-web-0")
			},
			want:    []string{"create claim www-web-0 refs=[]"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "D.34 a Running pod does not",
			set:  newSet(1, withClaim),
			setup: func(w *world) {
				w.settle()
				delete(w.claims, "www-web-0")
			},
		},
	})
}

func TestReconcileClaimEvents(t *testing.T) {
	w := newWorld(t, newSet(1, withClaim, withPolicy(deleteDelete, deleteRetain)))
	w.settle()
	c := w.claims["www-web-0"].DeepCopy()
	yes := true
	c.OwnerReferences = append(c.OwnerReferences, metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Backup", Name: "b", UID: "backup-uid", Controller: &yes})
	w.claims[c.Name] = c
	checkEvents(t, w.sync().Events, []Event{{corev1.EventTypeWarning, "ConflictingController",
		"PersistentVolumeClaim www-web-0 has a conflicting OwnerReference that acts as a managing controller, the retention policy is ignored for this claim"}})
	checkEvents(t, w.sync().Events, nil)

	w = newWorld(t, newSet(1, withClaim))
	c = newClaim(w.set, &w.set.Spec.VolumeClaimTemplates[0], 0)
	ts := metav1.NewTime(t0)
	c.DeletionTimestamp = &ts
	w.claims[c.Name] = c
	checkEvents(t, w.sync().Events, []Event{{corev1.EventTypeWarning, "FailedCreate",
		"create Pod web-0 in StatefulSet web failed error: pvc www-web-0 is being deleted"}})
}

func TestReconcileDoesNotModifyInput(t *testing.T) {
	w := newWorld(t, newSet(3, withClaim, withPolicy(deleteDelete, deleteDelete)))
	w.settle()
	w.addPod(orphan("web-5", true))
	w.crash("web-0")
	w.scale(1)
	w.change(withImage("nginx:B"))
	in := w.input()
	before := deepCopyInput(in)
	Reconcile(in)
	after := deepCopyInput(in)
	if !equalJSON(t, before, after) {
		t.Errorf("Reconcile modified its input")
	}
	// Deterministic: the same input gives the same plan.
	if a, b := Reconcile(in), Reconcile(in); !equalJSON(t, a, b) {
		t.Errorf("two runs on the same input differ:\n%v\n%v", summary(a), summary(b))
	}
}

func TestReconcileAdoptsPlainOwnerReference(t *testing.T) {
	// M.97: a pod that refers to the set without being controlled by it is
	// adopted with one controller reference, not a second reference.
	w := newWorld(t, newSet(1))
	w.settle()
	p := w.pod("web-0").DeepCopy()
	no := false
	p.OwnerReferences[0].Controller = &no
	w.pods["web-0"] = p
	plan := w.sync()
	checkLines(t, "plan", summary(plan), []string{"update web-0"})
	refs := plan.UpdatePods[0].OwnerReferences
	if len(refs) != 1 || refs[0].Controller == nil || !*refs[0].Controller || refs[0].UID != w.set.UID {
		t.Errorf("owner references = %+v, want one controller reference to the set", refs)
	}
}
