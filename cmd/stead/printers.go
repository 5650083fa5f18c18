package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/stead-io/stead/api"
)

// The output formats of -o, as kubectl names them. The empty format is
// the default table.
const (
	outputTable = ""
	outputWide  = "wide"
	outputJSON  = "json"
	outputYAML  = "yaml"
	outputName  = "name"
)

// checkOutput rejects an -o value no printer handles, with kubectl's words.
func checkOutput(format string) error {
	switch format {
	case outputTable, outputWide, outputJSON, outputYAML, outputName:
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,name,wide,yaml", format)
}

// object is one object read from the API: its resource, the JSON the
// server sent (printed as is by -o json and -o yaml, so that fields Stead's
// Go types do not know survive), and its decoded form.
type object struct {
	res api.Resource
	raw json.RawMessage
	// meta is the decoded object: *appsv1.StatefulSet, *corev1.Pod, ... or
	// *metav1.PartialObjectMetadata for a kind this CLI has no type for.
	meta metav1.Object
}

// decodeObject decodes one object of resource res.
func decodeObject(res api.Resource, raw json.RawMessage) (object, error) {
	var m metav1.Object
	switch res.Kind {
	case "StatefulSet":
		m = &appsv1.StatefulSet{}
	case "Pod":
		m = &corev1.Pod{}
	case "Service":
		m = &corev1.Service{}
	case "PersistentVolumeClaim":
		m = &corev1.PersistentVolumeClaim{}
	case "ControllerRevision":
		m = &appsv1.ControllerRevision{}
	case "Event":
		m = &corev1.Event{}
	case "Node":
		m = &corev1.Node{}
	case "Namespace":
		m = &corev1.Namespace{}
	case "Server":
		m = &api.Server{}
	default:
		m = &metav1.PartialObjectMetadata{}
	}
	if err := json.Unmarshal(raw, m); err != nil {
		return object{}, fmt.Errorf("decode %s from the server: %w", res.Name, err)
	}
	return object{res: res, raw: raw, meta: m}, nil
}

// decodeList decodes the items of a list answer.
func decodeList(res api.Resource, l *api.List) ([]object, error) {
	objs := make([]object, 0, len(l.Items))
	for _, raw := range l.Items {
		o, err := decodeObject(res, raw)
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
	}
	return objs, nil
}

// key identifies an object within its resource: "namespace/name".
func (o object) key() string { return o.meta.GetNamespace() + "/" + o.meta.GetName() }

// qualifiedName returns an object's name as `-o name` prints it:
// "statefulset.apps/web", "pod/web-0", "service/nginx".
func qualifiedName(o object) string { return o.res.Ref(o.meta.GetName()) }

// groupResource returns the resource as Kubernetes names it in errors:
// "statefulsets.apps".
func groupResource(res api.Resource) schema.GroupResource {
	return schema.GroupResource{Group: res.Group(), Resource: res.Name}
}

// tableOptions shape a table like kubectl's flags do.
type tableOptions struct {
	// wide adds the columns of -o wide.
	wide bool
	// withNamespace adds a leading NAMESPACE column (-A).
	withNamespace bool
	// withKind prefixes names with their kind ("pod/web-0"), as kubectl
	// does when several kinds are printed.
	withKind bool
	// showLabels adds a trailing LABELS column (--show-labels).
	showLabels bool
	// watchEvents adds a leading EVENT column (--output-watch-events).
	watchEvents bool
}

// columns describe the table of one kind.
type columns struct {
	header []string
	// wide are the extra columns of -o wide.
	wide []string
	// wideHeader, when set, replaces header and wide under -o wide, for
	// kinds whose wide columns are not all at the end.
	wideHeader []string
	// nameCol is the index of the column that holds the object's name, or
	// -1 when the table has none.
	nameCol int
	cells   func(o metav1.Object, wide bool, now time.Time) []string
}

// typed adapts a printer of one concrete type to columns.cells.
func typed[T metav1.Object](f func(T, bool, time.Time) []string) func(metav1.Object, bool, time.Time) []string {
	return func(o metav1.Object, wide bool, now time.Time) []string { return f(o.(T), wide, now) }
}

// tables holds the columns of each kind, those of kubectl's printers.
var tables = map[string]columns{
	"StatefulSet": {
		header: []string{"NAME", "READY", "AGE"},
		wide:   []string{"CONTAINERS", "IMAGES"},
		cells:  typed(statefulSetCells),
	},
	"Pod": {
		header: []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"},
		wide:   []string{"IP", "NODE"},
		cells:  typed(podCells),
	},
	"Service": {
		header: []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"},
		wide:   []string{"SELECTOR"},
		cells:  typed(serviceCells),
	},
	"PersistentVolumeClaim": {
		header: []string{"NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS", "AGE"},
		wide:   []string{"VOLUMEMODE"},
		cells:  typed(claimCells),
	},
	"ControllerRevision": {
		header: []string{"NAME", "CONTROLLER", "REVISION", "AGE"},
		cells:  typed(revisionCells),
	},
	"Event": {
		header: []string{"LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"},
		wideHeader: []string{
			"LAST SEEN", "TYPE", "REASON", "OBJECT", "SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME",
		},
		nameCol: -1,
		cells:   typed(eventCells),
	},
	"Node": {
		header: []string{"NAME", "STATUS", "ROLES", "AGE", "VERSION"},
		wide:   []string{"INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"},
		cells:  typed(nodeCells),
	},
	"Namespace": {
		header: []string{"NAME", "STATUS", "AGE"},
		cells:  typed(namespaceCells),
	},
	"Server": {
		header: []string{"NAME", "RAFT-ADDRESS", "HTTP-ADDRESS", "AGE"},
		cells:  typed(serverCells),
	},
}

// genericColumns print a kind this CLI has no table for.
var genericColumns = columns{
	header: []string{"NAME", "AGE"},
	cells: func(o metav1.Object, _ bool, now time.Time) []string {
		return []string{o.GetName(), age(o.GetCreationTimestamp(), now)}
	},
}

// columnsFor returns the table of a kind.
func columnsFor(res api.Resource) columns {
	if c, ok := tables[res.Kind]; ok {
		return c
	}
	return genericColumns
}

// tableHeader returns the header row of a table of res.
func tableHeader(res api.Resource, opts tableOptions) []string {
	c := columnsFor(res)
	var h []string
	if opts.watchEvents {
		h = append(h, "EVENT")
	}
	if opts.withNamespace && res.Namespaced {
		h = append(h, "NAMESPACE")
	}
	switch {
	case opts.wide && c.wideHeader != nil:
		h = append(h, c.wideHeader...)
	case opts.wide:
		h = append(append(h, c.header...), c.wide...)
	default:
		h = append(h, c.header...)
	}
	if opts.showLabels {
		h = append(h, "LABELS")
	}
	return h
}

// tableRow returns the row of one object; event is the watch event shown
// in the EVENT column, if any.
func tableRow(o object, opts tableOptions, event string, now time.Time) []string {
	c := columnsFor(o.res)
	cells := c.cells(o.meta, opts.wide, now)
	if opts.withKind && c.nameCol >= 0 {
		cells[c.nameCol] = qualifiedName(o)
	}
	var row []string
	if opts.watchEvents {
		row = append(row, event)
	}
	if opts.withNamespace && o.res.Namespaced {
		row = append(row, o.meta.GetNamespace())
	}
	row = append(row, cells...)
	if opts.showLabels {
		row = append(row, labels.FormatLabels(o.meta.GetLabels()))
	}
	return row
}

// table lays rows out as kubectl's tab writer does: every column but the
// last is padded to its widest cell plus three spaces, and is at least six
// wide. Widths only grow, so that rows printed later during a watch stay
// in line with the header.
type table struct {
	widths []int
}

// Kubectl's tab writer settings.
const (
	tableMinWidth = 6
	tablePadding  = 3
)

// fit widens the columns to hold rows.
func (t *table) fit(rows ...[]string) {
	for _, r := range rows {
		for i, cell := range r {
			w := max(utf8.RuneCountInString(cell)+tablePadding, tableMinWidth)
			if i >= len(t.widths) {
				t.widths = append(t.widths, w)
			} else if w > t.widths[i] {
				t.widths[i] = w
			}
		}
	}
}

// write fits and writes rows.
func (t *table) write(w io.Writer, rows ...[]string) error {
	t.fit(rows...)
	var b strings.Builder
	for _, r := range rows {
		for i, cell := range r {
			b.WriteString(cell)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(cell)))
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printTable writes the table of objects of one kind.
func printTable(w io.Writer, objs []object, opts tableOptions, noHeaders bool, now time.Time) error {
	if len(objs) == 0 {
		return nil
	}
	var rows [][]string
	if !noHeaders {
		rows = append(rows, tableHeader(objs[0].res, opts))
	}
	for _, o := range objs {
		rows = append(rows, tableRow(o, opts, "", now))
	}
	var t table
	return t.write(w, rows...)
}

// writeJSON writes one JSON document as kubectl does: keys sorted, four
// spaces of indentation, numbers as the server wrote them.
func writeJSON(w io.Writer, raw json.RawMessage) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("decode answer of the server: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// writeYAML writes one JSON document as YAML, keys sorted, as kubectl does.
func writeYAML(w io.Writer, raw json.RawMessage) error {
	y, err := yaml.JSONToYAML(raw)
	if err != nil {
		return fmt.Errorf("convert answer of the server to YAML: %w", err)
	}
	_, err = w.Write(y)
	return err
}

// listDocument wraps objects in the `kind: List` kubectl prints for more
// than one object, so that `.items[].metadata.name` works on both.
func listDocument(objs []object) (json.RawMessage, error) {
	items := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		items = append(items, o.raw)
	}
	return json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "List",
		"items":      items,
		"metadata":   map[string]string{"resourceVersion": ""},
	})
}

