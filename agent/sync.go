package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/agent/containerd"
	"github.com/stead-io/stead/agent/network"
	"github.com/stead-io/stead/agent/probe"
)

// sync makes this pod name's containers agree with its assignment, once:
//
//  1. every sandbox of the name other than the assigned incarnation's is
//     stopped (gracefully) and removed — older generations first of all,
//     before anything of the new one runs or is reported (RELIABILITY R7);
//  2. a pod being deleted is stopped the same way, and once nothing of it
//     is left its record is removed (the node's confirmation);
//  3. otherwise the assigned pod is run: its network, init containers in
//     order, containers with restarts and back-off, probes, and its status.
//
// It returns when it wants to run again (zero: only on events and resync)
// and whether nothing is left to do for the name.
func (w *podWorker) sync(ctx context.Context) (next time.Time, done bool) {
	env := w.env
	now := env.clock.Now()
	desired := w.getDesired()
	observed, err := env.containers.ListLabeled(ctx, labelPod, w.key.String())
	if err != nil {
		w.log.Warn("list containers", "error", err)
		return w.errorRetry(now), false
	}
	bySandbox := map[string][]containerd.Container{}
	ids := make([]string, 0, len(observed))
	for _, c := range observed {
		sb := c.Labels[labelSandbox]
		bySandbox[sb] = append(bySandbox[sb], c)
		ids = append(ids, c.ID)
	}
	env.owned(w.key, ids)

	keep := ""
	if desired != nil && desired.UID != w.confirmed && desired.DeletionTimestamp == nil {
		if gen := generationOf(desired); env.fences.Fenced(w.key, gen) {
			w.log.Warn("refusing to run an assignment older than one this node already ran", "gen", gen)
		} else {
			keep = sandboxID(w.key, incarnationOf(desired))
		}
	}

	// Stop and remove every other sandbox of this pod name.
	others := map[string]bool{}
	for sb := range w.sandboxes {
		others[sb] = true
	}
	for sb := range bySandbox {
		others[sb] = true
	}
	delete(others, keep)
	for _, sb := range sortedKeys(others) {
		rec := w.sandboxes[sb]
		if rec == nil {
			rec = readPodRecord(env.paths, sb)
		}
		if desired != nil && sb == sandboxID(w.key, incarnationOf(desired)) {
			rec = desired // its latest: deletionGracePeriodSeconds
		}
		if err := w.teardown(ctx, sb, rec, bySandbox[sb]); err != nil {
			w.log.Error("stop pod", "sandbox", sb, "error", err)
			return w.errorRetry(now), false
		}
	}

	if desired != nil && desired.DeletionTimestamp != nil && desired.UID != w.confirmed {
		if err := env.confirm(ctx, desired); err != nil && !apierrors.IsNotFound(err) {
			w.log.Warn("confirm deletion", "error", err)
			return w.errorRetry(now), false
		}
		w.log.Info("pod stopped and removed", "gen", generationOf(desired))
		w.confirmed = desired.UID
	}
	if keep == "" {
		w.failures = 0
		return time.Time{}, true
	}
	next, err = w.run(ctx, desired, keep, bySandbox[keep], now)
	if err != nil {
		w.log.Warn("sync pod", "error", err)
		return w.errorRetry(now), false
	}
	w.failures = 0
	return next, false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// run runs the assigned pod in sandbox sb and reports its status.
func (w *podWorker) run(ctx context.Context, pod *corev1.Pod, sb string, cs []containerd.Container, now time.Time) (time.Time, error) {
	env := w.env
	next := now.Add(env.resync)
	soon := func(t time.Time) {
		if !t.IsZero() && t.Before(next) {
			next = t
		}
	}
	if err := env.fences.Admit(w.key, generationOf(pod)); err != nil {
		return time.Time{}, err
	}
	// A sandbox from an earlier boot of the machine has no process and no
	// network namespace left: the pod starts afresh, as after a reboot in
	// Kubernetes, rather than with its old network's environment.
	if b, err := os.ReadFile(env.paths.bootID(sb)); err == nil && strings.TrimSpace(string(b)) != env.boot {
		w.log.Info("the pod's sandbox is from an earlier boot; starting it afresh", "sandbox", sb)
		if err := w.teardown(ctx, sb, pod, cs); err != nil {
			return time.Time{}, err
		}
		cs = nil
	}
	if rec := w.sandboxes[sb]; rec == nil || rec.ResourceVersion != pod.ResourceVersion {
		if err := writePodRecord(env.paths, sb, pod); err != nil {
			return time.Time{}, err
		}
		if rec == nil {
			if err := writeFileAtomic(env.paths.bootID(sb), []byte(env.boot+"\n"), 0o644); err != nil {
				return time.Time{}, err
			}
		}
		w.sandboxes[sb] = pod
	}

	// The status this worker computed last is newer than the pod's, which
	// may come from a list taken before that status was written.
	view := podView{Pod: pod, HostIP: env.node.IP, Now: now}
	if w.lastStatus != nil && w.lastStatusUID == pod.UID {
		view.Old = w.lastStatus
	}
	clear(w.waiting)
	clear(w.pulled)
	// Images first: a pod that cannot get its images takes no IP.
	if len(cs) == 0 && !w.imagesPresent(ctx, pod, now, soon) {
		view.Init = w.views(ctx, pod.Spec.InitContainers, nil, nil)
		view.Containers = w.views(ctx, pod.Spec.Containers, nil, nil)
		w.finish(pod, view)
		return next, nil
	}
	// The sandbox: its network and identity files; a failure is retried
	// with back-off, and reported meanwhile.
	var net sandboxNet
	var sandboxErr *waitingView
	if r := w.retries[retrySandbox]; r != nil && now.Before(r.retryAt) {
		sandboxErr = &waitingView{Reason: reasonCreateSandbox, Message: r.message}
		soon(r.retryAt)
	} else {
		var err error
		if net, err = w.network(ctx, sb, pod, len(cs) == 0); err == nil {
			err = w.writeIdentity(sb, pod, net)
		}
		if err != nil {
			sandboxErr = &waitingView{Reason: reasonCreateSandbox, Message: err.Error()}
			w.event(pod, corev1.EventTypeWarning, "FailedCreatePodSandBox", err.Error())
			soon(w.backoff(retrySandbox, err.Error(), now))
		} else {
			delete(w.retries, retrySandbox)
		}
	}
	if sandboxErr == nil {
		view.PodIP = net.IP
		view.SandboxReady = true
	}

	attempts := w.attempts(sb, cs)
	if view.SandboxReady {
		acted, wake := w.act(ctx, pod, sb, net, attempts, now)
		soon(wake)
		if acted {
			fresh, err := env.containers.ListLabeled(ctx, labelSandbox, sb)
			if err != nil {
				return time.Time{}, fmt.Errorf("list containers: %w", err)
			}
			attempts = w.attempts(sb, fresh)
		}
		soon(w.runProbes(ctx, pod, net, attempts))
	}
	w.collectGarbage(ctx, pod, sb, attempts)

	view.Init = w.views(ctx, pod.Spec.InitContainers, attempts, sandboxErr)
	view.Containers = w.views(ctx, pod.Spec.Containers, attempts, sandboxErr)
	w.finish(pod, view)
	return next, nil
}

// finish computes the pod's status and hands it to the reporter.
func (w *podWorker) finish(pod *corev1.Pod, view podView) {
	st := computeStatus(view)
	w.lastStatus, w.lastStatusUID = &st, pod.UID
	w.env.report(pod, st)
}

// imagesPresent makes every image of the pod present (pulling as the
// policies say) and reports whether they all are; the containers whose
// image is missing get their waiting reason.
func (w *podWorker) imagesPresent(ctx context.Context, pod *corev1.Pod, now time.Time, soon func(time.Time)) bool {
	ok := true
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range list {
			if wv, retry := w.ensureImage(ctx, pod, &list[i], now); wv != nil {
				w.waiting[list[i].Name] = wv
				soon(retry)
				ok = false
			}
		}
	}
	return ok
}

