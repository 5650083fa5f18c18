package httpapi

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
)

// TestListJSON: the list written by hand is what json.Marshal writes of
// an api.List.
func TestListJSON(t *testing.T) {
	for _, items := range [][]string{nil, {`{"a":1}`}, {`{"a":1}`, `{"b":[2,3]}`, `{"c":"x,y"}`}} {
		var raw [][]byte
		l := api.List{Items: []json.RawMessage{}}
		l.APIVersion, l.Kind, l.ResourceVersion = "v1", "List", "42"
		for _, it := range items {
			raw = append(raw, []byte(it))
			l.Items = append(l.Items, json.RawMessage(it))
		}
		want, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		if got := listJSON(42, raw); string(got) != string(want) {
			t.Errorf("%d items:\n got %s\nwant %s", len(items), got, want)
		}
	}
}

// TestEncodeCache: a stored version is encoded once; another version, or
// another object of the same name (a new UID), is encoded afresh.
func TestEncodeCache(t *testing.T) {
	var c encodeCache
	pod := func(uid, rv, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u" + k8stypes.UID(uid), ResourceVersion: rv}, Spec: corev1.PodSpec{NodeName: node}}
	}
	enc := func(p *corev1.Pod) string {
		t.Helper()
		data, err := c.encode(raftstore.Pods, p)
		if err != nil {
			t.Fatal(err)
		}
		var back corev1.Pod
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatal(err)
		}
		return string(back.UID) + "@" + back.ResourceVersion + " on " + back.Spec.NodeName
	}
	for _, tc := range []struct {
		pod  *corev1.Pod
		want string
	}{
		{pod("1", "5", "a"), "u1@5 on a"},
		{pod("1", "5", "changed without a new version"), "u1@5 on a"}, // a stored version never changes
		{pod("1", "6", "b"), "u1@6 on b"},
		{pod("2", "5", "c"), "u2@5 on c"},
	} {
		if got := enc(tc.pod); got != tc.want {
			t.Errorf("encoded %s, want %s", got, tc.want)
		}
	}
}
