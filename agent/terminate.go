package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/probe"
)

// gracePeriod is how long a pod's containers get between the stop signal
// and SIGKILL: deletionGracePeriodSeconds when the pod is being deleted,
// else terminationGracePeriodSeconds (default 30 s).
func gracePeriod(pod *corev1.Pod) time.Duration {
	switch {
	case pod == nil:
		return time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	case pod.DeletionGracePeriodSeconds != nil:
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
}

// teardown stops a sandbox's containers gracefully, all at once, then
// removes them, the sandbox's network (releasing its IP), its mounts, its
// directory and its logs. pod is the sandbox's pod as last known (nil when
// unknown: no hooks, the default grace period).
func (w *podWorker) teardown(ctx context.Context, sb string, pod *corev1.Pod, cs []containerd.Container) error {
	env := w.env
	grace := gracePeriod(pod)
	var running []containerd.Container
	for _, c := range cs {
		if c.Status.State == containerd.StateRunning || c.Status.State == containerd.StateUnknown {
			running = append(running, c)
		}
	}
	if len(running) > 0 {
		w.log.Info("stopping pod", "sandbox", sb, "grace", grace, "containers", len(running))
		if pod != nil {
			w.event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("Stopping %d containers", len(running)))
		}
	}
	errs := make([]error, len(running))
	var wg sync.WaitGroup
	for i, c := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.stopContainer(ctx, pod, c.Labels[labelContainer], c.ID, grace)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for _, c := range cs {
		if err := env.containers.Delete(ctx, c.ID); err != nil {
			return err
		}
		delete(w.probes, c.ID)
	}
	if err := env.networks.Teardown(ctx, sb); err != nil {
		return err
	}
	if pod != nil {
		for _, v := range pod.Spec.Volumes {
			if v.PersistentVolumeClaim != nil {
				if err := env.volumes.Unmount(ctx, pod, v.PersistentVolumeClaim.ClaimName); err != nil {
					return fmt.Errorf("unmount volume %s: %w", v.Name, err)
				}
			}
		}
	}
	dir := env.paths.sandbox(sb)
	if err := unmountAll(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", sb, err)
	}
	if err := os.RemoveAll(env.paths.logs(sb)); err != nil {
		return fmt.Errorf("remove logs of sandbox %s: %w", sb, err)
	}
	delete(w.sandboxes, sb)
	return nil
}

// stopContainer runs the container's preStop hook, then sends the stop
// signal (the image's STOPSIGNAL or SIGTERM) and SIGKILL once what is left
// of grace has passed. As in the kubelet, the hook counts against grace
// and the container gets at least the minimum grace after it.
func (w *podWorker) stopContainer(ctx context.Context, pod *corev1.Pod, name, id string, grace time.Duration) error {
	env := w.env
	start := env.clock.Now()
	if c := specOf(pod, name); c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
		if err := w.runHook(ctx, pod, c, id, c.Lifecycle.PreStop, grace); err != nil {
			w.log.Warn("preStop hook failed", "container", name, "error", err)
			w.event(pod, corev1.EventTypeWarning, "FailedPreStopHook", fmt.Sprintf("PreStopHook failed: %v", err))
		}
	}
	left := grace - env.clock.Now().Sub(start)
	if left < env.minGrace {
		left = env.minGrace
	}
	if err := env.containers.Stop(ctx, id, left, 0); err != nil && !errors.Is(err, containerd.ErrNotFound) {
		return err
	}
	return nil
}

// runHook runs a lifecycle hook of container c, bounded by timeout.
func (w *podWorker) runHook(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler, timeout time.Duration) error {
	if h.Sleep != nil {
		d := min(time.Duration(h.Sleep.Seconds)*time.Second, timeout)
		select {
		case <-w.env.clock.After(d):
		case <-ctx.Done():
		}
		return nil
	}
	ip := pod.Status.PodIP
	if pod.Spec.HostNetwork {
		ip = w.env.node.IP
	}
	return probe.RunLifecycle(ctx, h, probe.Target{IP: ip, Ports: c.Ports, Exec: w.execIn(id)}, timeout)
}

// specOf finds container name in the pod's spec.
func specOf(pod *corev1.Pod, name string) *corev1.Container {
	if pod == nil {
		return nil
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}
