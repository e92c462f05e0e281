package s2s

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetricsOfAFederation: streams by direction and peer, stanzas both
// ways, authentications and bounces are counted as they happen.
func TestMetricsOfAFederation(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.Deny = []string{"evil.test"} })
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	a.route(b)
	b.route(a)
	if err := a.Send(context.Background(), message("alice@a.test/phone", "bob@b.test", "counted")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 10*time.Second, hasBody("counted"))
	waitFor(t, 5*time.Second, "the stanza counted on both sides", func() bool {
		return testutil.ToFloat64(a.m.stanzas.WithLabelValues("out")) == 1 && testutil.ToFloat64(b.m.stanzas.WithLabelValues("in")) == 1
	})
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"a's outgoing streams to b", testutil.ToFloat64(a.m.streams.WithLabelValues("out", "b.test")), 1},
		{"b's incoming streams from a", testutil.ToFloat64(b.m.streams.WithLabelValues("in", "a.test")), 1},
		{"a's dialback as the originating server", testutil.ToFloat64(a.m.auths.WithLabelValues("out", MethodDialback, "ok")), 1},
		{"b's dialback as the receiving server", testutil.ToFloat64(b.m.auths.WithLabelValues("in", MethodDialback, "ok")), 1},
		{"b's refused authentications", testutil.ToFloat64(b.m.auths.WithLabelValues("in", MethodDialback, "refused")), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	// A stanza for a domain never federated with bounces, and is counted.
	if err := a.Send(context.Background(), message("alice@a.test/phone", "x@evil.test", "no")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(a.m.bounces.WithLabelValues("remote-server-not-found")); got != 1 {
		t.Errorf("bounces: %v, want 1", got)
	}
	// Every labelled series of a known label set exists from the start.
	if n := testutil.CollectAndCount(b.m.auths); n != 8 {
		t.Errorf("authentication series: %d, want 8", n)
	}
	if n := testutil.CollectAndCount(b.m.bounces); n != len(bounceConditions) {
		t.Errorf("bounce series: %d, want %d", n, len(bounceConditions))
	}
}

// TestPeerLabelsAreBounded: a peer opening streams from ever new domains
// cannot make the metrics grow without bound: past maxPeerLabels
// domains, streams count as peer="other", and a domain's series goes
// with its last stream. Domains of routes and the allow list keep their
// label.
func TestPeerLabelsAreBounded(t *testing.T) {
	m := newMetrics([]string{"friend.test"})
	var labels []string
	for i := range maxPeerLabels + 100 {
		labels = append(labels, m.streamUp(dirIn, fmt.Sprintf("d%d.evil.test", i)))
	}
	if l := m.streamUp(dirIn, "friend.test"); l != "friend.test" {
		t.Errorf("a pinned domain was counted as %q", l)
	}
	// in and out of "other", friend.test both ways, the 50 labelled.
	if n := testutil.CollectAndCount(m.streams); n != 4+maxPeerLabels {
		t.Errorf("%d stream series, want %d", n, 4+maxPeerLabels)
	}
	if got := testutil.ToFloat64(m.streams.WithLabelValues(dirIn, otherPeers)); got != 100 {
		t.Errorf("other: %v, want 100", got)
	}
	for _, l := range labels {
		m.streamDown(dirIn, l)
	}
	if n := testutil.CollectAndCount(m.streams); n != 4 {
		t.Errorf("%d stream series once the streams ended, want 4", n)
	}
	// With room again, a new domain gets its own label.
	if l := m.streamUp(dirOut, "new.test"); l != "new.test" {
		t.Errorf("a new domain after the flood was counted as %q", l)
	}
}