// network sets up the pod's network (or finds it set up) and returns it.
// Host ports are checked the first time, before any container exists.
func (w *podWorker) network(ctx context.Context, sb string, pod *corev1.Pod, fresh bool) (sandboxNet, error) {
	ports := hostPorts(pod)
	if fresh {
		for _, p := range ports {
			if err := w.env.hostPortFree(p); err != nil {
				return sandboxNet{}, err
			}
		}
	}
	if pod.Spec.HostNetwork {
		return sandboxNet{IP: w.env.node.IP}, nil
	}
	if fresh {
		if err := w.portsUnclaimed(sb, ports); err != nil {
			return sandboxNet{}, err
		}
	}
	netns, ip, err := w.env.networks.Setup(ctx, sb, ports)
	if err != nil {
		return sandboxNet{}, fmt.Errorf("failed to set up pod network: %w", err)
	}
	return sandboxNet{NetNS: netns, IP: ip.String()}, nil
}

// portsUnclaimed checks that no other pod on the node publishes the same
// host ports (portmap rules do not bind the port, so the kernel would not
// notice).
func (w *podWorker) portsUnclaimed(sb string, ports []network.PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	as, err := w.env.networks.List()
	if err != nil {
		return err
	}
	for _, a := range as {
		if a.PodID == sb {
			continue
		}
		for _, theirs := range a.Ports {
			for _, p := range ports {
				if theirs.HostPort == p.HostPort && strings.EqualFold(orTCP(theirs.Protocol), orTCP(p.Protocol)) &&
					(theirs.HostIP == "" || p.HostIP == "" || theirs.HostIP == p.HostIP) {
					return fmt.Errorf("hostPort %d/%s is already used by pod sandbox %s on node %s", p.HostPort, orTCP(p.Protocol), a.PodID, w.env.node.Name)
				}
			}
		}
	}
	return nil
}

