package watchdog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakeClock is a monotonic clock the test moves by hand. After never fires:
// tests call Step themselves.
type fakeClock struct{ now MonoTime }

func (c *fakeClock) Now() MonoTime                        { return c.now }
func (c *fakeClock) After(time.Duration) <-chan time.Time { return nil }

// fakeTask is a task of the fake runtime.
type fakeTask struct {
	pid      uint32
	pod, gen string
}

// fakeRuntime runs tasks by name; KillAll kills the running ones.
type fakeRuntime struct {
	clock   *fakeClock
	running map[string]fakeTask
	calls   int
	err     error // returned by KillAll (with the kills) when set
}

func newFakeRuntime(clock *fakeClock) *fakeRuntime {
	return &fakeRuntime{clock: clock, running: make(map[string]fakeTask)}
}

func (r *fakeRuntime) start(id string, pid uint32, pod, gen string) {
	r.running[id] = fakeTask{pid: pid, pod: pod, gen: gen}
}

func (r *fakeRuntime) KillAll(context.Context) ([]KilledTask, error) {
	r.calls++
	ids := make([]string, 0, len(r.running))
	for id := range r.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []KilledTask
	for _, id := range ids {
		t := r.running[id]
		out = append(out, KilledTask{ID: id, Pid: t.pid, Pod: t.pod, Generation: t.gen, KilledMono: r.clock.now})
		delete(r.running, id)
	}
	return out, r.err
}

func (r *fakeRuntime) runningIDs() []string {
	ids := []string{}
	for id := range r.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// syncBuffer is a log sink safe for the logger's use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Count(s.b.String(), substr)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	sec      = MonoTime(time.Second)
	boot     = "boot-a"
	loudLine = "NODE LEASE NOT RENEWED"
)

// writeTestLease writes a lease of boot b expiring at exp.
func writeTestLease(t *testing.T, path string, exp MonoTime, b string) {
	t.Helper()
	l := Lease{ExpiresMono: exp, Boot: b, Node: "n1", Pid: 42}
	l.Checksum = l.checksum()
	data, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAtomic(path, data); err != nil {
		t.Fatal(err)
	}
}

// rig is a watchdog on a fake clock and runtime in a temporary directory.
type rig struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	rt    *fakeRuntime
	logs  *syncBuffer
	w     *Watchdog
}

