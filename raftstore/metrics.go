package raftstore

import (
	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are one store's Prometheus metrics. They belong to the
// store, not to a global registry, so that several stores in one process
// (tests, benchmarks) do not collide.
type storeMetrics struct {
	apply         prometheus.Histogram
	entryWrites   prometheus.Histogram
	leaderChanges prometheus.Counter
}

func newStoreMetrics() *storeMetrics {
	return &storeMetrics{
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stead_raft_apply_duration_seconds",
			Help:    "Time from submitting a transaction on the leader until it is committed and applied.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		entryWrites: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "stead_raft_entry_writes",
			Help:    "Writes the leader committed per Raft log entry: more than one when writes arrive together.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128},
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "stead_raft_leadership_changes_total",
			Help: "Times this server gained or lost leadership.",
		}),
	}
}

// Collectors returns the store's metrics for a Prometheus registry: apply
// latency, writes per entry, leadership changes, whether this server
// leads, and the applied index.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		s.metrics.apply,
		s.metrics.entryWrites,
		s.metrics.leaderChanges,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stead_raft_leader",
			Help: "1 while this server is the Raft leader, else 0.",
		}, func() float64 {
			if s.IsLeader() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "stead_raft_applied_index",
			Help: "Index of the last command applied to this server's state.",
		}, func() float64 { return float64(s.View().Index()) }),
	}
}
