package signaling

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

func enableSM(t *testing.T, c *xmppclient.Client) string {
	t.Helper()
	if err := c.SendRaw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); err != nil {
		t.Fatal(err)
	}
	el, err := c.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Space == nsSM })
	if err != nil || el.Local != "enabled" || el.Attr("id") == "" {
		t.Fatalf("enable: %v %v", el, err)
	}
	return el.Attr("id")
}

// bodies reads messages until n bodies arrived, answering the server's
// ack requests with h=ackAs when ackAs >= 0 (never when -1).
func bodies(t *testing.T, c *xmppclient.Client, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		el, err := c.RecvTimeout(5 * time.Second)
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if el.Local == "message" {
			got = append(got, el.ChildText("", "body"))
		}
	}
	return got
}

func TestStreamResumption(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	id := enableSM(t, alice)

	for i := 1; i <= 3; i++ {
		if err := bob.Send(msg("alice@localhost/phone", "m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := bodies(t, alice, 3); got[0] != "m1" || got[2] != "m3" {
		t.Fatalf("got %v", got)
	}
	// alice acknowledges only the first, then her connection dies.
	alice.SendRaw("<a xmlns='urn:xmpp:sm:3' h='1'/>")
	ping(t, bob) // a round trip through the server
	alice.Conn().Close()
	waitFor(t, func() bool { return h.srv.detachedCount() == 1 })

	bob.Send(msg("alice@localhost/phone", "m4 while away"))
	ping(t, bob)

	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Username: "alice", Password: "alice-secret", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Authenticate(); err != nil {
		t.Fatal(err)
	}
	if c.Features.Child(nsSM, "sm") == nil {
		t.Fatalf("no stream management in %s", c.Features)
	}
	c.SendRaw("<resume xmlns='urn:xmpp:sm:3' previd='" + id + "' h='1'/>")
	el, err := c.Recv()
	if err != nil || el.Local != "resumed" || el.Attr("previd") != id {
		t.Fatalf("resume: %v %v", el, err)
	}
	got := bodies(t, c, 3)
	if got[0] != "m2" || got[1] != "m3" || got[2] != "m4 while away" {
		t.Fatalf("after resumption got %v, want m2 m3 and m4, each once", got)
	}
	// The resumed session is the same JID and still routable.
	c.JID = alice.JID
	exchange(t, bob, c, "after resume")
	select {
	case el := <-h.echo.undelivered:
		t.Fatalf("a resumed session bounced %s", el)
	default:
	}
}

// A message the client never acknowledged goes back to the router when
// its session ends, stamped with the time it was queued: wherever it goes
// next (another resource, the offline queue), it shows as late.
func TestUnresumedSessionHandsBackMessages(t *testing.T) {
	queuedAt := time.Date(2026, 12, 7, 9, 30, 5, 0, time.UTC)
	var clock atomic.Int64
	clock.Store(queuedAt.UnixNano())
	h := newHarness(t, func(c *Config) {
		c.ResumeTimeout = 200 * time.Millisecond
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	enableSM(t, alice)
	bob.Send(msg("alice@localhost/phone", "never acknowledged"))
	if got := bodies(t, alice, 1); got[0] != "never acknowledged" {
		t.Fatal(got)
	}
	clock.Store(queuedAt.Add(time.Hour).UnixNano()) // the session ends later
	alice.Conn().Close()
	select {
	case el := <-h.echo.undelivered:
		if el.ChildText("", "body") != "never acknowledged" {
			t.Fatalf("undelivered %s", el)
		}
		var stamps []string
		for _, d := range el.Elements() {
			if d.Space == stanza.NSDelay && d.Local == "delay" {
				stamps = append(stamps, d.Attr("from")+" "+d.Attr("stamp"))
			}
		}
		if want := "localhost 2026-12-07T09:30:05Z"; len(stamps) != 1 || stamps[0] != want {
			t.Errorf("handed back with delay stamps %q, want one: %q", stamps, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the unacknowledged message was not handed back after the resume timeout")
	}
	waitFor(t, func() bool { return h.srv.Sessions() == 1 })
}

// A client cannot stamp a message as the server: such a stamp would pass
// for the one the server puts on a message it kept. Other stamps stay.
func TestClientCannotStampAsTheServer(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	if err := alice.SendRaw("<message to='bob@localhost/desk'><body>old news</body>" +
		"<delay xmlns='urn:xmpp:delay' from='localhost' stamp='2001-01-01T00:00:00Z'/>" +
		"<delay xmlns='urn:xmpp:delay' from='alice@localhost/phone' stamp='2002-02-02T00:00:00Z'/></message>"); err != nil {
		t.Fatal(err)
	}
	el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
	if err != nil {
		t.Fatal(err)
	}
	var stamps []string
	for _, d := range el.Elements() {
		if d.Local == "delay" {
			stamps = append(stamps, d.Attr("from"))
		}
	}
	if el.ChildText("", "body") != "old news" || len(stamps) != 1 || stamps[0] != "alice@localhost/phone" {
		t.Errorf("bob got %s, want the message with alice's stamp only", el)
	}
}

func TestAckRequestsAndAnswers(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	enableSM(t, alice)
	bob.Send(msg("alice@localhost/phone", "one"))
	r, err := alice.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Space == nsSM })
	if err != nil || r.Local != "r" {
		t.Fatalf("want the server to request an ack, got %v %v", r, err)
	}
	alice.Send(msg("bob@localhost/desk", "x"))
	alice.Send(msg("bob@localhost/desk", "y"))
	alice.SendRaw("<r xmlns='urn:xmpp:sm:3'/>")
	a, err := alice.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Space == nsSM && e.Local == "a" })
	if err != nil || a.Attr("h") != "2" {
		t.Fatalf("ack: %v %v, want h=2", a, err)
	}
	// Acknowledging more than was sent is a stream error.
	alice.SendRaw("<a xmlns='urn:xmpp:sm:3' h='7'/>")
	if _, err := alice.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "error" && e.Child("", "undefined-condition") != nil }); err != nil {
		t.Fatalf("h too high: %v", err)
	}
}

func TestClientStateIndication(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	alice.SendRaw("<inactive xmlns='urn:xmpp:csi:0'/>")
	ping(t, alice)
	bob.Send(stanza.New(stanza.NSClient, "presence").SetAttr("to", "alice@localhost/phone").Append(stanza.New(stanza.NSClient, "status").SetText("away")))
	bob.Send(msg("alice@localhost/phone", "important"))
	// The held presence comes out just before the message, not before.
	first, err := alice.RecvTimeout(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	second, err := alice.RecvTimeout(5 * time.Second)
	if err != nil || first.Local != "presence" || second.Local != "message" {
		t.Fatalf("got %v then %v (%v)", first, second, err)
	}
}

func ping(t *testing.T, c *xmppclient.Client) {
	t.Helper()
	id := "ping" + strconv.FormatInt(time.Now().UnixNano(), 36)
	c.Send(stanza.NewIQ(stanza.GetIQ).SetAttr("id", id).SetAttr("to", "localhost").Append(stanza.New("urn:xmpp:ping", "ping")))
	if _, err := c.Expect(5*time.Second, func(e *stanza.Element) bool { return e.ID() == id }); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
