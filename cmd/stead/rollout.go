package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/scheduler"
)

func newRolloutCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow, inspect, restart and undo the rollouts of a StatefulSet",
	}
	cmd.AddCommand(newRolloutStatusCmd(g), newRolloutHistoryCmd(g), newRolloutUndoCmd(g), newRolloutRestartCmd(g))
	return cmd
}

// setTarget reads "sts/NAME" or "sts NAME" from args.
func setTarget(args []string) (string, error) {
	targets, err := parseTargets(args)
	if err != nil {
		return "", err
	}
	if len(targets) != 1 || targets[0].res.Name != "statefulsets" {
		return "", errors.New("name one StatefulSet: sts/NAME")
	}
	return targets[0].name, nil
}

var statefulSetsRes, _ = api.LookupResource("statefulsets")

func getSet(ctx context.Context, c *api.Client, ns, name string) (*appsv1.StatefulSet, uint64, error) {
	var set appsv1.StatefulSet
	idx, err := c.Get(ctx, statefulSetsRes, ns, name, &set)
	return &set, idx, err
}

func newRolloutStatusCmd(g *globals) *cobra.Command {
	var (
		watch   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status sts/NAME",
		Short: "Wait for a rollout to finish, showing which ordinal it waits for and why",
		Long: `Show the status of a StatefulSet's rollout with kubectl's rules: the spec must
be observed, then every replica Ready, then the pods from the partition up
updated. While it waits, it says which pod the controller waits for.`,
		Example: `  stead rollout status sts/web
  stead rollout status sts/web --watch=false
  stead rollout status sts/web --timeout=5m`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := setTarget(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return rolloutStatus(ctx, c, g.ns(), name, watch, newProgress(cmd.OutOrStdout()))
		},
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "wait until the rollout is complete")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: wait forever)")
	return cmd
}

// rolloutStatus prints the rollout's state until it is complete (or once,
// without watch). Each state change is one line; while waiting, the reason
// the controller gives for the ordinal it waits on is shown beside it.
func rolloutStatus(ctx context.Context, c *api.Client, ns, name string, watch bool, out *progress) error {
	var index uint64
	for {
		set, idx, err := getSet(ctx, c, ns, name)
		if err != nil {
			return err
		}
		msg, done, err := scheduler.RolloutStatus(set)
		if err != nil {
			return err
		}
		if !done {
			if why, err := waitingFor(ctx, c, set); err == nil && why != "" {
				msg += " (" + why + ")"
			}
		}
		out.show(msg, done)
		if done || !watch {
			return nil
		}
		// Block until anything in the cluster changes, then look again.
		l, next, err := c.List(ctx, statefulSetsRes, ns, api.ListOptions{Index: max(idx, index), Wait: 30 * time.Second})
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("timed out waiting for the rollout of statefulset %s: %s", name, msg)
			}
			return err
		}
		_ = l
		index = next
	}
}

// waitingFor explains what holds the rollout: it runs the controller's own
// pure decision over the current state and reports what it is blocked on.
func waitingFor(ctx context.Context, c *api.Client, set *appsv1.StatefulSet) (string, error) {
	var pods []*corev1.Pod
	var claims []*corev1.PersistentVolumeClaim
	var revs []*appsv1.ControllerRevision
	if err := listInto(ctx, c, "pods", set.Namespace, &pods); err != nil {
		return "", err
	}
	if err := listInto(ctx, c, "persistentvolumeclaims", set.Namespace, &claims); err != nil {
		return "", err
	}
	if err := listInto(ctx, c, "controllerrevisions", set.Namespace, &revs); err != nil {
		return "", err
	}
	plan := scheduler.Reconcile(scheduler.Input{Set: set, Pods: pods, Claims: claims, Revisions: revs, Now: time.Now()})
	var reasons []string
	for _, b := range plan.Blocked {
		reasons = append(reasons, b.Reason)
	}
	return strings.Join(reasons, "; "), nil
}

// listInto lists a resource and decodes its items into out, a pointer to a
// slice of pointers to the resource's Go type.
func listInto[T any](ctx context.Context, c *api.Client, resource, ns string, out *[]*T) error {
	r, err := api.LookupResource(resource)
	if err != nil {
		return err
	}
	l, _, err := c.List(ctx, r, ns, api.ListOptions{})
	if err != nil {
		return err
	}
	for _, raw := range l.Items {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return err
		}
		*out = append(*out, v)
	}
	return nil
}

// progress prints status lines: on a terminal the waiting line is redrawn
// in place; elsewhere each new state is a line of its own.
type progress struct {
	w    io.Writer
	tty  bool
	last string
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) show(msg string, final bool) {
	if msg == p.last && !final {
		return
	}
	switch {
	case p.tty && !final:
		fmt.Fprintf(p.w, "\r\033[K%s", msg)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s\n", msg)
	default:
		fmt.Fprintln(p.w, msg)
	}
	p.last = msg
}

// ownedRevisions returns the set's revisions, oldest first.
func ownedRevisions(ctx context.Context, c *api.Client, set *appsv1.StatefulSet) ([]*appsv1.ControllerRevision, error) {
	var all []*appsv1.ControllerRevision
	if err := listInto(ctx, c, "controllerrevisions", set.Namespace, &all); err != nil {
		return nil, err
	}
	var out []*appsv1.ControllerRevision
	for _, r := range all {
		if ref := metav1.GetControllerOf(r); ref != nil && ref.UID == set.UID {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Revision < out[j].Revision })
	return out, nil
}