func orTCP(p string) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(p)
}

// hostPorts are the pod's published ports.
func hostPorts(pod *corev1.Pod) []network.PortMapping {
	var out []network.PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			out = append(out, network.PortMapping{HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort),
				Protocol: strings.ToLower(string(p.Protocol)), HostIP: p.HostIP})
		}
	}
	return out
}

// attempts groups a sandbox's containers by container name, oldest attempt
// first.
func (w *podWorker) attempts(sb string, cs []containerd.Container) map[string][]*attemptView {
	out := map[string][]*attemptView{}
	for _, c := range cs {
		n, _ := strconv.Atoi(c.Labels[labelAttempt])
		streak, _ := strconv.Atoi(c.Labels[labelCrashStreak])
		a := &attemptView{
			ID: c.ID, Attempt: n, Streak: streak, State: c.Status.State,
			StartedAt: c.Status.StartedAt, FinishedAt: c.Status.FinishedAt, ExitCode: int32(c.Status.ExitCode),
		}
		if a.State == containerd.StateCreated {
			if e, ok := readStartError(w.env.paths, sb, c.ID); ok {
				a.Reason, a.Message, a.ExitCode, a.FinishedAt = reasonStartError, e.Message, 128, e.At
			}
		}
		name := c.Labels[labelContainer]
		out[name] = append(out[name], a)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].Attempt < list[j].Attempt })
	}
	return out
}

// retrySandbox keys the back-off of a failing sandbox set-up.
const retrySandbox = "sandbox"

// lastTwo returns the latest attempt and the one before it.
func lastTwo(list []*attemptView) (cur, prev *attemptView) {
	if n := len(list); n > 0 {
		cur = list[n-1]
		if n > 1 {
			prev = list[n-2]
		}
	}
	return cur, prev
}

