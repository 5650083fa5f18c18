package scheduler

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hashicorp/go-hclog"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stead-io/stead/raftstore"
)

// Store is what the leader's loops need of the replicated state: a view to
// decide from, a way to wait for it to change, and a way to commit. The
// methods are safe for concurrent use.
type Store interface {
	View() *raftstore.View
	WaitForIndex(ctx context.Context, after uint64) (uint64, error)
	// WaitForChanges returns once one of keys changed past after.
	WaitForChanges(ctx context.Context, keys []raftstore.ChangeKey, after uint64) (uint64, error)
	Apply(ctx context.Context, txn raftstore.Txn) (uint64, error)
	// Barrier returns once every entry committed before it is applied, so
	// that a new leader decides from the whole committed state.
	Barrier(ctx context.Context) error
	// VerifyLeader confirms with a quorum that this server still leads.
	VerifyLeader(ctx context.Context) error
}

// eventTTL is how long events are kept, as Kubernetes keeps them by default.
const eventTTL = time.Hour

// maxIdle bounds how long the controller waits without a state change
// before syncing again.
const maxIdle = 30 * time.Second

// Controller runs the leader's loops: it syncs every StatefulSet with
// Reconcile and commits the plans. It reads only committed state, and every
// change it commits is guarded by the versions it was decided from, so a
// decision taken from a state that has since moved is refused by the FSM,
// not applied (SEMANTICS P13).
type Controller struct {
	store  Store
	log    hclog.Logger
	clock  Clock
	leases *Leases
	// fenceMargin is how long a lost node's pods stay bound after its
	// lease ran out.
	fenceMargin time.Duration
	metrics     *controllerMetrics
}

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	// Store is the replicated state the controller reads and commits to.
	Store Store
	// Logger is named "controller" below it.
	Logger hclog.Logger
	// Clock is the system clock when nil.
	Clock Clock
	// Leases are the nodes' leases, renewed by their heartbeats to this
	// leader; a table with DefaultLeaseTTL when nil.
	Leases *Leases
	// FenceMargin is DefaultFenceMargin when zero.
	FenceMargin time.Duration
}

