package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/volumes"
)

// storeClaim writes a claim into the state as the servers would.
func (e *testEnv) storeClaim(t *testing.T, pvc *corev1.PersistentVolumeClaim) {
	t.Helper()
	op, err := raftstore.PutOp(raftstore.PersistentVolumeClaims, pvc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.store.Apply(ctx, raftstore.Txn{RequestID: uuid.NewString(), Ops: []raftstore.Op{op}}); err != nil {
		t.Fatalf("store claim %s: %v", pvc.Name, err)
	}
}

// markDeleted marks a claim deleted the way the servers do once no pod
// mounts it and nothing holds its volume: Terminating, with the data
// finalizer, and the node to delete its data named.
func (e *testEnv) markDeleted(t *testing.T, name, deleter string) {
	t.Helper()
	c := e.claim(name).DeepCopy()
	ts := metav1.Now()
	c.DeletionTimestamp = &ts
	c.Finalizers = []string{agent.FinalizerVolumeData}
	c.Annotations[agent.AnnotationDataDeleter] = deleter
	e.storeClaim(t, c)
}

func (e *testEnv) setRequest(t *testing.T, name, size string) {
	t.Helper()
	c := e.claim(name).DeepCopy()
	c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse(size)
	e.storeClaim(t, c)
}

func fsSize(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks) * st.Bsize
}

func claimCondition(c *corev1.PersistentVolumeClaim, typ corev1.PersistentVolumeClaimConditionType) *corev1.PersistentVolumeClaimCondition {
	for i := range c.Status.Conditions {
		if c.Status.Conditions[i].Type == typ {
			return &c.Status.Conditions[i]
		}
	}
	return nil
}

