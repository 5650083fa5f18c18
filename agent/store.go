package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// paths is the layout of the agent's data directory:
//
//	pods/<sandbox>/pod.json          the pod as last seen, for a stop after it left the API
//	pods/<sandbox>/boot-id           the machine's boot the sandbox was made in
//	pods/<sandbox>/{hostname,hosts,resolv.conf}
//	pods/<sandbox>/volumes/<name>    emptyDir volumes
//	pods/<sandbox>/subpaths/...      bind mounts of volume subPaths
//	pods/<sandbox>/start-errors/<id> why an attempt could not start
//	logs/<sandbox>/<container>/<attempt>.log
//	generations/<namespace>_<name>   the highest generation this node ran the pod name at
//	volumes/<namespace>/<claim>      claim volumes of the default VolumeMounter
//	network/                         CNI state (IP allocations, attachments)
//	images/                          archives imported at start
type paths struct{ root string }

func (p paths) sandboxes() string            { return filepath.Join(p.root, "pods") }
func (p paths) sandbox(sb string) string     { return filepath.Join(p.root, "pods", sb) }
func (p paths) podRecord(sb string) string   { return filepath.Join(p.sandbox(sb), "pod.json") }
func (p paths) startErrors(sb string) string { return filepath.Join(p.sandbox(sb), "start-errors") }
func (p paths) bootID(sb string) string      { return filepath.Join(p.sandbox(sb), "boot-id") }
func (p paths) logs(sb string) string        { return filepath.Join(p.root, "logs", sb) }
func (p paths) logFile(sb, container string, attempt int) string {
	return filepath.Join(p.logs(sb), container, strconv.Itoa(attempt)+".log")
}
func (p paths) generations() string { return filepath.Join(p.root, "generations") }
func (p paths) network() string     { return filepath.Join(p.root, "network") }
func (p paths) images() string      { return filepath.Join(p.root, "images") }
func (p paths) volumes() string     { return filepath.Join(p.root, "volumes") }

// writeFileAtomic replaces path with data durably: temporary file, fsync,
// rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return replaceFile(path, data, perm, true)
}

// writeFileDerived replaces path with data as writeFileAtomic does, so that
// readers see the old file or the new one, but does not wait for the disk.
// It is for files the agent computes again on every sync of their pod, and
// which a reboot throws away with the pod's sandbox.
func writeFileDerived(path string, data []byte, perm os.FileMode) error {
	return replaceFile(path, data, perm, false)
}

func replaceFile(path string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err = tmp.Write(data); err == nil && durable {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), perm)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil || !durable {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writePodRecord keeps the pod a sandbox runs, so that its containers can
// be stopped with its grace period and hooks even after the pod left the
// API, and after an agent restart.
func writePodRecord(p paths, sb string, pod *corev1.Pod) error {
	data, err := json.Marshal(pod)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p.podRecord(sb), data, 0o600); err != nil {
		return fmt.Errorf("record pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

// readSandboxes returns the pod record of every sandbox directory; a
// directory whose record is missing or unreadable maps to nil.
func readSandboxes(p paths) (map[string]*corev1.Pod, error) {
	ents, err := os.ReadDir(p.sandboxes())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list sandboxes: %w", err)
	}
	out := map[string]*corev1.Pod{}
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		out[e.Name()] = readPodRecord(p, e.Name())
	}
	return out, nil
}

func readPodRecord(p paths, sb string) *corev1.Pod {
	data, err := os.ReadFile(p.podRecord(sb))
	if err != nil {
		return nil
	}
	var pod corev1.Pod
	if json.Unmarshal(data, &pod) != nil || pod.Name == "" {
		return nil
	}
	return &pod
}

// startError is why an attempt's task could not start (a missing
// command, a bad mount), kept on disk because containerd keeps the
// container but no task to tell.
type startError struct {
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

func writeStartError(p paths, sb, id string, e startError) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(p.startErrors(sb), id), data, 0o600)
}

func readStartError(p paths, sb, id string) (startError, bool) {
	data, err := os.ReadFile(filepath.Join(p.startErrors(sb), id))
	if err != nil {
		return startError{}, false
	}
	var e startError
	if json.Unmarshal(data, &e) != nil {
		return startError{}, false
	}
	return e, true
}

// errFenced: the assignment's generation is lower than one this node
// already ran the pod name at.
var errFenced = errors.New("a newer assignment of this pod already ran on this node")

// fences records, per pod name, the highest generation this node ran it
// at, durably, so that an older assignment is never started again, even
// after a restart (RELIABILITY R1, R7).
type fences struct {
	dir string
	mu  sync.Mutex
	// seen caches what is on disk.
	seen map[podKey]int64
}

func newFences(dir string) *fences { return &fences{dir: dir, seen: map[podKey]int64{}} }

func (f *fences) path(k podKey) string { return filepath.Join(f.dir, k.Namespace+"_"+k.Name) }

// highest returns the recorded generation of k (0 when none).
func (f *fences) highest(k podKey) (int64, error) {
	if g, ok := f.seen[k]; ok {
		return g, nil
	}
	data, err := os.ReadFile(f.path(k))
	if errors.Is(err, os.ErrNotExist) {
		f.seen[k] = 0
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read generation of %s: %w", k, err)
	}
	g, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read generation of %s: %w", k, err)
	}
	f.seen[k] = g
	return g, nil
}

// Admit records gen for k before anything of that assignment starts; it
// returns errFenced when a higher generation was recorded.
func (f *fences) Admit(k podKey, gen int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, err := f.highest(k)
	if err != nil {
		return err
	}
	if gen < cur {
		return fmt.Errorf("pod %s generation %d: %w (generation %d)", k, gen, errFenced, cur)
	}
	if gen == cur {
		return nil
	}
	if err := writeFileAtomic(f.path(k), []byte(strconv.FormatInt(gen, 10)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record generation of %s: %w", k, err)
	}
	f.seen[k] = gen
	return nil
}

// Fenced reports whether gen is below the generation recorded for k.
func (f *fences) Fenced(k podKey, gen int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, err := f.highest(k)
	return err == nil && gen < cur
}

// bootID identifies the machine's current boot.
func bootID() string { return strings.TrimSpace(readFile("/proc/sys/kernel/random/boot_id")) }
