package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/podspec"
)

// sandboxNet is where a pod's containers find their network.
type sandboxNet struct {
	// NetNS is the network namespace path; "" for the host network.
	NetNS string
	// IP is the pod's address (the node's on the host network).
	IP string
}

// writeIdentity writes the pod's /etc/hostname, /etc/hosts and
// /etc/resolv.conf into its sandbox, when they changed.
func (w *podWorker) writeIdentity(sb string, pod *corev1.Pod, net sandboxNet) error {
	env := w.env
	dir := env.paths.sandbox(sb)
	hostHosts, hostResolv := env.hostFiles()
	files := map[string][]byte{
		"hostname":    []byte(podspec.Hostname(pod) + "\n"),
		"hosts":       podspec.Hosts(pod, net.IP, env.node.Domain, hostHosts),
		"resolv.conf": podspec.ResolvConf(pod, env.node.DNS, env.node.Domain, hostResolv),
	}
	if pod.Spec.HostNetwork {
		if h, err := os.Hostname(); err == nil {
			files["hostname"] = []byte(h + "\n")
		}
	}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if cur, err := os.ReadFile(p); err == nil && string(cur) == string(data) {
			continue
		}
		if err := writeFileDerived(p, data, 0o644); err != nil {
			return fmt.Errorf("write %s of pod %s: %w", name, w.key, err)
		}
	}
	return nil
}

// containerSpec is the runtime spec of one attempt of container c.
func (w *podWorker) containerSpec(sb string, pod *corev1.Pod, c *corev1.Container, init bool, attempt, streak int, net sandboxNet, mounts []containerd.Mount) (containerd.ContainerSpec, error) {
	env := w.env
	cmd, args, vars, err := podspec.Process(pod, c, podspec.Facts{PodIP: net.IP, HostIP: env.node.IP, NodeCPU: env.node.CPU, NodeMemory: env.node.Memory})
	if err != nil {
		return containerd.ContainerSpec{}, err
	}
	limits := podspec.ResourceLimits(c.Resources)
	sec := podspec.SecurityOf(pod, c)
	labels := map[string]string{
		labelPod:         w.key.String(),
		labelPodUID:      string(pod.UID),
		labelGeneration:  strconv.FormatInt(generationOf(pod), 10),
		labelSandbox:     sb,
		labelContainer:   c.Name,
		labelAttempt:     strconv.Itoa(attempt),
		labelCrashStreak: strconv.Itoa(streak),
	}
	if init {
		labels[labelInit] = "true"
	}
	spec := containerd.ContainerSpec{
		ID:             containerID(sb, c.Name, attempt),
		Image:          c.Image,
		Command:        cmd,
		Args:           args,
		Env:            vars,
		WorkingDir:     c.WorkingDir,
		NetNSPath:      net.NetNS,
		Mounts:         mounts,
		CPUQuota:       limits.CPUQuota,
		CPUPeriod:      podspec.CPUPeriod,
		CPUShares:      limits.CPUShares,
		MemoryLimit:    limits.MemoryLimit,
		RunAsUser:      sec.RunAsUser,
		RunAsGroup:     sec.RunAsGroup,
		ReadOnlyRootfs: sec.ReadOnlyRootfs,
		Privileged:     sec.Privileged,
		Labels:         labels,
		LogPath:        env.paths.logFile(sb, c.Name, attempt),
	}
	if !pod.Spec.HostNetwork {
		spec.Hostname = podspec.Hostname(pod)
	}
	return spec, nil
}
