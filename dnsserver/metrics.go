package dnsserver

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	repliesDesc   = prometheus.NewDesc("stead_dns_replies_total", "DNS replies by rcode, forwarded ones included.", []string{"rcode"}, nil)
	forwardedDesc = prometheus.NewDesc("stead_dns_forwarded_total", "Queries for names outside the cluster zone sent to the node's resolvers.", nil, nil)
	forwardFails  = prometheus.NewDesc("stead_dns_forward_failures_total", "Forwarded queries no upstream resolver answered.", nil, nil)
	truncatedDesc = prometheus.NewDesc("stead_dns_truncated_total", "UDP replies cut to the client's size, with TC set.", nil, nil)
	tcpConnsDesc  = prometheus.NewDesc("stead_dns_tcp_connections", "TCP connections open now.", nil, nil)
)

// Collectors returns the server's Prometheus metrics: replies by rcode and
// the time to answer a query, from the moment the handler has it until the
// reply is written.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.latency, countersCollector{&s.counters}}
}

func newLatency() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "stead_dns_request_duration_seconds",
		Help:    "Time to answer a DNS query, forwarding included.",
		Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18),
	})
}

// countersCollector exposes Counters, which the handler updates with plain
// atomic adds, as Prometheus counters.
type countersCollector struct{ c *Counters }

func (cc countersCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{repliesDesc, forwardedDesc, forwardFails, truncatedDesc, tcpConnsDesc} {
		ch <- d
	}
}

func (cc countersCollector) Collect(ch chan<- prometheus.Metric) {
	c := cc.c
	for rcode, n := range map[string]uint64{
		"NOERROR": c.NoError.Load(), "FORMERR": c.FormErr.Load(), "SERVFAIL": c.ServFail.Load(),
		"NXDOMAIN": c.NXDomain.Load(), "NOTIMP": c.NotImp.Load(), "REFUSED": c.Refused.Load(), "other": c.OtherRcode.Load(),
	} {
		ch <- prometheus.MustNewConstMetric(repliesDesc, prometheus.CounterValue, float64(n), rcode)
	}
	ch <- prometheus.MustNewConstMetric(forwardedDesc, prometheus.CounterValue, float64(c.Forwarded.Load()))
	ch <- prometheus.MustNewConstMetric(forwardFails, prometheus.CounterValue, float64(c.ForwardFailures.Load()))
	ch <- prometheus.MustNewConstMetric(truncatedDesc, prometheus.CounterValue, float64(c.Truncated.Load()))
	ch <- prometheus.MustNewConstMetric(tcpConnsDesc, prometheus.GaugeValue, float64(c.TCPConns.Load()))
}