// act starts what should run: init containers in order, each to success,
// then every container, restarting those that ended as the restart policy
// says, after their back-off. It reports whether it changed anything and
// when a back-off ends.
func (w *podWorker) act(ctx context.Context, pod *corev1.Pod, sb string, net sandboxNet, attempts map[string][]*attemptView, now time.Time) (acted bool, wake time.Time) {
	var sources map[string]string
	prepare := func() (map[string]string, error) {
		if sources != nil {
			return sources, nil
		}
		var err error
		sources, err = w.volumeSources(ctx, sb, pod)
		return sources, err
	}
	earliest := func(t time.Time) {
		if !t.IsZero() && (wake.IsZero() || t.Before(wake)) {
			wake = t
		}
	}
	// Once a container has been created, init is over (kubelet: a pod
	// whose containers exist does not run its init containers again).
	started := false
	for _, c := range pod.Spec.Containers {
		if len(attempts[c.Name]) > 0 {
			started = true
		}
	}
	if !started {
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			cur, _ := lastTwo(attempts[c.Name])
			if cur != nil && cur.State == containerd.StateExited && cur.ExitCode == 0 {
				continue
			}
			a, t := w.advance(ctx, pod, sb, c, true, attempts[c.Name], net, prepare, now)
			earliest(t)
			return a, wake
		}
	}
	for i := range pod.Spec.Containers {
		a, t := w.advance(ctx, pod, sb, &pod.Spec.Containers[i], false, attempts[pod.Spec.Containers[i].Name], net, prepare, now)
		acted = acted || a
		earliest(t)
	}
	return acted, wake
}

// advance takes one container one step: start its first attempt, start an
// attempt whose start was interrupted, or restart it after its back-off.
func (w *podWorker) advance(ctx context.Context, pod *corev1.Pod, sb string, c *corev1.Container, init bool, list []*attemptView,
	net sandboxNet, prepare func() (map[string]string, error), now time.Time) (acted bool, wake time.Time) {
	cur, prev := lastTwo(list)
	switch {
	case cur == nil:
		return w.startAttempt(ctx, pod, sb, c, init, 0, 0, net, prepare, now)
	case cur.State == containerd.StateCreated && cur.Reason == "":
		// Created, but the start never happened (an agent that died in
		// between) or its task was lost: start it.
		return true, w.start(ctx, pod, sb, c, cur.ID, now)
	case cur.ended():
		if !restarts(pod, init, cur) {
			return false, time.Time{}
		}
		streak := crashStreak(cur, prev, cur.Streak, w.env.restart)
		until := cur.FinishedAt.Add(w.env.restart.Delay(streak))
		if now.Before(until) {
			w.waiting[c.Name] = &waitingView{Reason: reasonCrashLoopBackOff, Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				w.env.restart.Delay(streak), c.Name, pod.Name, pod.Namespace, pod.UID)}
			w.event(pod, corev1.EventTypeWarning, "BackOff", fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID))
			return false, until
		}
		return w.startAttempt(ctx, pod, sb, c, init, cur.Attempt+1, streak, net, prepare, now)
	}
	return false, time.Time{}
}

// restarts applies the restart policy to an attempt that ended. Init
// containers restart only when they failed (and the policy is not Never).
func restarts(pod *corev1.Pod, init bool, a *attemptView) bool {
	failed := a.ExitCode != 0 || a.Reason == reasonStartError
	switch pod.Spec.RestartPolicy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return failed
	}
	return failed || !init
}

