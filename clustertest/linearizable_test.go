package clustertest

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// put and get build hand-made operations: [invoke, complete] in
// milliseconds.
func put(id int, key, server string, invoke, complete int64, out Outcome) Op {
	return Op{ID: id, Kind: KindPut, Key: key, Server: server, Invoke: invoke * 1e6, Complete: complete * 1e6, Outcome: out, Value: "op" + string(rune('0'+id))}
}

func get(id int, key, server string, invoke, complete int64, found bool, value string) Op {
	return Op{ID: id, Kind: KindGet, Key: key, Server: server, Invoke: invoke * 1e6, Complete: complete * 1e6, Outcome: OK, Found: found, Value: value}
}

func failedGet(id int, key, server string, invoke, complete int64, out Outcome) Op {
	return Op{ID: id, Kind: KindGet, Key: key, Server: server, Invoke: invoke * 1e6, Complete: complete * 1e6, Outcome: out}
}

func TestCheckLinearizable(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
		keys []string
	}{
		{
			name: "linearizable",
			ops: []Op{
				get(0, "a", "s2", 0, 5, false, ""),   // before the put
				put(1, "a", "s1", 10, 30, OK),        // op1
				get(2, "a", "s3", 15, 20, false, ""), // concurrent: not yet
				get(3, "a", "s2", 25, 28, true, "op1"),
				get(4, "a", "s3", 40, 45, true, "op1"), // after: sees it
				put(5, "b", "s2", 50, 60, OK),
				get(6, "b", "s1", 61, 70, true, "op5"),
				failedGet(7, "b", "s3", 62, 3000, Info), // says nothing
			},
			want: porcupine.Ok,
		},
		{
			name: "stale read after an acknowledged put",
			ops: []Op{
				put(0, "a", "s1", 0, 10, OK),
				get(1, "a", "s2", 20, 25, true, "op0"),
				put(2, "b", "s1", 30, 40, OK),
				get(3, "b", "s3", 50, 55, false, ""), // the stale follower
			},
			want: porcupine.Illegal,
			keys: []string{"b"},
		},
		{
			name: "a read that goes back to absent",
			ops: []Op{
				put(0, "a", "s1", 0, 100, OK),
				get(1, "a", "s2", 10, 20, true, "op0"),
				get(2, "a", "s3", 30, 40, false, ""),
			},
			want: porcupine.Illegal,
			keys: []string{"a"},
		},
		{
			name: "a put of unknown outcome seen later",
			ops: []Op{
				put(0, "a", "s1", 0, 3000, Info), // timed out
				get(1, "a", "s2", 3100, 3110, false, ""),
				get(2, "a", "s3", 5000, 5010, true, "op0"),
				get(3, "a", "s2", 6000, 6010, true, "op0"),
			},
			want: porcupine.Ok,
		},
		{
			name: "a put of unknown outcome never seen",
			ops: []Op{
				put(0, "a", "s1", 0, 3000, Info),
				get(1, "a", "s2", 3100, 3110, false, ""),
				get(2, "a", "s3", 9000, 9010, false, ""),
			},
			want: porcupine.Ok,
		},
		{
			name: "a put of unknown outcome seen, then gone",
			ops: []Op{
				put(0, "a", "s1", 0, 3000, Info),
				get(1, "a", "s2", 5000, 5010, true, "op0"),
				get(2, "a", "s3", 6000, 6010, false, ""),
			},
			want: porcupine.Illegal,
			keys: []string{"a"},
		},
		{
			name: "a put still pending seen",
			ops: []Op{
				{ID: 0, Kind: KindPut, Key: "a", Server: "s1", Invoke: 0, Outcome: Pending, Value: "op0"},
				get(1, "a", "s2", 5, 6, true, "op0"),
			},
			want: porcupine.Ok,
		},
		{
			name: "a refused put seen",
			ops: []Op{
				put(0, "a", "s1", 0, 10, Fail),
				get(1, "a", "s2", 20, 25, true, "op0"),
			},
			want: porcupine.Illegal,
			keys: []string{"a"},
		},
		{
			name: "a value no put wrote",
			ops: []Op{
				put(0, "a", "s1", 0, 10, OK),
				get(1, "a", "s2", 20, 25, true, "op7"),
			},
			want: porcupine.Illegal,
			keys: []string{"a"},
		},
		{
			name: "read seen before the put was invoked",
			ops: []Op{
				get(0, "a", "s2", 0, 5, true, "op1"),
				put(1, "a", "s1", 10, 20, OK),
			},
			want: porcupine.Illegal,
			keys: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := CheckLinearizable(tc.ops, 10*time.Second)
			if r.Result != tc.want || !slices.Equal(r.Keys, tc.keys) {
				t.Fatalf("CheckLinearizable = %s, keys %v; want %s, keys %v", r.Result, r.Keys, tc.want, tc.keys)
			}
		})
	}
}

