package scheduler

import (
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/stead-io/stead/raftstore"
)

// controllerMetrics are one controller's Prometheus metrics.
type controllerMetrics struct {
	sync       prometheus.Histogram
	placements prometheus.Counter
	freed      prometheus.Counter
}

func newControllerMetrics() *controllerMetrics {
	return &controllerMetrics{
		sync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stead_controller_sync_duration_seconds",
			Help:    "Time of one controller pass: reconcile every StatefulSet, node leases, failover and placement, commits included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		placements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stead_placements_total",
			Help: "Pods bound to a node by the placer.",
		}),
		freed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stead_failover_freed_pods_total",
			Help: "Pods freed from a lost or fenced node so that their ordinals start elsewhere.",
		}),
	}
}

// Collectors returns the controller's metrics and the state gauges it
// computes from the replicated state at scrape time: pods by phase and
// nodes by readiness, with the age of each node's lease on this leader.
func (c *Controller) Collectors() []prometheus.Collector {
	return []prometheus.Collector{c.metrics.sync, c.metrics.placements, c.metrics.freed, &stateCollector{c: c}}
}

var (
	podsDesc      = prometheus.NewDesc("stead_pods", "Pods by phase, as last reported by their nodes.", []string{"phase"}, nil)
	nodesDesc     = prometheus.NewDesc("stead_nodes", "Nodes by Ready condition.", []string{"ready"}, nil)
	leaseAgeDesc  = prometheus.NewDesc("stead_node_lease_age_seconds", "Time since this server last heard a node's heartbeat (meaningful on the leader).", []string{"node"}, nil)
	podPhaseNames = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}
)

// stateCollector computes gauges from the current view when scraped.
type stateCollector struct{ c *Controller }

func (s *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- nodesDesc
	ch <- leaseAgeDesc
}

func (s *stateCollector) Collect(ch chan<- prometheus.Metric) {
	v := s.c.store.View()
	phases := map[corev1.PodPhase]int{}
	for _, p := range raftstore.ListOf[*corev1.Pod](v, raftstore.Pods, "") {
		phase := p.Status.Phase
		if phase == "" {
			phase = corev1.PodPending
		}
		phases[phase]++
	}
	for _, ph := range podPhaseNames {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, float64(phases[ph]), string(ph))
	}
	ready := map[corev1.ConditionStatus]int{corev1.ConditionTrue: 0, corev1.ConditionFalse: 0, corev1.ConditionUnknown: 0}
	for _, n := range raftstore.ListOf[*corev1.Node](v, raftstore.Nodes, "") {
		st := corev1.ConditionUnknown
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				st = c.Status
			}
		}
		ready[st]++
		ch <- prometheus.MustNewConstMetric(leaseAgeDesc, prometheus.GaugeValue, s.c.leases.Age(n.Name).Seconds(), n.Name)
	}
	for st, n := range ready {
		ch <- prometheus.MustNewConstMetric(nodesDesc, prometheus.GaugeValue, float64(n), string(st))
	}
}
