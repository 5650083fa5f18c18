package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stead-io/stead/api"
)

// describeOptions are the flags of `stead describe`.
type describeOptions struct {
	selector      string
	allNamespaces bool
	showEvents    bool
}

func newDescribeCmd(g *globals) *cobra.Command {
	o := describeOptions{showEvents: true}
	cmd := &cobra.Command{
		Use:   "describe TYPE [NAME_PREFIX...] | TYPE/NAME...",
		Short: "Show details of one or many objects, with their events",
		Long: `Show details of objects, as kubectl describe does: for a StatefulSet its
replicas, update strategy, pod template, volume claims and the states of its
pods; for a pod its node, containers and conditions; for a volume claim the
pods that use it; and for each the events recorded about it.

A name that matches no object exactly describes every object whose name
starts with it: 'stead describe pods web' describes web-0, web-1, ...`,
		Example: `  stead describe sts web
  stead describe pod/web-0
  stead describe pvc www-web-0
  stead describe pods -l app=nginx`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.client()
			if err != nil {
				return err
			}
			r := describeRun{
				opts: o, client: c, ns: g.ns(),
				out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), now: time.Now,
			}
			return r.run(ctx, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.selector, "selector", "l", "", "label selector to filter on, such as -l app=nginx")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "describe objects across all namespaces")
	f.BoolVar(&o.showEvents, "show-events", true, "show the events recorded about each object")
	return cmd
}

// describeRun is one invocation of `stead describe`.
type describeRun struct {
	opts   describeOptions
	client *api.Client
	// ns is the namespace to read in, unless opts.allNamespaces.
	ns          string
	out, errOut io.Writer
	now         func() time.Time

	// events caches the events of each namespace read so far ("" = all).
	events map[string][]corev1.Event
}

func (r *describeRun) namespace() string {
	if r.opts.allNamespaces {
		return ""
	}
	return r.ns
}

