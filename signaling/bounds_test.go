package signaling

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// bigBody is a message body of 16 KiB.
var bigBody = strings.Repeat("z", 16<<10)

// sendAndPing sends el from c and waits for a ping's answer, so the server
// has handled el when it returns.
func sendAndPing(t *testing.T, c *xmppclient.Client, el *stanza.Element) {
	t.Helper()
	if err := c.Send(el); err != nil {
		t.Fatal(err)
	}
	ping(t, c)
}

// isClosed reports whether the session was stopped (it takes no more
// stanzas from then on).
func isClosed(s *Session) bool {
	return s.q.isClosed()
}

// A client that stops reading is disconnected once its queue holds more
// bytes than the bound, whatever the count: the queue holds far fewer
// stanzas than WriteQueue when it ends.
func TestWriteQueueBoundedInBytes(t *testing.T) {
	const bound = 64 << 10
	h := newHarness(t, func(c *Config) {
		c.WriteQueue = 100000
		c.WriteQueueBytes = bound
		c.WriteTimeout = time.Minute // the bound ends it, not a write deadline
	})
	slow := h.dial(t, "alice", "slow", nil)
	bob := h.dial(t, "bob", "desk", nil)
	sa := sessionOf(t, h, slow.JID.String())
	// The socket's buffers take some; then the queue fills. 16 MiB is far
	// more than both.
	for sent := 0; h.srv.Sessions() == 2; sent++ {
		if sent*len(bigBody) > 16<<20 {
			t.Fatalf("a client that never reads was still connected after %d messages of 16 KiB", sent)
		}
		sendAndPing(t, bob, msg(slow.JID.String(), strconv.Itoa(sent)+bigBody))
		sa.q.mu.Lock()
		q, n := sa.q.bytes, len(sa.q.items)
		sa.q.mu.Unlock()
		if q > bound+len(bigBody)+200 {
			t.Fatalf("the queue holds %d bytes in %d stanzas, over the bound of %d", q, n, bound)
		}
	}
	exchange(t, bob, h.dial(t, "carol", "", nil), "the server serves on")
}

// A session with stream management keeps stanzas its client has not
// acknowledged up to a bound in bytes. At the bound it waits for an
// acknowledgement, at most the write timeout; a client that reads but
// never acknowledges is then ended, and every message comes back to the
// router, the one that went past the bound too.
func TestUnackedBoundedInBytes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WriteQueue = 1000; c.UnackedBytes = 64 << 10; c.WriteTimeout = 2 * time.Second })
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	enableSM(t, alice)
	// alice reads everything but acknowledges nothing.
	ended := make(chan string, 1)
	go func() {
		for {
			el, err := alice.RecvTimeout(10 * time.Second)
			if err != nil {
				ended <- "no stream error: " + err.Error()
				return
			}
			if el.Space == stanza.NSStream && el.Local == "error" {
				ended <- el.String()
				return
			}
		}
	}()
	const sent = 10 // 160 KiB, sent within the write timeout
	for i := range sent {
		sendAndPing(t, bob, msg(alice.JID.String(), strconv.Itoa(i)+" "+bigBody))
	}
	if e := <-ended; !strings.Contains(e, "policy-violation") {
		t.Fatalf("alice's stream ended with %s, want policy-violation", e)
	}
	back := handedBack(t, h, sent)
	for i := range sent {
		if !back[strconv.Itoa(i)] {
			t.Errorf("message %d of %d was not handed back (got %v)", i, sent, back)
		}
	}
}

// A client that reads and acknowledges is slowed down by a burst larger
// than the unacknowledged bound, not ended: the session waits for its
// acknowledgements.
func TestUnackedBoundWaitsForAcks(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WriteQueue = 1000; c.UnackedBytes = 64 << 10 })
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	enableSM(t, alice)
	const n = 40 // 640 KiB, ten times the bound, sent at once
	for i := range n {
		if err := bob.Send(msg(alice.JID.String(), strconv.Itoa(i)+" "+bigBody)); err != nil {
			t.Fatal(err)
		}
	}
	handled := 0
	for got := 0; got < n; {
		el, err := alice.RecvTimeout(10 * time.Second)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", got, n, err)
		}
		switch {
		case el.Space == nsSM && el.Local == "r":
			if err := alice.SendRaw("<a xmlns='urn:xmpp:sm:3' h='" + strconv.Itoa(handled) + "'/>"); err != nil {
				t.Fatal(err)
			}
		case el.Space == stanza.NSStream:
			t.Fatalf("after %d of %d messages: %s", got, n, el)
		case el.Local == "message":
			if num, _, _ := strings.Cut(el.ChildText("", "body"), " "); num != strconv.Itoa(got) {
				t.Fatalf("message %s, want %d", num, got)
			}
			got++
			handled++
		default:
			handled++
		}
	}
	exchange(t, bob, alice, "still here")
}

