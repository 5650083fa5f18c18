package scheduler

import (
	"flag"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	walkSeed  = flag.Int64("seed", 0, "seed of the StatefulSet random walk (0 picks one from the clock)")
	walkSteps = flag.Int("steps", 2000, "steps of each StatefulSet random walk")
)

// TestRandomWalk drives sets of every flavour through random pod failures,
// readiness changes, deletions, scaling, template, partition, start and
// minReadySeconds changes and checks the controller's invariants after
// every sync. Replay a failure with -seed.
func TestRandomWalk(t *testing.T) {
	seed := *walkSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	steps := *walkSteps
	if testing.Short() {
		steps /= 4
	}
	t.Logf("seed %d (replay with: go test ./scheduler -run TestRandomWalk -seed %d)", seed, seed)
	configs := []struct {
		name string
		opts []setOption
	}{
		{"OrderedReady", nil},
		{"Parallel", []setOption{parallel}},
		{"OrderedReady OnDelete", []setOption{onDelete}},
		{"OrderedReady maxUnavailable 2", []setOption{withMaxUnavailable(intstr.FromInt32(2))}},
		{"Parallel maxUnavailable 50%", []setOption{parallel, withMaxUnavailable(intstr.FromString("50%"))}},
	}
	for i, c := range configs {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed + int64(i)))
			wk := &walk{t: t, rng: rng, w: newWorld(t, newSet(int32(1+rng.Intn(4)), append([]setOption{withClaim}, c.opts...)...))}
			wk.w.lingerClaims = true
			wk.run(steps)
		})
	}
}

type walk struct {
	t    *testing.T
	rng  *rand.Rand
	w    *world
	step int
	// trace holds what happened in the last steps, printed on failure.
	trace []string
	// seen counts what the walk exercised, logged at the end.
	seen map[string]int
}

// tally counts the kinds of actions a plan holds.
func (wk *walk) tally(p Plan) {
	if wk.seen == nil {
		wk.seen = map[string]int{}
	}
	wk.seen["create pod"] += len(p.CreatePods)
	wk.seen["update pod"] += len(p.UpdatePods)
	wk.seen["create claim"] += len(p.CreateClaims)
	wk.seen["update claim"] += len(p.UpdateClaims)
	wk.seen["delete claim"] += len(p.DeleteClaims)
	wk.seen["create revision"] += len(p.CreateRevisions)
	wk.seen["update revision"] += len(p.UpdateRevisions)
	wk.seen["delete revision"] += len(p.DeleteRevisions)
	for _, d := range p.DeletePods {
		wk.seen["delete pod ("+string(d.Reason)+")"]++
	}
	if len(p.Blocked) > 0 {
		wk.seen["blocked sync"]++
	}
}

func (wk *walk) note(format string, args ...interface{}) {
	wk.trace = append(wk.trace, fmt.Sprintf("step %d: ", wk.step)+fmt.Sprintf(format, args...))
	if len(wk.trace) > 40 {
		wk.trace = wk.trace[len(wk.trace)-40:]
	}
}

func (wk *walk) fatalf(format string, args ...interface{}) {
	wk.t.Helper()
	wk.t.Fatalf("step %d: %s\nrecent steps:\n%s\npods: %v", wk.step, fmt.Sprintf(format, args...),
		strings.Join(wk.trace, "\n"), wk.w.podNames())
}

func (wk *walk) run(steps int) {
	w := wk.w
	for wk.step = 0; wk.step < steps; wk.step++ {
		wk.perturb()
		in := deepCopyInput(w.input())
		p := Reconcile(w.input())
		wk.note("%v blocked=%v", summary(p), blockedSummary(p))
		wk.check(in, p)
		wk.tally(p)
		w.apply(p)
		w.now = w.now.Add(time.Duration(wk.rng.Intn(8)) * time.Second)
	}
	wk.converge()
	var seen []string
	for _, k := range sortedKeys(wk.seen) {
		seen = append(seen, fmt.Sprintf("%s: %d", k, wk.seen[k]))
	}
	wk.t.Logf("exercised: %s", strings.Join(seen, ", "))
}

