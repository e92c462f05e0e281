package config

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// connValues adds a value for every time and connection limit to values
// (by setting name) and the field it gives to want.
func connValues(want *Config, values map[string]string) {
	want.MaxStreamsPerAddress, values["max-streams-per-address"] = 7, "7"
	want.MaxNegotiatingPerAddress, values["max-negotiating-per-address"] = 0, "0"
	want.HTTPMaxConnsPerAddress, values["http-max-conns-per-address"] = 12, "12"
	want.TURNMaxConnsPerAddress, values["turn-max-conns-per-address"] = 3, "3"
	want.ConnLimitExempt, values["conn-limit-exempt"] = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, "10.1.0.0/16"
	want.HTTPReadHeaderTimeout, values["http-read-header-timeout"] = 5*time.Second, "5s"
	want.HTTPReadTimeout, values["http-read-timeout"] = 20*time.Second, "20s"
	want.HTTPWriteTimeout, values["http-write-timeout"] = 40*time.Second, "40s"
	want.HTTPIdleTimeout, values["http-idle-timeout"] = 2*time.Minute, "2m"
	want.TURNAuthTimeout, values["turn-auth-timeout"] = 3*time.Second, "3s"
}

func TestConnLimitsChecked(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		setting string
	}{
		{[]string{"--max-streams-per-address", "-1"}, "--max-streams-per-address"},
		{[]string{"--http-read-timeout", "10ms"}, "--http-read-timeout"},
		{[]string{"--turn-auth-timeout", "soon"}, "--turn-auth-timeout"},
		{[]string{"--conn-limit-exempt", "localhost"}, "--conn-limit-exempt"},
	} {
		_, _, err := Load(tc.args, nil)
		var ce *Error
		if !errors.As(err, &ce) || ce.Setting != tc.setting {
			t.Errorf("Load(%q) = %v, want an error naming %s", tc.args, err, tc.setting)
		}
	}
	c, _, err := Load([]string{"--conn-limit-exempt", ""}, nil)
	if err != nil || len(c.ConnLimitExempt) != 0 {
		t.Errorf("an empty exemption list: %v, %v; want none", c.ConnLimitExempt, err)
	}
}