// handedBack collects n messages handed back to the router, by the number
// their body starts with.
func handedBack(t *testing.T, h *harness, n int) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	for range n {
		select {
		case el := <-h.echo.undelivered:
			num, _, _ := strings.Cut(el.ChildText("", "body"), " ")
			got[num] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d messages handed back", len(got), n)
		}
	}
	return got
}

// A lost session waiting to be resumed keeps what its client did not
// acknowledge within the same bound: past it the session ends at once
// instead of holding it for the resume timeout, and the messages go back
// to the router.
func TestResumptionStateBoundedInBytes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.UnackedBytes = 64 << 10; c.ResumeTimeout = time.Hour })
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	enableSM(t, alice)
	sa := sessionOf(t, h, alice.JID.String())
	alice.Conn().Close()
	waitFor(t, func() bool { return h.srv.detachedCount() == 1 })
	sent := 0
	for ; !isClosed(sa) && sent < 20; sent++ {
		sendAndPing(t, bob, msg("alice@localhost/phone", strconv.Itoa(sent)+" "+bigBody))
	}
	if sent >= 20 {
		t.Fatalf("a lost session kept 20 messages of 16 KiB for its client, over a bound of 64 KiB")
	}
	waitFor(t, func() bool { return h.srv.detachedCount() == 0 })
	back := handedBack(t, h, sent)
	if len(back) != sent {
		t.Fatalf("handed back %v, want all %d", back, sent)
	}
}

// Presence held back from an inactive client (XEP-0352) is bounded in
// bytes too: past WriteQueueBytes it is written, not kept.
func TestHeldPresenceBoundedInBytes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WriteQueueBytes = 64 << 10; c.MaxPresenceBytes = 64 << 10 })
	bob := h.dial(t, "bob", "desk", nil)
	alice := h.dial(t, "alice", "phone", nil)
	if err := alice.SendRaw("<inactive xmlns='urn:xmpp:csi:0'/>"); err != nil {
		t.Fatal(err)
	}
	ping(t, alice)
	for i := range 8 { // 128 KiB, well under the 64 presences held at most
		p := stanza.New(stanza.NSClient, "presence").SetAttr("to", alice.JID.String()).
			Append(stanza.New(stanza.NSClient, "status").SetText(strconv.Itoa(i) + bigBody))
		sendAndPing(t, bob, p)
	}
	el, err := alice.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "presence" })
	if err != nil {
		t.Fatalf("alice, inactive, was sent none of 128 KiB of presence: %v", err)
	}
	if !strings.HasPrefix(el.ChildText("", "status"), "0") {
		t.Fatalf("first presence %.40s…, want the first one held", el.ChildText("", "status"))
	}
}

// nullTransport is a connection that takes every write and records the
// stream-management requests written to it.
type nullTransport struct {
	transport // the methods a writer does not use
	requests  int
}

func (n *nullTransport) write(el *stanza.Element) error {
	if el.Space == nsSM && el.Local == "r" {
		n.requests++
	}
	return nil
}
func (n *nullTransport) writeEncoded(stanza.Encoded, string) error { return nil }

// During a burst (the queue never runs empty) the session asks for an
// acknowledgement once the unacknowledged stanzas take half their bound,
// so a client that reads and answers is not ended for a long burst.
func TestAckRequestedBeforeUnackedFills(t *testing.T) {
	srv := &Server{cfg: Config{WriteQueue: 256, WriteQueueBytes: 1 << 20, UnackedBytes: 64 << 10}}
	nt := &nullTransport{}
	s := &Session{srv: srv, t: nt, sm: &smState{limit: 1024, maxBytes: 64 << 10}}
	m := msg("alice@localhost/a", bigBody)
	o := newOutgoing(m, stanza.Encode(m), m.To(), time.Now)
	s.writeLocked(o, false)
	if nt.requests != 0 {
		t.Fatal("asked for an acknowledgement after one stanza of a burst")
	}
	s.writeLocked(o, false)
	if nt.requests != 1 {
		t.Fatalf("%d requests with %d of %d bytes unacknowledged, want one", nt.requests, s.sm.bytes, s.sm.maxBytes)
	}
}
