package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The client asks for a minimal answer exactly when it will not read the
// object written back, and reads the index from either answer.
func TestClientPrefersMinimalAnswerWhenItReadsNone(t *testing.T) {
	var prefer []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		prefer = append(prefer, r.Method+" "+r.Header.Get("Prefer"))
		w.Header().Set(HeaderIndex, "42")
		if r.Header.Get("Prefer") == PreferMinimal {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"apiVersion":"v1","kind":"Event","metadata":{"name":"e","resourceVersion":"42"}}`)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	events, err := LookupResource("events")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "e"}}

	if idx, err := c.Put(ctx, events, "default", "e", ev, nil); err != nil || idx != 42 {
		t.Fatalf("Put without out: index %d, %v", idx, err)
	}
	var back corev1.Event
	if idx, err := c.Put(ctx, events, "default", "e", ev, &back); err != nil || idx != 42 || back.ResourceVersion != "42" {
		t.Fatalf("Put with out: index %d, resourceVersion %q, %v", idx, back.ResourceVersion, err)
	}
	if _, err := c.Delete(ctx, events, "default", "e", DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"PUT " + PreferMinimal, "PUT ", "DELETE "}
	if len(prefer) != len(want) {
		t.Fatalf("requests %q, want %q", prefer, want)
	}
	for i := range want {
		if prefer[i] != want[i] {
			t.Errorf("request %d: %q, want %q", i, prefer[i], want[i])
		}
	}
}