// NewController returns a controller.
func NewController(cfg ControllerConfig) *Controller {
	if cfg.Clock == nil {
		cfg.Clock = SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Leases == nil {
		cfg.Leases = NewLeases(cfg.Clock, DefaultLeaseTTL)
	}
	if cfg.FenceMargin <= 0 {
		cfg.FenceMargin = DefaultFenceMargin
	}
	return &Controller{store: cfg.Store, log: cfg.Logger.Named("controller"), clock: cfg.Clock, leases: cfg.Leases, fenceMargin: cfg.FenceMargin,
		metrics: newControllerMetrics()}
}

// Run syncs until ctx ends. The caller runs it only while this server
// leads and cancels ctx when leadership is lost.
func (c *Controller) Run(ctx context.Context) error {
	if err := c.store.Barrier(ctx); err != nil {
		return fmt.Errorf("wait for the committed state: %w", err)
	}
	for {
		index := c.store.View().Index()
		next, err := c.SyncOnce(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log.Warn("sync failed; retrying", "error", err)
			next = time.Second
		}
		wctx, cancel := context.WithCancel(ctx)
		timer := c.clock.After(next)
		changed := make(chan struct{})
		go func() {
			if _, err := c.store.WaitForChanges(wctx, controllerInputs, index); err == nil {
				close(changed)
			}
		}()
		select {
		case <-ctx.Done():
			cancel()
			return ctx.Err()
		case <-changed:
		case <-timer:
		}
		cancel()
	}
}

// controllerInputs are the kinds a sync decides from. A commit of
// anything else (events, services, tokens) does not start one; events
// are collected on the idle syncs.
var controllerInputs = []raftstore.ChangeKey{
	raftstore.KindChanges(raftstore.StatefulSets),
	raftstore.KindChanges(raftstore.Pods),
	raftstore.KindChanges(raftstore.PersistentVolumeClaims),
	raftstore.KindChanges(raftstore.ControllerRevisions),
	raftstore.KindChanges(raftstore.Nodes),
}

// SyncOnce syncs every StatefulSet once against the current state and
// returns how soon the next sync is due even if nothing changes.
func (c *Controller) SyncOnce(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	defer func() { c.metrics.sync.Observe(time.Since(start).Seconds()) }()
	v := c.store.View()
	now := c.clock.Now()
	next := maxIdle
	var errs []error
	objs := newNamespaceObjects(v)
	var planned []planCommit
	for _, set := range raftstore.ListOf[*appsv1.StatefulSet](v, raftstore.StatefulSets, "") {
		plan := Reconcile(Input{
			Set:       set,
			PodIndex:  objs.pods(set.Namespace),
			Claims:    objs.claims(set.Namespace),
			Revisions: objs.revisions(set.Namespace),
			Now:       now,
		})
		if plan.RequeueAfter > 0 {
			next = min(next, plan.RequeueAfter)
		}
		planned = append(planned, planCommit{set: set, plan: plan})
	}
	c.bindAtCreation(v, planned, now)
	var commits []planCommit
	for _, pc := range planned {
		ops, err := c.planOps(v, pc.set, pc.plan, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("statefulset %s/%s: %w", pc.set.Namespace, pc.set.Name, err))
			continue
		}
		if len(ops) > 0 {
			pc.ops = ops
			commits = append(commits, pc)
		}
	}
	// Each set's plan is its own transaction, so that one refused plan
	// holds back no other set; they are committed side by side, and Raft
	// writes the ones in flight together.
	for _, pc := range c.commitPlans(ctx, commits) {
		switch {
		case pc.err == nil:
			c.logPlan(pc.set, pc.plan)
		case errors.Is(pc.err, raftstore.ErrConflict) || errors.Is(pc.err, raftstore.ErrNotFound) || errors.Is(pc.err, raftstore.ErrAlreadyExists):
			// The state moved under the decision: decide again from the new one.
			c.log.Debug("plan refused; state changed", "set", pc.set.Name, "error", pc.err)
			next = 0
		default:
			errs = append(errs, fmt.Errorf("commit plan of statefulset %s/%s: %w", pc.set.Namespace, pc.set.Name, pc.err))
		}
	}
	if err := c.syncNodes(ctx, v, now); err != nil {
		errs = append(errs, err)
	}
	if err := c.failover(ctx, v, now); err != nil {
		errs = append(errs, err)
	}
	// Place from the state the set syncs above produced, so that a pod
	// created now is bound in the same pass.
	if err := c.place(ctx, c.store.View(), now); err != nil {
		errs = append(errs, err)
	}
	if err := c.finalizeClaims(ctx, c.store.View(), now); err != nil {
		errs = append(errs, err)
	}
	if err := c.collectEvents(ctx, v, now); err != nil {
		errs = append(errs, err)
	}
	// Look again when the next lease runs out or the next fence margin ends.
	for _, n := range raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "") {
		age := c.leases.Age(n.Name)
		for _, at := range []time.Duration{c.leases.TTL(), c.leases.TTL() + c.fenceMargin} {
			if age <= at {
				next = min(next, at-age+10*time.Millisecond)
			}
		}
	}
	return next, errors.Join(errs...)
}

// planCommit is one set's plan on its way to the log.
type planCommit struct {
	set  *appsv1.StatefulSet
	plan Plan
	ops  []raftstore.Op
	err  error
}

// maxPlansInFlight bounds the plans committed at once.
const maxPlansInFlight = 32

// commitPlans commits each plan as one transaction, up to
// maxPlansInFlight at a time, and returns them with their outcomes in
// their order.
func (c *Controller) commitPlans(ctx context.Context, commits []planCommit) []planCommit {
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxPlansInFlight)
	for i := range commits {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			_, commits[i].err = c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: commits[i].ops})
		}()
	}
	wg.Wait()
	return commits
}

