package s2s

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions of a stream, the values of the direction label.
const (
	dirIn  = "in"
	dirOut = "out"
)

// otherPeers is the peer label of the streams of domains that have no
// label of their own.
const otherPeers = "other"

// maxPeerLabels bounds the remote domains that have a peer label of their
// own at once (besides those named in routes and the allow list): anyone
// who controls DNS can make up domains and open streams from each, and
// every label value is a series kept in memory here and in Prometheus.
const maxPeerLabels = 50

// metrics are federation's Prometheus series.
type metrics struct {
	streams  *prometheus.GaugeVec   // authenticated streams, by direction and peer
	stanzas  *prometheus.CounterVec // stanzas carried, by direction
	in, out  prometheus.Counter     // stanzas' two series
	bounces  *prometheus.CounterVec // stanzas sent back to their senders, by condition
	auths    *prometheus.CounterVec // authentications, by direction, method and result
	pinned   map[string]bool        // domains always labelled (routes, allow list)
	mu       sync.Mutex
	labelled map[string]int // peer label → its streams, both directions
}

// bounceConditions are the conditions stanzas bounce with.
var bounceConditions = []string{"remote-server-not-found", "remote-server-timeout", "resource-constraint"}

// Results of an authentication, the values of the result label.
const (
	authOK      = "ok"
	authRefused = "refused"
)

func newMetrics(pinned []string) *metrics {
	m := &metrics{
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "poosms_s2s_streams",
			Help: "Authenticated server-to-server streams, by direction and remote domain (at most 50 domains have a label of their own at once, besides those of routes and the allow list; the others count as peer=\"other\").",
		}, []string{"direction", "peer"}),
		stanzas: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_s2s_stanzas_total", Help: "Stanzas received from and written to other servers.",
		}, []string{"direction"}),
		bounces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_s2s_bounces_total", Help: "Stanzas for other servers that could not be sent, by the error their senders got.",
		}, []string{"condition"}),
		auths: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_s2s_authentications_total", Help: "Server-to-server authentications, by direction, method (sasl-external, dialback) and result (ok, refused).",
		}, []string{"direction", "method", "result"}),
		pinned:   map[string]bool{},
		labelled: map[string]int{},
	}
	for _, d := range pinned {
		m.pinned[d] = true
	}
	for _, dir := range []string{dirIn, dirOut} {
		m.stanzas.WithLabelValues(dir)
		m.streams.WithLabelValues(dir, otherPeers)
		for d := range m.pinned {
			m.streams.WithLabelValues(dir, d)
		}
		for _, method := range []string{MethodSASLExternal, MethodDialback} {
			for _, res := range []string{authOK, authRefused} {
				m.auths.WithLabelValues(dir, method, res)
			}
		}
	}
	for _, c := range bounceConditions {
		m.bounces.WithLabelValues(c)
	}
	m.in, m.out = m.stanzas.WithLabelValues(dirIn), m.stanzas.WithLabelValues(dirOut)
	return m
}

// streamUp counts a new authenticated stream with domain and returns the
// peer label it is counted under, for streamDown.
func (m *metrics) streamUp(dir, domain string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	label := otherPeers
	if m.pinned[domain] || m.labelled[domain] > 0 || len(m.labelled) < maxPeerLabels {
		label = domain
		m.labelled[domain]++
	}
	m.streams.WithLabelValues(dir, label).Inc()
	return label
}

// streamDown counts the end of a stream counted under label. A domain's
// label goes (its series removed) with its last stream, unless pinned.
func (m *metrics) streamDown(dir, label string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams.WithLabelValues(dir, label).Dec()
	if label == otherPeers {
		return
	}
	if m.labelled[label]--; m.labelled[label] > 0 {
		return
	}
	delete(m.labelled, label)
	if !m.pinned[label] {
		m.streams.DeleteLabelValues(dirIn, label)
		m.streams.DeleteLabelValues(dirOut, label)
	}
}

func (m *metrics) auth(dir, method, result string) {
	m.auths.WithLabelValues(dir, method, result).Inc()
}

// Collectors returns federation's metrics for the caller to register:
// poosms_s2s_streams, poosms_s2s_stanzas_total, poosms_s2s_bounces_total
// and poosms_s2s_authentications_total.
func (s *Server) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.m.streams, s.m.stanzas, s.m.bounces, s.m.auths}
}
