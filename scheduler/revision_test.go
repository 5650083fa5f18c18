package scheduler

import (
	"strings"
	"testing"

	"github.com/stead-io/stead/api"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The revision data of newSet's template, as Kubernetes' getPatch writes it.
const templateAData = `{"spec":{"template":{"$patch":"replace","metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"image":"nginx:A","name":"nginx","resources":{}}],"restartPolicy":"Always"}}}}`

func TestRevisionPatchAndHash(t *testing.T) {
	data, err := revisionPatch(&newSet(1).Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != templateAData {
		t.Errorf("I.72 revision data:\n got  %s\n want %s", data, templateAData)
	}
	// Expected hashes computed independently: FNV-1 32 of data followed by
	// the decimal collision count, in decimal, each digit mapped through
	// "bcdfghjklmnpqrstvwxz2456789" (rand.SafeEncodeString).
	for _, tc := range []struct {
		collisions int32
		want       string
	}{
		{0, "77bd96675d"}, // 3368522318
		{1, "77bd96675f"}, // 3368522319
		{7, "77bd966757"}, // 3368522313
	} {
		if got := hashRevision(data, tc.collisions); got != tc.want {
			t.Errorf("I.73 hashRevision(data, %d) = %s, want %s", tc.collisions, got, tc.want)
		}
	}
	if got := revisionOf("nginx:A"); got != "web-77bd96675d" {
		t.Errorf("I.73 revision name = %s, want web-77bd96675d", got)
	}
	long := strings.Repeat("a", 230)
	if got := revisionName(long, "x"); got != strings.Repeat("a", 223)+"-x" {
		t.Errorf("revisionName of a long prefix = %d bytes", len(got))
	}
}

func TestNewRevision(t *testing.T) {
	set := newSet(1)
	set.Annotations = map[string]string{"team": "blue"}
	r, err := newRevision(set, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "web-77bd96675d" || r.Namespace != "default" || r.Revision != 4 || string(r.Data.Raw) != templateAData ||
		r.Kind != "ControllerRevision" || r.APIVersion != "apps/v1" {
		t.Errorf("I.73 revision = %s/%s #%d %s %s", r.Namespace, r.Name, r.Revision, r.APIVersion, r.Kind)
	}
	if r.Labels["app"] != "web" || r.Labels[api.LabelRevisionTemplateHash] != "77bd96675d" || len(r.Labels) != 2 {
		t.Errorf("I.73 labels = %v, want the template's plus the hash", r.Labels)
	}
	if r.Annotations["team"] != "blue" {
		t.Errorf("annotations = %v, want the set's", r.Annotations)
	}
	if ref := metav1.GetControllerOf(r); ref == nil || ref.UID != set.UID || ref.Kind != "StatefulSet" {
		t.Errorf("I.73 owner = %+v, want the set", r.OwnerReferences)
	}
	if set.Spec.Template.Labels[api.LabelRevisionTemplateHash] != "" {
		t.Errorf("newRevision modified the set's template labels")
	}

	tmpl, err := TemplateFromRevision(r)
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.Spec.Containers[0].Image != "nginx:A" || tmpl.Labels["app"] != "web" {
		t.Errorf("TemplateFromRevision = %+v", tmpl)
	}
	for _, raw := range []string{`{`, `{"spec":{}}`} {
		bad := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-x"}, Data: runtime.RawExtension{Raw: []byte(raw)}}
		if _, err := TemplateFromRevision(bad); err == nil || !strings.Contains(err.Error(), "controllerrevision web-x") {
			t.Errorf("TemplateFromRevision(%s) error = %v", raw, err)
		}
	}
}

func TestRevisionHistory(t *testing.T) {
	runReconcileCases(t, []reconcileCase{
		{
			name:    "I.73 a fresh set creates revision #1",
			set:     newSet(1),
			want:    []string{"create revision web-77bd96675d #1", "create web-0 @web-77bd96675d"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "I.74 an unchanged template reuses the newest revision",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.settle()
				w.scale(3)
			},
			want:    []string{"create web-2 @$B"},
			blocked: []string{"waiting for web-2 to be Running and Ready"},
		},
		{
			name: "I.74 rollback reuses the older revision, renumbered to max+1",
			set:  newSet(2),
			setup: func(w *world) {
				w.settle()
				w.change(withImage("nginx:B"))
				w.settle()
				w.change(withImage("nginx:C"))
				w.settle()
				w.change(withImage("nginx:A"))
			},
			want:    []string{"update revision $A #4", "delete web-1 (update)"},
			blocked: []string{"waiting for web-1 to be recreated at revision $A"},
		},
		{
			name: "I.74 a name taken by a revision with other data bumps the collision count",
			set:  newSet(1),
			setup: func(w *world) {
				w.revs["web-77bd96675d"] = &appsv1.ControllerRevision{
					ObjectMeta: metav1.ObjectMeta{Name: "web-77bd96675d", Namespace: "default", Labels: map[string]string{"app": "other"}},
					Data:       runtime.RawExtension{Raw: []byte(`{"other":true}`)},
					Revision:   1,
				}
			},
			want:    []string{"create revision web-77bd96675f #1", "create web-0 @web-77bd96675f"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "I.77 an orphaned revision matching the selector is adopted and used",
			set:  newSet(1),
			setup: func(w *world) {
				r, _ := newRevision(newSet(1), 3, 0)
				r.OwnerReferences = nil
				w.revs[r.Name] = r
			},
			want:    []string{"update revision $A #3", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
		{
			name: "I.77 a revision controlled by another set is not ours",
			set:  newSet(1),
			setup: func(w *world) {
				other := newSet(1, withImage("nginx:B"))
				other.UID = "other-set"
				r, _ := newRevision(other, 3, 0)
				w.revs[r.Name] = r
			},
			want:    []string{"create revision $A #1", "create web-0 @$A"},
			blocked: []string{"waiting for web-0 to be Running and Ready"},
		},
	})
}

func TestRevisionCollisionStatus(t *testing.T) {
	w := newWorld(t, newSet(1))
	w.revs["web-77bd96675d"] = &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: "web-77bd96675d", Namespace: "default"},
		Data:       runtime.RawExtension{Raw: []byte(`{"other":true}`)},
	}
	p := w.sync()
	if c := p.Status.CollisionCount; c == nil || *c != 1 || p.Status.UpdateRevision != "web-77bd96675f" {
		t.Errorf("I.74 J.84 status = %+v, want collisionCount 1 and update revision web-77bd96675f", p.Status)
	}
	// The count is kept: the next sync finds the same revision, creates nothing.
	p = w.sync()
	checkLines(t, "second sync", summary(p), nil)
	if c := p.Status.CollisionCount; c == nil || *c != 1 {
		t.Errorf("collisionCount after second sync = %v", c)
	}

	// A revision with the same name and data that the selector does not
	// select is used as it is, as Kubernetes does after AlreadyExists.
	w = newWorld(t, newSet(1))
	r, _ := newRevision(newSet(1), 1, 0)
	r.Labels = map[string]string{"app": "other"}
	w.revs[r.Name] = r
	checkLines(t, "same data", summary(w.sync()), []string{"create web-0 @web-77bd96675d"})
}

func TestRevisionRollbackStatus(t *testing.T) {
	// I.74, I.75: after a rollback, updateRevision is the prior revision's
	// name, and once the rollout completes it is current again.
	w := newWorld(t, newSet(2))
	w.settle()
	prior := w.set.Status.CurrentRevision
	w.change(withImage("nginx:B"))
	w.settle()
	if w.set.Status.CurrentRevision != revisionOf("nginx:B") {
		t.Fatalf("current revision = %s, want $B", w.set.Status.CurrentRevision)
	}
	w.change(withImage("nginx:A"))
	p := w.sync()
	if p.Status.UpdateRevision != prior || p.Status.CurrentRevision != revisionOf("nginx:B") {
		t.Errorf("after rollback: update %s current %s, want update %s current $B", p.Status.UpdateRevision, p.Status.CurrentRevision, prior)
	}
	w.settle()
	if w.set.Status.CurrentRevision != prior || w.revs[prior].Revision != 3 {
		t.Errorf("after rollout: current %s (#%d), want %s #3", w.set.Status.CurrentRevision, w.revs[prior].Revision, prior)
	}

	// I.75: a current revision that no longer exists falls back to the
	// update revision.
	w = newWorld(t, newSet(1))
	w.set.Status.CurrentRevision = "web-gone"
	if p := w.sync(); p.Status.CurrentRevision != revisionOf("nginx:A") {
		t.Errorf("current revision = %s, want the update revision", p.Status.CurrentRevision)
	}
}

func TestRevisionTruncation(t *testing.T) {
	limit := func(n int32) setOption {
		return func(s *appsv1.StatefulSet) { s.Spec.RevisionHistoryLimit = &n }
	}
	through := func(w *world, images ...string) {
		for _, img := range images {
			w.change(withImage(img))
			w.settle()
		}
	}
	for _, tc := range []struct {
		name string
		set  *appsv1.StatefulSet
		run  func(w *world)
		want []string
	}{
		{
			name: "I.76 limit 1 keeps one revision besides the live one",
			set:  newSet(2, limit(1)),
			run:  func(w *world) { through(w, "nginx:B", "nginx:C", "nginx:D") },
			want: []string{"$C", "$D"},
		},
		{
			name: "I.76 limit 0 keeps only live revisions",
			set:  newSet(2, limit(0)),
			run:  func(w *world) { through(w, "nginx:B", "nginx:C", "nginx:D") },
			want: []string{"$D"},
		},
		{
			name: "I.76 default limit 10 keeps all of four",
			set:  newSet(2),
			run:  func(w *world) { through(w, "nginx:B", "nginx:C", "nginx:D") },
			want: []string{"$A", "$B", "$C", "$D"},
		},
		{
			name: "I.76 a revision a pod is at stays live (OnDelete)",
			set:  newSet(2, limit(0), onDelete),
			run: func(w *world) {
				through(w, "nginx:B")
				w.userDelete("web-1")
				w.settle() // web-1 back at B; web-0 at A is current
				through(w, "nginx:C")
			},
			want: []string{"$A", "$B", "$C"},
		},
		{
			name: "I.76 and goes once no pod is at it",
			set:  newSet(2, limit(0), onDelete),
			run: func(w *world) {
				through(w, "nginx:B")
				w.userDelete("web-1")
				w.settle()
				through(w, "nginx:C")
				w.userDelete("web-1")
				w.settle() // web-1 back at C
			},
			want: []string{"$A", "$C"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.set)
			w.settle()
			tc.run(w)
			var got []string
			for _, name := range sortedKeys(w.revs) {
				got = append(got, name)
			}
			want := expand(tc.want)
			sortStrings(want)
			checkLines(t, "revisions left", got, want)
		})
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestRevisionTemplateOfCurrentRevision(t *testing.T) {
	// H.62: pods below the partition are built from the current revision's
	// stored template, not from the set's template.
	w := newWorld(t, newSet(2))
	w.settle()
	w.change(withImage("nginx:B"), withPartition(1))
	w.settle()
	w.fail("web-0")
	w.sync()
	w.gone("web-0")
	p := w.sync()
	if len(p.CreatePods) != 1 || p.CreatePods[0].Spec.Containers[0].Image != "nginx:A" {
		t.Fatalf("recreated web-0 = %v, want image nginx:A", summary(p))
	}
}