func newRig(t *testing.T) *rig {
	dir := t.TempDir()
	clock := &fakeClock{now: 1 * sec}
	rt := newFakeRuntime(clock)
	logs := &syncBuffer{}
	w, err := New(Config{
		LeasePath: filepath.Join(dir, "lease"),
		Runtime:   rt,
		Clock:     clock,
		Boot:      boot,
		Logger:    hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, dir: dir, clock: clock, rt: rt, logs: logs, w: w}
}

func (r *rig) lease(exp MonoTime) { writeTestLease(r.t, filepath.Join(r.dir, "lease"), exp, boot) }

func (r *rig) step(at MonoTime, want State) {
	r.t.Helper()
	r.clock.now = at
	if got := r.w.Step(context.Background()); got != want {
		r.t.Fatalf("at %v: Step = %v, want %v\nlogs:\n%s", at, got, want, r.logs)
	}
}

func (r *rig) wantRunning(ids ...string) {
	r.t.Helper()
	if ids == nil {
		ids = []string{}
	}
	if got := r.rt.runningIDs(); !reflect.DeepEqual(got, ids) {
		r.t.Fatalf("at %v: running %v, want %v", r.clock.now, got, ids)
	}
}

func (r *rig) wantFenceFile(reason string, killed ...string) Fence {
	r.t.Helper()
	f, err := ReadFence(filepath.Join(r.dir, "fenced"))
	if err != nil {
		r.t.Fatalf("fence record: %v", err)
	}
	var ids []string
	for _, k := range f.Killed {
		ids = append(ids, k.ID)
	}
	if f.Reason != reason || !reflect.DeepEqual(ids, killed) {
		r.t.Fatalf("fence record: reason %q killed %v, want %q %v", f.Reason, ids, reason, killed)
	}
	return f
}

func TestStep(t *testing.T) {
	tests := []struct {
		name string
		run  func(r *rig)
	}{{
		name: "expired lease kills every task, not before",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.rt.start("web-1-c", 101, "default/web-1", "9")
			r.lease(10 * sec)
			r.step(1*sec, StateValid)
			r.step(10*sec-1, StateValid)
			r.wantRunning("web-0-c", "web-1-c")
			if r.rt.calls != 0 {
				r.t.Fatalf("KillAll called %d times while the lease held", r.rt.calls)
			}
			r.step(10*sec, StateFencing)
			r.wantRunning()
			f := r.wantFenceFile("expired", "web-0-c", "web-1-c")
			want := []KilledTask{
				{ID: "web-0-c", Pid: 100, Pod: "default/web-0", Generation: "7", KilledMono: 10 * sec},
				{ID: "web-1-c", Pid: 101, Pod: "default/web-1", Generation: "9", KilledMono: 10 * sec},
			}
			if !reflect.DeepEqual(f.Killed, want) || f.Node != "n1" || f.LeaseExpiresMono != 10*sec || f.DetectedMono != 10*sec || f.Boot != boot {
				r.t.Fatalf("fence record %+v, want killed %+v, node n1, expiry and detection at 10s", f, want)
			}
		},
	}, {
		name: "renewed lease kills nothing",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.lease(10 * sec)
			r.step(9*sec, StateValid)
			r.lease(20 * sec)
			r.step(15*sec, StateValid)
			r.step(20*sec-1, StateValid)
			r.wantRunning("web-0-c")
			if r.rt.calls != 0 {
				r.t.Fatalf("KillAll called %d times", r.rt.calls)
			}
			if _, err := os.Stat(filepath.Join(r.dir, "fenced")); !errors.Is(err, os.ErrNotExist) {
				r.t.Fatalf("fence record written without an expiry: %v", err)
			}
		},
	}, {
		name: "corrupt lease kills",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			if err := os.WriteFile(filepath.Join(r.dir, "lease"), []byte(`{"expiresMono": 99000000000, "boot": "boot-a", "node": "n1", "checksum": "sha256:00"}`), 0o644); err != nil {
				r.t.Fatal(err)
			}
			r.step(2*sec, StateFencing)
			r.wantRunning()
			r.wantFenceFile("unreadable", "web-0-c")
		},
	}, {
		name: "lease file that never existed kills nothing",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.step(2*sec, StateNoLease)
			r.step(100*sec, StateNoLease)
			r.wantRunning("web-0-c")
			if r.rt.calls != 0 {
				r.t.Fatalf("KillAll called %d times", r.rt.calls)
			}
		},
	}, {
		name: "lease file removed after it existed kills",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.lease(10 * sec)
			r.step(2*sec, StateValid)
			if err := os.Remove(filepath.Join(r.dir, "lease")); err != nil {
				r.t.Fatal(err)
			}
			r.step(3*sec, StateFencing)
			r.wantRunning()
			r.wantFenceFile("missing", "web-0-c")
		},
	}, {
		name: "lease of an earlier boot kills",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			writeTestLease(r.t, filepath.Join(r.dir, "lease"), 1000*sec, "boot-before")
			r.step(2*sec, StateFencing)
			r.wantRunning()
			r.wantFenceFile("from another boot", "web-0-c")
		},
	}, {
		name: "keeps killing tasks that start while expired, logs the expiry once",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.lease(10 * sec)
			r.step(11*sec, StateFencing)
			r.wantRunning()
			r.step(11*sec+sec/2, StateFencing)
			r.rt.start("web-2-c", 102, "default/web-2", "11")
			r.step(12*sec, StateFencing)
			r.wantRunning()
			r.step(12*sec+sec/2, StateFencing)
			r.wantFenceFile("expired", "web-0-c", "web-2-c")
			if n := r.logs.count(loudLine); n != 1 {
				r.t.Fatalf("%q logged %d times, want 1:\n%s", loudLine, n, r.logs)
			}
			if n := r.logs.count("killed task"); n != 2 {
				r.t.Fatalf("kills logged %d times, want 2:\n%s", n, r.logs)
			}

			// Renewal lifts the fence; the next expiry is logged and
			// recorded anew.
			r.lease(20 * sec)
			r.step(13*sec, StateValid)
			if _, ok := r.w.Fencing(); ok {
				r.t.Fatal("still fencing after renewal")
			}
			r.rt.start("web-0-d", 103, "default/web-0", "12")
			r.step(19*sec, StateValid)
			r.wantRunning("web-0-d")
			r.step(20*sec, StateFencing)
			r.wantRunning()
			r.wantFenceFile("expired", "web-0-d")
			if n := r.logs.count(loudLine); n != 2 {
				r.t.Fatalf("%q logged %d times, want 2:\n%s", loudLine, n, r.logs)
			}
		},
	}, {
		name: "expiry with nothing running is recorded",
		run: func(r *rig) {
			r.lease(10 * sec)
			r.step(10*sec, StateFencing)
			r.wantFenceFile("expired")
		},
	}, {
		name: "kill errors are logged when they change and the kills that worked recorded",
		run: func(r *rig) {
			r.rt.start("web-0-c", 100, "default/web-0", "7")
			r.rt.err = errors.New("kill task web-1-c: shim gone")
			r.lease(10 * sec)
			r.step(10*sec, StateFencing)
			r.step(11*sec, StateFencing)
			r.step(12*sec, StateFencing)
			if n := r.logs.count("shim gone"); n != 1 {
				r.t.Fatalf("error logged %d times, want 1:\n%s", n, r.logs)
			}
			r.rt.err = errors.New("list tasks: containerd unavailable")
			r.step(13*sec, StateFencing)
			if n := r.logs.count("containerd unavailable"); n != 1 {
				r.t.Fatalf("new error logged %d times, want 1:\n%s", n, r.logs)
			}
			r.wantFenceFile("expired", "web-0-c")
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(newRig(t)) })
	}
}