// setHistory reads the set named on the command line and its revisions.
func setHistory(ctx context.Context, g *globals, args []string) (*api.Client, *appsv1.StatefulSet, []*appsv1.ControllerRevision, error) {
	name, err := setTarget(args)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := g.client()
	if err != nil {
		return nil, nil, nil, err
	}
	set, _, err := getSet(ctx, c, g.ns(), name)
	if err != nil {
		return nil, nil, nil, err
	}
	revs, err := ownedRevisions(ctx, c, set)
	return c, set, revs, err
}

func newRolloutHistoryCmd(g *globals) *cobra.Command {
	var revision int64
	cmd := &cobra.Command{
		Use:   "history sts/NAME",
		Short: "List the revisions of a StatefulSet's template",
		Example: `  stead rollout history sts/web
  stead rollout history sts/web --revision=2`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, set, revs, err := setHistory(cmd.Context(), g, args)
			if err != nil {
				return err
			}
			name := set.Name
			out := cmd.OutOrStdout()
			if revision > 0 {
				for _, r := range revs {
					if r.Revision == revision {
						tmpl, err := scheduler.TemplateFromRevision(r)
						if err != nil {
							return err
						}
						fmt.Fprintf(out, "statefulset.apps/%s with revision #%d\n", name, revision)
						return printTemplate(out, tmpl)
					}
				}
				return fmt.Errorf("unable to find the specified revision %d of statefulset %s; see stead rollout history sts/%s", revision, name, name)
			}
			fmt.Fprintf(out, "statefulset.apps/%s\n", name)
			tw := tabwriter.NewWriter(out, 6, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
			for _, r := range revs {
				cause := r.Annotations["kubernetes.io/change-cause"]
				if cause == "" {
					cause = "<none>"
				}
				fmt.Fprintf(tw, "%d\t%s\n", r.Revision, cause)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().Int64Var(&revision, "revision", 0, "show the pod template of this revision")
	return cmd
}

func printTemplate(w io.Writer, tmpl *corev1.PodTemplateSpec) error {
	fmt.Fprintln(w, "Pod Template:")
	fmt.Fprintf(w, "  Labels:\t%s\n", labelsString(tmpl.Labels))
	for _, c := range tmpl.Spec.Containers {
		fmt.Fprintf(w, "  Container %s:\n    Image:\t%s\n", c.Name, c.Image)
	}
	return nil
}

func labelsString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// putSet stores a changed set through the API, with apply's validation.
func putSet(ctx context.Context, c *api.Client, set *appsv1.StatefulSet) error {
	set.Status = appsv1.StatefulSetStatus{}
	set.ManagedFields = nil
	_, err := c.Put(ctx, statefulSetsRes, set.Namespace, set.Name, set, nil)
	return err
}

func newRolloutUndoCmd(g *globals) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:   "undo sts/NAME",
		Short: "Roll a StatefulSet's template back to an earlier revision",
		Long: `Undo puts back the pod template of an earlier revision (the one before the
current, or --to-revision). The controller then rolls the pods to it; a pod
stuck at a broken revision is replaced without being deleted by hand.`,
		Example: `  stead rollout undo sts/web
  stead rollout undo sts/web --to-revision=1`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, set, revs, err := setHistory(ctx, g, args)
			if err != nil {
				return err
			}
			name := set.Name
			var target *appsv1.ControllerRevision
			switch {
			case toRevision > 0:
				for _, r := range revs {
					if r.Revision == toRevision {
						target = r
					}
				}
				if target == nil {
					return fmt.Errorf("unable to find the specified revision %d of statefulset %s; see stead rollout history sts/%s", toRevision, name, name)
				}
			case len(revs) < 2:
				return fmt.Errorf("no rollout history found for statefulset %q", name)
			default:
				target = revs[len(revs)-2]
			}
			tmpl, err := scheduler.TemplateFromRevision(target)
			if err != nil {
				return err
			}
			set.Spec.Template = *tmpl
			if err := putSet(ctx, c, set); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "statefulset.apps/%s rolled back\n", name)
			return nil
		},
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to (default: the previous one)")
	return cmd
}

func newRolloutRestartCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "restart sts/NAME",
		Short: "Restart every pod of a StatefulSet, one by one, in rollout order",
		Long: `Restart stamps the pod template with the time (annotation
kubectl.kubernetes.io/restartedAt), which makes a new revision: the
controller replaces the pods from the highest ordinal down, each Ready
before the next.`,
		Example: `  stead rollout restart sts/web`,
		Args:    cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := setTarget(args)
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			set, _, err := getSet(ctx, c, g.ns(), name)
			if err != nil {
				return err
			}
			if set.Spec.Template.Annotations == nil {
				set.Spec.Template.Annotations = map[string]string{}
			}
			set.Spec.Template.Annotations[api.AnnotationRestartedAt] = time.Now().Format(time.RFC3339)
			if err := putSet(ctx, c, set); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "statefulset.apps/%s restarted\n", name)
			return nil
		},
	}
	return cmd
}
