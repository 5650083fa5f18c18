package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/stead-io/stead/api"
)

// watchWait bounds each blocking query of --watch; the loop itself runs
// until interrupted.
const watchWait = 30 * time.Second

// getOptions are the flags of `stead get`.
type getOptions struct {
	output        string
	selector      string
	allNamespaces bool
	watch         bool
	watchOnly     bool
	watchEvents   bool
	noHeaders     bool
	showLabels    bool
}

func newGetCmd(g *globals) *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get TYPE[,TYPE...] [NAME...] | TYPE/NAME...",
		Short: "Display one or many objects",
		Long: `Display one or many objects, as kubectl get does.

Types are Kubernetes resource names and their short forms: statefulsets (sts),
pods (po), services (svc), persistentvolumeclaims (pvc), controllerrevisions,
events (ev), nodes (no), namespaces (ns) and servers. 'all' means statefulsets,
pods and services.`,
		Example: `  stead get pods
  stead get sts web -o yaml
  stead get pods -l app=nginx -o wide
  stead get sts,svc -A
  stead get pod/web-0 service/nginx
  stead get pods -w
  stead get pods -o json | jq -r '.items[].metadata.name'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			c, err := g.client()
			if err != nil {
				return err
			}
			r := getRun{
				opts: o, client: c, ns: g.ns(),
				out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(), now: time.Now,
			}
			return r.run(ctx, args)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.output, "output", "o", "", "output format: json, yaml, wide or name")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector to filter on, such as -l app=nginx,tier!=db")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list objects across all namespaces")
	f.BoolVarP(&o.watch, "watch", "w", false, "after listing, watch for changes and print each changed object")
	f.BoolVar(&o.watchOnly, "watch-only", false, "watch for changes without listing first")
	f.BoolVar(&o.watchEvents, "output-watch-events", false, "with --watch, print the event (ADDED, MODIFIED, DELETED) of each change")
	f.BoolVar(&o.noHeaders, "no-headers", false, "print tables without their header")
	f.BoolVar(&o.showLabels, "show-labels", false, "add a column with all labels of each object")
	return cmd
}

// readTarget is one thing to read: every object of a resource, or one object
// by name.
type readTarget struct {
	res api.Resource
	// name is empty to list.
	name string
}

// allResources are what `get all` shows, in kubectl's order.
var allResources = []string{"pods", "services", "statefulsets"}

// parseReadArgs resolves kubectl-style arguments, "TYPE[,TYPE...] [NAME...]"
// or "TYPE/NAME...", into targets in the order given. multiKind reports
// whether names must carry their kind because several kinds are shown.
func parseReadArgs(verb string, args []string) (targets []readTarget, multiKind bool, err error) {
	if len(args) == 0 {
		names := make([]string, 0, len(api.Resources))
		for _, r := range api.Resources {
			names = append(names, r.Name)
		}
		return nil, false, fmt.Errorf("you must specify the type of resource to %s, such as 'stead %s pods'; known types: %s",
			verb, verb, strings.Join(names, ", "))
	}
	kinds := map[string]bool{}
	add := func(res api.Resource, name string) {
		kinds[res.Name] = true
		targets = append(targets, readTarget{res: res, name: name})
	}
	if strings.Contains(args[0], "/") {
		for _, a := range args {
			typ, name, ok := strings.Cut(a, "/")
			if !ok || typ == "" || name == "" {
				return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'stead %s pod/web-0' instead of 'stead %s pod pod/web-0')", verb, verb)
			}
			res, err := api.LookupResource(typ)
			if err != nil {
				return nil, false, err
			}
			add(res, name)
		}
		return targets, len(kinds) > 1, nil
	}
	var types []api.Resource
	expandedAll := false
	for _, typ := range strings.Split(args[0], ",") {
		if strings.EqualFold(typ, "all") {
			expandedAll = true
			for _, n := range allResources {
				res, _ := api.LookupResource(n)
				types = append(types, res)
			}
			continue
		}
		res, err := api.LookupResource(typ)
		if err != nil {
			return nil, false, err
		}
		types = append(types, res)
	}
	for _, name := range args[1:] {
		if strings.Contains(name, "/") {
			return nil, false, fmt.Errorf("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'stead %s %s' instead of 'stead %s %s %s')", verb, name, verb, args[0], name)
		}
	}
	for _, res := range types {
		if len(args) == 1 {
			add(res, "")
			continue
		}
		for _, name := range args[1:] {
			add(res, name)
		}
	}
	return targets, expandedAll || len(kinds) > 1, nil
}

// kindGroup is the objects of one resource, printed as one table.
type kindGroup struct {
	res  api.Resource
	objs []object
}

// getRun is one invocation of `stead get`.
type getRun struct {
	opts   getOptions
	client *api.Client
	// ns is the namespace to read in, unless opts.allNamespaces.
	ns          string
	out, errOut io.Writer
	now         func() time.Time
}

// namespace returns the namespace to read in: "" for all.
func (r *getRun) namespace() string {
	if r.opts.allNamespaces {
		return ""
	}
	return r.ns
}

// tableOptions returns the table shape the flags ask for.
func (r *getRun) tableOptions(multiKind bool) tableOptions {
	return tableOptions{
		wide:          r.opts.output == outputWide,
		withNamespace: r.opts.allNamespaces,
		withKind:      multiKind,
		showLabels:    r.opts.showLabels,
		watchEvents:   r.opts.watchEvents,
	}
}

func (r *getRun) run(ctx context.Context, args []string) error {
	if err := checkOutput(r.opts.output); err != nil {
		return err
	}
	targets, multiKind, err := parseReadArgs("get", args)
	if err != nil {
		return err
	}
	if err := checkNames(targets, r.opts.selector, r.opts.allNamespaces); err != nil {
		return err
	}
	if r.opts.watch || r.opts.watchOnly {
		return r.watch(ctx, targets, multiKind)
	}

	var groups []kindGroup
	var errs []error
	for _, t := range targets {
		if len(groups) == 0 || groups[len(groups)-1].res.Name != t.res.Name {
			groups = append(groups, kindGroup{res: t.res})
		}
		g := &groups[len(groups)-1]
		if t.name == "" {
			l, _, err := r.client.List(ctx, t.res, r.namespace(), api.ListOptions{LabelSelector: r.opts.selector})
			if err != nil {
				return err
			}
			objs, err := decodeList(t.res, l)
			if err != nil {
				return err
			}
			g.objs = append(g.objs, objs...)
			continue
		}
		o, err := getObject(ctx, r.client, t.res, r.namespace(), t.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.objs = append(g.objs, o)
	}
	var all []object
	for i := range groups {
		if groups[i].res.Kind == "Event" {
			sortEvents(groups[i].objs)
		}
		all = append(all, groups[i].objs...)
	}

	single := len(targets) == 1 && targets[0].name != ""
	switch r.opts.output {
	case outputJSON, outputYAML:
		if len(all) > 0 || len(errs) == 0 {
			if err := printDocument(r.out, r.opts.output, all, single); err != nil {
				return err
			}
		}
	case outputName:
		if err := printNames(r.out, all); err != nil {
			return err
		}
	default:
		if len(all) == 0 && len(errs) == 0 {
			fmt.Fprintln(r.errOut, noResourcesFound(r.namespace(), targets))
			return nil
		}
		opts := r.tableOptions(multiKind)
		opts.watchEvents = false
		first := true
		now := r.now()
		for _, g := range groups {
			if len(g.objs) == 0 {
				continue
			}
			if !first {
				fmt.Fprintln(r.out)
			}
			first = false
			if err := printTable(r.out, g.objs, opts, r.opts.noHeaders, now); err != nil {
				return err
			}
		}
	}
	return errors.Join(errs...)
}

// checkNames rejects the flag combinations kubectl rejects with names.
func checkNames(targets []readTarget, selector string, allNamespaces bool) error {
	for _, t := range targets {
		if t.name == "" {
			continue
		}
		if selector != "" {
			return errors.New("name cannot be provided when a selector is specified")
		}
		if allNamespaces && t.res.Namespaced {
			return errors.New("a resource cannot be retrieved by name across all namespaces")
		}
	}
	return nil
}

// getObject reads one object by name.
func getObject(ctx context.Context, c *api.Client, res api.Resource, ns, name string) (object, error) {
	var raw json.RawMessage
	if _, err := c.Get(ctx, res, ns, name, &raw); err != nil {
		return object{}, notFound(err, res, name)
	}
	return decodeObject(res, raw)
}

// notFound makes sure a NotFound answer names what was not found, in
// Kubernetes' words: `statefulsets.apps "web" not found`.
func notFound(err error, res api.Resource, name string) error {
	if apierrors.IsNotFound(err) && !strings.Contains(err.Error(), `"`+name+`"`) {
		return apierrors.NewNotFound(groupResource(res), name)
	}
	return err
}

// noResourcesFound is what kubectl prints when a list is empty.
func noResourcesFound(ns string, targets []readTarget) string {
	namespaced := slices.ContainsFunc(targets, func(t readTarget) bool { return t.res.Namespaced })
	if ns == "" || !namespaced {
		return "No resources found"
	}
	return fmt.Sprintf("No resources found in %s namespace.", ns)
}

// watch lists the objects of one resource, then follows their changes with
// blocking queries until ctx ends, printing every object that was added,
// changed (a new resourceVersion) or deleted since it was last printed.
func (r *getRun) watch(ctx context.Context, targets []readTarget, multiKind bool) error {
	res := targets[0].res
	var names []string
	for _, t := range targets {
		if t.res.Name != res.Name {
			return fmt.Errorf("--watch follows one resource type at a time; got %s and %s", res.Name, t.res.Name)
		}
		if t.name != "" {
			names = append(names, t.name)
		}
	}
	ns := r.namespace()
	list := func(index uint64) ([]object, uint64, error) {
		l, idx, err := r.client.List(ctx, res, ns, api.ListOptions{LabelSelector: r.opts.selector, Index: index, Wait: watchWait})
		if err != nil {
			return nil, 0, err
		}
		objs, err := decodeList(res, l)
		if err != nil {
			return nil, 0, err
		}
		if len(names) > 0 {
			objs = slices.DeleteFunc(objs, func(o object) bool { return !slices.Contains(names, o.meta.GetName()) })
		}
		if res.Kind == "Event" {
			sortEvents(objs)
		}
		return objs, idx, nil
	}

	objs, index, err := list(0)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	for _, n := range names {
		if !slices.ContainsFunc(objs, func(o object) bool { return o.meta.GetName() == n }) {
			return apierrors.NewNotFound(groupResource(res), n)
		}
	}
	p := &watchPrinter{
		w: r.out, format: r.opts.output, opts: r.tableOptions(multiKind),
		noHeaders: r.opts.noHeaders, now: r.now,
	}
	if !r.opts.watchOnly {
		if len(objs) == 0 && (r.opts.output == outputTable || r.opts.output == outputWide) {
			fmt.Fprintln(r.errOut, noResourcesFound(ns, targets))
		}
		if err := p.print(objs, nil); err != nil {
			return err
		}
	}
	seen := make(map[string]object, len(objs))
	for _, o := range objs {
		seen[o.key()] = o
	}

	for {
		if index == 0 {
			return fmt.Errorf("server %s did not say which state index it answered at, so changes cannot be followed", r.client.Addr())
		}
		objs, next, err := list(index)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		index = next
		changed, events := diffObjects(seen, objs)
		if err := p.print(changed, events); err != nil {
			return err
		}
		seen = make(map[string]object, len(objs))
		for _, o := range objs {
			seen[o.key()] = o
		}
	}
}

// Watch events, named as Kubernetes names them.
const (
	eventAdded    = "ADDED"
	eventModified = "MODIFIED"
	eventDeleted  = "DELETED"
)

// diffObjects compares the objects last printed with the current ones and
// returns those to print and their events: new and changed objects in the
// order of the list, then deleted ones (as last seen) in name order.
func diffObjects(seen map[string]object, current []object) (changed []object, events []string) {
	now := make(map[string]bool, len(current))
	for _, o := range current {
		now[o.key()] = true
		prev, ok := seen[o.key()]
		switch {
		case !ok:
			changed, events = append(changed, o), append(events, eventAdded)
		case prev.meta.GetResourceVersion() != o.meta.GetResourceVersion():
			changed, events = append(changed, o), append(events, eventModified)
		}
	}
	var gone []string
	for k := range seen {
		if !now[k] {
			gone = append(gone, k)
		}
	}
	sort.Strings(gone)
	for _, k := range gone {
		changed, events = append(changed, seen[k]), append(events, eventDeleted)
	}
	return changed, events
}

// watchPrinter prints objects as a watch sees them: a table whose header
// is printed once and whose columns keep their width, or one JSON or YAML
// document per object.
type watchPrinter struct {
	w         io.Writer
	format    string
	opts      tableOptions
	noHeaders bool
	now       func() time.Time

	t          table
	headerDone bool
	docs       int
}

// print prints a batch of objects; events holds the event of each, or is
// nil for the initial listing (all ADDED).
func (p *watchPrinter) print(objs []object, events []string) error {
	if len(objs) == 0 {
		return nil
	}
	event := func(i int) string {
		if events == nil {
			return eventAdded
		}
		return events[i]
	}
	switch p.format {
	case outputJSON, outputYAML:
		for i, o := range objs {
			doc := o.raw
			if p.opts.watchEvents {
				var err error
				if doc, err = json.Marshal(map[string]any{"type": event(i), "object": o.raw}); err != nil {
					return err
				}
			}
			if p.format == outputJSON {
				if err := writeJSON(p.w, doc); err != nil {
					return err
				}
				continue
			}
			if p.docs > 0 {
				if _, err := io.WriteString(p.w, "---\n"); err != nil {
					return err
				}
			}
			p.docs++
			if err := writeYAML(p.w, doc); err != nil {
				return err
			}
		}
		return nil
	case outputName:
		return printNames(p.w, objs)
	}
	var rows [][]string
	if !p.headerDone && !p.noHeaders {
		rows = append(rows, tableHeader(objs[0].res, p.opts))
	}
	p.headerDone = true
	now := p.now()
	for i, o := range objs {
		rows = append(rows, tableRow(o, p.opts, event(i), now))
	}
	return p.t.write(p.w, rows...)
}