// TestRunStopsWithContext runs the loop on the system clock until its
// context ends.
func TestRunStopsWithContext(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{now: sec}
	rt := newFakeRuntime(clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{LeasePath: filepath.Join(dir, "lease"), Runtime: rt, Interval: time.Millisecond})
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewRejects(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"no lease path", Config{Runtime: newFakeRuntime(&fakeClock{})}},
		{"no runtime", Config{LeasePath: "/x/lease"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestFenceOnStart(t *testing.T) {
	realBoot, err := BootID()
	if err != nil {
		t.Skip(err)
	}
	tests := []struct {
		name       string
		write      func(path string)
		wantFenced bool
	}{
		{"valid lease", func(p string) { writeTestLease(t, p, 100*sec, realBoot) }, false},
		{"expired lease", func(p string) { writeTestLease(t, p, 50*sec, realBoot) }, true},
		{"lease at its expiry", func(p string) { writeTestLease(t, p, 60*sec, realBoot) }, true},
		{"no lease", func(string) {}, true},
		{"lease of an earlier boot", func(p string) { writeTestLease(t, p, 100*sec, "other") }, true},
		{"corrupt lease", func(p string) { os.WriteFile(p, []byte("{"), 0o644) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lease")
			tt.write(path)
			clock := &fakeClock{now: 60 * sec}
			rt := newFakeRuntime(clock)
			rt.start("web-1-c", 7, "default/web-1", "3")
			fenced, killed, err := FenceOnStart(context.Background(), rt, path, clock.now)
			if err != nil {
				t.Fatal(err)
			}
			if fenced != tt.wantFenced {
				t.Fatalf("fenced = %v, want %v", fenced, tt.wantFenced)
			}
			var ids []string
			for _, k := range killed {
				ids = append(ids, k.ID)
			}
			var want []string
			if tt.wantFenced {
				want = []string{"web-1-c"}
			}
			if !reflect.DeepEqual(ids, want) {
				t.Fatalf("killed %v, want %v", ids, want)
			}
		})
	}
}