// printDocument writes objects as JSON or YAML: the object itself when
// single is set (one object asked for by name), a List otherwise.
func printDocument(w io.Writer, format string, objs []object, single bool) error {
	var doc json.RawMessage
	if single && len(objs) == 1 {
		doc = objs[0].raw
	} else {
		var err error
		if doc, err = listDocument(objs); err != nil {
			return err
		}
	}
	if format == outputYAML {
		return writeYAML(w, doc)
	}
	return writeJSON(w, doc)
}

// printNames writes one qualified name a line, as -o name does.
func printNames(w io.Writer, objs []object) error {
	var b strings.Builder
	for _, o := range objs {
		b.WriteString(qualifiedName(o))
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// age formats how long ago t was, as kubectl's AGE column does.
func age(t metav1.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t.Time))
}

// orNone returns s, or "<none>" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// containerCells lists the names and images of containers, comma separated.
func containerCells(cs []corev1.Container) (names, images string) {
	n := make([]string, 0, len(cs))
	im := make([]string, 0, len(cs))
	for _, c := range cs {
		n = append(n, c.Name)
		im = append(im, c.Image)
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

// desiredReplicas returns spec.replicas with the API's default of 1.
func desiredReplicas(s *appsv1.StatefulSet) int32 {
	if s.Spec.Replicas == nil {
		return 1
	}
	return *s.Spec.Replicas
}

func statefulSetCells(s *appsv1.StatefulSet, wide bool, now time.Time) []string {
	cells := []string{
		s.Name,
		fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, desiredReplicas(s)),
		age(s.CreationTimestamp, now),
	}
	if wide {
		names, images := containerCells(s.Spec.Template.Spec.Containers)
		cells = append(cells, names, images)
	}
	return cells
}

// Reasons kubectl gives a pod's status.
const (
	// nodeLostReason is set on pods of a node that stopped answering.
	nodeLostReason = "NodeLost"
)

// podCells derives a pod's row as kubectl does: READY counts ready
// containers; STATUS is the phase, overridden by the reason of the first
// unfinished init container or of the last waiting or terminated container,
// and by Terminating while the pod is being deleted; RESTARTS sums the
// restarts and says how long ago the last one was.
func podCells(p *corev1.Pod, wide bool, now time.Time) []string {
	ready, status, restarts := podStatus(p, now)
	cells := []string{p.Name, ready, status, restarts, age(p.CreationTimestamp, now)}
	if wide {
		ip := p.Status.PodIP
		if len(p.Status.PodIPs) > 0 {
			ip = p.Status.PodIPs[0].IP
		}
		cells = append(cells, orNone(ip), orNone(p.Spec.NodeName))
	}
	return cells
}

// restartableInit reports whether an init container is a sidecar
// (restartPolicy Always), which counts as a container of the pod.
func restartableInit(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// podCondition reports whether condition t of a pod is True.
func podCondition(p *corev1.Pod, t corev1.PodConditionType) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podStatus returns the READY, STATUS and RESTARTS cells of a pod, with
// kubectl's rules (pkg/printers/internalversion printPod).
func podStatus(p *corev1.Pod, now time.Time) (ready, status, restarts string) {
	restartCount, sidecarRestarts := 0, 0
	total := len(p.Spec.Containers)
	readyCount := 0
	var lastRestart, lastSidecarRestart time.Time

	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonSchedulingGated {
			reason = corev1.PodReasonSchedulingGated
		}
	}

	inits := make(map[string]*corev1.Container, len(p.Spec.InitContainers))
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		inits[c.Name] = c
		if restartableInit(c) {
			total++
		}
	}

	initializing := false
initLoop:
	for i, c := range p.Status.InitContainerStatuses {
		restartCount += int(c.RestartCount)
		if t := c.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
			lastRestart = t.FinishedAt.Time
		}
		sidecar := restartableInit(inits[c.Name])
		if sidecar {
			sidecarRestarts += int(c.RestartCount)
			if t := c.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastSidecarRestart) {
				lastSidecarRestart = t.FinishedAt.Time
			}
		}
		switch {
		case c.State.Terminated != nil && c.State.Terminated.ExitCode == 0:
			continue
		case sidecar && c.Started != nil && *c.Started:
			if c.Ready {
				readyCount++
			}
			continue
		case c.State.Terminated != nil:
			switch t := c.State.Terminated; {
			case t.Reason != "":
				reason = "Init:" + t.Reason
			case t.Signal != 0:
				reason = fmt.Sprintf("Init:Signal:%d", t.Signal)
			default:
				reason = fmt.Sprintf("Init:ExitCode:%d", t.ExitCode)
			}
		case c.State.Waiting != nil && c.State.Waiting.Reason != "" && c.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + c.State.Waiting.Reason
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
		}
		// The first init container that has not finished decides.
		initializing = true
		break initLoop
	}

	if !initializing || podCondition(p, corev1.PodInitialized) {
		restartCount, lastRestart = sidecarRestarts, lastSidecarRestart
		hasRunning := false
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			c := p.Status.ContainerStatuses[i]
			restartCount += int(c.RestartCount)
			if t := c.LastTerminationState.Terminated; t != nil && t.FinishedAt.After(lastRestart) {
				lastRestart = t.FinishedAt.Time
			}
			switch {
			case c.State.Waiting != nil && c.State.Waiting.Reason != "":
				reason = c.State.Waiting.Reason
			case c.State.Terminated != nil && c.State.Terminated.Reason != "":
				reason = c.State.Terminated.Reason
			case c.State.Terminated != nil && c.State.Terminated.Signal != 0:
				reason = fmt.Sprintf("Signal:%d", c.State.Terminated.Signal)
			case c.State.Terminated != nil:
				reason = fmt.Sprintf("ExitCode:%d", c.State.Terminated.ExitCode)
			case c.Ready && c.State.Running != nil:
				hasRunning = true
				readyCount++
			}
		}
		// A container still running makes a "Completed" pod Running again.
		if reason == "Completed" && hasRunning {
			if podCondition(p, corev1.PodReady) {
				reason = "Running"
			} else {
				reason = "NotReady"
			}
		}
	}

	terminal := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	switch {
	case p.DeletionTimestamp != nil && p.Status.Reason == nodeLostReason:
		reason = "Unknown"
	case p.DeletionTimestamp != nil && !terminal:
		reason = "Terminating"
	}

	restarts = strconv.Itoa(restartCount)
	if restartCount != 0 && !lastRestart.IsZero() {
		restarts = fmt.Sprintf("%d (%s ago)", restartCount, age(metav1.NewTime(lastRestart), now))
	}
	return fmt.Sprintf("%d/%d", readyCount, total), reason, restarts
}

