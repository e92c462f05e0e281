package signaling

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// dialFrom opens a TCP connection to addr from the loopback address src
// (127.0.0.0/8 all reach 127.0.0.1 on Linux): another client address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// opens reports whether the server answers a stream header on c with its
// features: the connection was admitted. A refused connection has read a
// stream error instead; its text is returned.
func opens(t *testing.T, c net.Conn) (bool, string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
	var got strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(got.String(), "features>") {
		n, err := c.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			return false, got.String()
		}
	}
	return true, got.String()
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamsPerAddress: one address may hold only so many streams, and
// only so many still logging in; past either the next one is refused with
// a stream error, while another address still gets in, and a stream that
// ends gives its place back.
func TestStreamsPerAddress(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.MaxStreamsPerAddress = 4
		c.MaxNegotiatingPerAddress = 2
		c.LimitExempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	})
	// Two connections that never log in fill the address's negotiating
	// places; a third is refused at once.
	idle1 := dialFrom(t, "127.0.0.1", h.addr)
	idle2 := dialFrom(t, "127.0.0.1", h.addr)
	waitUntil(t, "two negotiating streams counted", func() bool { return h.srv.negotiating.Held(loopback) == 2 })
	ok, text := opens(t, dialFrom(t, "127.0.0.1", h.addr))
	if ok || !strings.Contains(text, "policy-violation") || !strings.Contains(text, "still logging in") {
		t.Fatalf("third unauthenticated stream: admitted=%v, server wrote %q; want a policy-violation naming the limit", ok, text)
	}
	// Another address is not affected.
	if ok, text := opens(t, dialFrom(t, "127.0.0.2", h.addr)); !ok {
		t.Fatalf("another address was refused: %q", text)
	}
	// A stream that ends, and one that logs in, give their negotiating
	// place back.
	idle1.Close()
	waitUntil(t, "a closed stream's place returned", func() bool { return h.srv.negotiating.Held(loopback) == 1 })
	alice := h.dial(t, "alice", "desk", nil)
	bob := h.dial(t, "bob", "desk", nil)
	if n := h.srv.negotiating.Held(loopback); n != 1 {
		t.Fatalf("after two logins %d streams count as negotiating, want 1 (the idle one)", n)
	}
	exchange(t, alice, bob, "still talking")

	// Now 3 streams: alice, bob, idle2. One more fits, the fifth does not.
	extra := dialFrom(t, "127.0.0.1", h.addr)
	waitUntil(t, "four streams counted", func() bool { return h.srv.streams.Held(loopback) == 4 })
	ok, text = opens(t, dialFrom(t, "127.0.0.1", h.addr))
	if ok || !strings.Contains(text, "policy-violation") || !strings.Contains(text, "too many streams") {
		t.Fatalf("fifth stream: admitted=%v, server wrote %q; want policy-violation", ok, text)
	}
	if ok, text := opens(t, extra); !ok {
		t.Fatalf("the fourth stream was not served: %q", text)
	}
	_ = idle2
	if got := testutil.ToFloat64(h.srv.metrics.refused.WithLabelValues("tcp", "negotiating_per_address")); got != 1 {
		t.Errorf("refused{negotiating_per_address} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.srv.metrics.refused.WithLabelValues("tcp", "streams_per_address")); got != 1 {
		t.Errorf("refused{streams_per_address} = %v, want 1", got)
	}
	// An exempt address is not counted.
	for range 6 {
		dialFrom(t, "127.0.0.9", h.addr)
	}
	if ok, text := opens(t, dialFrom(t, "127.0.0.9", h.addr)); !ok {
		t.Fatalf("an exempt address was refused: %q", text)
	}
}

// dialWS opens a WebSocket stream with header and leaves it open; it
// returns the HTTP status when the upgrade is refused.
func dialWS(t *testing.T, h *harness, header http.Header) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.ws.URL, "http"),
		&websocket.DialOptions{Subprotocols: []string{"xmpp"}, HTTPHeader: header})
	if err != nil {
		if resp != nil {
			return resp.StatusCode, err
		}
		return 0, err
	}
	t.Cleanup(func() { ws.CloseNow() })
	return http.StatusSwitchingProtocols, nil
}

// TestWebSocketStreamsPerAddress: behind a trusted proxy the client the
// proxy names is what counts; from any other peer the peer counts, whatever
// it writes in X-Forwarded-For.
func TestWebSocketStreamsPerAddress(t *testing.T) {
	t.Run("trusted proxy", func(t *testing.T) {
		h := newHarness(t, func(c *Config) {
			c.MaxStreamsPerAddress = 2
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})
		for i := range 2 {
			if code, err := dialWS(t, h, forwardedFor("198.51.100.1")); err != nil {
				t.Fatalf("stream %d of a client behind the proxy: %d %v", i+1, code, err)
			}
		}
		if code, _ := dialWS(t, h, forwardedFor("198.51.100.1")); code != http.StatusTooManyRequests {
			t.Fatalf("third stream of one client behind the proxy: %d, want 429", code)
		}
		if code, err := dialWS(t, h, forwardedFor("198.51.100.2")); err != nil {
			t.Fatalf("another client behind the same proxy: %d %v", code, err)
		}
		if got := testutil.ToFloat64(h.srv.metrics.refused.WithLabelValues("websocket", "streams_per_address")); got != 1 {
			t.Errorf("refused{websocket, streams_per_address} = %v, want 1", got)
		}
	})
	t.Run("untrusted peer", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.MaxStreamsPerAddress = 2 })
		for i, a := range []string{"198.51.100.1", "198.51.100.2"} {
			if code, err := dialWS(t, h, forwardedFor(a)); err != nil {
				t.Fatalf("stream %d: %d %v", i+1, code, err)
			}
		}
		if code, _ := dialWS(t, h, forwardedFor("198.51.100.3")); code != http.StatusTooManyRequests {
			t.Fatalf("a third stream claiming another address: %d, want 429 (the peer counts)", code)
		}
	})
}
