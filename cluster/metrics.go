package cluster

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sent        prometheus.Counter
	received    prometheus.Counter
	latency     prometheus.Histogram
	redisErrors prometheus.Counter
	healthy     prometheus.Gauge
	sessions    prometheus.Gauge
	leases      prometheus.Gauge
}

func newMetrics() *metrics {
	return &metrics{
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "routed_sent_total",
			Help: "Payloads this node queued for other nodes.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "routed_received_total",
			Help: "Payloads from other nodes this node's handler took.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "routing_latency_seconds",
			Help:    "Time from a sender queuing a payload to this node's handler taking it (sender clock to receiver clock).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		redisErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "redis_errors_total",
			Help: "Redis operations that failed (unreachable, timeout or error reply).",
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "redis_healthy",
			Help: "1 while Redis is reachable, 0 while the node runs degraded on its own.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "sessions",
			Help: "Sessions bound on this node.",
		}),
		leases: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "poosms", Subsystem: "cluster", Name: "leases",
			Help: "Room and conference placements this node holds and renews at each heartbeat.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.sent, m.received, m.latency, m.redisErrors, m.healthy, m.sessions, m.leases}
}
