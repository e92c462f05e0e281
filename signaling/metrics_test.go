package signaling

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The labelled counters show every label value at zero before the first
// event, so dashboards and alerts (rate(poosms_stream_errors_total…)) see
// a series from the start.
func TestLabelledCountersStartAtZero(t *testing.T) {
	reg := prometheus.NewRegistry()
	newMetrics(reg, func() float64 { return 0 })
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"poosms_connections_total":         {"tcp", "tls", "websocket"},
		"poosms_connections_refused_total": {"streams_per_address", "negotiating_per_address"},
		"poosms_stanzas_in_total":          {"message", "presence", "iq"},
		"poosms_stream_errors_total":       {"not-authorized", "policy-violation", "connection-timeout", "system-shutdown"},
	}
	for _, f := range families {
		labels, ok := want[f.GetName()]
		if !ok {
			continue
		}
		seen := map[string]bool{}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s%v = %v before any event", f.GetName(), m.GetLabel(), v)
			}
			seen[m.GetLabel()[0].GetValue()] = true
		}
		for _, l := range labels {
			if !seen[l] {
				t.Errorf("%s has no series for %q", f.GetName(), l)
			}
		}
		delete(want, f.GetName())
	}
	for name := range want {
		t.Errorf("%s is missing from the registry before its first event", name)
	}
}
