package turn

import (
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"poosms.org/poosms/stanza"
)

// NSExtDisco is XEP-0215 external service discovery.
const NSExtDisco = "urn:xmpp:extdisco:2"

// ExternalServices answers an XEP-0215 <services/> query for user: one
// <service/> per relay URL at host, TURN ones with fresh credentials, so
// standard clients' one-to-one calls can use the relay.
func (s *Server) ExternalServices(host, user string) *stanza.Element {
	c := s.Credentials(user)
	out := stanza.New(NSExtDisco, "services")
	for _, u := range s.URLs(host) {
		scheme, rest, _ := strings.Cut(u, ":")
		hostport, query, _ := strings.Cut(rest, "?")
		h, port, err := net.SplitHostPort(hostport)
		if err != nil {
			continue
		}
		svc := stanza.New(NSExtDisco, "service").SetAttr("type", scheme).SetAttr("host", h).SetAttr("port", port)
		transport := "udp"
		if scheme == "turns" {
			transport = "tcp"
		}
		if q, err := url.ParseQuery(query); err == nil && q.Get("transport") != "" {
			transport = q.Get("transport")
		}
		svc.SetAttr("transport", transport)
		if scheme != "stun" {
			svc.SetAttr("username", c.Username).SetAttr("password", c.Password).
				SetAttr("expires", c.Expires.UTC().Format(time.RFC3339)).SetAttr("restricted", "1")
		}
		out.Append(svc)
	}
	return out
}

// Collectors exposes the relay's counters to Prometheus.
func (s *Server) Collectors() []prometheus.Collector {
	stat := func(f func(Stats) float64) func() float64 { return func() float64 { return f(s.Stats()) } }
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "poosms_turn_allocations", Help: "Live TURN allocations."},
			stat(func(st Stats) float64 { return float64(st.Allocations) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poosms_turn_auth_refused_total", Help: "TURN requests refused for bad or expired credentials."},
			stat(func(st Stats) float64 { return float64(st.AuthRefused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poosms_turn_peers_refused_total", Help: "TURN permissions refused by the peer-address policy."},
			stat(func(st Stats) float64 { return float64(st.PeersRefused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poosms_turn_self_dropped_total", Help: "Datagrams between a TURN relay and this host's own addresses, dropped."},
			stat(func(st Stats) float64 { return float64(st.SelfDropped) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poosms_turn_quota_refused_total", Help: "TURN allocations refused at the per-user quota."},
			stat(func(st Stats) float64 { return float64(st.QuotaRefused) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "poosms_turn_conns_refused_total", Help: "TURN TCP and TLS connections refused at the per-address cap."},
			stat(func(st Stats) float64 { return float64(st.ConnsRefused) })),
	}
}
