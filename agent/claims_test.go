package agent_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/agent"
	"github.com/stead-io/stead/agent/image"
	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/volumes"
)

// busyboxImage imports an image of the host's static busybox at /busybox.
func (e *testEnv) busyboxImage(t *testing.T) string {
	t.Helper()
	bin := "/usr/bin/busybox"
	if _, err := os.Stat(bin); err != nil {
		t.Skipf("needs busybox: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "busybox-*.tar")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := image.BuildFromBinary(f, image.BuildOptions{Binary: bin, Tag: "stead-test/busybox:1", Entrypoint: []string{"/busybox", "sh", "-c"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := e.rt.ImportArchive(ctx, f)
	if err != nil || len(names) != 1 {
		t.Fatalf("import busybox image: %v %v", names, err)
	}
	return names[0]
}

// putClaim stores a claim as the StatefulSet controller makes it.
func (e *testEnv) putClaim(t *testing.T, name, class, size string) *corev1.PersistentVolumeClaim {
	t.Helper()
	pvc := &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID(uuid.NewString())},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
		},
		Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	if class != "" {
		pvc.Spec.StorageClassName = &class
	}
	op, err := raftstore.PutOp(raftstore.PersistentVolumeClaims, pvc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.store.Apply(ctx, raftstore.Txn{RequestID: uuid.NewString(), Ops: []raftstore.Op{op}}); err != nil {
		t.Fatalf("put claim %s: %v", name, err)
	}
	return e.claim(name)
}

func (e *testEnv) claim(name string) *corev1.PersistentVolumeClaim {
	c, _ := raftstore.GetOf[*corev1.PersistentVolumeClaim](e.store.View(), raftstore.PersistentVolumeClaims, "default", name)
	return c
}

// claimPod is a pod of one busybox container running script with the
// claim mounted at /data.
func claimPod(img, name, claim, script string) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			Hostname:                      name,
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "main", Image: img, Args: []string{script}, ImagePullPolicy: corev1.PullIfNotPresent,
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
			}},
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim}}}},
		},
	}
}

// counter writes the pod's hostname and a counter to its volume, prints
// them and waits.
const counter = `n=$(/busybox cat /data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/count; /busybox hostname > /data/host; echo "count $n host $(/busybox cat /data/host)"; exec /busybox sleep 3600`

// mountsUnder lists the mount points and sources under the directories.
func mountsMentioning(t *testing.T, dirs ...string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, d := range dirs {
			if strings.Contains(sc.Text(), d) {
				out = append(out, sc.Text())
			}
		}
	}
	return out
}

// loopsBacking lists the loop devices whose backing file is under dir.
func loopsBacking(dir string) []string {
	var out []string
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), dir) {
			out = append(out, f+": "+strings.TrimSpace(string(b)))
		}
	}
	return out
}

func waitingMessage(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	if w := containerStatus(p).State.Waiting; w != nil {
		return w.Reason + ": " + w.Message
	}
	return ""
}

