package scheduler

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFailover(t *testing.T) {
	node := func(name string, taints ...string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		for _, k := range taints {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: k, Effect: corev1.TaintEffectNoExecute})
		}
		return n
	}
	pod := func(name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.PodSpec{NodeName: node}}
	}
	const ttl, margin = 8 * time.Second, 4 * time.Second
	tests := []struct {
		name  string
		nodes []*corev1.Node
		pods  []*corev1.Pod
		ages  map[string]time.Duration
		want  string
	}{
		{
			name:  "healthy nodes keep their pods",
			nodes: []*corev1.Node{node("a"), node("b")},
			pods:  []*corev1.Pod{pod("web-0", "a"), pod("web-1", "b")},
			ages:  map[string]time.Duration{"a": time.Second, "b": 2 * time.Second},
		},
		{
			name:  "lease expired but inside the fence margin: nothing moves",
			nodes: []*corev1.Node{node("a"), node("b")},
			pods:  []*corev1.Pod{pod("web-0", "a"), pod("web-1", "b")},
			ages:  map[string]time.Duration{"a": time.Second, "b": ttl + margin},
		},
		{
			name:  "past lease and margin: only the lost node's pods, in name order",
			nodes: []*corev1.Node{node("a"), node("b")},
			pods:  []*corev1.Pod{pod("web-2", "b"), pod("web-0", "a"), pod("web-1", "b")},
			ages:  map[string]time.Duration{"a": time.Second, "b": ttl + margin + time.Millisecond},
			want:  "default/web-1@b,default/web-2@b",
		},
		{
			name:  "operator fence frees at once",
			nodes: []*corev1.Node{node("a", TaintOutOfService), node("b")},
			pods:  []*corev1.Pod{pod("web-0", "a"), pod("web-1", "b")},
			ages:  map[string]time.Duration{"a": 0, "b": 0},
			want:  "default/web-0@a",
		},
		{
			name:  "a deleted node's pods are freed",
			nodes: []*corev1.Node{node("b")},
			pods:  []*corev1.Pod{pod("web-0", "a"), pod("web-1", "b")},
			ages:  map[string]time.Duration{"b": 0},
			want:  "default/web-0@a",
		},
		{
			name:  "unbound pods are not the rule's business",
			nodes: []*corev1.Node{node("a")},
			pods:  []*corev1.Pod{pod("web-0", "")},
			ages:  map[string]time.Duration{"a": time.Hour},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Failover(FailoverInput{Nodes: tt.nodes, Pods: tt.pods, TTL: ttl, Margin: margin,
				LeaseAge: func(n string) time.Duration { return tt.ages[n] }})
			var parts []string
			for _, f := range got {
				parts = append(parts, f.Pod.String()+"@"+f.Node)
				if f.Reason == "" {
					t.Errorf("%s freed without a reason", f.Pod)
				}
			}
			if s := strings.Join(parts, ","); s != tt.want {
				t.Errorf("freed %q, want %q", s, tt.want)
			}
		})
	}
}