// perturb changes the world at random, as users, nodes and time would.
func (wk *walk) perturb() {
	w, rng := wk.w, wk.rng
	// Terminating pods go away after a while (the agent confirms).
	for _, name := range sortedKeys(w.pods) {
		if w.pods[name].DeletionTimestamp != nil && rng.Intn(10) < 6 {
			delete(w.pods, name)
			wk.note("%s gone", name)
		}
	}
	// Claims being deleted go away after a while.
	for _, name := range sortedKeys(w.claims) {
		if w.claims[name].DeletionTimestamp != nil && rng.Intn(2) == 0 {
			delete(w.claims, name)
			wk.note("claim %s gone", name)
		}
	}
	// Pods change state as the agents report.
	for _, name := range sortedKeys(w.pods) {
		p := w.pods[name]
		if p.DeletionTimestamp != nil || rng.Intn(10) >= 3 {
			continue
		}
		r := rng.Intn(100)
		switch {
		case p.Status.Phase == corev1.PodPending && r < 60, p.Status.Phase == corev1.PodRunning && !isRunningAndReady(p) && r < 70:
			w.ready(name)
			wk.note("%s ready", name)
		case p.Status.Phase == corev1.PodPending && r < 90, isRunningAndReady(p) && r < 15:
			w.crash(name)
			wk.note("%s unready", name)
		case (p.Status.Phase == corev1.PodPending || p.Status.Phase == corev1.PodRunning) && r >= 96:
			w.fail(name)
			wk.note("%s failed", name)
		case p.Status.Phase == corev1.PodRunning && r >= 94:
			w.setPhase(name, corev1.PodSucceeded, corev1.ConditionFalse)
			wk.note("%s succeeded", name)
		}
	}
	// Users act now and then.
	if rng.Intn(100) >= 12 {
		return
	}
	set := w.set
	switch rng.Intn(9) {
	case 0, 1:
		n := int32(rng.Intn(6))
		w.scale(n)
		wk.note("scale to %d", n)
	case 2, 3:
		img := "nginx:" + string(rune('A'+rng.Intn(4)))
		w.change(withImage(img))
		wk.note("image %s", img)
	case 4:
		if set.Spec.UpdateStrategy.RollingUpdate != nil {
			p := int32(rng.Intn(int(*set.Spec.Replicas) + 2))
			w.change(withPartition(p))
			wk.note("partition %d", p)
		}
	case 5:
		m := []int32{0, 0, 5, 20}[rng.Intn(4)]
		w.change(withMinReady(m))
		wk.note("minReadySeconds %d", m)
	case 6:
		s := int32(rng.Intn(3))
		w.change(withStart(s))
		wk.note("ordinals.start %d", s)
	case 7:
		pols := []appsv1.PersistentVolumeClaimRetentionPolicyType{deleteRetain, deleteDelete}
		wd, ws := pols[rng.Intn(2)], pols[rng.Intn(2)]
		replace := []string{"true", "false"}[rng.Intn(2)]
		limit := []int32{0, 1, 2, 10}[rng.Intn(4)]
		w.change(withPolicy(wd, ws), func(s *appsv1.StatefulSet) {
			s.Annotations = map[string]string{api.AnnotationReplaceStuckPods: replace}
			s.Spec.RevisionHistoryLimit = &limit
		})
		wk.note("retention %s/%s, replace-stuck-pods %s, revisionHistoryLimit %d", wd, ws, replace, limit)
	case 8:
		names := sortedKeys(w.pods)
		if len(names) == 0 {
			return
		}
		name := names[rng.Intn(len(names))]
		if w.pods[name].DeletionTimestamp != nil {
			return
		}
		if rng.Intn(2) == 0 {
			w.userDelete(name)
			wk.note("user deletes %s", name)
		} else {
			p := w.pods[name].DeepCopy()
			p.OwnerReferences = nil
			delete(p.Labels, api.LabelPodName)
			w.pods[name] = p
			wk.note("%s orphaned and identity label stripped", name)
		}
	}
}

// walkAvailable is the test's own reading of G.57–G.58 and K: an existing,
// non-terminating pod, Running, Ready, and Ready for more than minReadySeconds.
func walkAvailable(p *corev1.Pod, minReady int32, now time.Time) bool {
	if p == nil || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue &&
				(minReady == 0 || c.LastTransitionTime.Add(time.Duration(minReady)*time.Second).Before(now))
		}
	}
	return false
}