// TestClaimVolumes runs pods with claim volumes of local, shared and
// image classes on a real agent: data outlives the pod, the claim records
// its holder while attached, a volume moved to another node keeps its
// data and fences the first node out, an image volume's size is a limit,
// and nothing stays mounted.
func TestClaimVolumes(t *testing.T) {
	e := newEnv(t)
	img := e.busyboxImage(t)
	sharedRoot, imageRoot := t.TempDir(), t.TempDir()
	classes, err := volumes.ParseClasses([]string{"local=local,default", "nfs=shared:" + sharedRoot, "disk=image:" + imageRoot})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.agentConfig(t, "vol1")
	cfg.StorageClasses = classes
	node := e.startAgent(t, cfg)
	logs := func(pod string) string {
		return node.logs(t, pod, api.LogOptions{Container: "main", Tail: -1})
	}
	waitLog := func(t *testing.T, pod, want string) {
		t.Helper()
		waitFor(t, 60*time.Second, pod+" logs "+want, func() (bool, string) {
			p := e.pod("default", pod)
			if w := waitingMessage(p); w != "" {
				return false, w
			}
			if p == nil || containerStatus(p).ContainerID == "" {
				return false, describe(p)
			}
			l := logs(pod)
			return strings.Contains(l, want), l
		})
	}

	t.Run("local data outlives the pod", func(t *testing.T) {
		e.putClaim(t, "www-web-0", "", "1Gi")
		p := e.assign(t, "vol1", claimPod(img, "web-0", "www-web-0", counter))
		waitLog(t, "web-0", "count 1 host web-0")
		c := e.claim("www-web-0")
		want := map[string]string{
			agent.AnnotationAttachedNode:         "vol1",
			agent.AnnotationAttachedGeneration:   p.Annotations[api.AnnotationGeneration],
			agent.AnnotationStorageDriver:        "local",
			"volume.kubernetes.io/selected-node": "vol1",
		}
		for k, v := range want {
			if c.Annotations[k] != v {
				t.Errorf("claim annotation %s = %q, want %q (all: %v)", k, c.Annotations[k], v, c.Annotations)
			}
		}
		if q := c.Status.Capacity[corev1.ResourceStorage]; c.Status.Phase != corev1.ClaimBound || q.String() != "1Gi" {
			t.Errorf("claim status = %s with capacity %s, want Bound with 1Gi", c.Status.Phase, q.String())
		}
		e.deletePod(t, "web-0")
		waitFor(t, 30*time.Second, "the claim's holder cleared", func() (bool, string) {
			c := e.claim("www-web-0")
			return c.Annotations[agent.AnnotationAttachedNode] == "", c.Annotations[agent.AnnotationAttachedNode]
		})
		e.assign(t, "vol1", claimPod(img, "web-0", "www-web-0", counter))
		waitLog(t, "web-0", "count 2 host web-0")
		e.deletePod(t, "web-0")
	})

	t.Run("shared volume follows its ordinal and fences the old node", func(t *testing.T) {
		pvc := e.putClaim(t, "data-web-1", "nfs", "1Gi")
		e.assign(t, "vol1", claimPod(img, "web-1", "data-web-1", counter))
		waitLog(t, "web-1", "count 1 host web-1")
		if c := e.claim("data-web-1"); c.Annotations["volume.kubernetes.io/selected-node"] != "" {
			t.Errorf("a shared claim was pinned to %s", c.Annotations["volume.kubernetes.io/selected-node"])
		}
		e.deletePod(t, "web-1")

		// The ordinal moves to node vol2, which mounts the same root.
		other, err := volumes.NewManager(volumes.Options{Node: "vol2", Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		v, err := volumes.FromClaim(pvc, classes)
		if err != nil {
			t.Fatal(err)
		}
		const gen2 = 1 << 40
		dir, err := other.Attach(context.Background(), v, gen2)
		if err != nil {
			t.Fatal(err)
		}
		for file, want := range map[string]string{"count": "1\n", "host": "web-1\n"} {
			if b, err := os.ReadFile(filepath.Join(dir, file)); err != nil || string(b) != want {
				t.Errorf("on vol2, %s = %q (%v), want %q", file, b, err, want)
			}
		}
		if err := other.Detach(context.Background(), v); err != nil {
			t.Fatal(err)
		}

		// A new incarnation on vol1 has a lower generation than vol2's: the
		// fence marker refuses it and it never starts.
		e.assign(t, "vol1", claimPod(img, "web-1", "data-web-1", counter))
		p := e.waitPod(t, "web-1", 60*time.Second, "refused for a stale generation", func(p *corev1.Pod) bool {
			return strings.Contains(waitingMessage(p), "StaleVolumeGeneration")
		})
		msg := waitingMessage(p)
		if !strings.Contains(msg, "generation "+p.Annotations[api.AnnotationGeneration]+" is stale, the fence marker holds generation 1099511627776") {
			t.Errorf("waiting = %q, want the stale generation named", msg)
		}
		if containerStatus(p).ContainerID != "" {
			t.Errorf("the refused pod started container %s", containerStatus(p).ContainerID)
		}
		e.deletePod(t, "web-1")
	})

	t.Run("image volume size is enforced", func(t *testing.T) {
		e.putClaim(t, "disk-web-2", "disk", "16Mi")
		e.assign(t, "vol1", claimPod(img, "web-2", "disk-web-2",
			`/busybox dd if=/dev/zero of=/data/big bs=1M count=64; echo "dd exited $?"; exec /busybox sleep 3600`))
		waitLog(t, "web-2", "dd exited 1")
		if l := logs("web-2"); !strings.Contains(l, "No space left on device") {
			t.Errorf("dd's log = %q, want ENOSPC", l)
		}
		e.deletePod(t, "web-2")
		waitFor(t, 30*time.Second, "the image detached", func() (bool, string) {
			c := e.claim("disk-web-2")
			return c.Annotations[agent.AnnotationAttachedNode] == "", c.Annotations[agent.AnnotationAttachedNode]
		})
	})

	if m := mountsMentioning(t, filepath.Join(cfg.DataDir, "volumes"), sharedRoot, imageRoot); len(m) > 0 {
		t.Errorf("mounts left after the pods were deleted:\n%s", strings.Join(m, "\n"))
	}
	if l := loopsBacking(imageRoot); len(l) > 0 {
		t.Errorf("loop devices left attached: %v", l)
	}
}