// portProtocol returns a port's protocol with the API's default of TCP.
func portProtocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// serviceType returns a service's type with the API's default.
func serviceType(s *corev1.Service) corev1.ServiceType {
	if s.Spec.Type == "" {
		return corev1.ServiceTypeClusterIP
	}
	return s.Spec.Type
}

func serviceCells(s *corev1.Service, wide bool, now time.Time) []string {
	clusterIP := s.Spec.ClusterIP
	if len(s.Spec.ClusterIPs) > 0 {
		clusterIP = s.Spec.ClusterIPs[0]
	}
	external := "<none>"
	switch serviceType(s) {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(s.Spec.ExternalIPs) > 0 {
			external = strings.Join(s.Spec.ExternalIPs, ",")
		}
	case corev1.ServiceTypeLoadBalancer:
		external = "<pending>"
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		if ips = append(ips, s.Spec.ExternalIPs...); len(ips) > 0 {
			external = strings.Join(ips, ",")
		}
	case corev1.ServiceTypeExternalName:
		external = s.Spec.ExternalName
	}
	ports := make([]string, 0, len(s.Spec.Ports))
	for _, p := range s.Spec.Ports {
		if p.NodePort > 0 {
			ports = append(ports, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, portProtocol(p.Protocol)))
		} else {
			ports = append(ports, fmt.Sprintf("%d/%s", p.Port, portProtocol(p.Protocol)))
		}
	}
	cells := []string{
		s.Name, string(serviceType(s)), orNone(clusterIP), external,
		orNone(strings.Join(ports, ",")), age(s.CreationTimestamp, now),
	}
	if wide {
		cells = append(cells, orNone(labels.FormatLabels(s.Spec.Selector)))
	}
	return cells
}

