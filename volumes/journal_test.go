package volumes

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// line writes one journal record: kind, generation, node, pid, seq.
func line(kind Kind, gen uint64, node string, pid int, seq uint64) string {
	b, _ := json.Marshal(Record{Ord: 1, Gen: gen, Node: node, PID: pid, Seq: seq, Mono: int64(seq) * 1000, Kind: kind})
	return string(b)
}

type found struct {
	Line int
	Rule Rule
}

func TestCheckJournal(t *testing.T) {
	const (
		agentA = 100 // agent pids
		agentB = 200
		w1     = 11 // writer pids
		w2     = 22
	)
	tests := []struct {
		name    string
		lines   []string
		want    []found
		wantMsg string // reason of the first violation, if set
	}{
		{
			name: "clean failover with unmount",
			lines: []string{
				line(KindFence, 5, "a1", agentA, 1),
				line(KindMount, 5, "a1", agentA, 2),
				line(KindWrite, 5, "a1", w1, 1),
				line(KindWrite, 5, "a1", w1, 2),
				line(KindUnmount, 5, "a1", agentA, 3),
				line(KindFence, 7, "a2", agentB, 1),
				line(KindMount, 7, "a2", agentB, 2),
				line(KindWrite, 7, "a2", w2, 1),
			},
		},
		{
			name: "failover by fence with a stale writer rejected",
			lines: []string{
				line(KindMount, 5, "a1", agentA, 1),
				line(KindWrite, 5, "a1", w1, 1),
				line(KindFence, 7, "a2", agentB, 1),
				line(KindMount, 7, "a2", agentB, 2),
				line(KindReject, 5, "a1", w1, 2),
				line(KindWrite, 7, "a2", w2, 1),
				line(KindReject, 5, "a1", w1, 3),
				line(KindWrite, 7, "a2", w2, 2),
			},
		},
		{
			name: "stale write after a fence",
			lines: []string{
				line(KindMount, 5, "a1", agentA, 1),
				line(KindWrite, 5, "a1", w1, 1),
				line(KindFence, 7, "a2", agentB, 1),
				line(KindWrite, 5, "a1", w1, 2),
			},
			want:    []found{{4, RuleNoRegression}, {4, RuleNoStaleAccept}},
			wantMsg: "write of generation 5 after a record of generation 7 (line 3)",
		},
		{
			name: "regression without a fence record",
			lines: []string{
				line(KindWrite, 7, "a2", w2, 1),
				line(KindWrite, 5, "a1", w1, 1),
			},
			want:    []found{{2, RuleNoRegression}, {2, RuleNoInterleaving}},
			wantMsg: "write of generation 5 after a record of generation 7 (line 1)",
		},
		{
			name: "stale mount accepted",
			lines: []string{
				line(KindFence, 7, "a2", agentB, 1),
				line(KindMount, 7, "a2", agentB, 2),
				line(KindMount, 5, "a1", agentA, 1),
			},
			want:    []found{{3, RuleNoStaleAccept}},
			wantMsg: "mount of generation 5 accepted after the volume was fenced at generation 7 (line 1)",
		},
		{
			name: "write after its own reject",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				line(KindReject, 5, "a1", w1, 2),
				line(KindWrite, 5, "a1", w1, 3),
			},
			want:    []found{{3, RuleNoStaleAccept}},
			wantMsg: "writer a1/11 writes after its reject (line 2)",
		},
		{
			name: "two writers alternate",
			lines: []string{
				line(KindMount, 5, "a1", agentA, 1),
				line(KindWrite, 5, "a1", w1, 1),
				line(KindFence, 7, "a2", agentB, 1),
				line(KindWrite, 7, "a2", w2, 1),
				line(KindWrite, 7, "a1", w1, 2),
			},
			want: []found{{5, RuleOneWriterPerGen}, {5, RuleNoInterleaving}},
		},
		{
			name: "switch without unmount or fence",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				line(KindWrite, 6, "a2", w2, 1),
			},
			want:    []found{{2, RuleNoInterleaving}},
			wantMsg: "writer a2/22 (generation 6) follows a1/11 (generation 5) with no unmount of 5 on a1 nor fence of 6 between them",
		},
		{
			name: "an unmount of another generation does not release",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				line(KindUnmount, 4, "a1", agentA, 1),
				line(KindUnmount, 5, "a2", agentB, 1),
				line(KindWrite, 6, "a2", w2, 1),
			},
			want: []found{{4, RuleNoInterleaving}},
		},
		{
			name: "a release before the old writer's last write does not count",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				line(KindFence, 6, "a2", agentB, 1),
				line(KindWrite, 5, "a1", w1, 2),
				line(KindWrite, 6, "a2", w2, 1),
			},
			want: []found{{3, RuleNoRegression}, {3, RuleNoStaleAccept}, {4, RuleNoInterleaving}},
		},
		{
			name: "one generation, two writers",
			lines: []string{
				line(KindMount, 5, "a1", agentA, 1),
				line(KindWrite, 5, "a1", w1, 1),
				line(KindUnmount, 5, "a1", agentA, 2),
				line(KindWrite, 5, "a1", w2, 1),
			},
			want:    []found{{4, RuleOneWriterPerGen}},
			wantMsg: "generation 5 written by a1/11 and by a1/22",
		},
		{
			name: "seq goes back",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				line(KindWrite, 5, "a1", w1, 3),
				line(KindWrite, 5, "a1", w1, 3),
				line(KindWrite, 5, "a1", w1, 2),
			},
			want:    []found{{3, RuleIncreasingSeq}, {4, RuleIncreasingSeq}},
			wantMsg: "writer a1/11: seq 3 after seq 3",
		},
		{
			name: "seq is per writer",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 10),
				line(KindFence, 6, "a1", agentA, 1),
				line(KindWrite, 6, "a1", w2, 1),
			},
		},
		{
			name: "corrupt and torn lines",
			lines: []string{
				line(KindWrite, 5, "a1", w1, 1),
				`{"ord":1,"gen":5,"node":"a1","pid":11,"seq":2,"mo`,
				`{"ord":1,"gen":5,"node":"a1","pid":11,"seq":3,"mono":1,"kind":"scribble"}`,
				`{"ord":1,"gen":5,"node":"a1","pid":11,"seq":4,"mono":1,"kind":"write","extra":1}`,
				``,
				line(KindWrite, 5, "a1", w1, 5),
			},
			want: []found{{2, RuleCorrupt}, {3, RuleCorrupt}, {4, RuleCorrupt}, {5, RuleCorrupt}},
		},
		{
			name:  "empty journal",
			lines: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := strings.Join(tt.lines, "\n")
			if len(tt.lines) > 0 {
				text += "\n"
			}
			vs := CheckJournal(strings.NewReader(text))
			var got []found
			for _, v := range vs {
				got = append(got, found{v.Line, v.Rule})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("violations = %v, want %v\n%s", got, tt.want, strings.Join(violationStrings(vs), "\n"))
			}
			if tt.wantMsg != "" && vs[0].Reason != tt.wantMsg {
				t.Errorf("first reason = %q, want %q", vs[0].Reason, tt.wantMsg)
			}
		})
	}
}

func violationStrings(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.String())
	}
	return out
}

func TestCheckJournalLineTooLong(t *testing.T) {
	text := line(KindWrite, 5, "a1", 1, 1) + "\n" + strings.Repeat("x", maxJournalLine+10) + "\n"
	vs := CheckJournal(strings.NewReader(text))
	if len(vs) != 1 || vs[0].Rule != RuleCorrupt || vs[0].Line != 2 {
		t.Fatalf("violations = %v, want one corrupt at line 2", violationStrings(vs))
	}
}

// TestRecordFormat: the field order is the one RELIABILITY 6.2 gives.
func TestRecordFormat(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "journal"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := AppendRecord(f, Record{Ord: 1, Gen: 42, Node: "a2", PID: 7, Seq: 3, Mono: 99, Kind: KindWrite}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "journal"))
	want := `{"ord":1,"gen":42,"node":"a2","pid":7,"seq":3,"mono":99,"kind":"write"}` + "\n"
	if string(data) != want {
		t.Errorf("record = %q, want %q", data, want)
	}
}