func (r *describeRun) run(ctx context.Context, args []string) error {
	targets, _, err := parseReadArgs("describe", args)
	if err != nil {
		return err
	}
	if err := checkNames(targets, r.opts.selector, r.opts.allNamespaces); err != nil {
		return err
	}
	var objs []object
	var errs []error
	for _, t := range targets {
		found, err := r.find(ctx, t)
		if err != nil {
			if !apierrors.IsNotFound(err) {
				return err
			}
			errs = append(errs, err)
		}
		objs = append(objs, found...)
	}
	if len(objs) == 0 && len(errs) == 0 {
		fmt.Fprintln(r.errOut, noResourcesFound(r.namespace(), targets))
		return nil
	}
	for i, o := range objs {
		s, err := r.describe(ctx, o)
		if err != nil {
			return err
		}
		if i > 0 {
			s = "\n\n" + s
		}
		if _, err := io.WriteString(r.out, s); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// find returns the objects a target names: all of its resource, the one
// named, or, when none has that exact name, those whose names start with it.
func (r *describeRun) find(ctx context.Context, t readTarget) ([]object, error) {
	if t.name != "" {
		o, err := getObject(ctx, r.client, t.res, r.namespace(), t.name)
		if err == nil {
			return []object{o}, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, err
		}
		all, lerr := r.list(ctx, t.res, r.namespace(), "")
		if lerr != nil {
			return nil, lerr
		}
		var prefixed []object
		for _, o := range all {
			if strings.HasPrefix(o.meta.GetName(), t.name) {
				prefixed = append(prefixed, o)
			}
		}
		if len(prefixed) == 0 {
			return nil, err
		}
		return prefixed, nil
	}
	return r.list(ctx, t.res, r.namespace(), r.opts.selector)
}

// list reads the objects of a resource.
func (r *describeRun) list(ctx context.Context, res api.Resource, ns, selector string) ([]object, error) {
	l, _, err := r.client.List(ctx, res, ns, api.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return decodeList(res, l)
}

// pods lists the pods of namespace ns ("" for all) that match selector.
func (r *describeRun) pods(ctx context.Context, ns, selector string) ([]corev1.Pod, error) {
	res, err := api.LookupResource("pods")
	if err != nil {
		return nil, err
	}
	objs, err := r.list(ctx, res, ns, selector)
	if err != nil {
		return nil, err
	}
	pods := make([]corev1.Pod, 0, len(objs))
	for _, o := range objs {
		pods = append(pods, *o.meta.(*corev1.Pod))
	}
	return pods, nil
}

// eventsAbout returns the events recorded about o, or nil when events are
// not shown. Like kubectl, it shows no section rather than failing when
// events cannot be read.
func (r *describeRun) eventsAbout(ctx context.Context, o object) []corev1.Event {
	if !r.opts.showEvents {
		return nil
	}
	ns := o.meta.GetNamespace()
	if r.events == nil {
		r.events = map[string][]corev1.Event{}
	}
	evs, ok := r.events[ns]
	if !ok {
		res, err := api.LookupResource("events")
		if err != nil {
			return nil
		}
		objs, err := r.list(ctx, res, ns, "")
		if err != nil {
			return nil
		}
		for _, e := range objs {
			evs = append(evs, *e.meta.(*corev1.Event))
		}
		r.events[ns] = evs
	}
	return eventsFor(evs, o.res.Kind, o.meta)
}

// eventsFor returns the events whose involved object is the object m of
// the given kind, never nil. An event recorded about an earlier object of
// the same name (another UID) is left out.
func eventsFor(evs []corev1.Event, kind string, m metav1.Object) []corev1.Event {
	out := []corev1.Event{}
	for _, e := range evs {
		ref := e.InvolvedObject
		if ref.Kind != kind || ref.Name != m.GetName() {
			continue
		}
		if m.GetNamespace() != "" && ref.Namespace != "" && ref.Namespace != m.GetNamespace() {
			continue
		}
		if ref.UID != "" && m.GetUID() != "" && ref.UID != m.GetUID() {
			continue
		}
		out = append(out, e)
	}
	return out
}

// describe returns the description of one object.
func (r *describeRun) describe(ctx context.Context, o object) (string, error) {
	now := r.now()
	switch m := o.meta.(type) {
	case *appsv1.StatefulSet:
		var pods []corev1.Pod
		if sel, err := metav1.LabelSelectorAsSelector(m.Spec.Selector); err == nil && !sel.Empty() {
			if pods, err = r.pods(ctx, m.Namespace, sel.String()); err != nil {
				return "", err
			}
		}
		return describeStatefulSet(m, controlledPods(m, pods), r.eventsAbout(ctx, o), now), nil
	case *corev1.Pod:
		return describePod(m, r.eventsAbout(ctx, o), now), nil
	case *corev1.Service:
		var pods []corev1.Pod
		if len(m.Spec.Selector) > 0 {
			var err error
			if pods, err = r.pods(ctx, m.Namespace, labels.FormatLabels(m.Spec.Selector)); err != nil {
				return "", err
			}
		}
		return describeService(m, pods, r.eventsAbout(ctx, o), now), nil
	case *corev1.PersistentVolumeClaim:
		pods, err := r.pods(ctx, m.Namespace, "")
		if err != nil {
			return "", err
		}
		return describeClaim(m, claimUsers(m, pods), r.eventsAbout(ctx, o), now), nil
	case *corev1.Node:
		pods, err := r.pods(ctx, "", "")
		if err != nil {
			return "", err
		}
		return describeNode(m, nodePods(m, pods), r.eventsAbout(ctx, o), now), nil
	}
	var b bytes.Buffer
	if err := writeYAML(&b, o.raw); err != nil {
		return "", err
	}
	return b.String(), nil
}

// controlledPods keeps the pods whose controller is set s.
func controlledPods(s *appsv1.StatefulSet, pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Kind != "StatefulSet" || ref.Name != s.Name {
			continue
		}
		if ref.UID != "" && s.UID != "" && ref.UID != s.UID {
			continue
		}
		out = append(out, p)
	}
	return out
}

// claimUsers returns the pods that mount claim c or own it, by name.
func claimUsers(c *corev1.PersistentVolumeClaim, pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		uses := false
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == c.Name {
				uses = true
			}
		}
		for _, ref := range c.OwnerReferences {
			if ref.Kind == "Pod" && (ref.UID == p.UID && ref.UID != "" || ref.Name == p.Name) {
				uses = true
			}
		}
		if uses {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// nodePods returns the pods on node n that have not finished.
func nodePods(n *corev1.Node, pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for _, p := range pods {
		if p.Spec.NodeName == n.Name && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

// describeWriter writes a description through a tab writer set up as
// kubectl's, each level indenting two spaces.
type describeWriter struct {
	tw *tabwriter.Writer
}

// Levels of indentation.
const (
	level0 = iota
	level1
	level2
	level3
)

// tabbed runs f against a describeWriter and returns what it wrote.
func tabbed(f func(w *describeWriter)) string {
	var b bytes.Buffer
	w := &describeWriter{tw: tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)}
	f(w)
	w.flush()
	return b.String()
}

// write writes a formatted string at an indentation level.
func (w *describeWriter) write(level int, format string, a ...any) {
	fmt.Fprintf(w.tw, strings.Repeat("  ", level)+format, a...)
}

// flush aligns what was written so far on its own.
func (w *describeWriter) flush() { _ = w.tw.Flush() }

// describeTime formats a time as kubectl describe does.
func describeTime(t time.Time) string { return t.Format(time.RFC1123Z) }

// printLabels writes a map one key=value a line, sorted, as kubectl's
// printLabelsMultilineWithIndent does.
func printLabels(w *describeWriter, indent, title string, m map[string]string) {
	w.write(level0, "%s%s:\t", indent, title)
	if len(m) == 0 {
		w.write(level0, "<none>\n")
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			w.write(level0, "%s\t", indent)
		}
		w.write(level0, "%s=%s\n", k, m[k])
	}
}

// Annotations longer than this are folded onto their own lines.
const maxAnnotationLen = 140

// printAnnotations writes annotations one "key: value" a line, folding
// long or multi-line values and leaving out kubectl's last-applied copy.
func printAnnotations(w *describeWriter, title string, m map[string]string) {
	w.write(level0, "%s:\t", title)
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != corev1.LastAppliedConfigAnnotation {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		w.write(level0, "<none>\n")
		return
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			w.write(level0, "\t")
		}
		v := strings.TrimSuffix(m[k], "\n")
		if len(v)+len(k)+2 > maxAnnotationLen || strings.Contains(v, "\n") {
			w.write(level0, "%s:\n", k)
			for _, s := range strings.Split(v, "\n") {
				if len(s) > maxAnnotationLen-2 {
					s = s[:maxAnnotationLen-5] + "..."
				}
				w.write(level0, "\t  %s\n", s)
			}
			continue
		}
		w.write(level0, "%s: %s\n", k, v)
	}
}

// describeEvents writes the Events section, oldest first, when events is
// not nil.
func describeEvents(w *describeWriter, events []corev1.Event, now time.Time) {
	if events == nil {
		return
	}
	if len(events) == 0 {
		w.write(level0, "Events:\t<none>\n")
		return
	}
	w.flush()
	evs := append([]corev1.Event(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool { return eventLastSeen(&evs[i]).Before(eventLastSeen(&evs[j])) })
	w.write(level0, "Events:\n  Type\tReason\tAge\tFrom\tMessage\n")
	w.write(level1, "----\t------\t----\t----\t-------\n")
	for i := range evs {
		e := &evs[i]
		first := since(eventFirstSeen(e), now)
		interval := first
		switch {
		case e.Series != nil:
			interval = fmt.Sprintf("%s (x%d over %s)", since(e.Series.LastObservedTime.Time, now), e.Series.Count, first)
		case e.Count > 1:
			interval = fmt.Sprintf("%s (x%d over %s)", since(e.LastTimestamp.Time, now), e.Count, first)
		}
		w.write(level1, "%v\t%v\t%s\t%v\t%v\n", e.Type, e.Reason, interval,
			cmp.Or(e.Source.Component, e.ReportingController), strings.TrimSpace(e.Message))
	}
}

// podPhaseCounts counts pods by phase for "Pods Status".
func podPhaseCounts(pods []corev1.Pod) (running, waiting, succeeded, failed int) {
	for _, p := range pods {
		switch p.Status.Phase {
		case corev1.PodRunning:
			running++
		case corev1.PodPending:
			waiting++
		case corev1.PodSucceeded:
			succeeded++
		case corev1.PodFailed:
			failed++
		}
	}
	return running, waiting, succeeded, failed
}

// describeStatefulSet describes a set with the phases of its pods and its
// events (nil: no Events section).
func describeStatefulSet(s *appsv1.StatefulSet, pods []corev1.Pod, events []corev1.Event, now time.Time) string {
	return tabbed(func(w *describeWriter) {
		w.write(level0, "Name:\t%s\n", s.Name)
		w.write(level0, "Namespace:\t%s\n", s.Namespace)
		w.write(level0, "CreationTimestamp:\t%s\n", describeTime(s.CreationTimestamp.Time))
		selector := "<none>"
		if sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector); err == nil {
			selector = sel.String()
		}
		w.write(level0, "Selector:\t%s\n", selector)
		printLabels(w, "", "Labels", s.Labels)
		printAnnotations(w, "Annotations", s.Annotations)
		w.write(level0, "Replicas:\t%d desired | %d total\n", desiredReplicas(s), s.Status.Replicas)
		strategy := s.Spec.UpdateStrategy.Type
		if strategy == "" {
			strategy = appsv1.RollingUpdateStatefulSetStrategyType
		}
		w.write(level0, "Update Strategy:\t%s\n", strategy)
		if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			w.write(level1, "Partition:\t%d\n", *ru.Partition)
			if ru.MaxUnavailable != nil {
				w.write(level1, "MaxUnavailable:\t%s\n", ru.MaxUnavailable.String())
			}
		}
		running, waiting, succeeded, failed := podPhaseCounts(pods)
		w.write(level0, "Pods Status:\t%d Running / %d Waiting / %d Succeeded / %d Failed\n", running, waiting, succeeded, failed)
		describePodTemplate(w, &s.Spec.Template)
		describeClaimTemplates(w, s.Spec.VolumeClaimTemplates)
		describeEvents(w, events, now)
	})
}

// describePodTemplate writes the "Pod Template" section of a set.
func describePodTemplate(w *describeWriter, t *corev1.PodTemplateSpec) {
	w.write(level0, "Pod Template:\n")
	printLabels(w, "", "  Labels", t.Labels)
	if len(t.Annotations) > 0 {
		printAnnotations(w, "  Annotations", t.Annotations)
	}
	if t.Spec.ServiceAccountName != "" {
		w.write(level1, "Service Account:\t%s\n", t.Spec.ServiceAccountName)
	}
	if len(t.Spec.InitContainers) > 0 {
		describeContainers(w, "Init Containers", t.Spec.InitContainers, nil, nil, "  ")
	}
	describeContainers(w, "Containers", t.Spec.Containers, nil, nil, "  ")
	describeVolumes(w, t.Spec.Volumes, "  ")
	if t.Spec.PriorityClassName != "" {
		w.write(level1, "Priority Class Name:\t%s\n", t.Spec.PriorityClassName)
	}
	printLabels(w, "", "  Node-Selectors", t.Spec.NodeSelector)
	printTolerations(w, "  Tolerations", t.Spec.Tolerations)
}

// describeClaimTemplates writes the "Volume Claims" section of a set.
func describeClaimTemplates(w *describeWriter, templates []corev1.PersistentVolumeClaim) {
	if len(templates) == 0 {
		w.write(level0, "Volume Claims:\t<none>\n")
		return
	}
	w.write(level0, "Volume Claims:\n")
	for i := range templates {
		c := &templates[i]
		w.write(level1, "Name:\t%s\n", c.Name)
		w.write(level1, "StorageClass:\t%s\n", storageClass(c))
		printLabels(w, "  ", "Labels", c.Labels)
		printLabels(w, "  ", "Annotations", c.Annotations)
		if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
			w.write(level1, "Capacity:\t%s\n", q.String())
		} else {
			w.write(level1, "Capacity:\t<default>\n")
		}
		w.write(level1, "Access Modes:\t%s\n", c.Spec.AccessModes)
	}
}