// accessModes abbreviates access modes as kubectl does: "RWO,RWX".
func accessModes(modes []corev1.PersistentVolumeAccessMode) string {
	var out []string
	for _, m := range []struct {
		mode  corev1.PersistentVolumeAccessMode
		short string
	}{
		{corev1.ReadWriteOnce, "RWO"},
		{corev1.ReadOnlyMany, "ROX"},
		{corev1.ReadWriteMany, "RWX"},
		{corev1.ReadWriteOncePod, "RWOP"},
	} {
		if slices.Contains(modes, m.mode) {
			out = append(out, m.short)
		}
	}
	return strings.Join(out, ",")
}

// storageClass returns a claim's storage class, from the field or the
// beta annotation that preceded it.
func storageClass(c *corev1.PersistentVolumeClaim) string {
	if c.Spec.StorageClassName != nil {
		return *c.Spec.StorageClassName
	}
	return c.Annotations[corev1.BetaStorageClassAnnotation]
}

// claimStatus returns a claim's phase, or Terminating while it is deleted.
func claimStatus(c *corev1.PersistentVolumeClaim) string {
	if c.DeletionTimestamp != nil {
		return "Terminating"
	}
	return string(c.Status.Phase)
}

// claimCapacity returns the capacity and access modes a claim was given.
// Kubernetes reports them once a volume is bound; Stead's drivers report
// them in status without a separate volume object, so status decides.
func claimCapacity(c *corev1.PersistentVolumeClaim) (capacity, modes string) {
	if q, ok := c.Status.Capacity[corev1.ResourceStorage]; ok {
		capacity = q.String()
	}
	return capacity, accessModes(c.Status.AccessModes)
}