func (c *Controller) logPlan(set *appsv1.StatefulSet, plan Plan) {
	bound := 0
	for _, p := range plan.CreatePods {
		if p.Spec.NodeName != "" {
			bound++
			c.log.Info("create pod", "set", set.Name, "ns", set.Namespace, "pod", p.Name, "node", p.Spec.NodeName)
			continue
		}
		c.log.Info("create pod", "set", set.Name, "ns", set.Namespace, "pod", p.Name)
	}
	c.metrics.placements.Add(float64(bound))
	for _, d := range plan.DeletePods {
		c.log.Info("delete pod", "set", set.Name, "ns", set.Namespace, "pod", d.Name, "reason", d.Reason)
	}
}

// planOps turns a plan into the guarded ops of one transaction, in the
// order the plan's fields are meant to be committed.
func (c *Controller) planOps(v *raftstore.View, set *appsv1.StatefulSet, plan Plan, now time.Time) ([]raftstore.Op, error) {
	var ops []raftstore.Op
	add := func(op raftstore.Op, err error) error {
		if err == nil {
			ops = append(ops, op)
		}
		return err
	}
	for _, r := range plan.CreateRevisions {
		stampNew(r, now)
		if err := add(PutOp(raftstore.ControllerRevisions, r, 0)); err != nil {
			return nil, err
		}
	}
	for _, r := range plan.UpdateRevisions {
		if err := add(PutOp(raftstore.ControllerRevisions, r, Version(r))); err != nil {
			return nil, err
		}
	}
	for _, cl := range plan.CreateClaims {
		stampNew(cl, now)
		if cl.Status.Phase == "" {
			cl.Status.Phase = corev1.ClaimPending
		}
		if err := add(PutOp(raftstore.PersistentVolumeClaims, cl, 0)); err != nil {
			return nil, err
		}
	}
	for _, cl := range plan.UpdateClaims {
		if err := add(PutOp(raftstore.PersistentVolumeClaims, cl, Version(cl))); err != nil {
			return nil, err
		}
	}
	for _, p := range plan.UpdatePods {
		if err := add(PutOp(raftstore.Pods, p, Version(p))); err != nil {
			return nil, err
		}
	}
	for _, p := range plan.CreatePods {
		stampNew(p, now)
		op, err := PutOp(raftstore.Pods, p, 0)
		if err != nil {
			return nil, err
		}
		// A pod created bound gets its generation as a binding does.
		op.StampGeneration = p.Spec.NodeName != ""
		ops = append(ops, op)
	}
	for _, d := range plan.DeletePods {
		pod, ok := raftstore.GetOf[*corev1.Pod](v, raftstore.Pods, set.Namespace, d.Name)
		if !ok {
			continue
		}
		op, err := DeletePodOp(pod, nil, false, now)
		if err != nil {
			return nil, err
		}
		if op != nil {
			ops = append(ops, *op)
		}
	}
	for _, name := range plan.DeleteClaims {
		if cl, ok := raftstore.GetOf[*corev1.PersistentVolumeClaim](v, raftstore.PersistentVolumeClaims, set.Namespace, name); ok {
			op, err := DeleteClaimOp(cl, now)
			if err != nil {
				return nil, err
			}
			if op != nil {
				ops = append(ops, *op)
			}
		}
	}
	for _, name := range plan.DeleteRevisions {
		if r, ok := v.Get(raftstore.ControllerRevisions, set.Namespace, name); ok {
			ops = append(ops, DeleteOp(raftstore.ControllerRevisions, r))
		}
	}
	switch {
	case plan.DeletionComplete:
		// A set deleted with cascading deletion goes once its pods are gone.
		ops = append(ops, DeleteOp(raftstore.StatefulSets, set))
	case plan.StatusChanged:
		updated := set.DeepCopy()
		updated.Status = plan.Status
		if err := add(PutOp(raftstore.StatefulSets, updated, Version(set))); err != nil {
			return nil, err
		}
	}
	if len(ops) == 0 {
		return nil, nil
	}
	for _, e := range plan.Events {
		if err := add(PutOp(raftstore.Events, setEvent(set, e, now), 0)); err != nil {
			return nil, err
		}
	}
	return ops, nil
}