// printTolerations writes tolerations one a line as kubectl does:
// "key=value:NoSchedule op=Exists for 300s".
func printTolerations(w *describeWriter, title string, ts []corev1.Toleration) {
	w.write(level0, "%s:\t", title)
	if len(ts) == 0 {
		w.write(level0, "<none>\n")
		return
	}
	for i, t := range ts {
		if i > 0 {
			w.write(level0, "\t")
		}
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		if t.Effect != "" {
			s += ":" + string(t.Effect)
		}
		if t.Operator == corev1.TolerationOpExists && t.Value == "" {
			if s != "" {
				s += " "
			}
			s += "op=Exists"
		}
		if t.TolerationSeconds != nil {
			s += fmt.Sprintf(" for %ds", *t.TolerationSeconds)
		}
		w.write(level0, "%s\n", s)
	}
}

// envResolver returns the value of an environment variable taken from a
// field of the pod, or "" when it cannot say.
type envResolver func(corev1.EnvVar) string

// podFieldResolver resolves the downward-API fields Stead fills.
func podFieldResolver(p *corev1.Pod) envResolver {
	return func(e corev1.EnvVar) string {
		path := e.ValueFrom.FieldRef.FieldPath
		switch path {
		case "metadata.name":
			return p.Name
		case "metadata.namespace":
			return p.Namespace
		case "metadata.uid":
			return string(p.UID)
		case "spec.nodeName":
			return p.Spec.NodeName
		case "spec.serviceAccountName":
			return p.Spec.ServiceAccountName
		case "status.podIP":
			return p.Status.PodIP
		case "status.hostIP":
			return p.Status.HostIP
		}
		for prefix, m := range map[string]map[string]string{"metadata.labels": p.Labels, "metadata.annotations": p.Annotations} {
			if rest, ok := strings.CutPrefix(path, prefix+"['"); ok {
				return m[strings.TrimSuffix(rest, "']")]
			}
		}
		return ""
	}
}

