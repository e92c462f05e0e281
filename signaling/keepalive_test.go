package signaling

import (
	"strings"
	"testing"
	"time"
)

// Whitespace keeps a stream alive past the idle timeout; silence ends it.
func TestWhitespaceKeepaliveAndIdleTimeout(t *testing.T) {
	// The timeout also covers the logins below, so it leaves room for a
	// busy machine (SCRAM's PBKDF2 under -race).
	const idle = 1500 * time.Millisecond
	h := newHarness(t, func(c *Config) { c.IdleTimeout = idle })
	bob := h.dial(t, "bob", "", nil)
	alice := h.dial(t, "alice", "", nil)

	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	for end := time.Now().Add(3 * idle); time.Now().Before(end); <-tick.C {
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
