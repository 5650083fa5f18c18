package scheduler

import (
	"errors"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestStatusFields(t *testing.T) {
	// J.79–J.84 on a hand-built world: set at generation 3 rolling from A to
	// B with minReadySeconds 10.
	set := newSet(4, withMinReady(10), withImage("nginx:B"), withPartition(4))
	set.Generation = 3
	set.Status.CurrentRevision = revisionOf("nginx:A")
	set.Status.Conditions = []appsv1.StatefulSetCondition{{Type: "Custom", Status: corev1.ConditionTrue, Reason: "Written"}}
	w := newWorld(t, set)
	w.now = t0.Add(time.Hour)
	revA, _ := newRevision(newSet(1), 1, 0)
	w.revs[revA.Name] = revA

	pod := func(name, image string, phase corev1.PodPhase, readySince time.Duration, terminating bool) *corev1.Pod {
		s := newSet(1, withImage(image))
		rev, _ := newRevision(s, 1, 0)
		p := newPod(w.set, &s.Spec.Template, podOrdinal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}), rev.Name)
		p.Status.Phase = phase
		if readySince > 0 {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(w.now.Add(-readySince))}}
		}
		if terminating {
			ts := metav1.NewTime(w.now)
			p.DeletionTimestamp = &ts
		}
		return p
	}
	w.addPod(pod("web-0", "nginx:A", corev1.PodRunning, time.Hour, false))     // ready, available, current
	w.addPod(pod("web-1", "nginx:A", corev1.PodRunning, 5*time.Second, false)) // ready, not yet available, current
	w.addPod(pod("web-2", "nginx:B", corev1.PodRunning, time.Hour, true))      // terminating: ready and available, no revision
	w.addPod(pod("web-3", "nginx:B", corev1.PodPending, 0, false))             // updated
	w.addPod(pod("web-5", "nginx:B", corev1.PodRunning, 2*time.Hour, false))   // condemned: counts
	notOurs := pod("web-9", "nginx:B", corev1.PodRunning, time.Hour, false)    // released? no: other controller
	notOurs.OwnerReferences[0].UID = "other"
	w.addPod(notOurs)

	p := w.sync()
	st := p.Status
	want := appsv1.StatefulSetStatus{
		ObservedGeneration: 3,
		Replicas:           5, // J.80: web-0,1,2,3,5
		ReadyReplicas:      4, // J.81: web-0,1,2,5
		AvailableReplicas:  3, // J.82: web-0,2,5
		CurrentReplicas:    2, // J.83: web-0,1
		UpdatedReplicas:    2, // J.83: web-3,5
		CurrentRevision:    revisionOf("nginx:A"),
		UpdateRevision:     revisionOf("nginx:B"),
	}
	if st.ObservedGeneration != want.ObservedGeneration || st.Replicas != want.Replicas || st.ReadyReplicas != want.ReadyReplicas ||
		st.AvailableReplicas != want.AvailableReplicas || st.CurrentReplicas != want.CurrentReplicas ||
		st.UpdatedReplicas != want.UpdatedReplicas || st.CurrentRevision != want.CurrentRevision || st.UpdateRevision != want.UpdateRevision {
		t.Errorf("status =\n %+v\nwant\n %+v", st, want)
	}
	if st.CollisionCount == nil || *st.CollisionCount != 0 {
		t.Errorf("J.84 collisionCount = %v, want 0", st.CollisionCount)
	}
	if len(st.Conditions) != 1 || st.Conditions[0].Reason != "Written" {
		t.Errorf("A.9 J.84 conditions = %+v, want the stored ones kept", st.Conditions)
	}
	if !p.StatusChanged {
		t.Errorf("J.85 StatusChanged = false for a new status")
	}
}

func TestStatusChangedOnlyWhenDifferent(t *testing.T) {
	w := newWorld(t, newSet(2))
	w.settle()
	if p := w.sync(); p.StatusChanged {
		t.Errorf("J.85 StatusChanged on a settled set")
	}
	w.crash("web-1")
	if p := w.sync(); !p.StatusChanged || p.Status.ReadyReplicas != 1 {
		t.Errorf("J.85 after web-1 unready: changed=%v ready=%d", p.StatusChanged, p.Status.ReadyReplicas)
	}
	w.change(func(s *appsv1.StatefulSet) { s.Spec.RevisionHistoryLimit = new(int32) })
	if p := w.sync(); !p.StatusChanged || p.Status.ObservedGeneration != w.set.Generation {
		t.Errorf("J.79 after a spec change: changed=%v observed=%d", p.StatusChanged, p.Status.ObservedGeneration)
	}
}

