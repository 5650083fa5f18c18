package watchdog

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLeaseRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lease")
	exp := Now().Add(3 * time.Second)
	if err := WriteLease(path, exp, "node-a"); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLease(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := BootID()
	if got.ExpiresMono != exp || got.Node != "node-a" || got.Pid != os.Getpid() || got.Boot != b {
		t.Fatalf("read %+v, want expiry %v, node node-a, pid %d, boot %s", got, exp, os.Getpid(), b)
	}
	if v := Judge(got, nil, Now(), b); v != VerdictValid {
		t.Fatalf("fresh lease judged %v", v)
	}
}

// TestLeaseCrashBeforeRename: a writer that died after writing the
// temporary file but before the rename leaves the old lease in force, and
// the next write goes through.
func TestLeaseCrashBeforeRename(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lease")
	if err := WriteLease(path, 5*sec, "node-a"); err != nil {
		t.Fatal(err)
	}
	// What a writer killed half way through leaves: a truncated new lease.
	if err := os.WriteFile(path+".tmp", []byte(`{"expiresMono":900000`), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLease(path)
	if err != nil || got.ExpiresMono != 5*sec {
		t.Fatalf("after crash: read %+v, %v; want the old lease (expiry 5s)", got, err)
	}
	if err := WriteLease(path, 8*sec, "node-a"); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadLease(path); err != nil || got.ExpiresMono != 8*sec {
		t.Fatalf("after rewrite: read %+v, %v; want expiry 8s", got, err)
	}
	if _, err := os.Stat(path + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left after a complete write: %v", err)
	}
}

func TestReadLeaseRejects(t *testing.T) {
	good := Lease{ExpiresMono: 5 * sec, Boot: "b", Node: "n", Pid: 1}
	good.Checksum = good.checksum()
	goodJSON, _ := json.Marshal(good)
	tampered := strings.Replace(string(goodJSON), `"expiresMono":5000000000`, `"expiresMono":9000000000`, 1)
	if tampered == string(goodJSON) {
		t.Fatal("tampering did not change the file")
	}
	tests := []struct {
		name    string
		content string
		want    error
	}{
		{"empty", "", ErrCorrupt},
		{"truncated", string(goodJSON[:len(goodJSON)/2]), ErrCorrupt},
		{"no checksum", `{"expiresMono":5000000000,"boot":"b","node":"n","pid":1}`, ErrCorrupt},
		{"expiry changed after the checksum", tampered, ErrCorrupt},
		{"not json", "lease", ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lease")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadLease(path); !errors.Is(err, tt.want) {
				t.Fatalf("ReadLease = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("missing", func(t *testing.T) {
		if _, err := ReadLease(filepath.Join(t.TempDir(), "lease")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("ReadLease = %v, want not exist", err)
		}
	})
}

func TestJudge(t *testing.T) {
	l := Lease{ExpiresMono: 10 * sec, Boot: "b1"}
	tests := []struct {
		name string
		l    Lease
		err  error
		now  MonoTime
		boot string
		want Verdict
	}{
		{"before expiry", l, nil, 10*sec - 1, "b1", VerdictValid},
		{"at expiry", l, nil, 10 * sec, "b1", VerdictExpired},
		{"after expiry", l, nil, 11 * sec, "b1", VerdictExpired},
		{"other boot, far from expiry", l, nil, 1 * sec, "b2", VerdictOtherBoot},
		{"missing", Lease{}, fmt.Errorf("read lease: %w", os.ErrNotExist), 1 * sec, "b1", VerdictMissing},
		{"corrupt", Lease{}, fmt.Errorf("read lease: %w", ErrCorrupt), 1 * sec, "b1", VerdictUnreadable},
		{"unreadable", Lease{}, fmt.Errorf("read lease: %w", os.ErrPermission), 1 * sec, "b1", VerdictUnreadable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Judge(tt.l, tt.err, tt.now, tt.boot); got != tt.want {
				t.Fatalf("Judge = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseTimeNSOffset(t *testing.T) {
	tests := []struct {
		name, in string
		want     MonoTime
	}{
		{"root namespace", "monotonic           0         0\nboottime            0         0\n", 0},
		{"shifted forward", "monotonic        1000         5\nboottime            0         0\n", 1000*sec + 5},
		{"shifted back", "monotonic       -3600         0\nboottime           7         0\n", -3600 * sec},
		{"numeric clock ids", "1 42 0\n7 0 0\n", 42 * sec},
		{"no monotonic line", "boottime 5 0\n", 0},
		{"garbage", "monotonic x y\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseTimeNSOffset([]byte(tt.in)); got != tt.want {
				t.Fatalf("offset = %v, want %v", got, tt.want)
			}
		})
	}
}

// The child half of TestNowAcrossTimeNamespaces: print Now and exit.
func init() {
	if os.Getenv("WATCHDOG_TEST_PRINT_NOW") == "1" {
		fmt.Println(int64(Now()))
		os.Exit(0)
	}
}

// TestNowAcrossTimeNamespaces (T18b): a process in a time namespace whose
// CLOCK_MONOTONIC is shifted by an hour reads the same Now as this one, so
// a lease written inside compares soundly outside.
func TestNowAcrossTimeNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a time namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip(err)
	}
	for _, shift := range []string{"3600", "-1"} {
		t.Run(shift, func(t *testing.T) {
			before := Now()
			cmd := exec.Command(unshare, "--time", "--monotonic", shift, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "WATCHDOG_TEST_PRINT_NOW=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Skipf("time namespaces unavailable: %v: %s", err, out)
			}
			after := Now()
			inside, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
			if err != nil {
				t.Fatalf("child printed %q", out)
			}
			if MonoTime(inside) < before || MonoTime(inside) > after {
				t.Fatalf("Now inside the namespace = %v, want between %v and %v", MonoTime(inside), before, after)
			}
		})
	}
	// Outside any time namespace, Now is CLOCK_MONOTONIC itself.
	var ts unix.Timespec
	before := Now()
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	after := Now()
	if raw := MonoTime(ts.Nano()); timeNSOffset() == 0 && (raw < before || raw > after) {
		t.Fatalf("CLOCK_MONOTONIC %v outside [%v, %v]", raw, before, after)
	}
}

func TestFenceRecordRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fenced")
	f := Fence{Reason: "expired", Node: "n1", LeaseExpiresMono: 3 * sec, DetectedMono: 3*sec + 1, Boot: "b",
		Killed: []KilledTask{{ID: "c1", Pid: 9, Pod: "default/web-0", Generation: "4", KilledMono: 3*sec + 2}}}
	if err := WriteFence(path, f); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFence(path)
	if err != nil {
		t.Fatal(err)
	}
	got.Checksum = ""
	if fmt.Sprint(got) != fmt.Sprint(f) {
		t.Fatalf("read %+v, want %+v", got, f)
	}
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), "web-0", "web-9", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFence(path); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("tampered record: %v, want ErrCorrupt", err)
	}
}
