package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/api"
)

// volumeCluster is one server and two agents, vol-a and vol-b, each with
// its own containerd, that share the storage root of class "nfs" (the
// shared driver) and of class "disk" (ext4 images on the shared root).
type volumeCluster struct {
	*e2eCluster
	shared, images string // the class roots, seen by both agents
	second         *e2eProc
	secondDir      string
	secondBridge   string
}

// busyboxTag is the image of the host's static busybox, /busybox sh -c.
const busyboxTag = "stead.local/e2e/busybox:1"

// Node addresses nothing answers on: the agents, on one host, then route
// each other's pod subnets nowhere instead of over their bridges.
var volumeNodeIPs = map[string]string{"vol-a": "198.51.100.10", "vol-b": "198.51.100.11"}

func startVolumeCluster(t *testing.T) *volumeCluster {
	t.Helper()
	skipUnlessPods(t)
	if _, err := os.Stat("/usr/bin/busybox"); err != nil {
		t.Skipf("needs a static busybox: %v", err)
	}
	e := newE2ECluster(t)
	t.Cleanup(func() { e.teardown(t) })
	// Two nodes take a /24 each.
	e.cidr = netip.PrefixFrom(e.cidr.Addr(), 23).Masked()
	vc := &volumeCluster{e2eCluster: e, shared: filepath.Join(e.dir, "shared"), secondDir: filepath.Join(e.dir, "agent2")}
	vc.images = filepath.Join(vc.shared, "images")
	vc.secondBridge = e.bridge + "b"
	for _, d := range []string{vc.images, filepath.Join(e.agentDir(), "images"), filepath.Join(vc.secondDir, "images")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{e.agentDir(), vc.secondDir} {
		out, err := exec.Command(e.bin, "image", "build", "--binary", "/usr/bin/busybox", "--tag", busyboxTag,
			"--entrypoint", "/busybox,sh,-c", "-o", filepath.Join(dir, "images", "busybox.tar")).CombinedOutput()
		if err != nil {
			t.Fatalf("stead image build: %v\n%s", err, out)
		}
	}
	e2eApp, err := os.ReadFile(filepath.Join(e.agentDir(), "images", "e2eapp.tar"))
	if err == nil {
		err = os.WriteFile(filepath.Join(vc.secondDir, "images", "e2eapp.tar"), e2eApp, 0o644)
	}
	if err != nil {
		t.Fatal(err)
	}
	e.raft = freePort(t)
	e.startServer(t)
	classes := []string{"--storage-class", "nfs=shared:" + vc.shared + ",default", "--storage-class", "disk=image:" + vc.images + ",shared"}
	common := []string{"--servers", e.addr, "--log-level", "debug", "--watchdog=false", "--cluster-cidr", e.cidr.String(), "--cni-network", e.network}
	args := append([]string{"agent", "--node-name", "vol-a", "--node-ip", volumeNodeIPs["vol-a"], "--data-dir", e.agentDir(),
		"--agent-addr", e.agent, "--dns-addr", e.dns, "--bridge", e.bridge, "--netns-dir", e.netns,
		"--containerd-socket", containerd.DaemonOptions{Dir: filepath.Join(e.agentDir(), "containerd")}.Paths().Socket}, append(common, classes...)...)
	e.node = startProc(t, e.bin, "stead agent vol-a", args...)
	args = append([]string{"agent", "--node-name", "vol-b", "--node-ip", volumeNodeIPs["vol-b"], "--data-dir", vc.secondDir,
		"--agent-addr", freePort(t), "--dns-addr", freePort(t), "--bridge", vc.secondBridge, "--netns-dir", filepath.Join(e.dir, "netns2"),
		"--containerd-socket", containerd.DaemonOptions{Dir: filepath.Join(vc.secondDir, "containerd")}.Paths().Socket}, append(common, classes...)...)
	vc.second = startProc(t, e.bin, "stead agent vol-b", args...)
	// Runs before teardown: the pods of both nodes go while both agents
	// run, then the second agent and its bridge.
	t.Cleanup(func() { vc.stopSecond(t) })
	e.node.waitOutput(t, "stead agent: node vol-a", "", 90*time.Second)
	vc.second.waitOutput(t, "stead agent: node vol-b", "", 90*time.Second)
	return vc
}

// stopSecond deletes every set and volume, waits until no pod is left, and
// stops the second agent and removes its bridge.
func (vc *volumeCluster) stopSecond(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	for _, name := range vc.listNames(ctx, t, "statefulsets") {
		if _, err := vc.c.Delete(ctx, e2eResource(t, "statefulsets"), e2eNamespace, name, api.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("cleanup: delete statefulset %s: %v", name, err)
		}
	}
	cancel()
	if left := vc.waitNoPods(t, 60*time.Second); len(left) > 0 {
		t.Errorf("cleanup: pods %v still there after 60s", left)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	for _, name := range vc.listNames(ctx, t, "persistentvolumeclaims") {
		vc.c.Delete(ctx, e2eResource(t, "persistentvolumeclaims"), e2eNamespace, name, api.DeleteOptions{})
	}
	cancel()
	if err := vc.waitClaimsGone(t, 60*time.Second); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	vc.second.stop(t, 30*time.Second)
	if t.Failed() {
		t.Logf("stead agent vol-b:\n%s", tail(vc.second.log.String(), 200))
	}
	if n, err := network.New(network.Options{Subnet: vc.cidr, DataDir: filepath.Join(vc.dir, "network-teardown2"),
		NetNSDir: filepath.Join(vc.dir, "netns2"), Bridge: vc.secondBridge, NetworkName: vc.network, ClusterCIDR: vc.cidr}); err == nil {
		if err := n.DeleteBridge(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

func (vc *volumeCluster) waitClaimsGone(t *testing.T, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		l, _, err := vc.c.List(ctx, mustResource(t, "persistentvolumeclaims"), e2eNamespace, api.ListOptions{})
		cancel()
		if err == nil && len(l.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("claims still there after %v (%v)", within, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// counterScript writes the pod's hostname and a counter to its volume,
// prints them, and waits.
const counterScript = `n=$(/busybox cat /data/count 2>/dev/null || echo 0); n=$((n+1)); echo $n > /data/count; /busybox hostname > /data/host; echo "count $n host $(/busybox cat /data/host)"; exec /busybox sleep 3600`

// volumeSet is a set of busybox pods running counterScript on the volume
// of claim template "data" of class, size and retention policy.
func volumeSet(name string, replicas int32, class, size string, policy *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy) *appsv1.StatefulSet {
	labels := map[string]string{"app": name}
	grace := int64(1)
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			ServiceName:         name,
			PodManagementPolicy: appsv1.ParallelPodManagement,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: &grace,
					Containers: []corev1.Container{{
						Name: "main", Image: busyboxTag, Args: []string{counterScript}, ImagePullPolicy: corev1.PullNever,
						VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data"},
				Spec: corev1.PersistentVolumeClaimSpec{
					StorageClassName: &class,
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}},
				},
			}},
			PersistentVolumeClaimRetentionPolicy: policy,
		},
	}
}

func (vc *volumeCluster) pod(t *testing.T, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var p corev1.Pod
	if _, err := vc.c.Get(ctx, e2eResource(t, "pods"), e2eNamespace, name, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

func (vc *volumeCluster) claim(t *testing.T, name string) (*corev1.PersistentVolumeClaim, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var c corev1.PersistentVolumeClaim
	if _, err := vc.c.Get(ctx, e2eResource(t, "persistentvolumeclaims"), e2eNamespace, name, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// waitLog waits until pod (of UID other than notUID, when set) runs and
// its log holds want, and returns the pod.
func (vc *volumeCluster) waitLog(t *testing.T, pod, notUID, want string) *corev1.Pod {
	t.Helper()
	var p *corev1.Pod
	eventually(t, 90*time.Second, pod+" logging "+want, func() error {
		var err error
		if p, err = vc.pod(t, pod); err != nil {
			return err
		}
		if string(p.UID) == notUID || p.DeletionTimestamp != nil {
			return fmt.Errorf("still the earlier %s", pod)
		}
		out, err := vc.run(t, 20*time.Second, "logs", pod)
		if err != nil || !strings.Contains(out, want) {
			return fmt.Errorf("on %s, phase %s: logs %q (%v)", p.Spec.NodeName, p.Status.Phase, out, err)
		}
		return nil
	})
	return p
}

// waitClaimGone waits until claim name is removed.
func (vc *volumeCluster) waitClaimGone(t *testing.T, name string) {
	t.Helper()
	eventually(t, 90*time.Second, "claim "+name+" removed", func() error {
		c, err := vc.claim(t, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there: deletionTimestamp %v, finalizers %v, annotations %v", c.DeletionTimestamp, c.Finalizers, c.Annotations)
	})
}

// assertNoTrace checks that the volume of claim uid left nothing: no
// directory under the class roots, no mount and no loop device.
func (vc *volumeCluster) assertNoTrace(t *testing.T, uid string) {
	t.Helper()
	for _, root := range []string{vc.shared, vc.images} {
		if _, err := os.Lstat(filepath.Join(root, uid)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the data of %s under %s: %v, want it gone", uid, root, err)
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), uid) {
			t.Errorf("a mount of %s is left: %s", uid, sc.Text())
		}
	}
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, bf := range files {
		if b, err := os.ReadFile(bf); err == nil && strings.Contains(string(b), uid) {
			t.Errorf("a loop device of %s is left: %s: %s", uid, bf, strings.TrimSpace(string(b)))
		}
	}
}

func (vc *volumeCluster) assertData(t *testing.T, root, uid, count string) {
	t.Helper()
	dir := filepath.Join(root, uid, "data")
	b, err := os.ReadFile(filepath.Join(dir, "count"))
	if err != nil || strings.TrimSpace(string(b)) != count {
		t.Errorf("count in %s = %q (%v), want %s", dir, b, err, count)
	}
}

// TestVolumesE2E runs one server and two agents whose storage classes
// share a root: a volume follows its ordinal to the other node with its
// data; deleting claims (by the retention policy, or stead delete volume
// once no pod uses them) deletes their data and leaves no mount and no
// loop device; Retain keeps the data; stead volume resize grows an image
// volume and refuses what it cannot do.
func TestVolumesE2E(t *testing.T) {
	vc := startVolumeCluster(t)
	deleteOnly := func(scaled, deleted appsv1.PersistentVolumeClaimRetentionPolicyType) *appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy {
		return &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{WhenScaled: scaled, WhenDeleted: deleted}
	}

	t.Run("ordinal moves to the other node with its data", func(t *testing.T) {
		vc.apply(t, volumeSet("mover", 1, "nfs", "16Mi", nil))
		p := vc.waitLog(t, "mover-0", "", "count 1 host mover-0")
		from := p.Spec.NodeName
		vc.must(t, "node", "drain", from)
		defer vc.must(t, "node", "uncordon", from)
		q := vc.waitLog(t, "mover-0", string(p.UID), "count 2 host mover-0")
		if q.Spec.NodeName == from || volumeNodeIPs[q.Spec.NodeName] == "" {
			t.Fatalf("mover-0 runs on %s after draining %s", q.Spec.NodeName, from)
		}
		c, err := vc.claim(t, "data-mover-0")
		if err != nil {
			t.Fatal(err)
		}
		vc.assertData(t, vc.shared, string(c.UID), "2")
		if c.Annotations["stead.io/attached-node"] != q.Spec.NodeName {
			t.Errorf("claim held by %q, want %s", c.Annotations["stead.io/attached-node"], q.Spec.NodeName)
		}
	})

	t.Run("whenScaled and whenDeleted Delete remove the data", func(t *testing.T) {
		vc.apply(t, volumeSet("gone", 2, "disk", "16Mi", deleteOnly(appsv1.DeletePersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType)))
		vc.waitLog(t, "gone-0", "", "count 1 host gone-0")
		vc.waitLog(t, "gone-1", "", "count 1 host gone-1")
		uids := map[string]string{}
		for _, name := range []string{"data-gone-0", "data-gone-1"} {
			c, err := vc.claim(t, name)
			if err != nil {
				t.Fatal(err)
			}
			uids[name] = string(c.UID)
		}
		vc.must(t, "scale", "sts/gone", "--replicas=1")
		vc.waitClaimGone(t, "data-gone-1")
		vc.assertNoTrace(t, uids["data-gone-1"])
		if _, err := os.Stat(filepath.Join(vc.images, uids["data-gone-0"], "disk.img")); err != nil {
			t.Errorf("the data of the kept ordinal 0: %v", err)
		}
		vc.must(t, "delete", "sts", "gone")
		vc.waitClaimGone(t, "data-gone-0")
		vc.assertNoTrace(t, uids["data-gone-0"])
	})

	t.Run("delete volume waits for its pod; the ordinal waits for the deletion", func(t *testing.T) {
		vc.apply(t, volumeSet("held", 1, "disk", "16Mi", nil))
		p := vc.waitLog(t, "held-0", "", "count 1 host held-0")
		c, err := vc.claim(t, "data-held-0")
		if err != nil {
			t.Fatal(err)
		}
		uid := string(c.UID)
		vc.must(t, "delete", "volume", "data-held-0")
		// The pod still uses it: it stays, Terminating, with its data.
		out := vc.must(t, "get", "volumes")
		if !strings.Contains(out, "data-held-0") || !strings.Contains(out, "Terminating") {
			t.Errorf("stead get volumes while the pod uses it:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(vc.images, uid, "disk.img")); err != nil {
			t.Errorf("the data of a volume in use was touched: %v", err)
		}
		if c, err := vc.claim(t, "data-held-0"); err != nil || c.DeletionTimestamp == nil {
			t.Fatalf("claim after delete: %v, %v", c, err)
		}
		// The pod goes; the claim is deleted, then made anew for the
		// ordinal's next pod, which starts on empty data.
		vc.must(t, "delete", "pod", "held-0")
		vc.waitLog(t, "held-0", string(p.UID), "count 1 host held-0")
		vc.assertNoTrace(t, uid)
		events := vc.must(t, "describe", "sts", "held")
		if !strings.Contains(events, "pvc data-held-0 is being deleted") {
			t.Errorf("no event says the ordinal waited for the claim:\n%s", events)
		}
		c2, err := vc.claim(t, "data-held-0")
		if err != nil || c2.UID == c.UID {
			t.Errorf("claim after the new pod started: %v (uid %s, was %s)", err, c2.UID, c.UID)
		}
	})

	t.Run("Retain keeps the data; resize grows it", func(t *testing.T) {
		vc.apply(t, volumeSet("kept", 1, "disk", "16Mi", nil))
		vc.waitLog(t, "kept-0", "", "count 1 host kept-0")
		c, err := vc.claim(t, "data-kept-0")
		if err != nil {
			t.Fatal(err)
		}
		vc.must(t, "delete", "sts", "kept")
		eventually(t, 60*time.Second, "the pods of kept gone", func() error {
			if _, err := vc.pod(t, "kept-0"); !apierrors.IsNotFound(err) {
				return fmt.Errorf("kept-0: %v", err)
			}
			return nil
		})
		if c2, err := vc.claim(t, "data-kept-0"); err != nil || c2.DeletionTimestamp != nil || c2.UID != c.UID {
			t.Fatalf("retained claim: %+v, %v", c2, err)
		}
		if _, err := os.Stat(filepath.Join(vc.images, string(c.UID), "disk.img")); err != nil {
			t.Fatalf("retained data: %v", err)
		}

		// Bad input changes nothing.
		for _, tc := range []struct{ size, want string }{
			{"8Mi", "volume default/data-kept-0 cannot shrink from 16Mi to 8Mi: spec.resources.requests.storage only grows; give 16Mi or more"},
			{"lots", `size "lots" is not a positive quantity such as 2Gi or 500Mi`},
		} {
			out, err := vc.run(t, 30*time.Second, "volume", "resize", "data-kept-0", tc.size)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("stead volume resize data-kept-0 %s: %v\n%s\nwant the error %q", tc.size, err, out, tc.want)
			}
		}
		out, err := vc.run(t, 30*time.Second, "volume", "resize", "data-mover-0", "1Gi")
		if err == nil || !strings.Contains(out, "is kept by the shared driver, whose size is advisory") {
			t.Errorf("resizing a shared volume: %v\n%s", err, out)
		}
		if c2, err := vc.claim(t, "data-kept-0"); err != nil || c2.Spec.Resources.Requests.Storage().String() != "16Mi" {
			t.Errorf("after the refused resizes the claim asks for %v (%v), want 16Mi", c2.Spec.Resources.Requests.Storage(), err)
		}

		// Grown while nobody holds it, it is the new size when mounted.
		vc.must(t, "volume", "resize", "data-kept-0", "64Mi")
		vc.apply(t, volumeSet("kept", 1, "disk", "16Mi", nil))
		vc.waitLog(t, "kept-0", "", "count 2 host kept-0")
		out = vc.must(t, "exec", "kept-0", "--", "/busybox", "df", "-k", "/data")
		if size := dfKiB(t, out); size < 56<<10 || size > 64<<10 {
			t.Errorf("the container sees %d KiB at /data, want about 64 MiB:\n%s", size, out)
		}
		// Writing beyond the old size succeeds.
		vc.must(t, "exec", "kept-0", "--", "/busybox", "dd", "if=/dev/zero", "of=/data/big", "bs=1M", "count=32")
		eventually(t, 30*time.Second, "capacity 64Mi", func() error {
			c, err := vc.claim(t, "data-kept-0")
			if err != nil {
				return err
			}
			if q := c.Status.Capacity[corev1.ResourceStorage]; q.String() != "64Mi" {
				return fmt.Errorf("capacity %s", q.String())
			}
			return nil
		})
	})
}

// dfKiB reads the size column of the last line of df -k.
func dfKiB(t *testing.T, out string) int64 {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) < 2 {
		t.Fatalf("df output: %q", out)
	}
	var n int64
	if _, err := fmt.Sscan(f[1], &n); err != nil {
		t.Fatalf("df output %q: %v", out, err)
	}
	return n
}