// startAttempt creates attempt number n of container c and starts it.
func (w *podWorker) startAttempt(ctx context.Context, pod *corev1.Pod, sb string, c *corev1.Container, init bool, n, streak int,
	net sandboxNet, prepare func() (map[string]string, error), now time.Time) (acted bool, wake time.Time) {
	if w.env.leaseValid != nil && !w.env.leaseValid() {
		w.waiting[c.Name] = &waitingView{Reason: reasonNodeLeaseExpired,
			Message: "the node's lease with the servers ran out: no container starts until a heartbeat renews it"}
		return false, now.Add(time.Second)
	}
	// The lease holds again only once a fresh assignment list reached the
	// workers; this sync may have begun before it, with a pod the list no
	// longer assigns here.
	if d := w.getDesired(); d == nil || d.UID != pod.UID {
		return false, now
	}
	if wv, retry := w.ensureImage(ctx, pod, c, now); wv != nil {
		w.waiting[c.Name] = wv
		return false, retry
	}
	createKey := "create/" + c.Name
	if r := w.retries[createKey]; r != nil && now.Before(r.retryAt) {
		w.waiting[c.Name] = &waitingView{Reason: reasonCreateContainer, Message: r.message}
		return false, r.retryAt
	}
	configFailed := func(err error) (bool, time.Time) {
		reason := reasonCreateConfig
		// A volume that refuses the pod says why itself: FailedMount,
		// StaleVolumeGeneration.
		var me *MountError
		if errors.As(err, &me) && me.Reason != "" {
			reason = me.Reason
		}
		w.waiting[c.Name] = &waitingView{Reason: reason, Message: err.Error()}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return false, w.backoff(createKey, err.Error(), now)
	}
	sources, err := prepare()
	if err != nil {
		return configFailed(err)
	}
	mounts, err := w.containerMounts(sb, c, sources, pod)
	if err != nil {
		return configFailed(err)
	}
	spec, err := w.containerSpec(sb, pod, c, init, n, streak, net, mounts)
	if err != nil {
		return configFailed(err)
	}
	if err := w.env.containers.Create(ctx, spec); err != nil && !errors.Is(err, containerd.ErrAlreadyExists) {
		w.waiting[c.Name] = &waitingView{Reason: reasonCreateContainer, Message: err.Error()}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return false, w.backoff(createKey, err.Error(), now)
	}
	delete(w.retries, createKey)
	w.event(pod, corev1.EventTypeNormal, "Created", "Created container "+c.Name)
	return true, w.start(ctx, pod, sb, c, spec.ID, now)
}

// start starts a created container. A start that fails is recorded as the
// attempt's end (StartError, exit code 128), and the restart back-off
// applies to it as to a crash.
func (w *podWorker) start(ctx context.Context, pod *corev1.Pod, sb string, c *corev1.Container, id string, now time.Time) time.Time {
	if err := w.env.containers.Start(ctx, id); err != nil {
		msg := err.Error()
		w.log.Warn("start container", "container", c.Name, "id", id, "error", msg)
		if werr := writeStartError(w.env.paths, sb, id, startError{Message: msg, At: now}); werr != nil {
			w.log.Error("record start error", "container", id, "error", werr)
		}
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: "+msg)
		return now
	}
	w.event(pod, corev1.EventTypeNormal, "Started", "Started container "+c.Name)
	return time.Time{}
}

// backoff records another failure of the operation key and returns when
// to retry it.
func (w *podWorker) backoff(key, msg string, now time.Time) time.Time {
	r := w.retries[key]
	if r == nil {
		r = &retryState{}
		w.retries[key] = r
	}
	r.failures++
	r.message = msg
	r.retryAt = now.Add(w.env.pull.Step(r.failures))
	return r.retryAt
}

