package raftstoretest_test

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/raftstore/raftstoretest"
)

func TestViewOf(t *testing.T) {
	v := raftstoretest.ViewOf(t,
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0"}},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}},
	)
	p, ok := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, "default", "web-0")
	if !ok || p.ResourceVersion != "1" || p.Kind != "Pod" || p.APIVersion != "v1" {
		t.Errorf("web-0: %v %+v", ok, p)
	}
	if _, ok := v.Get(raftstore.Nodes, "", "n1"); !ok {
		t.Errorf("node n1 missing")
	}
	if v.Index() != 1 || v.Len() != 2 {
		t.Errorf("index %d, %d objects; want 1, 2", v.Index(), v.Len())
	}
}

func TestNewStore(t *testing.T) {
	s := raftstoretest.NewStore(t)
	if !s.IsLeader() {
		t.Fatal("not the leader")
	}
	idx := raftstoretest.Apply(t, s, raftstoretest.Put(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}))
	ns, ok := s.View().Get(raftstore.Namespaces, "", "default")
	if !ok || ns.GetResourceVersion() == "" || s.View().Index() != idx {
		t.Errorf("namespace after apply at %d: %v %v (view at %d)", idx, ok, ns, s.View().Index())
	}
}