func claimCells(c *corev1.PersistentVolumeClaim, wide bool, now time.Time) []string {
	capacity, modes := claimCapacity(c)
	cells := []string{
		c.Name, claimStatus(c), c.Spec.VolumeName, capacity, modes, storageClass(c), age(c.CreationTimestamp, now),
	}
	if wide {
		mode := "<unset>"
		if c.Spec.VolumeMode != nil {
			mode = string(*c.Spec.VolumeMode)
		}
		cells = append(cells, mode)
	}
	return cells
}

func revisionCells(r *appsv1.ControllerRevision, _ bool, now time.Time) []string {
	controller := "<none>"
	if ref := metav1.GetControllerOf(r); ref != nil {
		gv, _ := schema.ParseGroupVersion(ref.APIVersion)
		controller = strings.ToLower(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}.String()) + "/" + ref.Name
	}
	return []string{r.Name, controller, strconv.FormatInt(r.Revision, 10), age(r.CreationTimestamp, now)}
}

// eventFirstSeen returns when an event was first seen.
func eventFirstSeen(e *corev1.Event) time.Time {
	if !e.FirstTimestamp.IsZero() {
		return e.FirstTimestamp.Time
	}
	return e.EventTime.Time
}

// eventLastSeen returns when an event was last seen.
func eventLastSeen(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil:
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	}
	return eventFirstSeen(e)
}

