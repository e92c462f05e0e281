package signaling

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sessions     prometheus.GaugeFunc
	connections  *prometheus.CounterVec
	refused      *prometheus.CounterVec
	stanzasIn    *prometheus.CounterVec
	stanzasOut   prometheus.Counter
	streamErrors *prometheus.CounterVec
	authFailures prometheus.Counter
	slowClients  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, sessions func() float64) *metrics {
	m := &metrics{
		sessions: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "poosms_sessions", Help: "Bound client sessions on this node.",
		}, sessions),
		connections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_connections_total", Help: "Client connections accepted, by transport.",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_connections_refused_total", Help: "Client streams refused at a per-address limit, by transport and limit.",
		}, []string{"transport", "reason"}),
		stanzasIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_stanzas_in_total", Help: "Stanzas received from clients, by kind.",
		}, []string{"kind"}),
		stanzasOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poosms_stanzas_out_total", Help: "Stanzas queued to clients.",
		}),
		streamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "poosms_stream_errors_total", Help: "Streams ended with a stream error, by condition.",
		}, []string{"condition"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poosms_auth_failures_total", Help: "Failed SASL authentications.",
		}),
		slowClients: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "poosms_slow_clients_total", Help: "Sessions closed because their write queue filled.",
		}),
	}
	// Every series a dashboard or alert may name exists from the start,
	// at zero, not only after its first event.
	for _, t := range transports {
		m.connections.WithLabelValues(t)
		for r := range refusals {
			m.refused.WithLabelValues(t, r)
		}
	}
	for _, k := range []string{"message", "presence", "iq"} {
		m.stanzasIn.WithLabelValues(k)
	}
	for _, c := range streamErrorConditions {
		m.streamErrors.WithLabelValues(c)
	}
	if reg != nil {
		reg.MustRegister(m.sessions, m.connections, m.refused, m.stanzasIn, m.stanzasOut, m.streamErrors, m.authFailures, m.slowClients)
	}
	return m
}

// transports are the values of poosms_connections_total's label.
var transports = []string{"tcp", "tls", "websocket"}

// streamErrorConditions are the stream error conditions of RFC 6120
// §4.9.3, the values of poosms_stream_errors_total's label.
var streamErrorConditions = []string{
	"bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
	"host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
	"invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed",
	"policy-violation", "remote-connection-failed", "reset", "resource-constraint",
	"restricted-xml", "see-other-host", "system-shutdown", "undefined-condition",
	"unsupported-encoding", "unsupported-feature", "unsupported-stanza-type",
	"unsupported-version",
}
