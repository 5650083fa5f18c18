package httpapi

import (
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stead-io/stead/api"
	"github.com/stead-io/stead/raftstore"
	"github.com/stead-io/stead/scheduler"
)

// DefaultClusterCIDR is the range pod subnets are handed out from.
var DefaultClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")

// nodeSubnetBits is the size of each node's pod subnet: a /24.
const nodeSubnetBits = 24

// registerNode prepares the stored form of a node an agent registered. The
// agent owns the node's labels, addresses and capacity; the server owns its
// spec (pod subnet, cordon, taints) and its Ready condition, so a restarted
// agent never undoes a cordon or changes its pod subnet. A new pod subnet
// stays reserved until release is called, once the node's write is
// committed or has failed.
func (s *Server) registerNode(v *raftstore.View, node *corev1.Node, existing *corev1.Node) (release func(), err error) {
	release = func() {}
	now := metav1.NewTime(s.cfg.Now().UTC().Truncate(time.Second))
	// The spec is the server's, also on first registration: an agent
	// cannot pick its pod subnet, untaint or uncordon itself.
	node.Spec = corev1.NodeSpec{}
	if existing != nil {
		node.Spec = *existing.Spec.DeepCopy()
	}
	if node.Spec.PodCIDR == "" {
		cidr, err := s.subnets.reserve(s.cfg.Store, s.cfg.ClusterCIDR)
		if err != nil {
			return release, err
		}
		release = func() { s.subnets.release(cidr) }
		node.Spec.PodCIDR = cidr.String()
		node.Spec.PodCIDRs = []string{node.Spec.PodCIDR}
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady",
		Message: "stead agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	if existing != nil {
		for _, c := range existing.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready.LastTransitionTime = c.LastTransitionTime
			}
		}
	}
	var conds []corev1.NodeCondition
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			conds = append(conds, c)
		}
	}
	node.Status.Conditions = append(conds, ready)
	return release, nil
}

// subnetReservations are the pod subnets of registrations in flight.
type subnetReservations struct {
	mu   sync.Mutex
	held map[netip.Prefix]bool
}

// reserve returns the lowest node subnet of cluster that neither a node of
// store's state nor a reservation holds, and holds it until release. It
// reads the state under its lock: a registration releases its subnet once
// its write is applied here, so the state read then holds that node.
func (r *subnetReservations) reserve(store *raftstore.Store, cluster netip.Prefix) (netip.Prefix, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := freeSubnet(store.View(), cluster, r.held)
	if err != nil {
		return p, err
	}
	if r.held == nil {
		r.held = map[netip.Prefix]bool{}
	}
	r.held[p] = true
	return p, nil
}

func (r *subnetReservations) release(p netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.held, p)
}

// freeSubnet returns the lowest node-sized subnet of cluster that no node
// of v holds and that is not held.
func freeSubnet(v *raftstore.View, cluster netip.Prefix, held map[netip.Prefix]bool) (netip.Prefix, error) {
	used := maps.Clone(held)
	if used == nil {
		used = map[netip.Prefix]bool{}
	}
	for _, n := range raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "") {
		if p, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil {
			used[p.Masked()] = true
		}
	}
	if cluster.Bits() > nodeSubnetBits {
		return netip.Prefix{}, fmt.Errorf("cluster CIDR %s is smaller than one node subnet (/%d)", cluster, nodeSubnetBits)
	}
	step := uint32(1) << (32 - nodeSubnetBits)
	count := uint32(1) << (nodeSubnetBits - cluster.Bits())
	base := cluster.Masked().Addr().As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := range count {
		a := start + i*step
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), nodeSubnetBits)
		if !used[p] {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("every /%d of cluster CIDR %s is taken: remove nodes that are gone (stead delete node NAME) or use a larger --cluster-cidr", nodeSubnetBits, cluster)
}

// heartbeat renews a node's lease on the leader. It writes nothing to Raft;
// the controller commits the node's Ready condition when it changes.
func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request, _ []byte) error {
	name := r.PathValue("name")
	node, ok := raftstore.GetOf[*corev1.Node](s.cfg.Store.View(), raftstore.Nodes, "", name)
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
	// A fenced node gets no lease: if it is in fact alive, its watchdog
	// stops its pods, which have been freed to run elsewhere.
	if hasTaint(node, scheduler.TaintOutOfService) {
		return apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, name,
			fmt.Errorf("the node is fenced (stead node fence); it may not renew its lease until 'stead node unfence %s'", name))
	}
	s.cfg.Leases.Renew(name)
	writeJSON(w, http.StatusOK, 0, api.Lease{TTLSeconds: s.cfg.Leases.TTL().Seconds(), HeartbeatSeconds: scheduler.DefaultHeartbeat.Seconds()})
	return nil
}

// nodeAction changes the server-owned spec of a node: cordon and uncordon
// (spec.unschedulable), fence and unfence (the out-of-service taint with
// which an operator asserts the node is dead, so its pods are freed at
// once, and which must be removed once the node is cleaned up).
func (s *Server) nodeAction(w http.ResponseWriter, r *http.Request, _ []byte) error {
	name, action := r.PathValue("name"), r.PathValue("action")
	change, ok := map[string]func(*corev1.Node){
		"cordon":   func(n *corev1.Node) { n.Spec.Unschedulable = true },
		"uncordon": func(n *corev1.Node) { n.Spec.Unschedulable = false },
		"fence": func(n *corev1.Node) {
			n.Spec.Unschedulable = true
			if !hasTaint(n, scheduler.TaintOutOfService) {
				n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: scheduler.TaintOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
			}
		},
		"unfence": func(n *corev1.Node) {
			var keep []corev1.Taint
			for _, t := range n.Spec.Taints {
				if t.Key != scheduler.TaintOutOfService {
					keep = append(keep, t)
				}
			}
			n.Spec.Taints = keep
		},
	}[action]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name+"/"+action)
	}
	var idx uint64
	attempt := 0
	err := retryConflicts(func() error {
		cur, ok := raftstore.GetOf[*corev1.Node](s.cfg.Store.View(), raftstore.Nodes, "", name)
		if !ok {
			return apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
		}
		node := cur.DeepCopy()
		change(node)
		op, err := scheduler.PutOp(raftstore.Nodes, node, scheduler.Version(cur))
		if err != nil {
			return err
		}
		idx, err = s.commit(r, []raftstore.Op{op}, attempt)
		attempt++
		return err
	})
	if err != nil {
		return err
	}
	writeStored(w, r, idx, func() any {
		stored, _ := s.cfg.Store.View().Get(raftstore.Nodes, "", name)
		return stored
	})
	return nil
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
