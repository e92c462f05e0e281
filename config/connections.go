package config

import (
	"net/netip"
	"time"
)

// connSettings bound time and connections: how long an HTTP request or
// an unauthenticated TURN connection may take, and how many connections
// one address may hold (docs/configuration.md, "Time and connections").
var connSettings = []*setting{
	intSetting("max-streams-per-address", "XMPP client streams (TCP, TLS and WebSocket together) one address may have open; 0: no limit", 0, 1<<20,
		"want a whole number of streams, 0 for no limit",
		func(c *Config) *int { return &c.MaxStreamsPerAddress }),
	intSetting("max-negotiating-per-address", "XMPP client streams one address may have open that have not authenticated yet; 0: no limit", 0, 1<<20,
		"want a whole number of streams, 0 for no limit",
		func(c *Config) *int { return &c.MaxNegotiatingPerAddress }),
	intSetting("http-max-conns-per-address", "HTTP connections one address may have open (behind a trusted proxy: requests under way per client); 0: no limit", 0, 1<<20,
		"want a whole number of connections, 0 for no limit",
		func(c *Config) *int { return &c.HTTPMaxConnsPerAddress }),
	intSetting("turn-max-conns-per-address", "TURN TCP and TLS connections one address may have open; 0: no limit", 0, 1<<20,
		"want a whole number of connections, 0 for no limit",
		func(c *Config) *int { return &c.TURNMaxConnsPerAddress }),
	cidrSetting("conn-limit-exempt", "comma-separated CIDRs the per-address connection limits do not count (the host itself, a local proxy)",
		func(c *Config) *[]netip.Prefix { return &c.ConnLimitExempt }),
	durSetting("http-read-header-timeout", "time an HTTP client has to send a request's headers", time.Second,
		func(c *Config) *time.Duration { return &c.HTTPReadHeaderTimeout }),
	durSetting("http-read-timeout", "time an HTTP client has to send a whole request; uploads must send 32 KiB within each such time instead", time.Second,
		func(c *Config) *time.Duration { return &c.HTTPReadTimeout }),
	durSetting("http-write-timeout", "time to write a whole HTTP response; downloads must take 32 KiB within each such time instead", time.Second,
		func(c *Config) *time.Duration { return &c.HTTPWriteTimeout }),
	durSetting("http-idle-timeout", "close an HTTP keep-alive connection idle this long", time.Second,
		func(c *Config) *time.Duration { return &c.HTTPIdleTimeout }),
	durSetting("turn-auth-timeout", "time a TURN TCP or TLS connection has to hold an allocation before it is closed", time.Second,
		func(c *Config) *time.Duration { return &c.TURNAuthTimeout }),
}

func init() { settings = append(settings, connSettings...) }

// defaultConnLimits fills the time and connection limits of c with their
// defaults.
func defaultConnLimits(c *Config) {
	c.MaxStreamsPerAddress = 64
	c.MaxNegotiatingPerAddress = 16
	c.HTTPMaxConnsPerAddress = 128
	c.TURNMaxConnsPerAddress = 32
	c.ConnLimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	c.HTTPReadHeaderTimeout = 10 * time.Second
	c.HTTPReadTimeout = 30 * time.Second
	c.HTTPWriteTimeout = 30 * time.Second
	c.HTTPIdleTimeout = 60 * time.Second
	c.TURNAuthTimeout = 10 * time.Second
}
