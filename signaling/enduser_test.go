package signaling

import (
	"context"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
)

// TestEndUserEndsEverySession: when alice's account is deleted, EndUser
// ends each of her sessions — bound, waiting to be resumed, and logged in
// but not yet bound — and what they never delivered is dropped rather
// than handed back for her other resources or her offline queue. Bob's
// session is untouched, and a login that starts afterwards (a new account
// with the name) works.
func TestEndUserEndsEverySession(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	phone := h.dial(t, "alice", "phone", nil)
	laptop := h.dial(t, "alice", "laptop", nil)

	// A resumable session whose connection died holding a message it
	// never acknowledged.
	tablet := h.dial(t, "alice", "tablet", nil)
	id := enableSM(t, tablet)
	bob.Send(msg("alice@localhost/tablet", "never acknowledged"))
	if got := bodies(t, tablet, 1); got[0] != "never acknowledged" {
		t.Fatal(got)
	}
	tablet.Conn().Close()
	waitFor(t, func() bool { return h.srv.detachedCount() == 1 })

	// A login that has authenticated and not bound yet.
	pending, err := xmppclient.Connect(context.Background(), xmppclient.Options{
		Addr: h.addr, Domain: "localhost", Username: "alice", Password: "alice-secret", Resource: "late", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pending.Close()
	if err := pending.Authenticate(); err != nil {
		t.Fatal(err)
	}

	h.srv.EndUser("alice")

	for _, c := range []*xmppclient.Client{phone, laptop} {
		if out := readUntilClosed(t, c.Conn()); !strings.Contains(out, "not-authorized") {
			t.Errorf("%s's stream ended with %q, want a not-authorized stream error", c.JID, out)
		}
	}
	if err := pending.Bind(); err == nil {
		t.Error("a login that began before the account was deleted bound a resource")
	}
	waitFor(t, func() bool { return h.srv.detachedCount() == 0 && h.srv.Sessions() == 1 })

	// The dead session cannot be resumed.
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{
		Addr: h.addr, Domain: "localhost", Username: "alice", Password: "alice-secret", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(); err != nil {
		t.Fatal(err)
	}
	c.SendRaw("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='0'/>")
	if el, err := c.Recv(); err != nil || el.Local != "failed" {
		t.Errorf("resuming a session of the deleted account: %v %v, want <failed/>", el, err)
	}

	select {
	case el := <-h.echo.undelivered:
		t.Errorf("a message for the deleted account was handed back for rerouting: %s", el)
	default:
	}
	ping(t, bob)

	// A login after the deletion (the name registered again) binds.
	again := h.dial(t, "alice", "phone", nil)
	exchange(t, bob, again, "hello again")
}
