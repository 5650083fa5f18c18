// Package scheduler holds the decisions the Raft leader makes for the
// cluster: the StatefulSet controller, the placer, node liveness and fencing,
// and the loops that run them.
//
// The StatefulSet controller is a pure function, [Reconcile], in the shape of
// the Kubernetes controller (pkg/controller/statefulset) and of Nomad's
// reconciler: it reads a snapshot of one set and the pods, volume claims and
// ControllerRevisions of its namespace, together with the current time, and
// returns a [Plan] of named buckets (pods to create, delete and update, claims
// and revisions to create, update and delete, the new status, and why
// progress stopped). It does no I/O, reads no clock and uses no randomness;
// the same input always gives the same plan, ordered by ordinal. The caller
// commits the plan through Raft and calls Reconcile again when anything the
// set depends on changes, or after Plan.RequeueAfter.
//
// The rules it follows are those of the Kubernetes StatefulSet controller,
// item by item as written down in SEMANTICS.md (sections A to M), with one
// deliberate addition: an OrderedReady rolling update that is stuck on a pod
// that never became Ready is unstuck by replacing that pod once the template
// changes again (see [Reconcile] and api.AnnotationReplaceStuckPods).
//
// [RolloutStatus] gives the words `stead rollout status` prints, as kubectl
// does for a StatefulSet.
package scheduler
