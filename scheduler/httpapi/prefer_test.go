package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
)

func TestPrefersMinimal(t *testing.T) {
	cases := []struct {
		name   string
		prefer []string
		want   bool
	}{
		{"absent", nil, false},
		{"minimal", []string{"return=minimal"}, true},
		{"quoted and upper case", []string{`RETURN="Minimal"`}, true},
		{"among others, with a parameter", []string{"respond-async, return=minimal; foo=bar", "wait=10"}, true},
		{"in a second header", []string{"respond-async", "return=minimal"}, true},
		{"representation", []string{"return=representation"}, false},
		{"another preference's value", []string{"handling=minimal"}, false},
		{"bare return", []string{"return"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range c.prefer {
				h.Add("Prefer", v)
			}
			if got := prefersMinimal(h); got != c.want {
				t.Errorf("prefersMinimal(%q) = %v, want %v", c.prefer, got, c.want)
			}
		})
	}
}

// A write that asks for a minimal answer gets 204 and the index of its
// commit, which is the resourceVersion of the object as stored; one that
// does not gets that object.
func TestPreferMinimalAnswer(t *testing.T) {
	ts := startServer(t, "s1", true)
	stored := func(name string) *corev1.Event {
		t.Helper()
		var ev corev1.Event
		if _, err := ts.client.Get(context.Background(), res(t, "events"), "default", name, &ev); err != nil {
			t.Fatal(err)
		}
		return &ev
	}

	resp, data := putEvent(t, ts, "minimal", api.PreferMinimal)
	if resp.StatusCode != http.StatusNoContent || len(data) != 0 || resp.Header.Get("Preference-Applied") != api.PreferMinimal {
		t.Fatalf("minimal answer: %s, Preference-Applied %q, body %q", resp.Status, resp.Header.Get("Preference-Applied"), data)
	}
	ev := stored("minimal")
	if idx := resp.Header.Get(api.HeaderIndex); idx == "" || idx != ev.ResourceVersion {
		t.Errorf("minimal answer's index %q, stored resourceVersion %q", idx, ev.ResourceVersion)
	}
	if ev.Message != "written with Prefer "+api.PreferMinimal {
		t.Errorf("stored message %q", ev.Message)
	}

	resp, data = putEvent(t, ts, "full", "return=representation")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Preference-Applied") != "" {
		t.Fatalf("full answer: %s, Preference-Applied %q", resp.Status, resp.Header.Get("Preference-Applied"))
	}
	var answered corev1.Event
	if err := json.Unmarshal(data, &answered); err != nil {
		t.Fatalf("full answer %q: %v", data, err)
	}
	ev = stored("full")
	if answered.Name != "full" || answered.ResourceVersion != ev.ResourceVersion || answered.UID != ev.UID || answered.UID == "" {
		t.Errorf("full answer %s/%s rv %s uid %s, stored rv %s uid %s", answered.Namespace, answered.Name,
			answered.ResourceVersion, answered.UID, ev.ResourceVersion, ev.UID)
	}
	if idx, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64); strconv.FormatUint(idx, 10) != ev.ResourceVersion {
		t.Errorf("full answer's index %d, stored resourceVersion %s", idx, ev.ResourceVersion)
	}
}

// putEvent writes Event default/name through ts's API with the header
// Prefer set to prefer (none when empty), and returns the answer and its
// body.
func putEvent(t *testing.T, ts *testServer, name, prefer string) (*http.Response, []byte) {
	t.Helper()
	ev := corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: name}, Reason: "Tested", Message: "written with Prefer " + prefer,
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web-0"}}
	body, _ := json.Marshal(ev)
	req, err := http.NewRequest(http.MethodPut, ts.http.URL+api.Path(res(t, "events"), "default", name, ""), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if prefer != "" {
		req.Header.Set("Prefer", prefer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}
