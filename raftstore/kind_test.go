package raftstore_test

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/raftstore"
)

func TestKinds(t *testing.T) {
	cases := []struct {
		kind       raftstore.Kind
		apiVersion string
		typeName   string
		namespaced bool
	}{
		{raftstore.Namespaces, "v1", "Namespace", false},
		{raftstore.StatefulSets, "apps/v1", "StatefulSet", true},
		{raftstore.Services, "v1", "Service", true},
		{raftstore.Pods, "v1", "Pod", true},
		{raftstore.PersistentVolumeClaims, "v1", "PersistentVolumeClaim", true},
		{raftstore.ControllerRevisions, "apps/v1", "ControllerRevision", true},
		{raftstore.Events, "v1", "Event", true},
		{raftstore.Nodes, "v1", "Node", false},
		{raftstore.Servers, "stead.io/v1", "Server", false},
		{raftstore.Tokens, "stead.io/v1", "Token", false},
	}
	if len(cases) != len(raftstore.Kinds) {
		t.Fatalf("%d cases for %d kinds", len(cases), len(raftstore.Kinds))
	}
	for i, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			if raftstore.Kinds[i] != tc.kind {
				t.Errorf("Kinds[%d] = %s", i, raftstore.Kinds[i])
			}
			if k, err := raftstore.ParseKind(string(tc.kind)); err != nil || k != tc.kind {
				t.Errorf("ParseKind: %s, %v", k, err)
			}
			if got := tc.kind.Namespaced(); got != tc.namespaced {
				t.Errorf("Namespaced() = %v", got)
			}
			if tm := tc.kind.TypeMeta(); tm.APIVersion != tc.apiVersion || tm.Kind != tc.typeName {
				t.Errorf("TypeMeta() = %+v", tm)
			}
			obj, err := raftstore.NewObject(tc.kind)
			if err != nil {
				t.Fatal(err)
			}
			if k, err := raftstore.KindOf(obj); err != nil || k != tc.kind {
				t.Errorf("KindOf(NewObject) = %s, %v", k, err)
			}
		})
	}
	if _, err := raftstore.ParseKind("deployments"); err == nil {
		t.Errorf("ParseKind accepted deployments")
	}
	if _, err := raftstore.NewObject("deployments"); err == nil {
		t.Errorf("NewObject accepted deployments")
	}
}

func TestViewListAndGet(t *testing.T) {
	l := newFSMLog(t)
	l.apply(raftstore.Txn{RequestID: "r", Ops: []raftstore.Op{
		put(t, pod("default", "web-1")),
		put(t, pod("default", "web-0")),
		put(t, pod("a-b", "web-0")),
		put(t, pod("a", "web-10")),
		put(t, pod("a", "web-2")),
		put(t, namespace("default")),
		put(t, statefulSet("default", "web", 2)),
	}})
	v := l.fsm.View()
	names := func(objs []*corev1.Pod) []string {
		var out []string
		for _, p := range objs {
			out = append(out, p.Namespace+"/"+p.Name)
		}
		return out
	}
	for _, tc := range []struct {
		ns   string
		want []string
	}{
		{"", []string{"a/web-10", "a/web-2", "a-b/web-0", "default/web-0", "default/web-1"}},
		{"a", []string{"a/web-10", "a/web-2"}},
		{"default", []string{"default/web-0", "default/web-1"}},
		{"nope", nil},
	} {
		if got := names(raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, tc.ns)); !slices.Equal(got, tc.want) {
			t.Errorf("pods in %q: %q, want %q", tc.ns, got, tc.want)
		}
	}
	if _, ok := v.Get(raftstore.Pods, "a", "web-1"); ok {
		t.Errorf("Get found a/web-1")
	}
	if _, ok := v.Get(raftstore.StatefulSets, "default", "web-0"); ok {
		t.Errorf("Get found a statefulset under a pod's name")
	}
	if p, ok := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, "a-b", "web-0"); !ok || p.Namespace != "a-b" {
		t.Errorf("GetOf a-b/web-0: %v %v", ok, p)
	}
	if v.Len() != 7 {
		t.Errorf("Len() = %d, want 7", v.Len())
	}
}