func TestStatusRollingUpdateAccounting(t *testing.T) {
	w := newWorld(t, newSet(3))
	w.settle()
	w.change(withImage("nginx:B"))
	p := w.sync()
	// J.83: the pod deleted for the update no longer counts as current.
	if st := p.Status; st.CurrentReplicas != 2 || st.UpdatedReplicas != 0 || st.Replicas != 3 {
		t.Errorf("after the first update deletion: %+v", st)
	}
	w.gone("web-2")
	w.sync()
	w.crash("web-2")
	p = w.sync()
	if p.Status.CurrentRevision != revisionOf("nginx:A") {
		t.Errorf("H.70 promoted with an unready pod: %+v", p.Status)
	}

	// H.70: OnDelete never promotes the update revision.
	w = newWorld(t, newSet(2, onDelete))
	w.settle()
	w.change(withImage("nginx:B"))
	w.sync()
	w.userDelete("web-0", "web-1")
	w.settle()
	if st := w.set.Status; st.UpdatedReplicas != 2 || st.CurrentRevision != revisionOf("nginx:A") || st.CurrentReplicas != 0 {
		t.Errorf("H.70 OnDelete status = %+v, want current revision kept", st)
	}
}

func TestStatusAvailability(t *testing.T) {
	// G.61: 2 Ready pods; minReadySeconds 30 gives 0 available for 30 s,
	// 3600 takes them away again, 0 gives them back.
	w := newWorld(t, newSet(2, parallel))
	w.sync()
	w.ready("web-0", "web-1")
	if p := w.sync(); p.Status.AvailableReplicas != 2 || p.RequeueAfter != 0 {
		t.Errorf("minReadySeconds 0: available %d requeue %v", p.Status.AvailableReplicas, p.RequeueAfter)
	}
	w.change(withMinReady(30))
	w.now = w.now.Add(4 * time.Second)
	p := w.sync()
	if p.Status.AvailableReplicas != 0 {
		t.Errorf("minReadySeconds 30 after 4 s: available %d", p.Status.AvailableReplicas)
	}
	// F.56: re-sync when the first pod becomes Available.
	if want := 26*time.Second + availabilityEpsilon; p.RequeueAfter != want {
		t.Errorf("F.56 RequeueAfter = %v, want %v", p.RequeueAfter, want)
	}
	w.now = w.now.Add(p.RequeueAfter)
	if p := w.sync(); p.Status.AvailableReplicas != 2 || p.RequeueAfter != 0 {
		t.Errorf("after the re-sync: available %d requeue %v", p.Status.AvailableReplicas, p.RequeueAfter)
	}
	w.change(withMinReady(3600))
	if p := w.sync(); p.Status.AvailableReplicas != 0 {
		t.Errorf("minReadySeconds 3600: available %d", p.Status.AvailableReplicas)
	}
	w.change(withMinReady(0))
	if p := w.sync(); p.Status.AvailableReplicas != 2 {
		t.Errorf("minReadySeconds back to 0: available %d", p.Status.AvailableReplicas)
	}

	// F.56: with no pod Ready, re-sync after minReadySeconds.
	w = newWorld(t, newSet(1, withMinReady(10)))
	if p := w.sync(); p.RequeueAfter != 10*time.Second {
		t.Errorf("F.56 RequeueAfter with no Ready pod = %v, want 10s", p.RequeueAfter)
	}
}

