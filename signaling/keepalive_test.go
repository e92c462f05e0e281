package signaling

import (
	"strings"
	"testing"
	"time"
)

// Whitespace keeps a stream alive past the idle timeout; silence ends it.
func TestWhitespaceKeepaliveAndIdleTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = 400 * time.Millisecond })
	bob := h.dial(t, "bob", "", nil)
	alice := h.dial(t, "alice", "", nil)

	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(1200 * time.Millisecond); time.Now().Before(end); <-tick.C {
		if err := alice.SendRaw(" "); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
		if err := bob.SendRaw("\n"); err != nil {
			t.Fatalf("keepalive: %v", err)
		}
	}
	exchange(t, alice, bob, "still connected after three idle timeouts of whitespace")

	// Now alice falls silent: the server closes her stream.
	out := readUntilClosed(t, alice.Conn())
	if !strings.Contains(out, "connection-timeout") {
		t.Fatalf("silent stream: server wrote %q, want connection-timeout", out)
	}
}