// describeContainers writes a containers section. statuses are nil for a
// template; space indents the section inside a template.
func describeContainers(w *describeWriter, label string, cs []corev1.Container, statuses []corev1.ContainerStatus, resolve envResolver, space string) {
	byName := make(map[string]corev1.ContainerStatus, len(statuses))
	for _, s := range statuses {
		byName[s.Name] = s
	}
	none := ""
	if len(cs) == 0 {
		none = " <none>"
	}
	w.write(level0, "%s%s:%s\n", space, label, none)
	nameIndent := ""
	if space != "" {
		nameIndent = " "
	}
	for _, c := range cs {
		status, ok := byName[c.Name]
		w.write(level1, "%s%s:\n", nameIndent, c.Name)
		if ok {
			w.write(level2, "Container ID:\t%s\n", status.ContainerID)
		}
		w.write(level2, "Image:\t%s\n", c.Image)
		if ok {
			w.write(level2, "Image ID:\t%s\n", status.ImageID)
		}
		ports, hostPorts := containerPorts(c.Ports)
		if strings.Contains(ports, ",") {
			w.write(level2, "Ports:\t%s\n", ports)
		} else {
			w.write(level2, "Port:\t%s\n", orNone(ports))
		}
		if strings.Contains(hostPorts, ",") {
			w.write(level2, "Host Ports:\t%s\n", hostPorts)
		} else {
			w.write(level2, "Host Port:\t%s\n", orNone(hostPorts))
		}
		for _, part := range []struct {
			title string
			lines []string
		}{{"Command", c.Command}, {"Args", c.Args}} {
			if len(part.lines) == 0 {
				continue
			}
			w.write(level2, "%s:\n", part.title)
			for _, l := range part.lines {
				for _, s := range strings.Split(l, "\n") {
					w.write(level3, "%s\n", s)
				}
			}
		}
		if ok {
			describeContainerState(w, "State", status.State)
			if status.LastTerminationState.Terminated != nil {
				describeContainerState(w, "Last State", status.LastTerminationState)
			}
			w.write(level2, "Ready:\t%s\n", trueFalse(status.Ready))
			w.write(level2, "Restart Count:\t%d\n", status.RestartCount)
		}
		describeResources(w, c.Resources)
		for _, probe := range []struct {
			title string
			p     *corev1.Probe
		}{{"Liveness", c.LivenessProbe}, {"Readiness", c.ReadinessProbe}, {"Startup", c.StartupProbe}} {
			if probe.p != nil {
				w.write(level2, "%s:\t%s\n", probe.title, describeProbe(probe.p))
			}
		}
		describeEnv(w, c, resolve)
		describeMounts(w, c.VolumeMounts)
	}
}