// TestC2Operations: which operations Porcupine sees, and when an unknown
// outcome returns.
func TestC2Operations(t *testing.T) {
	ops := []Op{
		put(0, "a", "s1", 0, 10, OK),
		put(1, "b", "s1", 20, 30, Fail),
		put(2, "c", "s2", 40, 3040, Info),
		get(3, "a", "s3", 50, 60, false, ""),
		failedGet(4, "a", "s3", 70, 80, Fail),
		failedGet(5, "a", "s3", 90, 3090, Info),
	}
	got := c2Operations(ops)
	var ids []int
	for _, op := range got {
		ids = append(ids, op.Input.(regInput).Op)
	}
	if want := []int{0, 2, 3}; !slices.Equal(ids, want) {
		t.Fatalf("operations checked: %v, want %v", ids, want)
	}
	if got[0].Return != 10e6 || got[1].Return != 1<<63-1 || got[2].Return != 60e6 {
		t.Fatalf("returns %d, %d, %d; want 10e6, +∞, 60e6", got[0].Return, got[1].Return, got[2].Return)
	}
	if got[0].ClientId != 0 || got[1].ClientId != 1 || got[2].ClientId != 2 {
		t.Fatalf("clients %d, %d, %d; want 0, 1, 2 (put s1, put s2, get s3)", got[0].ClientId, got[1].ClientId, got[2].ClientId)
	}
}

// TestVisualization: a violation's visualization is written and names
// the operations at fault.
func TestVisualization(t *testing.T) {
	r := CheckLinearizable([]Op{put(0, "b", "s1", 30, 40, OK), get(1, "b", "s3", 50, 55, false, "")}, 10*time.Second)
	if r.Result != porcupine.Illegal {
		t.Fatalf("result %s, want Illegal", r.Result)
	}
	path := filepath.Join(t.TempDir(), "c2.html")
	if err := writeVisualization(path, r.Info); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"op 0 via s1: put b = op0", "op 1 via s3: get b: absent"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("visualization lacks %q", want)
		}
	}
}

// TestDescribeKey: the operations of one key, one a line, times from the
// first.
func TestDescribeKey(t *testing.T) {
	ops := []Op{
		put(0, "b", "s1", 30, 40, OK),
		put(1, "c", "s2", 31, 41, OK),
		get(2, "b", "s3", 50, 55, false, ""),
	}
	ops[0].Index = 17
	got := describeKey(ops, "b")
	want := "  op 0 via s1 [0.0ms, 10.0ms] ok: put op0 at index 17\n  op 2 via s3 [20.0ms, 25.0ms] ok: get -> absent"
	if got != want {
		t.Fatalf("describeKey:\n%s\nwant:\n%s", got, want)
	}
}

// TestReadKey: the keys a reader picks are a writer's next key or ones
// already put.
func TestReadKey(t *testing.T) {
	var h History
	servers := []string{"s1", "s2"}
	h.InvokePut(ackKey("s1", 0), "s1")
	h.InvokePut(ackKey("s1", 1), "s1")
	h.InvokePut(ackKey("s2", 0), "s2")
	allowed := []string{"ack-s1-0", "ack-s1-1", "ack-s2-0", "ack-s1-2", "ack-s2-1"}
	seen := map[string]bool{}
	rnd := rand.New(rand.NewPCG(1, 0))
	for range 200 {
		k := h.readKey(rnd, servers)
		if !slices.Contains(allowed, k) {
			t.Fatalf("readKey picked %s; want one of %v", k, allowed)
		}
		seen[k] = true
	}
	for _, k := range allowed {
		if !seen[k] {
			t.Errorf("readKey never picked %s in 200 tries", k)
		}
	}
}

// TestIsNotFound: only the API's 404 for the object read means absent.
func TestIsNotFound(t *testing.T) {
	notFound := func(name string) string {
		b, _ := json.Marshal(apierrors.NewNotFound(schema.GroupResource{Resource: "services"}, name).Status())
		return string(b)
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"the object", &StatusError{Code: http.StatusNotFound, Body: notFound("ack-s1-3")}, true},
		{"another object", &StatusError{Code: http.StatusNotFound, Body: notFound("ack-s1-4")}, false},
		{"an unknown path", &StatusError{Code: http.StatusNotFound, Body: "404 page not found"}, false},
		{"no leader", &StatusError{Code: http.StatusServiceUnavailable, Body: "no leader elected yet"}, false},
		{"a lost connection", errors.New("GET /v1/namespaces/default/services/ack-s1-3 on s1: EOF"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isNotFound(tc.err, "ack-s1-3"); got != tc.want {
				t.Fatalf("isNotFound(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