func TestRolloutStatus(t *testing.T) {
	rev := func(s string) string { return "web-" + s }
	build := func(mut func(s *appsv1.StatefulSet)) *appsv1.StatefulSet {
		s := newSet(3)
		s.Generation = 2
		s.Status = appsv1.StatefulSetStatus{ObservedGeneration: 2, Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 3, CurrentReplicas: 3,
			CurrentRevision: rev("a"), UpdateRevision: rev("a")}
		mut(s)
		return s
	}
	noRollingUpdate := func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate = nil }
	for _, tc := range []struct {
		name string
		set  *appsv1.StatefulSet
		msg  string
		done bool
		err  error
	}{
		{"H.71 OnDelete is an error", build(onDelete), "", true, ErrRolloutStatusUnsupported},
		{"H.71 never observed", build(func(s *appsv1.StatefulSet) { s.Status.ObservedGeneration = 0 }),
			"Waiting for statefulset spec update to be observed...", false, nil},
		{"H.71 newer generation not observed", build(func(s *appsv1.StatefulSet) { s.Generation = 3 }),
			"Waiting for statefulset spec update to be observed...", false, nil},
		{"H.71 waiting for ready pods", build(func(s *appsv1.StatefulSet) { s.Status.ReadyReplicas = 2 }),
			"Waiting for 1 pods to be ready...", false, nil},
		{"H.71 partitioned roll out in progress", build(func(s *appsv1.StatefulSet) { s.Status.UpdatedReplicas = 1 }),
			"Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated...", false, nil},
		{"H.71 partitioned roll out complete", build(func(s *appsv1.StatefulSet) {}),
			"partitioned roll out complete: 3 new pods have been updated...", true, nil},
		{"H.71 partition 2: one updated pod is complete", build(func(s *appsv1.StatefulSet) {
			withPartition(2)(s)
			s.Status.UpdatedReplicas = 1
		}), "partitioned roll out complete: 1 new pods have been updated...", true, nil},
		{"H.71 without rollingUpdate: waiting for the revision", build(func(s *appsv1.StatefulSet) {
			noRollingUpdate(s)
			s.Status.UpdatedReplicas = 2
			s.Status.UpdateRevision = rev("b")
		}), "waiting for statefulset rolling update to complete 2 pods at revision web-b...", false, nil},
		{"H.71 without rollingUpdate: complete", build(noRollingUpdate),
			"statefulset rolling update complete 3 pods at revision web-a...", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, done, err := RolloutStatus(tc.set)
			if msg != tc.msg || done != tc.done || !errors.Is(err, tc.err) {
				t.Errorf("RolloutStatus = %q, %v, %v; want %q, %v, %v", msg, done, err, tc.msg, tc.done, tc.err)
			}
		})
	}
	if ErrRolloutStatusUnsupported.Error() != "rollout status is only available for RollingUpdate strategy type" {
		t.Errorf("error text = %q", ErrRolloutStatusUnsupported)
	}
}

func TestRolloutStatusFollowsReconcile(t *testing.T) {
	// The status Reconcile writes drives RolloutStatus through a rollout.
	w := newWorld(t, newSet(3))
	w.settle()
	w.change(withImage("nginx:B"))
	var msgs []string
	for i := 0; i < 50; i++ {
		w.sync()
		msg, done, err := RolloutStatus(w.set)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 || msgs[len(msgs)-1] != msg {
			msgs = append(msgs, msg)
		}
		if done {
			break
		}
		for name, pod := range w.pods {
			if pod.Status.Phase == corev1.PodPending {
				w.ready(name)
			}
		}
		w.goneAll()
	}
	checkLines(t, "messages", msgs, []string{
		"Waiting for partitioned roll out to finish: 0 out of 3 new pods have been updated...",
		"Waiting for 1 pods to be ready...",
		"Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated...",
		"Waiting for 1 pods to be ready...",
		"Waiting for partitioned roll out to finish: 2 out of 3 new pods have been updated...",
		"Waiting for 1 pods to be ready...",
		"partitioned roll out complete: 3 new pods have been updated...",
	})
}

func TestStatusCountsThePlan(t *testing.T) {
	// J.80, J.83: the status written with a plan counts the pods it
	// creates and treats the pods it deletes as terminating.
	w := newWorld(t, newSet(3, parallel))
	p := w.sync()
	if st := p.Status; st.Replicas != 3 || st.CurrentReplicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 0 {
		t.Errorf("first sync status = %+v, want 3 pods counted, none Ready", st)
	}
	if p := w.sync(); p.StatusChanged {
		t.Errorf("J.85 second sync with nothing new changed the status: %+v", p.Status)
	}
	w.settle()
	w.scale(1)
	p = w.sync()
	if st := p.Status; st.Replicas != 3 || st.ReadyReplicas != 3 || st.CurrentReplicas != 1 || st.UpdatedReplicas != 1 {
		t.Errorf("scale-down status = %+v, want 3 pods, 3 Ready, 1 not terminating", st)
	}
}