// trueFalse prints a bool as kubectl does.
func trueFalse(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// containerPorts formats container ports and their host ports:
// "80/TCP (web)".
func containerPorts(ps []corev1.ContainerPort) (ports, hostPorts string) {
	var p, h []string
	for _, cp := range ps {
		suffix := ""
		if cp.Name != "" {
			suffix = " (" + cp.Name + ")"
		}
		p = append(p, fmt.Sprintf("%d/%s%s", cp.ContainerPort, portProtocol(cp.Protocol), suffix))
		h = append(h, fmt.Sprintf("%d/%s%s", cp.HostPort, portProtocol(cp.Protocol), suffix))
	}
	return strings.Join(p, ", "), strings.Join(h, ", ")
}

// describeContainerState writes a container's state and its details.
func describeContainerState(w *describeWriter, title string, s corev1.ContainerState) {
	switch {
	case s.Running != nil:
		w.write(level2, "%s:\tRunning\n", title)
		w.write(level3, "Started:\t%s\n", describeTime(s.Running.StartedAt.Time))
	case s.Waiting != nil:
		w.write(level2, "%s:\tWaiting\n", title)
		if s.Waiting.Reason != "" {
			w.write(level3, "Reason:\t%s\n", s.Waiting.Reason)
		}
	case s.Terminated != nil:
		t := s.Terminated
		w.write(level2, "%s:\tTerminated\n", title)
		if t.Reason != "" {
			w.write(level3, "Reason:\t%s\n", t.Reason)
		}
		if t.Message != "" {
			w.write(level3, "Message:\t%s\n", t.Message)
		}
		w.write(level3, "Exit Code:\t%d\n", t.ExitCode)
		if t.Signal > 0 {
			w.write(level3, "Signal:\t%d\n", t.Signal)
		}
		w.write(level3, "Started:\t%s\n", describeTime(t.StartedAt.Time))
		w.write(level3, "Finished:\t%s\n", describeTime(t.FinishedAt.Time))
	default:
		w.write(level2, "%s:\tWaiting\n", title)
	}
}

// describeResources writes a container's limits and requests.
func describeResources(w *describeWriter, r corev1.ResourceRequirements) {
	for _, part := range []struct {
		title string
		list  corev1.ResourceList
	}{{"Limits", r.Limits}, {"Requests", r.Requests}} {
		if len(part.list) == 0 {
			continue
		}
		w.write(level2, "%s:\n", part.title)
		names := make([]string, 0, len(part.list))
		for n := range part.list {
			names = append(names, string(n))
		}
		sort.Strings(names)
		for _, n := range names {
			q := part.list[corev1.ResourceName(n)]
			w.write(level3, "%s:\t%s\n", n, q.String())
		}
	}
}

// describeProbe formats a probe as kubectl does:
// "http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3".
func describeProbe(p *corev1.Probe) string {
	attrs := fmt.Sprintf("delay=%ds timeout=%ds period=%ds #success=%d #failure=%d",
		p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.SuccessThreshold, p.FailureThreshold)
	switch {
	case p.Exec != nil:
		return fmt.Sprintf("exec %v %s", p.Exec.Command, attrs)
	case p.HTTPGet != nil:
		u := &url.URL{Scheme: strings.ToLower(string(p.HTTPGet.Scheme)), Path: p.HTTPGet.Path}
		if port := p.HTTPGet.Port.String(); port != "" {
			u.Host = net.JoinHostPort(p.HTTPGet.Host, port)
		} else {
			u.Host = p.HTTPGet.Host
		}
		return fmt.Sprintf("http-get %s %s", u.String(), attrs)
	case p.TCPSocket != nil:
		return fmt.Sprintf("tcp-socket %s:%s %s", p.TCPSocket.Host, p.TCPSocket.Port.String(), attrs)
	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return fmt.Sprintf("grpc <pod>:%d %s %s", p.GRPC.Port, service, attrs)
	}
	return "unknown " + attrs
}

// describeEnv writes a container's environment.
func describeEnv(w *describeWriter, c corev1.Container, resolve envResolver) {
	if len(c.EnvFrom) > 0 {
		w.write(level2, "Environment Variables from:\n")
		for _, e := range c.EnvFrom {
			from, name, optional := "", "", false
			switch {
			case e.ConfigMapRef != nil:
				from, name, optional = "ConfigMap", e.ConfigMapRef.Name, e.ConfigMapRef.Optional != nil && *e.ConfigMapRef.Optional
			case e.SecretRef != nil:
				from, name, optional = "Secret", e.SecretRef.Name, e.SecretRef.Optional != nil && *e.SecretRef.Optional
			}
			if e.Prefix == "" {
				w.write(level3, "%s\t%s\tOptional: %t\n", name, from, optional)
			} else {
				w.write(level3, "%s\t%s with prefix '%s'\tOptional: %t\n", name, from, e.Prefix, optional)
			}
		}
	}
	if len(c.Env) == 0 {
		w.write(level2, "Environment:\t<none>\n")
		return
	}
	w.write(level2, "Environment:\n")
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			for i, s := range strings.Split(e.Value, "\n") {
				if i == 0 {
					w.write(level3, "%s:\t%s\n", e.Name, s)
				} else {
					w.write(level3, "\t%s\n", s)
				}
			}
		case e.ValueFrom.FieldRef != nil:
			value := ""
			if resolve != nil {
				value = resolve(e)
			}
			w.write(level3, "%s:\t%s (%s:%s)\n", e.Name, value, e.ValueFrom.FieldRef.APIVersion, e.ValueFrom.FieldRef.FieldPath)
		case e.ValueFrom.ResourceFieldRef != nil:
			w.write(level3, "%s:\t (%s)\n", e.Name, e.ValueFrom.ResourceFieldRef.Resource)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			w.write(level3, "%s:\t<set to the key '%s' in secret '%s'>\tOptional: %t\n", e.Name, ref.Key, ref.Name, ref.Optional != nil && *ref.Optional)
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			w.write(level3, "%s:\t<set to the key '%s' of config map '%s'>\tOptional: %t\n", e.Name, ref.Key, ref.Name, ref.Optional != nil && *ref.Optional)
		}
	}
}

// describeMounts writes a container's volume mounts, sorted by path.
func describeMounts(w *describeWriter, mounts []corev1.VolumeMount) {
	if len(mounts) == 0 {
		w.write(level2, "Mounts:\t<none>\n")
		return
	}
	w.write(level2, "Mounts:\n")
	ms := append([]corev1.VolumeMount(nil), mounts...)
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].MountPath < ms[j].MountPath })
	for _, m := range ms {
		flags := []string{"rw"}
		if m.ReadOnly {
			flags[0] = "ro"
		}
		if m.SubPath != "" {
			flags = append(flags, fmt.Sprintf("path=%q", m.SubPath))
		}
		w.write(level3, "%s from %s (%s)\n", m.MountPath, m.Name, strings.Join(flags, ","))
	}
}

