package signaling

import (
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// TestLargePresenceRefused: a presence over MaxPresenceBytes is answered
// with policy-violation and goes nowhere; a small one still goes through.
func TestLargePresenceRefused(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxPresenceBytes = 4096 })
	alice := h.dial(t, "alice", "desk", nil)
	bob := h.dial(t, "bob", "desk", nil)
	presence := func(status string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("to", bob.JID.String()).SetAttr("id", "p"+status[:1]).
			Append(stanza.New(stanza.NSClient, "status").SetText(status))
	}
	if err := alice.Send(presence(strings.Repeat("x", 8000))); err != nil {
		t.Fatal(err)
	}
	el, err := alice.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "presence" })
	if err != nil {
		t.Fatal(err)
	}
	if !el.IsError() || el.Child("", "error").Child("", "policy-violation") == nil {
		t.Fatalf("alice got %s, want a policy-violation presence error", el)
	}
	if err := alice.Send(presence("small")); err != nil {
		t.Fatal(err)
	}
	got, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "presence" })
	if err != nil {
		t.Fatal(err)
	}
	if s := got.ChildText("", "status"); s != "small" {
		t.Fatalf("bob got a presence with status of %d bytes first, want the small one", len(s))
	}
}