// TestClaimResizeAndDataDeletion runs a pod on an image volume of a real
// agent: growing the claim grows the mounted filesystem while the pod
// runs, a smaller size is refused on the claim and changes nothing, and
// once the claim is deleted and this node is asked to, the agent deletes
// the data, leaving no mount and no loop device, and releases the claim;
// a deleted claim another node is asked about keeps its data here.
func TestClaimResizeAndDataDeletion(t *testing.T) {
	e := newEnv(t)
	img := e.busyboxImage(t)
	imageRoot := t.TempDir()
	classes, err := volumes.ParseClasses([]string{"disk=image:" + imageRoot + ",default"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.agentConfig(t, "vol1")
	cfg.StorageClasses = classes
	e.startAgent(t, cfg)
	capacity := func(name string) string {
		q := e.claim(name).Status.Capacity[corev1.ResourceStorage]
		return q.String()
	}

	pvc := e.putClaim(t, "disk-web-0", "", "16Mi")
	e.assign(t, "vol1", claimPod(img, "web-0", "disk-web-0", `exec /busybox sleep 3600`))
	e.waitPod(t, "web-0", 60*time.Second, "running", func(p *corev1.Pod) bool { return containerStatus(p).State.Running != nil })
	waitFor(t, 30*time.Second, "capacity 16Mi", func() (bool, string) { return capacity("disk-web-0") == "16Mi", capacity("disk-web-0") })
	mp := filepath.Join(cfg.DataDir, "volumes", "mounts", string(pvc.UID))
	if n := fsSize(t, mp); n > 16<<20 {
		t.Fatalf("the filesystem of a 16Mi volume is %d bytes", n)
	}

	t.Run("grow while mounted", func(t *testing.T) {
		e.setRequest(t, "disk-web-0", "48Mi")
		if !hasCapSysResource(t) {
			// The kernel refuses to grow a mounted ext4 filesystem: the
			// claim says so, and the volume grows when it is mounted again.
			t.Log("no CAP_SYS_RESOURCE: the volume grows when its pod restarts")
			waitFor(t, 30*time.Second, "NodeResizeError", func() (bool, string) {
				c := claimCondition(e.claim("disk-web-0"), corev1.PersistentVolumeClaimNodeResizeError)
				return c != nil && c.Reason == agent.ReasonResizeOffline, capacity("disk-web-0")
			})
			if got := capacity("disk-web-0"); got != "16Mi" {
				t.Errorf("capacity = %s while the filesystem has not grown, want 16Mi", got)
			}
			e.deletePod(t, "web-0")
			e.assign(t, "vol1", claimPod(img, "web-0", "disk-web-0", `exec /busybox sleep 3600`))
			e.waitPod(t, "web-0", 60*time.Second, "running", func(p *corev1.Pod) bool { return containerStatus(p).State.Running != nil })
		}
		waitFor(t, 30*time.Second, "capacity 48Mi", func() (bool, string) { return capacity("disk-web-0") == "48Mi", capacity("disk-web-0") })
		if n := fsSize(t, mp); n < 40<<20 || n > 48<<20 {
			t.Errorf("the filesystem is %d bytes after growing to 48Mi", n)
		}
		// More than the old size fits now.
		if err := os.WriteFile(filepath.Join(mp, "big"), make([]byte, 24<<20), 0o644); err != nil {
			t.Errorf("write 24 MiB after growing: %v", err)
		}
		if c := claimCondition(e.claim("disk-web-0"), corev1.PersistentVolumeClaimNodeResizeError); c != nil {
			t.Errorf("condition after growing: %+v", c)
		}
	})

	t.Run("shrink refused", func(t *testing.T) {
		e.setRequest(t, "disk-web-0", "8Mi")
		var cond *corev1.PersistentVolumeClaimCondition
		waitFor(t, 30*time.Second, "NodeResizeError", func() (bool, string) {
			cond = claimCondition(e.claim("disk-web-0"), corev1.PersistentVolumeClaimNodeResizeError)
			return cond != nil && cond.Reason == agent.ReasonShrinkRefused, capacity("disk-web-0")
		})
		want := "volume default/disk-web-0: spec.resources.requests.storage asks for 8Mi, but the volume has 48Mi and image volumes only grow: set it to 48Mi or more"
		if cond.Reason != agent.ReasonShrinkRefused || cond.Message != want || cond.Status != corev1.ConditionTrue {
			t.Errorf("condition = %s %s %q, want True %s %q", cond.Status, cond.Reason, cond.Message, agent.ReasonShrinkRefused, want)
		}
		if got := capacity("disk-web-0"); got != "48Mi" {
			t.Errorf("capacity = %s after a refused shrink, want 48Mi", got)
		}
		if fi, err := os.Stat(filepath.Join(imageRoot, string(pvc.UID), "disk.img")); err != nil || fi.Size() != 48<<20 {
			t.Errorf("image after a refused shrink: %v, %v", fi, err)
		}
		if b, err := os.ReadFile(filepath.Join(mp, "big")); err != nil || len(b) != 24<<20 {
			t.Errorf("data after a refused shrink: %d bytes, %v", len(b), err)
		}
		e.setRequest(t, "disk-web-0", "48Mi")
		waitFor(t, 30*time.Second, "the condition cleared", func() (bool, string) {
			return claimCondition(e.claim("disk-web-0"), corev1.PersistentVolumeClaimNodeResizeError) == nil, ""
		})
	})

	t.Run("data deleted by the node asked to", func(t *testing.T) {
		other := e.putClaim(t, "disk-web-1", "", "8Mi")
		e.assign(t, "vol1", claimPod(img, "web-1", "disk-web-1", `exec /busybox sleep 3600`))
		e.waitPod(t, "web-1", 60*time.Second, "running", func(p *corev1.Pod) bool { return containerStatus(p).State.Running != nil })
		for _, pod := range []string{"web-0", "web-1"} {
			e.deletePod(t, pod)
		}
		for _, name := range []string{"disk-web-0", "disk-web-1"} {
			waitFor(t, 30*time.Second, name+" detached", func() (bool, string) {
				c := e.claim(name)
				return c.Annotations[agent.AnnotationAttachedNode] == "", c.Annotations[agent.AnnotationAttachedNode]
			})
		}
		// Another node is asked about disk-web-1 first; then this one
		// about disk-web-0.
		e.markDeleted(t, "disk-web-1", "vol2")
		e.markDeleted(t, "disk-web-0", "vol1")
		waitFor(t, 30*time.Second, "disk-web-0 released", func() (bool, string) {
			c := e.claim("disk-web-0")
			return !slices.Contains(c.Finalizers, agent.FinalizerVolumeData), strings.Join(c.Finalizers, ",")
		})
		if _, err := os.Lstat(filepath.Join(imageRoot, string(pvc.UID))); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("disk-web-0's data after deletion: %v", err)
		}
		if _, err := os.Stat(filepath.Join(imageRoot, string(other.UID), "disk.img")); err != nil {
			t.Errorf("disk-web-1's data, which another node is to delete: %v", err)
		}
		if c := e.claim("disk-web-1"); !slices.Contains(c.Finalizers, agent.FinalizerVolumeData) {
			t.Errorf("disk-web-1 lost its data finalizer on node vol1: %v", c.Finalizers)
		}
		if m := mountsMentioning(t, filepath.Join(cfg.DataDir, "volumes"), imageRoot); len(m) > 0 {
			t.Errorf("mounts left after deletion:\n%s", strings.Join(m, "\n"))
		}
		if l := loopsBacking(imageRoot); len(l) > 0 {
			t.Errorf("loop devices left attached: %v", l)
		}
	})
}

// hasCapSysResource reports whether this process may grow a mounted ext4
// filesystem.
func hasCapSysResource(t *testing.T) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return caps&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	return false
}