// since formats how long ago t was, "<unknown>" for the zero time.
func since(t time.Time, now time.Time) string { return age(metav1.NewTime(t), now) }

// eventObject names an event's object as kubectl does: "pod/web-0".
func eventObject(e *corev1.Event) string {
	kind := strings.ToLower(e.InvolvedObject.Kind)
	if e.InvolvedObject.Name == "" {
		return kind
	}
	return kind + "/" + e.InvolvedObject.Name
}

// eventSource names who reported an event: "statefulset-controller" or
// "agent, node-1".
func eventSource(e *corev1.Event) string {
	component := cmp.Or(e.Source.Component, e.ReportingController)
	if host := cmp.Or(e.Source.Host, e.ReportingInstance); host != "" {
		return component + ", " + host
	}
	return component
}

func eventCells(e *corev1.Event, wide bool, now time.Time) []string {
	cells := []string{
		since(eventLastSeen(e), now), e.Type, e.Reason, eventObject(e),
	}
	if wide {
		count := e.Count
		if e.Series != nil {
			count = e.Series.Count
		} else if count == 0 {
			count = 1
		}
		cells = append(cells, e.InvolvedObject.FieldPath, eventSource(e), strings.TrimSpace(e.Message),
			since(eventFirstSeen(e), now), strconv.Itoa(int(count)), e.Name)
		return cells
	}
	return append(cells, strings.TrimSpace(e.Message))
}

// sortEvents orders events oldest first by when they were last seen.
func sortEvents(objs []object) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, aok := objs[i].meta.(*corev1.Event)
		b, bok := objs[j].meta.(*corev1.Event)
		return aok && bok && eventLastSeen(a).Before(eventLastSeen(b))
	})
}

// Node role labels, as kubectl reads them.
const (
	labelNodeRolePrefix = "node-role.kubernetes.io/"
	labelNodeRole       = "kubernetes.io/role"
)

// nodeRoles returns a node's roles from its role labels, sorted.
func nodeRoles(n *corev1.Node) []string {
	var roles []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, labelNodeRolePrefix) && len(k) > len(labelNodeRolePrefix):
			roles = append(roles, strings.TrimPrefix(k, labelNodeRolePrefix))
		case k == labelNodeRole && v != "":
			roles = append(roles, v)
		}
	}
	sort.Strings(roles)
	return slices.Compact(roles)
}

// nodeStatus returns Ready, NotReady or Unknown from the Ready condition,
// with SchedulingDisabled appended when the node is cordoned.
func nodeStatus(n *corev1.Node) string {
	status := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				status = "Ready"
			} else {
				status = "NotReady"
			}
		}
	}
	if n.Spec.Unschedulable {
		status += ",SchedulingDisabled"
	}
	return status
}

// nodeAddress returns a node's first address of type t, or "<none>".
func nodeAddress(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}

func nodeCells(n *corev1.Node, wide bool, now time.Time) []string {
	cells := []string{
		n.Name, nodeStatus(n), orNone(strings.Join(nodeRoles(n), ",")), age(n.CreationTimestamp, now),
		n.Status.NodeInfo.KubeletVersion,
	}
	if wide {
		unknown := func(s string) string {
			if s == "" {
				return "<unknown>"
			}
			return s
		}
		info := n.Status.NodeInfo
		cells = append(cells, nodeAddress(n, corev1.NodeInternalIP), nodeAddress(n, corev1.NodeExternalIP),
			unknown(info.OSImage), unknown(info.KernelVersion), unknown(info.ContainerRuntimeVersion))
	}
	return cells
}

func namespaceCells(ns *corev1.Namespace, _ bool, now time.Time) []string {
	phase := string(ns.Status.Phase)
	switch {
	case ns.DeletionTimestamp != nil:
		phase = string(corev1.NamespaceTerminating)
	case phase == "":
		phase = string(corev1.NamespaceActive)
	}
	return []string{ns.Name, phase, age(ns.CreationTimestamp, now)}
}

func serverCells(s *api.Server, _ bool, now time.Time) []string {
	return []string{s.Name, orNone(s.Spec.RaftAddr), orNone(s.Spec.HTTPAddr), age(s.CreationTimestamp, now)}
}