// ensureImage makes the container's image present as its pull policy
// says. It returns why the container must wait, and until when, when the
// image is not there.
func (w *podWorker) ensureImage(ctx context.Context, pod *corev1.Pod, c *corev1.Container, now time.Time) (*waitingView, time.Time) {
	ref := c.Image
	present, err := w.env.containers.HasImage(ctx, ref)
	if err != nil {
		if strings.Contains(err.Error(), "image name") {
			msg := fmt.Sprintf("Failed to apply default image tag %q: %v", ref, err)
			return &waitingView{Reason: reasonInvalidImageName, Message: msg}, now.Add(w.env.resync)
		}
		return &waitingView{Reason: reasonErrImagePull, Message: err.Error()}, w.errorRetry(now)
	}
	policy := c.ImagePullPolicy
	if policy == "" {
		policy = defaultPullPolicy(ref)
	}
	switch {
	case policy == corev1.PullNever && !present:
		msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", ref)
		w.event(pod, corev1.EventTypeWarning, reasonErrImageNeverPull, msg)
		return &waitingView{Reason: reasonErrImageNeverPull, Message: msg}, now.Add(w.env.resync)
	case policy == corev1.PullNever, policy == corev1.PullIfNotPresent && present:
		return nil, time.Time{}
	}
	if w.pulled[ref] {
		return nil, time.Time{}
	}
	key := "image/" + ref
	if r := w.retries[key]; r != nil && now.Before(r.retryAt) {
		return &waitingView{Reason: reasonImagePullBackOff, Message: fmt.Sprintf("Back-off pulling image %q", ref)}, r.retryAt
	}
	w.event(pod, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", ref))
	if err := w.env.containers.Pull(ctx, ref); err != nil {
		msg := fmt.Sprintf("Failed to pull image %q: %v", ref, err)
		w.backoff(key, msg, now)
		w.event(pod, corev1.EventTypeWarning, "Failed", msg)
		// Report ErrImagePull now and ImagePullBackOff from the next sync.
		return &waitingView{Reason: reasonErrImagePull, Message: msg}, now.Add(time.Second)
	}
	delete(w.retries, key)
	w.pulled[ref] = true
	w.event(pod, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q", ref))
	return nil, time.Time{}
}

// defaultPullPolicy is Kubernetes' default: Always for :latest or no tag,
// IfNotPresent otherwise.
func defaultPullPolicy(ref string) corev1.PullPolicy {
	if strings.Contains(ref, "@") {
		return corev1.PullIfNotPresent
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	if i := strings.LastIndex(name, ":"); i < 0 || name[i+1:] == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// runProbes runs the probes that are due on the running containers, kills
// a container whose liveness or startup probe failed, and returns when the
// next probe is due.
func (w *podWorker) runProbes(ctx context.Context, pod *corev1.Pod, net sandboxNet, attempts map[string][]*attemptView) time.Time {
	var next time.Time
	due := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	live := map[string]bool{}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cur, _ := lastTwo(attempts[c.Name])
		if cur == nil || cur.State != containerd.StateRunning {
			continue
		}
		live[cur.ID] = true
		ps := w.probes[cur.ID]
		if ps == nil {
			ps = w.newProbes(pod, c, cur)
			w.probes[cur.ID] = ps
		}
		target := probe.Target{IP: net.IP, Ports: c.Ports, Exec: w.execIn(cur.ID)}
		run := func(t *probe.Tracker) {
			if t == nil || !t.Due(w.env.clock.Now()) {
				due(t.Next())
				return
			}
			ok, msg := probe.Run(ctx, t.Handler(), target, t.Timeout())
			t.Record(ok, msg, w.env.clock.Now())
			if !ok {
				w.event(pod, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %s", t.Kind(), msg))
			}
			due(t.Next())
		}
		if ps.startup != nil && ps.startup.Result() != probe.Success {
			run(ps.startup)
			if ps.startup.Result() == probe.Failure {
				w.kill(ctx, pod, c, cur.ID, fmt.Sprintf("Container %s failed startup probe, will be restarted", c.Name))
				due(w.env.clock.Now())
				continue
			}
			if ps.startup.Result() != probe.Success {
				continue
			}
		}
		if ps.liveness != nil {
			run(ps.liveness)
			if ps.liveness.Result() == probe.Failure {
				w.kill(ctx, pod, c, cur.ID, fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.Name))
				due(w.env.clock.Now())
				continue
			}
		}
		if ps.readiness != nil {
			run(ps.readiness)
		}
	}
	for id := range w.probes {
		if !live[id] {
			delete(w.probes, id)
		}
	}
	return next
}

// newProbes starts the probe trackers of a container's run. A container
// this agent did not start itself (adopted after a restart) starts from
// the verdicts the pod's status last reported for it, so that adopting a
// pod does not turn it unready.
func (w *podWorker) newProbes(pod *corev1.Pod, c *corev1.Container, cur *attemptView) *containerProbes {
	started, ready := false, false
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == c.Name && cs.ContainerID == "containerd://"+cur.ID && cs.State.Running != nil {
			started = cs.Started != nil && *cs.Started
			ready = cs.Ready
		}
	}
	ps := &containerProbes{}
	mk := func(k probe.Kind, spec *corev1.Probe, known bool) *probe.Tracker {
		if spec == nil {
			return nil
		}
		initial := probe.Initial(k)
		if known {
			initial = probe.Success
		}
		return probe.NewTracker(k, spec, cur.StartedAt, initial)
	}
	ps.startup = mk(probe.Startup, c.StartupProbe, started)
	ps.liveness = mk(probe.Liveness, c.LivenessProbe, false)
	ps.readiness = mk(probe.Readiness, c.ReadinessProbe, ready)
	return ps
}

// execIn returns how probes and hooks run commands in container id.
func (w *podWorker) execIn(id string) func(ctx context.Context, cmd []string) (int, []byte, error) {
	return func(ctx context.Context, cmd []string) (int, []byte, error) {
		var out lockedBuffer
		code, err := w.env.containers.Exec(ctx, id, containerd.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
		return code, out.Bytes(), err
	}
}

// lockedBuffer collects stdout and stderr written from two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf.Bytes()...)
}

// kill stops one container of a running pod (a failed liveness or startup
// probe) with its pod's grace period and preStop hook.
func (w *podWorker) kill(ctx context.Context, pod *corev1.Pod, c *corev1.Container, id, why string) {
	w.log.Info("killing container", "container", c.Name, "id", id, "reason", why)
	w.event(pod, corev1.EventTypeNormal, "Killing", why)
	grace := gracePeriod(pod)
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.StartupProbe} {
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			grace = time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
		}
	}
	if err := w.stopContainer(ctx, pod, c.Name, id, grace); err != nil {
		w.log.Error("kill container", "container", c.Name, "error", err)
	}
}

