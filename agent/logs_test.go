package agent

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestWriteTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	var live strings.Builder
	for i := 0; i < 5000; i++ {
		live.WriteString("line " + strings.Repeat("x", i%7) + "\n")
	}
	os.WriteFile(path, []byte(live.String()), 0o644)
	os.WriteFile(path+".1", []byte("old 1\nold 2\n"), 0o644)
	lines := strings.SplitAfter(live.String(), "\n")
	lines = lines[:len(lines)-1]
	cases := []struct {
		name string
		tail int
		want string
	}{
		{"all, the rotated copy first", -1, "old 1\nold 2\n" + live.String()},
		{"none", 0, ""},
		{"one", 1, lines[len(lines)-1]},
		{"across chunks", 3000, strings.Join(lines[len(lines)-3000:], "")},
		{"more than there is", 10000, live.String()},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var out bytes.Buffer
			off, err := writeTail(&out, f, path, tc.tail)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("got %d bytes, want %d", out.Len(), len(tc.want))
			}
			if off != int64(live.Len()) {
				t.Errorf("offset %d, want the end %d", off, live.Len())
			}
		})
	}
}

// TestStreamLogFollows: a followed log delivers what is appended, survives
// a rotation that cuts the head of the file, and ends once the container
// stops running.
func TestStreamLogFollows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	os.WriteFile(path, []byte("a\n"), 0o644)
	clock := newFakeClock()
	var running atomic.Bool
	running.Store(true)
	isRunning := func(context.Context) bool { return running.Load() }
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- streamLog(context.Background(), &out, path, -1, true, isRunning, clock) }()
	waitOutput := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for out.String() != want {
			if time.Now().After(deadline) {
				t.Fatalf("output %q, want %q", out.String(), want)
			}
			clock.Advance(logPoll)
			time.Sleep(time.Millisecond)
		}
	}
	waitOutput("a\n")
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("b\n")
	waitOutput("a\nb\n")
	// Rotation: the head ("a\nb\n") goes to .1 and is cut from the file.
	os.WriteFile(path+".1", []byte("a\nb\n"), 0o644)
	os.WriteFile(path, []byte("c\n"), 0o644)
	waitOutput("a\nb\nc\n")
	running.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != "a\nb\nc\n" {
				t.Errorf("output %q", out.String())
			}
			return
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("follow did not end after the container stopped")
		}
		clock.Advance(time.Second)
		time.Sleep(time.Millisecond)
	}
}

type syncBuffer struct{ b lockedBuffer }

func (s *syncBuffer) Write(p []byte) (int, error) { return s.b.Write(p) }
func (s *syncBuffer) String() string              { return string(s.b.Bytes()) }

func TestCheckHostPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	os.WriteFile(file, nil, 0o644)
	typ := func(t corev1.HostPathType) *corev1.HostPathType { return &t }
	cases := []struct {
		name    string
		src     corev1.HostPathVolumeSource
		wantErr string
	}{
		{"unset type", corev1.HostPathVolumeSource{Path: filepath.Join(dir, "missing")}, ""},
		{"directory or create", corev1.HostPathVolumeSource{Path: filepath.Join(dir, "new/dir"), Type: typ(corev1.HostPathDirectoryOrCreate)}, ""},
		{"file or create", corev1.HostPathVolumeSource{Path: filepath.Join(dir, "new/file"), Type: typ(corev1.HostPathFileOrCreate)}, ""},
		{"directory", corev1.HostPathVolumeSource{Path: dir, Type: typ(corev1.HostPathDirectory)}, ""},
		{"file", corev1.HostPathVolumeSource{Path: file, Type: typ(corev1.HostPathFile)}, ""},
		{"a file is no directory", corev1.HostPathVolumeSource{Path: file, Type: typ(corev1.HostPathDirectory)}, "is not a Directory"},
		{"missing file", corev1.HostPathVolumeSource{Path: filepath.Join(dir, "nope"), Type: typ(corev1.HostPathFile)}, "no such file"},
		{"relative", corev1.HostPathVolumeSource{Path: "rel"}, "is not absolute"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHostPath(&tc.src)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("err %v, want %q", err, tc.wantErr)
			}
		})
	}
	if fi, err := os.Stat(filepath.Join(dir, "new/dir")); err != nil || !fi.IsDir() {
		t.Errorf("DirectoryOrCreate made no directory: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "new/file")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("FileOrCreate made no file: %v", err)
	}
}

func TestDirVolumes(t *testing.T) {
	d := DirVolumes{Root: t.TempDir()}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default"}}
	got, err := d.Mount(context.Background(), pod, "www-web-0")
	if err != nil || got != filepath.Join(d.Root, "default", "www-web-0") {
		t.Fatalf("Mount = %q %v", got, err)
	}
	for _, bad := range []string{"../escape", "a/b", ".."} {
		if _, err := d.Mount(context.Background(), pod, bad); err == nil {
			t.Errorf("claim %q accepted", bad)
		}
	}
}