// TestClaimResizeBeyondRoot asks an image volume on a 64 MiB root for
// 1 GiB: the running pod keeps its volume, size and data and the claim
// says why it did not grow; a pod mounting it afresh waits with that
// reason, and nothing is mounted half-way.
func TestClaimResizeBeyondRoot(t *testing.T) {
	e := newEnv(t)
	img := e.busyboxImage(t)
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=64m"); err != nil {
		t.Skipf("mount a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	classes, err := volumes.ParseClasses([]string{"small=image:" + root + ",default"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.agentConfig(t, "vol1")
	cfg.StorageClasses = classes
	e.startAgent(t, cfg)

	pvc := e.putClaim(t, "disk-db-0", "", "16Mi")
	e.assign(t, "vol1", claimPod(img, "db-0", "disk-db-0", counter))
	e.waitPod(t, "db-0", 60*time.Second, "running", func(p *corev1.Pod) bool { return containerStatus(p).State.Running != nil })
	e.setRequest(t, "disk-db-0", "1Gi")
	var cond *corev1.PersistentVolumeClaimCondition
	waitFor(t, 30*time.Second, "NodeResizeError", func() (bool, string) {
		cond = claimCondition(e.claim("disk-db-0"), corev1.PersistentVolumeClaimNodeResizeError)
		return cond != nil, ""
	})
	if cond.Reason != agent.ReasonResizeFailed || !strings.Contains(cond.Message, `not enough space: class "small" cannot provide 1008 MiB more to grow it from 16 MiB to 1 GiB`) {
		t.Errorf("condition = %s %q, want %s naming the space", cond.Reason, cond.Message, agent.ReasonResizeFailed)
	}
	if q := e.claim("disk-db-0").Status.Capacity[corev1.ResourceStorage]; q.String() != "16Mi" {
		t.Errorf("capacity = %s after a refused growth, want 16Mi", q.String())
	}
	img0 := filepath.Join(root, string(pvc.UID), "disk.img")
	if fi, err := os.Stat(img0); err != nil || fi.Size() != 16<<20 {
		t.Errorf("image after a refused growth: %v, %v", fi, err)
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "volumes", "mounts", string(pvc.UID), "count")); err != nil || string(b) != "1\n" {
		t.Errorf("data after a refused growth: %q, %v", b, err)
	}

	e.deletePod(t, "db-0")
	waitFor(t, 30*time.Second, "detached", func() (bool, string) {
		c := e.claim("disk-db-0")
		return c.Annotations[agent.AnnotationAttachedNode] == "", c.Annotations[agent.AnnotationAttachedNode]
	})
	e.assign(t, "vol1", claimPod(img, "db-0", "disk-db-0", counter))
	p := e.waitPod(t, "db-0", 60*time.Second, "waiting to mount", func(p *corev1.Pod) bool {
		return strings.Contains(waitingMessage(p), "not enough space")
	})
	if msg := waitingMessage(p); !strings.Contains(msg, agent.ReasonFailedMount+": volume default/disk-db-0: not enough space") {
		t.Errorf("waiting = %q, want FailedMount naming the volume", msg)
	}
	if m := mountsMentioning(t, string(pvc.UID)); len(m) > 0 {
		t.Errorf("mounted half-way:\n%s", strings.Join(m, "\n"))
	}
	if l := loopsBacking(root); len(l) > 0 {
		t.Errorf("loop devices left attached: %v", l)
	}
	if fi, err := os.Stat(img0); err != nil || fi.Size() != 16<<20 {
		t.Errorf("image after a refused mount: %v, %v", fi, err)
	}
	e.deletePod(t, "db-0")
}