// setEvent returns the Event object recording e on set.
func setEvent(set *appsv1.StatefulSet, e Event, now time.Time) *corev1.Event {
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: set.Name + "." + newID()[:16], Namespace: set.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "StatefulSet", APIVersion: "apps/v1", Namespace: set.Namespace, Name: set.Name,
			UID: set.UID, ResourceVersion: set.ResourceVersion,
		},
		Reason:              e.Reason,
		Message:             e.Message,
		Type:                e.Type,
		Source:              corev1.EventSource{Component: "statefulset-controller"},
		FirstTimestamp:      ts,
		LastTimestamp:       ts,
		Count:               1,
		ReportingController: "stead.io/statefulset-controller",
	}
	stampNew(ev, now)
	return ev
}

// podEvent returns an Event recorded on pod.
func podEvent(pod *corev1.Pod, typ, reason, msg string, now time.Time) *corev1.Event {
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name + "." + newID()[:16], Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
		},
		Reason: reason, Message: msg, Type: typ,
		Source:         corev1.EventSource{Component: "node-controller"},
		FirstTimestamp: ts, LastTimestamp: ts, Count: 1,
		ReportingController: "stead.io/node-controller",
	}
	stampNew(ev, now)
	return ev
}

// collectEvents deletes events older than eventTTL, oldest first, a bounded
// number per sync.
func (c *Controller) collectEvents(ctx context.Context, v *raftstore.View, now time.Time) error {
	events := raftstore.ListOf[*corev1.Event](v, raftstore.Events, "")
	sort.Slice(events, func(i, j int) bool { return events[i].LastTimestamp.Before(&events[j].LastTimestamp) })
	var ops []raftstore.Op
	for _, e := range events {
		if now.Sub(e.LastTimestamp.Time) < eventTTL || len(ops) == 256 {
			break
		}
		ops = append(ops, DeleteOp(raftstore.Events, e))
	}
	if len(ops) == 0 {
		return nil
	}
	_, err := c.store.Apply(ctx, raftstore.Txn{RequestID: newID(), Ops: ops})
	if errors.Is(err, raftstore.ErrConflict) || errors.Is(err, raftstore.ErrNotFound) {
		return nil
	}
	return err
}

// stampNew gives a new object the metadata the server owns.
func stampNew(o metav1.Object, now time.Time) {
	o.SetUID(types.UID(uuid.NewString()))
	o.SetCreationTimestamp(metav1.NewTime(now.UTC().Truncate(time.Second)))
	o.SetResourceVersion("")
	if o.GetGeneration() == 0 {
		o.SetGeneration(1)
	}
}

// newID returns a random ID for a transaction or an event name.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// namespaceObjects lists a view's pods, claims and revisions once per
// namespace and sync, so that syncing many sets of one namespace does not
// list it once per set; the pods come indexed.
type namespaceObjects struct {
	v           *raftstore.View
	podsBy      map[string]*PodIndex
	claimsBy    map[string][]*corev1.PersistentVolumeClaim
	revisionsBy map[string][]*appsv1.ControllerRevision
}

func newNamespaceObjects(v *raftstore.View) *namespaceObjects {
	return &namespaceObjects{v: v, podsBy: map[string]*PodIndex{},
		claimsBy: map[string][]*corev1.PersistentVolumeClaim{}, revisionsBy: map[string][]*appsv1.ControllerRevision{}}
}

// listOnce returns cache[ns], listing kind in ns into it the first time.
func listOnce[T raftstore.Object](v *raftstore.View, cache map[string][]T, kind raftstore.Kind, ns string) []T {
	l, ok := cache[ns]
	if !ok {
		l = raftstore.ListOf[T](v, kind, ns)
		cache[ns] = l
	}
	return l
}

func (o *namespaceObjects) pods(ns string) *PodIndex {
	x, ok := o.podsBy[ns]
	if !ok {
		x = IndexPods(raftstore.ListOf[*corev1.Pod](o.v, raftstore.Pods, ns), ns)
		o.podsBy[ns] = x
	}
	return x
}

func (o *namespaceObjects) claims(ns string) []*corev1.PersistentVolumeClaim {
	return listOnce(o.v, o.claimsBy, raftstore.PersistentVolumeClaims, ns)
}

func (o *namespaceObjects) revisions(ns string) []*appsv1.ControllerRevision {
	return listOnce(o.v, o.revisionsBy, raftstore.ControllerRevisions, ns)
}