// describeVolumes writes the volumes of a pod or template.
func describeVolumes(w *describeWriter, vols []corev1.Volume, space string) {
	if len(vols) == 0 {
		w.write(level0, "%sVolumes:\t<none>\n", space)
		return
	}
	w.write(level0, "%sVolumes:\n", space)
	nameIndent := ""
	if space != "" {
		nameIndent = " "
	}
	for _, v := range vols {
		w.write(level1, "%s%s:\n", nameIndent, v.Name)
		switch src := v.VolumeSource; {
		case src.PersistentVolumeClaim != nil:
			w.write(level2, "Type:\tPersistentVolumeClaim (a reference to a PersistentVolumeClaim in the same namespace)\n")
			w.write(level2, "ClaimName:\t%s\n", src.PersistentVolumeClaim.ClaimName)
			w.write(level2, "ReadOnly:\t%v\n", src.PersistentVolumeClaim.ReadOnly)
		case src.EmptyDir != nil:
			limit := "<unset>"
			if l := src.EmptyDir.SizeLimit; l != nil && l.Cmp(resource.Quantity{}) > 0 {
				limit = l.String()
			}
			w.write(level2, "Type:\tEmptyDir (a temporary directory that shares a pod's lifetime)\n")
			w.write(level2, "Medium:\t%s\n", src.EmptyDir.Medium)
			w.write(level2, "SizeLimit:\t%s\n", limit)
		case src.HostPath != nil:
			typ := "<none>"
			if src.HostPath.Type != nil {
				typ = string(*src.HostPath.Type)
			}
			w.write(level2, "Type:\tHostPath (bare host directory volume)\n")
			w.write(level2, "Path:\t%s\n", src.HostPath.Path)
			w.write(level2, "HostPathType:\t%s\n", typ)
		case src.ConfigMap != nil:
			w.write(level2, "Type:\tConfigMap (a volume populated by a ConfigMap)\n")
			w.write(level2, "Name:\t%s\n", src.ConfigMap.Name)
			w.write(level2, "Optional:\t%v\n", src.ConfigMap.Optional != nil && *src.ConfigMap.Optional)
		case src.Secret != nil:
			w.write(level2, "Type:\tSecret (a volume populated by a Secret)\n")
			w.write(level2, "SecretName:\t%s\n", src.Secret.SecretName)
			w.write(level2, "Optional:\t%v\n", src.Secret.Optional != nil && *src.Secret.Optional)
		default:
			w.write(level1, "<unknown>\n")
		}
	}
}

// qosClass computes a pod's quality-of-service class as Kubernetes does for
// cpu and memory: BestEffort without any request or limit, Guaranteed when
// every container limits both and requests what it limits, else Burstable.
func qosClass(p *corev1.Pod) corev1.PodQOSClass {
	if p.Status.QOSClass != "" {
		return p.Status.QOSClass
	}
	cs := append(append([]corev1.Container(nil), p.Spec.InitContainers...), p.Spec.Containers...)
	limited, guaranteed := false, true
	for _, c := range cs {
		for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			limit, hasLimit := c.Resources.Limits[r]
			request, hasRequest := c.Resources.Requests[r]
			if hasLimit || hasRequest {
				limited = true
			}
			if !hasLimit || (hasRequest && request.Cmp(limit) != 0) {
				guaranteed = false
			}
		}
	}
	switch {
	case !limited:
		return corev1.PodQOSBestEffort
	case guaranteed:
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// describePod describes a pod and its events (nil: no Events section).
func describePod(p *corev1.Pod, events []corev1.Event, now time.Time) string {
	return tabbed(func(w *describeWriter) {
		w.write(level0, "Name:\t%s\n", p.Name)
		w.write(level0, "Namespace:\t%s\n", p.Namespace)
		if p.Spec.Priority != nil {
			w.write(level0, "Priority:\t%d\n", *p.Spec.Priority)
		}
		if p.Spec.ServiceAccountName != "" {
			w.write(level0, "Service Account:\t%s\n", p.Spec.ServiceAccountName)
		}
		if p.Spec.NodeName == "" {
			w.write(level0, "Node:\t<none>\n")
		} else {
			w.write(level0, "Node:\t%s\n", p.Spec.NodeName+"/"+p.Status.HostIP)
		}
		if p.Status.StartTime != nil {
			w.write(level0, "Start Time:\t%s\n", describeTime(p.Status.StartTime.Time))
		}
		printLabels(w, "", "Labels", p.Labels)
		printAnnotations(w, "Annotations", p.Annotations)
		if p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			w.write(level0, "Status:\tTerminating (lasts %s)\n", age(*p.DeletionTimestamp, now))
			if p.DeletionGracePeriodSeconds != nil {
				w.write(level0, "Termination Grace Period:\t%ds\n", *p.DeletionGracePeriodSeconds)
			}
		} else {
			w.write(level0, "Status:\t%s\n", p.Status.Phase)
		}
		if p.Status.Reason != "" {
			w.write(level0, "Reason:\t%s\n", p.Status.Reason)
		}
		if p.Status.Message != "" {
			w.write(level0, "Message:\t%s\n", p.Status.Message)
		}
		w.write(level0, "IP:\t%s\n", p.Status.PodIP)
		if len(p.Status.PodIPs) == 0 {
			w.write(level0, "IPs:\t<none>\n")
		} else {
			w.write(level0, "IPs:\n")
			for _, ip := range p.Status.PodIPs {
				w.write(level1, "IP:\t%s\n", ip.IP)
			}
		}
		if ref := metav1.GetControllerOf(p); ref != nil {
			w.write(level0, "Controlled By:\t%s/%s\n", ref.Kind, ref.Name)
		}
		resolve := podFieldResolver(p)
		if len(p.Spec.InitContainers) > 0 {
			describeContainers(w, "Init Containers", p.Spec.InitContainers, p.Status.InitContainerStatuses, resolve, "")
		}
		describeContainers(w, "Containers", p.Spec.Containers, p.Status.ContainerStatuses, resolve, "")
		if len(p.Status.Conditions) > 0 {
			w.write(level0, "Conditions:\n  Type\tStatus\n")
			for _, c := range p.Status.Conditions {
				w.write(level1, "%v \t%v \n", c.Type, c.Status)
			}
		}
		describeVolumes(w, p.Spec.Volumes, "")
		w.write(level0, "QoS Class:\t%s\n", qosClass(p))
		printLabels(w, "", "Node-Selectors", p.Spec.NodeSelector)
		printTolerations(w, "Tolerations", p.Spec.Tolerations)
		describeEvents(w, events, now)
	})
}

