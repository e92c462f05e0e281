package signaling

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	sessions     prometheus.GaugeFunc
	connections  *prometheus.CounterVec
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
	if reg != nil {
		reg.MustRegister(m.sessions, m.connections, m.stanzasIn, m.stanzasOut, m.streamErrors, m.authFailures, m.slowClients)
	}
	return m
}
