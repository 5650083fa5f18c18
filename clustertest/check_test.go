package clustertest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/volumes"
)

// journal builds a journal from records written as
// "node/pid gen seq mono kind", for ordinal 0.
func journal(t *testing.T, lines ...string) []byte {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		var r volumes.Record
		var who string
		var kind string
		if _, err := fmt.Sscan(l, &who, &r.Gen, &r.Seq, &r.Mono, &kind); err != nil {
			t.Fatalf("record %q: %v", l, err)
		}
		node, pid, _ := strings.Cut(who, "/")
		r.Node, r.Kind = node, volumes.Kind(kind)
		r.PID = atoi(t, pid)
		line, _ := json.Marshal(r)
		b.Write(line)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// sample is a sample at mono of writers "node/gen" of ordinal 0 (or
// "ord:node/gen" for another ordinal).
func sample(t *testing.T, mono int64, procs ...string) Sample {
	t.Helper()
	s := Sample{Mono: mono}
	for i, p := range procs {
		ord := 0
		if o, rest, ok := strings.Cut(p, ":"); ok {
			ord, p = atoi(t, o), rest
		}
		node, gen, _ := strings.Cut(p, "/")
		s.Procs = append(s.Procs, Proc{PID: 100 + i, Ord: ord, Node: node, Gen: uint64(atoi(t, gen))})
	}
	return s
}

func TestCheckJournals(t *testing.T) {
	handover := []string{
		"a1/7 5 1 100 write",
		"a1/7 5 2 120 write",
		"a2/9 9 1 300 write",
		"a2/9 9 2 320 write",
	}
	tests := []struct {
		name          string
		journal       []string
		fenced        bool
		want, excused []string
	}{{
		name:    "a handover to a higher generation without a record: excused",
		journal: handover,
		excused: []string{"ordinal 0: line 3: no-interleaving: writer a2/9 (generation 9) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 9 between them: clean handover from a1 generation 5 to a2 generation 9"},
	}, {
		name:    "with fenced volumes a handover needs a record",
		journal: handover,
		fenced:  true,
		want:    []string{"ordinal 0: line 3: no-interleaving: writer a2/9 (generation 9) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 9 between them"},
	}, {
		name:    "a fenced handover",
		journal: []string{"a1/7 5 1 100 write", "a2/4 9 1 200 fence", "a2/9 9 1 300 write"},
		fenced:  true,
	}, {
		name:    "the old writer comes back",
		journal: []string{"a1/7 5 1 100 write", "a2/9 9 1 300 write", "a1/7 5 2 320 write"},
		want: []string{
			"ordinal 0: line 2: no-interleaving: writer a2/9 (generation 9) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 9 between them",
			"ordinal 0: line 3: no-regression: write of generation 5 after a record of generation 9 (line 2)",
			"ordinal 0: line 3: no-interleaving: writer a1/7 (generation 5) follows a2/9 (generation 9) with no unmount of 9 on a2 nor fence of 5 between them",
		},
	}, {
		name:    "a restart within an incarnation",
		journal: []string{"a1/7 5 1 100 write", "a1/7 5 2 120 write", "a1/8 5 1 300 write", "a1/8 5 2 320 write"},
		fenced:  true,
		excused: []string{
			"ordinal 0: line 3: one-writer-per-generation: generation 5 written by a1/7 and by a1/8: restart of a1 generation 5",
			"ordinal 0: line 3: no-interleaving: writer a1/8 (generation 5) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 5 between them: restart of a1 generation 5",
			"ordinal 0: line 4: one-writer-per-generation: generation 5 written by a1/7 and by a1/8: restart of a1 generation 5",
		},
	}, {
		name:    "two processes of one incarnation interleave",
		journal: []string{"a1/7 5 1 100 write", "a1/8 5 1 300 write", "a1/7 5 2 320 write"},
		fenced:  true,
		want: []string{
			"ordinal 0: line 2: one-writer-per-generation: generation 5 written by a1/7 and by a1/8",
			"ordinal 0: line 2: no-interleaving: writer a1/8 (generation 5) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 5 between them",
			"ordinal 0: line 3: no-interleaving: writer a1/7 (generation 5) follows a1/8 (generation 5) with no unmount of 5 on a1 nor fence of 5 between them",
		},
	}, {
		name:    "one generation on two nodes",
		journal: []string{"a1/7 5 1 100 write", "a2/8 5 1 300 write"},
		want: []string{
			"ordinal 0: line 2: one-writer-per-generation: generation 5 written by a1/7 and by a2/8",
			"ordinal 0: line 2: no-interleaving: writer a2/8 (generation 5) follows a1/7 (generation 5) with no unmount of 5 on a1 nor fence of 5 between them",
		},
	}, {
		name:    "a lower generation takes over",
		journal: []string{"a1/7 9 1 100 write", "a2/9 5 1 300 write"},
		want: []string{
			"ordinal 0: line 2: no-regression: write of generation 5 after a record of generation 9 (line 1)",
			"ordinal 0: line 2: no-interleaving: writer a2/9 (generation 5) follows a1/7 (generation 9) with no unmount of 9 on a1 nor fence of 5 between them",
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := CheckJournals(map[int][]byte{0: journal(t, tt.journal...)}, tt.fenced)
			if !slices.Equal(rep.Violations, tt.want) {
				t.Errorf("violations:\n got %q\nwant %q", rep.Violations, tt.want)
			}
			if !slices.Equal(rep.Excused, tt.excused) {
				t.Errorf("excused:\n got %q\nwant %q", rep.Excused, tt.excused)
			}
		})
	}
}

func TestCheckJournalsCounts(t *testing.T) {
	rep := CheckJournals(map[int][]byte{
		0: journal(t, "a1/7 5 1 100 write", "a1/7 5 2 120 write", "a1/7 5 3 140 reject"),
		1: nil,
	}, false)
	if rep.Writes[0] != 2 || rep.Rejects[0] != 1 || rep.Writes[1] != 0 {
		t.Errorf("writes %v rejects %v; want 2 writes and 1 reject for ordinal 0, none for 1", rep.Writes, rep.Rejects)
	}
}

func TestCheckSamples(t *testing.T) {
	j := journal(t,
		"a1/7 5 1 100 write",
		"a2/3 9 1 200 fence",
		"a2/9 9 1 300 write",
		"a1/7 5 2 320 write",
	)
	quiet := journal(t, "a1/7 5 1 100 write", "a2/3 9 1 200 fence", "a2/9 9 1 300 write")
	tests := []struct {
		name    string
		samples []Sample
		journal []byte
		strict  bool
		want    []string
	}{{
		name:    "one process per ordinal",
		samples: []Sample{sample(t, 100, "a1/5", "1:a2/7"), sample(t, 300, "a2/9", "1:a2/7")},
		journal: j,
	}, {
		name:    "the older one wrote after the newer generation's fence",
		samples: []Sample{sample(t, 310, "a1/5", "a2/9"), sample(t, 330, "a1/5", "a2/9")},
		journal: j,
		want:    []string{"ordinal 0 live on a1 (generation 5) and on a2 (generation 9) in 2 samples from mono 310: the older wrote at line 4, after generation 9's first record"},
	}, {
		name:    "the older one lingers without writing",
		samples: []Sample{sample(t, 310, "a1/5", "a2/9")},
		journal: quiet,
	}, {
		name:    "strict mode counts any coexistence",
		samples: []Sample{sample(t, 310, "a1/5", "a2/9")},
		journal: quiet,
		strict:  true,
		want:    []string{"ordinal 0 live on a1 (generation 5) and on a2 (generation 9) in 1 samples from mono 310: two live processes (strict mode)"},
	}, {
		name:    "two processes of one generation",
		samples: []Sample{sample(t, 310, "a1/9", "a2/9")},
		journal: quiet,
		want:    []string{"ordinal 0 live on a1 (generation 9) and on a2 (generation 9) in 1 samples from mono 310: two live processes of one generation"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckSamples(tt.samples, map[int][]byte{0: tt.journal}, tt.strict)
			if !slices.Equal(got, tt.want) {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func pod(name, node string, gen string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{"stead.io/generation": gen}},
		Spec:       corev1.PodSpec{NodeName: node},
	}
}

func TestCheckLiveness(t *testing.T) {
	pods := []*corev1.Pod{pod("jw-0", "a1", "5"), pod("jw-1", "a2", "9")}
	tests := []struct {
		name string
		pods []*corev1.Pod
		s    Sample
		want []string
	}{{
		name: "each ordinal once at its generation",
		pods: pods,
		s:    sample(t, 1, "0:a1/5", "1:a2/9"),
	}, {
		name: "an ordinal not running",
		pods: pods,
		s:    sample(t, 1, "0:a1/5"),
		want: []string{"jw-1: 0 live processes [], want 1 on a2 generation 9"},
	}, {
		name: "a stale incarnation beside the current one",
		pods: pods,
		s:    sample(t, 1, "0:a1/5", "1:a3/4", "1:a2/9"),
		want: []string{"jw-1: 2 live processes [a3/gen 4/pid 101 a2/gen 9/pid 102], want 1 on a2 generation 9"},
	}, {
		name: "only a stale incarnation",
		pods: pods,
		s:    sample(t, 1, "0:a1/5", "1:a3/4"),
		want: []string{"jw-1: runs on a3 generation 4, bound to a2 generation 9"},
	}, {
		name: "an ordinal beyond the replicas",
		pods: pods,
		s:    sample(t, 1, "0:a1/5", "1:a2/9", "2:a3/11"),
		want: []string{"ordinal 2 is not desired but runs: [a3/gen 11/pid 102]"},
	}, {
		name: "a pod missing and one unbound",
		pods: []*corev1.Pod{pod("jw-0", "", "0")},
		s:    sample(t, 1),
		want: []string{"jw-0: not bound to a node", "jw-1: no pod"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckLiveness("jw", 2, tt.pods, tt.s)
			if !slices.Equal(got, tt.want) {
				t.Errorf("\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCompareFSM(t *testing.T) {
	tests := []struct {
		name   string
		hashes []FSMHash
		want   string
	}{
		{"equal", []FSMHash{{"s1", 7, "aa"}, {"s2", 7, "aa"}, {"s3", 7, "aa"}}, ""},
		{"behind", []FSMHash{{"s1", 7, "aa"}, {"s2", 6, "bb"}}, "s2 is at index 6, s1 at 7"},
		{"diverged", []FSMHash{{"s1", 7, "aa"}, {"s2", 7, "aa"}, {"s3", 7, "cc"}}, "state at index 7 differs: s3 has cc, s1 has aa"},
		{"none", nil, "no server answered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CompareFSM(tt.hashes)
			if got := errString(err); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func entries(from, to uint64, term uint64) []LogEntry {
	var out []LogEntry
	for i := from; i <= to; i++ {
		out = append(out, LogEntry{Index: i, Term: term, Type: "LogCommand", SHA256: strings.Repeat(string(rune('a'+i%6)), 64)})
	}
	return out
}

func TestCompareLogs(t *testing.T) {
	diverged := entries(3, 9, 2)
	diverged[4].Term = 3 // index 7
	tests := []struct {
		name     string
		logs     []LogRange
		want     []string
		from, to uint64
	}{{
		name: "equal over the common range",
		logs: []LogRange{{"s1", entries(1, 10, 2)}, {"s2", entries(3, 12, 2)}, {"s3", entries(2, 9, 2)}},
		from: 3, to: 9,
	}, {
		name: "a different term at one index",
		logs: []LogRange{{"s1", entries(1, 10, 2)}, {"s2", diverged}},
		want: []string{"index 7: s1 has term 2 LogCommand bbbbbbbbbbbb, s2 has term 3 LogCommand bbbbbbbbbbbb"},
		from: 3, to: 9,
	}, {
		name: "no common range",
		logs: []LogRange{{"s1", entries(1, 4, 2)}, {"s2", entries(6, 8, 2)}},
		from: 6, to: 4,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, from, to := CompareLogs(tt.logs)
			if !slices.Equal(got, tt.want) || from != tt.from || to != tt.to {
				t.Errorf("got %q over %d..%d, want %q over %d..%d", got, from, to, tt.want, tt.from, tt.to)
			}
		})
	}
}

func TestLostAcks(t *testing.T) {
	ops := []Op{
		{ID: 0, Kind: "put", Key: "ack-0", Server: "s1", Outcome: OK, Index: 10},
		{ID: 1, Kind: "put", Key: "ack-1", Server: "s2", Outcome: OK, Index: 11},
		{ID: 2, Kind: "put", Key: "ack-2", Server: "s3", Outcome: Info, Err: "timeout"},
		{ID: 3, Kind: "put", Key: "ack-3", Server: "s1", Outcome: Fail, Err: "HTTP 400: bad"},
		{ID: 4, Kind: "put", Key: "ack-4", Server: "s1", Outcome: Fail, Err: "HTTP 400: bad"},
	}
	have := map[string]bool{"ack-0": true, "ack-2": true, "ack-3": true}
	var got []string
	for _, err := range lostAcks("s2", ops, have) {
		got = append(got, err.Error())
	}
	want := []string{
		"s2: acknowledged write ack-1 (op 1 through s2 at index 11) is lost",
		"s2: refused write ack-3 (op 3 through s1: HTTP 400: bad) is in the state",
	}
	if !slices.Equal(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

func TestOutcomeOf(t *testing.T) {
	tests := []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{&StatusError{Code: 400}, Fail},
		{&StatusError{Code: 409}, Fail},
		{&StatusError{Code: 408}, Info},
		{&StatusError{Code: 429}, Info},
		{&StatusError{Code: 503}, Info},
		{errors.New("connection refused"), Info},
	}
	for _, tt := range tests {
		if got := outcomeOf(tt.err); got != tt.want {
			t.Errorf("outcomeOf(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestCutRules(t *testing.T) {
	peers := []netip.Addr{netip.MustParseAddr("10.99.7.11"), netip.MustParseAddr("10.99.7.12")}
	tests := []struct {
		name    string
		in, out bool
		want    string
	}{{
		name: "both ways", in: true, out: true,
		want: "table inet chaos {\n" +
			"  chain input { type filter hook input priority -10; policy accept; ip saddr { 10.99.7.11, 10.99.7.12 } drop; }\n" +
			"  chain output { type filter hook output priority -10; policy accept; ip daddr { 10.99.7.11, 10.99.7.12 } drop; }\n" +
			"}\n",
	}, {
		name: "inbound only", in: true,
		want: "table inet chaos {\n" +
			"  chain input { type filter hook input priority -10; policy accept; ip saddr { 10.99.7.11, 10.99.7.12 } drop; }\n" +
			"}\n",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cutRules(peers, tt.in, tt.out); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestElectionsWon(t *testing.T) {
	logs := map[string]string{
		"s1": "x [INFO]  stead.raft.raft: election won: term=2 tally=2\ny [INFO]  stead.raft.raft: entering leader state\n" +
			"z [INFO]  stead.raft.raft: election won: term=5 tally=2\n",
		"s2": "a [INFO]  stead.raft.raft: election won: term=3 tally=2\nb [INFO]  stead.raft.raft: election won: term=5 tally=3\n",
		"s3": "no elections here\n",
	}
	got := ElectionsWon(logs)
	want := map[uint64][]string{2: {"s1"}, 3: {"s2"}, 5: {"s1", "s2"}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for term, servers := range want {
		if !slices.Equal(got[term], servers) {
			t.Errorf("term %d: got %v, want %v", term, got[term], servers)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