// views describes each container of specs for the status.
func (w *podWorker) views(ctx context.Context, specs []corev1.Container, attempts map[string][]*attemptView, sandboxErr *waitingView) []containerView {
	var out []containerView
	for i := range specs {
		c := &specs[i]
		cur, prev := lastTwo(attempts[c.Name])
		v := containerView{Name: c.Name, Image: c.Image, Cur: cur, Prev: prev, Waiting: w.waiting[c.Name]}
		if v.Waiting == nil && cur == nil && sandboxErr != nil {
			v.Waiting = sandboxErr
		}
		if cur != nil {
			v.ImageID = w.imageID(ctx, c.Image)
		}
		if cur != nil && cur.State == containerd.StateRunning {
			ps := w.probes[cur.ID]
			v.Started = ps == nil || ps.startup == nil || ps.startup.Result() == probe.Success
			v.Ready = v.Started && (ps == nil || ps.readiness == nil || ps.readiness.Result() == probe.Success)
		}
		out = append(out, v)
	}
	return out
}

// imageID is the image's repository and digest, as Kubernetes reports
// imageID: "docker.io/library/web@sha256:…".
func (w *podWorker) imageID(ctx context.Context, ref string) string {
	if id, ok := w.imageIDs[ref]; ok {
		return id
	}
	d, err := w.env.containers.ImageDigest(ctx, ref)
	if err != nil {
		return ""
	}
	name, err := containerd.NormalizeImage(ref)
	if err != nil {
		return ""
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	id := name + "@" + d
	w.imageIDs[ref] = id
	return id
}

// collectGarbage removes attempts older than the previous one of each
// container (the previous one stays for lastState and logs --previous),
// and containers the spec no longer has.
func (w *podWorker) collectGarbage(ctx context.Context, pod *corev1.Pod, sb string, attempts map[string][]*attemptView) {
	inSpec := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		inSpec[c.Name] = true
	}
	for _, c := range pod.Spec.Containers {
		inSpec[c.Name] = true
	}
	for name, list := range attempts {
		drop := list
		if inSpec[name] && len(list) > 2 {
			drop = list[:len(list)-2]
		} else if inSpec[name] {
			continue
		}
		for _, a := range drop {
			if a.State == containerd.StateRunning {
				if err := w.stopContainer(ctx, pod, name, a.ID, gracePeriod(pod)); err != nil {
					w.log.Warn("stop container", "id", a.ID, "error", err)
					continue
				}
			}
			if err := w.env.containers.Delete(ctx, a.ID); err != nil {
				w.log.Warn("remove old container", "id", a.ID, "error", err)
				continue
			}
			os.Remove(w.env.paths.logFile(sb, name, a.Attempt))
			os.Remove(w.env.paths.startErrors(sb) + "/" + a.ID)
		}
	}
}

// event records an event about pod when the agent has a recorder.
func (w *podWorker) event(pod *corev1.Pod, typ, reason, msg string) {
	if w.env.event != nil {
		w.env.event(pod, typ, reason, msg)
	}
}