// podReady reports whether a pod is Ready in Stead's sense: phase Running
// and condition Ready True.
func podReady(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodRunning && podCondition(p, corev1.PodReady)
}

// serviceEndpoints lists the addresses behind one port of a service, as
// kubectl shows them: "10.88.0.4:80,10.88.0.5:80 + 1 more...", computed
// from the pods its selector matches (Stead keeps no endpoint objects).
func serviceEndpoints(s *corev1.Service, port corev1.ServicePort, pods []corev1.Pod) string {
	var eps []string
	for i := range pods {
		p := &pods[i]
		if p.Status.PodIP == "" || p.DeletionTimestamp != nil || !(podReady(p) || s.Spec.PublishNotReadyAddresses) {
			continue
		}
		target, ok := targetPort(port, p)
		if !ok {
			continue
		}
		eps = append(eps, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(target))))
	}
	const shown = 3
	switch {
	case len(eps) == 0:
		return "<none>"
	case len(eps) > shown:
		return fmt.Sprintf("%s + %d more...", strings.Join(eps[:shown], ","), len(eps)-shown)
	}
	return strings.Join(eps, ",")
}

// targetPort resolves a service port's target on pod p: a number, the
// port itself when unset, or a named container port.
func targetPort(sp corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	switch {
	case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == sp.TargetPort.StrVal && portProtocol(cp.Protocol) == portProtocol(sp.Protocol) {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case sp.TargetPort.IntVal != 0:
		return sp.TargetPort.IntVal, true
	}
	return sp.Port, true
}

// describeService describes a service, its endpoints from the pods its
// selector matches, and its events (nil: no Events section).
func describeService(s *corev1.Service, pods []corev1.Pod, events []corev1.Event, now time.Time) string {
	return tabbed(func(w *describeWriter) {
		w.write(level0, "Name:\t%s\n", s.Name)
		w.write(level0, "Namespace:\t%s\n", s.Namespace)
		printLabels(w, "", "Labels", s.Labels)
		printAnnotations(w, "Annotations", s.Annotations)
		w.write(level0, "Selector:\t%s\n", labels.FormatLabels(s.Spec.Selector))
		w.write(level0, "Type:\t%s\n", serviceType(s))
		if len(s.Spec.IPFamilies) > 0 {
			fams := make([]string, 0, len(s.Spec.IPFamilies))
			for _, f := range s.Spec.IPFamilies {
				fams = append(fams, string(f))
			}
			w.write(level0, "IP Families:\t%s\n", strings.Join(fams, ","))
		} else {
			w.write(level0, "IP Families:\t<none>\n")
		}
		w.write(level0, "IP:\t%s\n", s.Spec.ClusterIP)
		if len(s.Spec.ClusterIPs) > 0 {
			w.write(level0, "IPs:\t%s\n", strings.Join(s.Spec.ClusterIPs, ","))
		} else {
			w.write(level0, "IPs:\t<none>\n")
		}
		if len(s.Spec.ExternalIPs) > 0 {
			w.write(level0, "External IPs:\t%s\n", strings.Join(s.Spec.ExternalIPs, ","))
		}
		if s.Spec.ExternalName != "" {
			w.write(level0, "External Name:\t%s\n", s.Spec.ExternalName)
		}
		for _, sp := range s.Spec.Ports {
			name := sp.Name
			if name == "" {
				name = "<unset>"
			}
			w.write(level0, "Port:\t%s\t%d/%s\n", name, sp.Port, portProtocol(sp.Protocol))
			switch {
			case sp.TargetPort.Type == intstr.String && sp.TargetPort.StrVal != "":
				w.write(level0, "TargetPort:\t%s/%s\n", sp.TargetPort.StrVal, portProtocol(sp.Protocol))
			case sp.TargetPort.IntVal != 0:
				w.write(level0, "TargetPort:\t%d/%s\n", sp.TargetPort.IntVal, portProtocol(sp.Protocol))
			default:
				w.write(level0, "TargetPort:\t%d/%s\n", sp.Port, portProtocol(sp.Protocol))
			}
			if sp.NodePort != 0 {
				w.write(level0, "NodePort:\t%s\t%d/%s\n", name, sp.NodePort, portProtocol(sp.Protocol))
			}
			w.write(level0, "Endpoints:\t%s\n", serviceEndpoints(s, sp, pods))
		}
		affinity := s.Spec.SessionAffinity
		if affinity == "" {
			affinity = corev1.ServiceAffinityNone
		}
		w.write(level0, "Session Affinity:\t%s\n", affinity)
		if s.Spec.PublishNotReadyAddresses {
			w.write(level0, "Publish Not Ready Addresses:\ttrue\n")
		}
		describeEvents(w, events, now)
	})
}

// describeClaim describes a volume claim, the pods that use it and its
// events (nil: no Events section).
func describeClaim(c *corev1.PersistentVolumeClaim, users []corev1.Pod, events []corev1.Event, now time.Time) string {
	return tabbed(func(w *describeWriter) {
		w.write(level0, "Name:\t%s\n", c.Name)
		w.write(level0, "Namespace:\t%s\n", c.Namespace)
		w.write(level0, "StorageClass:\t%s\n", storageClass(c))
		if c.DeletionTimestamp != nil {
			w.write(level0, "Status:\tTerminating (lasts %s)\n", age(*c.DeletionTimestamp, now))
		} else {
			w.write(level0, "Status:\t%s\n", c.Status.Phase)
		}
		w.write(level0, "Volume:\t%s\n", c.Spec.VolumeName)
		printLabels(w, "", "Labels", c.Labels)
		printAnnotations(w, "Annotations", c.Annotations)
		w.write(level0, "Finalizers:\t%v\n", c.Finalizers)
		capacity, modes := claimCapacity(c)
		w.write(level0, "Capacity:\t%s\n", capacity)
		w.write(level0, "Access Modes:\t%s\n", modes)
		if c.Spec.VolumeMode != nil {
			w.write(level0, "VolumeMode:\t%s\n", *c.Spec.VolumeMode)
		}
		w.write(level0, "Used By:\t")
		if len(users) == 0 {
			w.write(level0, "<none>\n")
		}
		for i, p := range users {
			if i > 0 {
				w.write(level0, "\t")
			}
			w.write(level0, "%s\n", p.Name)
		}
		if len(c.Status.Conditions) > 0 {
			w.write(level0, "Conditions:\n")
			w.write(level1, "Type\tStatus\tLastProbeTime\tLastTransitionTime\tReason\tMessage\n")
			w.write(level1, "----\t------\t-----------------\t------------------\t------\t-------\n")
			for _, cond := range c.Status.Conditions {
				w.write(level1, "%v \t%v \t%s \t%s \t%v \t%v\n", cond.Type, cond.Status,
					describeTime(cond.LastProbeTime.Time), describeTime(cond.LastTransitionTime.Time), cond.Reason, cond.Message)
			}
		}
		describeEvents(w, events, now)
	})
}

// describeNode describes a node, the pods it runs and its events (nil: no
// Events section).
func describeNode(n *corev1.Node, pods []corev1.Pod, events []corev1.Event, now time.Time) string {
	return tabbed(func(w *describeWriter) {
		w.write(level0, "Name:\t%s\n", n.Name)
		w.write(level0, "Roles:\t%s\n", orNone(strings.Join(nodeRoles(n), ",")))
		printLabels(w, "", "Labels", n.Labels)
		printAnnotations(w, "Annotations", n.Annotations)
		w.write(level0, "CreationTimestamp:\t%s\n", describeTime(n.CreationTimestamp.Time))
		if len(n.Spec.Taints) == 0 {
			w.write(level0, "Taints:\t<none>\n")
		}
		for i, t := range n.Spec.Taints {
			if i == 0 {
				w.write(level0, "Taints:\t")
			} else {
				w.write(level0, "\t")
			}
			w.write(level0, "%s\n", t.ToString())
		}
		w.write(level0, "Unschedulable:\t%v\n", n.Spec.Unschedulable)
		if len(n.Status.Conditions) > 0 {
			w.write(level0, "Conditions:\n  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage\n")
			w.write(level1, "----\t------\t-----------------\t------------------\t------\t-------\n")
			for _, c := range n.Status.Conditions {
				w.write(level1, "%v \t%v \t%s \t%s \t%v \t%v\n", c.Type, c.Status,
					describeTime(c.LastHeartbeatTime.Time), describeTime(c.LastTransitionTime.Time), c.Reason, c.Message)
			}
		}
		w.write(level0, "Addresses:\n")
		for _, a := range n.Status.Addresses {
			w.write(level1, "%s:\t%s\n", a.Type, a.Address)
		}
		for _, part := range []struct {
			title string
			list  corev1.ResourceList
		}{{"Capacity", n.Status.Capacity}, {"Allocatable", n.Status.Allocatable}} {
			if len(part.list) == 0 {
				continue
			}
			w.write(level0, "%s:\n", part.title)
			names := make([]string, 0, len(part.list))
			for r := range part.list {
				names = append(names, string(r))
			}
			sort.Strings(names)
			for _, r := range names {
				q := part.list[corev1.ResourceName(r)]
				w.write(level1, "%s:\t%s\n", r, q.String())
			}
		}
		info := n.Status.NodeInfo
		w.write(level0, "System Info:\n")
		for _, kv := range [][2]string{
			{"Machine ID", info.MachineID}, {"System UUID", info.SystemUUID}, {"Boot ID", info.BootID},
			{"Kernel Version", info.KernelVersion}, {"OS Image", info.OSImage},
			{"Operating System", info.OperatingSystem}, {"Architecture", info.Architecture},
			{"Container Runtime Version", info.ContainerRuntimeVersion}, {"Kubelet Version", info.KubeletVersion},
		} {
			w.write(level1, "%s:\t%s\n", kv[0], kv[1])
		}
		if n.Spec.PodCIDR != "" {
			w.write(level0, "PodCIDR:\t%s\n", n.Spec.PodCIDR)
		}
		if len(n.Spec.PodCIDRs) > 0 {
			w.write(level0, "PodCIDRs:\t%s\n", strings.Join(n.Spec.PodCIDRs, ","))
		}
		w.write(level0, "Non-terminated Pods:\t(%d in total)\n", len(pods))
		if len(pods) > 0 {
			w.write(level1, "Namespace\tName\tAge\n")
			w.write(level1, "---------\t----\t---\n")
			for _, p := range pods {
				w.write(level1, "%s\t%s\t%s\n", p.Namespace, p.Name, age(p.CreationTimestamp, now))
			}
		}
		describeEvents(w, events, now)
	})
}