func ordinalOf(name string) int {
	_, ord, _ := api.ParseOrdinal(name)
	return ord
}

// check verifies the invariants of one plan against the state it was made from.
func (wk *walk) check(in Input, p Plan) {
	wk.t.Helper()
	set := in.Set
	start, replicas := startOrdinal(set), specReplicas(set)
	inRange := func(o int) bool { return o >= start && o < start+replicas }
	ordered := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	pods := map[string]*corev1.Pod{}
	for _, pod := range in.Pods {
		pods[pod.Name] = pod
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	for _, c := range in.Claims {
		claims[c.Name] = c
	}
	revImage := map[string]string{}
	for _, r := range append(append([]*appsv1.ControllerRevision{}, in.Revisions...), p.CreateRevisions...) {
		tmpl, err := TemplateFromRevision(r)
		if err != nil {
			wk.fatalf("revision %s: %v", r.Name, err)
		}
		revImage[r.Name] = tmpl.Spec.Containers[0].Image
	}
	available := func(o int) bool {
		return walkAvailable(pods[api.ReplicaName(set.Name, o)], set.Spec.MinReadySeconds, in.Now)
	}
	allInRangeAvailable := func() bool {
		for o := start; o < start+replicas; o++ {
			if !available(o) {
				return false
			}
		}
		return true
	}
	var condemned []int
	for name := range pods {
		if o := ordinalOf(name); !inRange(o) {
			condemned = append(condemned, o)
		}
	}

	// Status counts the pods the set owns once the plan is applied (J.80).
	if p.Status.Replicas != int32(len(pods)+len(p.CreatePods)) {
		wk.fatalf("J.80 status.replicas %d, %d pods exist and %d are created", p.Status.Replicas, len(pods), len(p.CreatePods))
	}

	// Creations.
	created := map[string]bool{}
	for _, pod := range p.CreatePods {
		o := ordinalOf(pod.Name)
		if created[pod.Name] || pods[pod.Name] != nil {
			wk.fatalf("B.12 two pods for ordinal %d", o)
		}
		created[pod.Name] = true
		if !inRange(o) {
			wk.fatalf("F.52 %s created outside the range [%d,%d)", pod.Name, start, start+replicas)
		}
		if ordered {
			for k := start; k < o; k++ {
				if !available(k) {
					wk.fatalf("F.49 %s created while %s is not Running, Ready and Available", pod.Name, api.ReplicaName(set.Name, k))
				}
			}
		}
		// H.62, H.65: the revision the position calls for.
		wantImage := set.Spec.Template.Spec.Containers[0].Image
		if isRollingUpdate(set) && o < start+partition(set) {
			if img, ok := revImage[set.Status.CurrentRevision]; ok {
				wantImage = img
			}
		}
		rev := pod.Labels[api.LabelRevisionHash]
		if pod.Spec.Containers[0].Image != wantImage || revImage[rev] != wantImage {
			wk.fatalf("H.62 %s created with image %s at revision %s (%s), want image %s",
				pod.Name, pod.Spec.Containers[0].Image, rev, revImage[rev], wantImage)
		}
		// D.33, E.43: never on a claim that is going away.
		claim := claims[api.VolumeName("www", set.Name, o)]
		if claim != nil && claim.DeletionTimestamp != nil {
			wk.fatalf("D.33 %s created on a claim being deleted", pod.Name)
		}
		if claim != nil && policyOf(set).deleteWhenScaled {
			for _, r := range claim.OwnerReferences {
				if r.Kind == "Pod" {
					wk.fatalf("E.43 %s created on a claim still owned by pod %s", pod.Name, r.UID)
				}
			}
		}
	}
	if ordered && len(p.CreatePods) > 1 {
		wk.fatalf("F.48b OrderedReady created %d pods in one sync", len(p.CreatePods))
	}

	// Deletions.
	counts := map[DeletionReason]int{}
	for _, d := range p.DeletePods {
		pod := pods[d.Name]
		o := ordinalOf(d.Name)
		counts[d.Reason]++
		if pod == nil || pod.DeletionTimestamp != nil {
			wk.fatalf("K.86 deletion of %s which is gone or already terminating", d.Name)
		}
		switch d.Reason {
		case ReasonFailed:
			if pod.Status.Phase != corev1.PodFailed && pod.Status.Phase != corev1.PodSucceeded {
				wk.fatalf("F.48a %s deleted as failed in phase %s", d.Name, pod.Status.Phase)
			}
		case ReasonScaleDown:
			if inRange(o) {
				wk.fatalf("F.51 in-range %s deleted for scale-down", d.Name)
			}
			if !ordered {
				break
			}
			if !allInRangeAvailable() {
				wk.fatalf("F.49 F.51 %s deleted for scale-down while an in-range pod is not Available", d.Name)
			}
			lowestUnavailable := -1
			for _, c := range condemned {
				if c > o {
					wk.fatalf("F.51 %s deleted while higher condemned %s still exists", d.Name, api.ReplicaName(set.Name, c))
				}
				if !available(c) && (lowestUnavailable < 0 || c < lowestUnavailable) {
					lowestUnavailable = c
				}
			}
			if !available(o) && o != lowestUnavailable {
				wk.fatalf("F.51 unhealthy %s deleted while lower %s is unhealthy", d.Name, api.ReplicaName(set.Name, lowestUnavailable))
			}
		case ReasonUpdate:
			if !isRollingUpdate(set) {
				wk.fatalf("H.68 %s deleted for update under OnDelete", d.Name)
			}
			if !inRange(o) || o < start+partition(set) {
				wk.fatalf("H.66 %s deleted for update outside [start+partition, end)", d.Name)
			}
			if pod.Labels[api.LabelRevisionHash] == p.Status.UpdateRevision {
				wk.fatalf("H.63 %s deleted for update while at the update revision", d.Name)
			}
			if ordered && (!allInRangeAvailable() || len(condemned) > 0) {
				wk.fatalf("F.49 F.52 %s deleted for update while scaling or with an unavailable pod", d.Name)
			}
			if set.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable == nil {
				for k := o + 1; k < start+replicas; k++ {
					q := pods[api.ReplicaName(set.Name, k)]
					if !available(k) || q.Labels[api.LabelRevisionHash] != p.Status.UpdateRevision {
						wk.fatalf("H.64 %s deleted for update before %s was updated and Available", d.Name, api.ReplicaName(set.Name, k))
					}
				}
			}
		case ReasonStuckRollout:
			if !ordered || !isRollingUpdate(set) || set.Annotations[api.AnnotationReplaceStuckPods] == "false" {
				wk.fatalf("P1 %s replaced as stuck where the rule is off", d.Name)
			}
			// The revision its position calls for (H.62) must be the
			// update revision, and the pod must be at another one.
			current := p.Status.UpdateRevision
			if _, ok := revImage[set.Status.CurrentRevision]; ok {
				current = set.Status.CurrentRevision
			}
			want := p.Status.UpdateRevision
			if o < start+partition(set) {
				want = current
			}
			if isRunningAndReady(pod) || pod.Labels[api.LabelRevisionHash] == p.Status.UpdateRevision || !inRange(o) || want != p.Status.UpdateRevision {
				wk.fatalf("P1 %s replaced as stuck but it is Ready, updated, or its position calls for %s", d.Name, want)
			}
			for k := start; k < o; k++ {
				if !available(k) {
					wk.fatalf("P1 %s replaced while a lower pod is not Available", d.Name)
				}
			}
		default:
			wk.fatalf("unexpected deletion reason %q for %s", d.Reason, d.Name)
		}
	}
	if ordered && counts[ReasonScaleDown] > 1 {
		wk.fatalf("F.51 OrderedReady deleted %d pods for scale-down in one sync", counts[ReasonScaleDown])
	}
	if mu := set.Spec.UpdateStrategy.RollingUpdate; mu != nil && mu.MaxUnavailable == nil && counts[ReasonUpdate] > 1 {
		wk.fatalf("H.63 %d pods deleted for update in one sync", counts[ReasonUpdate])
	}
	if mu := set.Spec.UpdateStrategy.RollingUpdate; mu != nil && mu.MaxUnavailable != nil {
		unavailable := 0
		for o := start; o < start+replicas; o++ {
			if !available(o) {
				unavailable++
			}
		}
		if m := maxUnavailableOf(set, replicas); counts[ReasonUpdate] > 0 && counts[ReasonUpdate] > m-unavailable {
			wk.fatalf("H.69 %d deleted for update with %d unavailable and maxUnavailable %d", counts[ReasonUpdate], unavailable, m)
		}
	}

	// I.76: live revisions are never deleted.
	live := map[string]bool{p.Status.CurrentRevision: true, p.Status.UpdateRevision: true, set.Status.CurrentRevision: true}
	for _, pod := range in.Pods {
		live[pod.Labels[api.LabelRevisionHash]] = true
	}
	for _, name := range p.DeleteRevisions {
		if live[name] {
			wk.fatalf("I.76 live revision %s deleted", name)
		}
	}

	// Claims are never deleted while a pod mounts them.
	for _, name := range p.DeleteClaims {
		for _, pod := range in.Pods {
			for _, v := range pod.Spec.Volumes {
				if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == name {
					wk.fatalf("E claim %s deleted while %s mounts it", name, pod.Name)
				}
			}
		}
	}
}

// converge stops the chaos, heals every pod and checks the set reaches its
// desired state, then deletes it and checks everything it owns goes.
func (wk *walk) converge() {
	w := wk.w
	if w.set.Spec.UpdateStrategy.RollingUpdate != nil {
		w.change(withPartition(0))
	}
	for i := 0; i < 200; i++ {
		wk.step++
		w.goneAll()
		for name, p := range w.pods {
			if p.DeletionTimestamp == nil && !isRunningAndReady(p) {
				w.ready(name)
			}
		}
		for name, c := range w.claims {
			if c.DeletionTimestamp != nil {
				delete(w.claims, name)
			}
		}
		p := w.sync()
		wk.note("converge: %v blocked=%v", summary(p), blockedSummary(p))
		w.now = w.now.Add(time.Minute)
		if len(summary(p)) == 0 && !p.StatusChanged && len(p.Blocked) == 0 && len(w.podsTerminating()) == 0 {
			break
		}
	}
	set := w.set
	var want []string
	for o := startOrdinal(set); o < startOrdinal(set)+specReplicas(set); o++ {
		want = append(want, api.ReplicaName(set.Name, o))
	}
	if got := w.podNames(); !equalLines(got, want) {
		wk.fatalf("converged to pods %v, want %v", got, want)
	}
	st := set.Status
	if st.ReadyReplicas != int32(len(want)) || st.Replicas != int32(len(want)) {
		wk.fatalf("converged status %+v", st)
	}
	if isRollingUpdate(set) {
		for _, name := range want {
			if rev := w.pods[name].Labels[api.LabelRevisionHash]; rev != st.UpdateRevision {
				wk.fatalf("H.63 converged with %s at %s, update revision %s", name, rev, st.UpdateRevision)
			}
		}
		if st.CurrentRevision != st.UpdateRevision || st.UpdatedReplicas != int32(len(want)) {
			wk.fatalf("H.70 rollout did not complete: %+v", st)
		}
	}

	// K.88: delete the set; its pods all go and nothing else remains.
	w.change(func(s *appsv1.StatefulSet) { ts := metav1.NewTime(w.now); s.DeletionTimestamp = &ts })
	for i := 0; ; i++ {
		if i > 10 {
			wk.fatalf("K.88 deleting the set did not complete; pods %v", w.podNames())
		}
		p := w.sync()
		if len(p.CreatePods)+len(p.CreateClaims)+len(p.CreateRevisions) > 0 {
			wk.fatalf("K.88 a deleted set created objects: %v", summary(p))
		}
		w.goneAll()
		if p.DeletionComplete {
			break
		}
	}
	if len(w.pods) != 0 || len(w.revs) != 0 {
		wk.fatalf("after deletion: pods %v revisions %v", w.podNames(), sortedKeys(w.revs))
	}
	// E.38: with whenDeleted=Delete no claim owned by the set survives it.
	for _, name := range sortedKeys(w.claims) {
		c := w.claims[name]
		if policyOf(w.set).deleteWhenDeleted && c.DeletionTimestamp == nil && hasOwnerRef(c, w.set.UID) {
			wk.fatalf("E.38 claim %s owned by the deleted set is kept", name)
		}
	}
}

func (w *world) podsTerminating() []string {
	var out []string
	for name, p := range w.pods {
		if p.DeletionTimestamp != nil {
			out = append(out, name)
		}
	}
	return out
}
