package clustertest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler"
	"github.com/stead-io/stead/volumes"
)

// WorkloadImage is the image of the journal-writer workload, built by
// Start and dropped into every agent's images/ directory.
const WorkloadImage = "stead.local/clustertest/journal-writer:1"

// Workload is the StatefulSet of journal writers and its headless Service,
// both named Name, in namespace default.
type Workload struct {
	// Name of the set and of its service.
	Name string
	// Replicas is the number of ordinals.
	Replicas int
	// Revision is put in the pod template's environment; changing it
	// starts a rolling update.
	Revision int
}

// volume is ordinal ord's volume on the shared root: a shared-class
// volume whose UID is the pod's name.
func (c *Cluster) volume(w Workload, ord int) volumes.Volume {
	name := api.ReplicaName(w.Name, ord)
	return volumes.Volume{Namespace: "default", Name: name, UID: name,
		Class: volumes.Class{Name: "clustertest", Driver: volumes.DriverShared, Root: c.SharedRoot}}
}

// ControlDirs returns the directory of each ordinal's fence marker, lock
// and journal on the shared root: <root>/<volume uid>/control, where the
// volume's UID is the pod's name for the volumes the harness creates, and
// the claim's UID with Options.Claims (an ordinal whose claim does not
// exist yet is left out).
func (c *Cluster) ControlDirs(w Workload) (map[int]string, error) {
	out := map[int]string{}
	if !c.opts.Claims {
		for ord := range w.Replicas {
			out[ord] = filepath.Join(c.SharedRoot, api.ReplicaName(w.Name, ord), "control")
		}
		return out, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var claims []*corev1.PersistentVolumeClaim
	if _, err := c.Client(c.AnyServer()).List(ctx, "persistentvolumeclaims", "default", &claims); err != nil {
		return nil, err
	}
	for _, pvc := range claims {
		for ord := range w.Replicas {
			if pvc.Name == api.VolumeName(claimTemplate, w.Name, ord) {
				out[ord] = filepath.Join(c.SharedRoot, string(pvc.UID), "control")
			}
		}
	}
	return out, nil
}

// claimTemplate names the workload's claim template with Options.Claims.
const claimTemplate = "data"

// provision creates each ordinal's volume on the shared root with the
// volumes package, as a node would: its data directory, and its control
// directory with the lock and a fence marker at generation 0. Until the
// agents attach claim volumes on the shared root, the workload reaches them
// through a hostPath volume, and nothing raises the marker.
func (c *Cluster) provision(w Workload) error {
	m, err := volumes.NewManager(volumes.Options{Node: "clustertest", Dir: filepath.Join(c.Dir, "volumes")})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for ord := range w.Replicas {
		v := c.volume(w, ord)
		if err := m.Create(ctx, v); err != nil {
			return err
		}
		if got, want := m.ControlDir(v), filepath.Join(c.SharedRoot, v.UID, "control"); got != want {
			return fmt.Errorf("volume %s: control directory %s, want %s", v, got, want)
		}
	}
	return nil
}

// Manifest is the workload's YAML. Each pod's journal-writer learns its
// generation, node and ordinal from the downward API and writes to its
// own volume's control directory on the shared root, which every pod sees
// through a hostPath volume at /shared: the directory of the volume the
// harness made for the pod, or with Options.Claims, of the claim volume
// the agent attached at /data (claimwriter finds it). RUN names the
// cluster, so that the sampler counts only its own processes.
func (c *Cluster) Manifest(w Workload) []byte {
	command, controlDir, claimMount, claims := "", `
        - name: CONTROL_DIR
          value: /shared/$(POD)/control`, "", ""
	if c.opts.Claims {
		command = `
        command: ["/claimwriter"]`
		controlDir = ""
		claimMount = fmt.Sprintf(`
        - name: %s
          mountPath: /data`, claimTemplate)
		claims = fmt.Sprintf(`
  volumeClaimTemplates:
  - metadata:
      name: %s
    spec:
      accessModes: [ReadWriteOnce]
      storageClassName: %s
      resources:
        requests:
          storage: 1Mi`, claimTemplate, StorageClass)
	}
	return []byte(fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[1]s
spec:
  clusterIP: None
  selector:
    app: %[1]s
  ports:
  - name: none
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: %[1]s
spec:
  serviceName: %[1]s
  replicas: %[2]d
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: %[1]s
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: writer
        image: %[3]s
        imagePullPolicy: Never%[9]s
        env:
        - name: GENERATION
          valueFrom:
            fieldRef:
              fieldPath: metadata.annotations['%[4]s']
        - name: NODE
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: ORDINAL
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['%[5]s']
        - name: POD
          valueFrom:
            fieldRef:
              fieldPath: metadata.name%[10]s
        - name: RUN
          value: %[6]s
        - name: REVISION
          value: "%[7]d"
        volumeMounts:
        - name: shared
          mountPath: /shared%[11]s
      volumes:
      - name: shared
        hostPath:
          path: %[8]s
          type: Directory%[12]s
`, w.Name, w.Replicas, WorkloadImage, api.AnnotationGeneration, api.LabelPodIndex, c.ID, w.Revision, c.SharedRoot,
		command, controlDir, claimMount, claims))
}

// Deploy provisions the ordinals' volumes on the shared root (unless the
// agents make them from claims), applies the
// workload and waits until every ordinal runs and is Ready.
func (c *Cluster) Deploy(w Workload, within time.Duration) error {
	if !c.opts.Claims {
		if err := c.provision(w); err != nil {
			return err
		}
	}
	if err := c.ApplyWorkload(w); err != nil {
		return err
	}
	return c.WaitRolledOut(w, within)
}

// ApplyWorkload applies the workload's manifest through any server,
// retrying while no leader answers.
func (c *Cluster) ApplyWorkload(w Workload) error {
	return Eventually(30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := c.Client(c.AnyServer()).Apply(ctx, c.Manifest(w))
		return err
	})
}

// Set reads the workload's StatefulSet from server s's own state.
func (c *Cluster) Set(ctx context.Context, s string, w Workload) (*appsv1.StatefulSet, error) {
	var set appsv1.StatefulSet
	if _, err := c.Client(s).Get(ctx, "statefulsets", "default", w.Name, &set); err != nil {
		return nil, err
	}
	return &set, nil
}

// Pods lists the workload's pods from server s's own state, by ordinal.
func (c *Cluster) Pods(ctx context.Context, s string, w Workload) ([]*corev1.Pod, error) {
	var all []*corev1.Pod
	if _, err := c.Client(s).List(ctx, "pods", "default", &all); err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	for _, p := range all {
		if parent, _, ok := api.ParseOrdinal(p.Name); ok && parent == w.Name {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, nil
}

// WaitRolledOut waits until the set's rollout is complete (the
// controller's own RolloutStatus) at the workload's revision, every
// ordinal's pod is Running and Ready, and the sampler sees one process per
// ordinal.
func (c *Cluster) WaitRolledOut(w Workload, within time.Duration) error {
	return Eventually(within, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s := c.AnyServer()
		set, err := c.Set(ctx, s, w)
		if err != nil {
			return err
		}
		if msg, done, err := scheduler.RolloutStatus(set); err != nil || !done {
			return fmt.Errorf("rollout: %s %v", msg, err)
		}
		pods, err := c.Pods(ctx, s, w)
		if err != nil {
			return err
		}
		if err := podsReady(pods, w); err != nil {
			return err
		}
		if c.Sampler != nil {
			if got := c.Sampler.Last(); len(got.Procs) < w.Replicas {
				return fmt.Errorf("sampler sees %d journal writers, want %d", len(got.Procs), w.Replicas)
			}
		}
		return nil
	})
}

// podsReady checks that each ordinal has a Running, Ready pod of the
// workload's revision.
func podsReady(pods []*corev1.Pod, w Workload) error {
	byOrd := map[int]*corev1.Pod{}
	for _, p := range pods {
		_, ord, _ := api.ParseOrdinal(p.Name)
		byOrd[ord] = p
	}
	for ord := range w.Replicas {
		p := byOrd[ord]
		if p == nil {
			return fmt.Errorf("no pod %s", api.ReplicaName(w.Name, ord))
		}
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning || !isReady(p) {
			return fmt.Errorf("pod %s on %q is %s (ready %v, deleting %v)", p.Name, p.Spec.NodeName, p.Status.Phase, isReady(p), p.DeletionTimestamp != nil)
		}
		if rev := envOf(p, "REVISION"); rev != strconv.Itoa(w.Revision) {
			return fmt.Errorf("pod %s runs revision %s, want %d", p.Name, rev, w.Revision)
		}
	}
	return nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func envOf(p *corev1.Pod, name string) string {
	for _, c := range p.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == name {
				return e.Value
			}
		}
	}
	return ""
}

// generationOf is a pod's fencing generation; 0 when it has none.
func generationOf(p *corev1.Pod) uint64 {
	g, _ := strconv.ParseUint(p.Annotations[api.AnnotationGeneration], 10, 64)
	return g
}

// Placement says where each ordinal's pod is bound, from server s:
// ordinal → node (empty while unbound).
func (c *Cluster) Placement(ctx context.Context, s string, w Workload) (map[int]string, error) {
	pods, err := c.Pods(ctx, s, w)
	if err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, p := range pods {
		_, ord, _ := api.ParseOrdinal(p.Name)
		out[ord] = p.Spec.NodeName
	}
	return out, nil
}

// OrdinalsOn returns the workload's ordinals whose live processes the
// sampler last saw on node, sorted.
func (c *Cluster) OrdinalsOn(node string) []int {
	var ords []int
	for _, p := range c.Sampler.Last().Procs {
		if p.Node == node {
			ords = append(ords, p.Ord)
		}
	}
	sort.Ints(ords)
	return ords
}

// Journals reads every ordinal's journal from the shared root.
func (c *Cluster) Journals(w Workload) (map[int][]byte, error) {
	dirs, err := c.ControlDirs(w)
	if err != nil {
		return nil, err
	}
	out := map[int][]byte{}
	for ord := range w.Replicas {
		if dirs[ord] == "" {
			out[ord] = nil
			continue
		}
		b, err := os.ReadFile(filepath.Join(dirs[ord], "journal"))
		if err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		out[ord] = b
	}
	return out, nil
}
