package s2s

import (
	"strings"
	"testing"

	"poosms.org/poosms/stanza"
)

// A peer server's stanzas are read within the same shape limits as a
// client's: one past them ends the stream before its tree grows, and two
// attributes of one name (a second from behind the proved one) are not XML.
func TestIncomingStanzaShapeLimits(t *testing.T) {
	ca := newCA(t)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, func(c *Config) {
		c.StanzaLimits = stanza.Limits{MaxElements: 50, MaxDepth: 8, MaxAttributes: 40}
	})
	evilCert := leaf(t, ca, "evil.test")
	addr := b.Addrs()[0].String()
	head := "<message from='m@evil.test' to='bob@b.test'>"
	for _, tc := range []struct {
		name, stanza string
		cond         stanza.StreamCondition
	}{
		{"too many elements", head + strings.Repeat("<a/>", 50), "policy-violation"},
		{"too deep", head + strings.Repeat("<a>", 8), "policy-violation"},
		{"too many attributes", head + "<a" + manyAttributes(41) + "/>", "policy-violation"},
		{"a second from", "<message from='m@evil.test' from='admin@b.test' to='bob@b.test'/>", "not-well-formed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialRaw(t, addr, "evil.test", "b.test", &evilCert, true)
			p.external("evil.test", "b.test")
			p.send(tc.stanza)
			if got := p.streamError(); got != tc.cond {
				t.Fatalf("stream error %q, want %q", got, tc.cond)
			}
		})
	}
}

// manyAttributes is n distinct attributes.
func manyAttributes(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" a")
		b.WriteString(strings.Repeat("x", i))
		b.WriteString("=''")
	}
	return b.String()
}
