package chat

import (
	"context"
	"testing"

	"poosms.org/poosms/stanza"
)

// forwarded returns kind (sent/received) and the inner message of a
// carbon copy, or fails.
func forwarded(t *testing.T, name string, el *stanza.Element) (string, *stanza.Element) {
	t.Helper()
	for _, kind := range []string{"sent", "received"} {
		if c := el.Child(NSCarbons, kind); c != nil {
			if el.From() != "alice@localhost" || el.MessageType() != stanza.ChatMessage {
				t.Errorf("%s: carbon wrapper %s", name, el)
			}
			return kind, c.Child(NSForward, "forwarded").Child(stanza.NSClient, "message")
		}
	}
	t.Fatalf("%s: not a carbon: %s", name, el)
	return "", nil
}

func TestCarbons(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 5)
	b := h.online("alice@localhost/b", 1)
	c := h.online("alice@localhost/c", 1) // carbons off
	bob := h.online("bob@localhost/x", 0)
	for _, s := range []*fakeSession{a, b} {
		reply, _ := h.iq(s, `<iq type='set' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
		if reply.IQType() != stanza.ResultIQ {
			t.Fatalf("enable: %s", reply)
		}
	}
	for _, s := range []*fakeSession{a, b, c, bob} {
		s.take()
	}

	// Sent by a: b gets a sent copy with alice's stanza-id; c nothing.
	h.send(a, `<message type='chat' to='bob@localhost' id='s1'><body>from a</body></message>`)
	if got := one(t, "bob", bob); got.ChildText("", "body") != "from a" {
		t.Errorf("bob got %s", got)
	}
	kind, inner := forwarded(t, "b", one(t, "b", b))
	if kind != "sent" || inner.From() != "alice@localhost/a" || inner.ChildText("", "body") != "from a" ||
		inner.Child(NSSID, "stanza-id") == nil || inner.Child(NSSID, "stanza-id").Attr("by") != "alice@localhost" {
		t.Errorf("sent carbon %s %s", kind, inner)
	}
	expect(t, "a", a)
	expect(t, "c", c)

	// Received: a has the highest priority and gets it; b a received copy.
	h.send(bob, `<message type='chat' to='alice@localhost' id='r1'><body>to alice</body></message>`)
	if got := one(t, "a", a); got.ChildText("", "body") != "to alice" {
		t.Errorf("a got %s", got)
	}
	kind, inner = forwarded(t, "b", one(t, "b", b))
	if kind != "received" || inner.From() != "bob@localhost/x" || inner.Child(NSSID, "stanza-id").Attr("by") != "alice@localhost" {
		t.Errorf("received carbon %s %s", kind, inner)
	}
	expect(t, "c", c)

	// To c's full JID: the carbon-enabled others get received copies.
	h.send(bob, `<message type='chat' to='alice@localhost/c'><body>to c</body></message>`)
	one(t, "c", c)
	forwarded(t, "a", one(t, "a", a))
	forwarded(t, "b", one(t, "b", b))

	// Private, no-copy, headline and bodiless normal messages are not copied.
	for _, raw := range []string{
		`<message type='chat' to='bob@localhost'><body>p</body><private xmlns='urn:xmpp:carbons:2'/></message>`,
		`<message type='chat' to='bob@localhost'><body>n</body><no-copy xmlns='urn:xmpp:hints'/></message>`,
		`<message type='headline' to='bob@localhost'><body>h</body></message>`,
		`<message to='bob@localhost'><subject>s</subject></message>`,
	} {
		h.send(a, raw)
		one(t, "bob", bob)
		expect(t, "b after "+raw, b)
	}

	// A message to nobody bounces without a carbon.
	h.send(a, `<message type='chat' to='nobody@localhost'><body>lost</body></message>`)
	if got := one(t, "a", a); errorCondition(got) != "service-unavailable" {
		t.Errorf("to nobody: %s", got)
	}
	expect(t, "b", b)

	// Disabled again: nothing more.
	h.iq(b, `<iq type='set' id='cb'><disable xmlns='urn:xmpp:carbons:2'/></iq>`)
	h.send(a, `<message type='chat' to='bob@localhost'><body>again</body></message>`)
	one(t, "bob", bob)
	expect(t, "b", b)
	reply, _ := h.iq(b, `<iq type='get' id='cb'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	if errorCondition(reply) != "bad-request" {
		t.Errorf("carbons get: %s", reply)
	}
}

func TestDeliverFromComponent(t *testing.T) {
	h, db := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	ctx := context.Background()
	invite := func(to string) *stanza.Element {
		el, _ := stanza.Parse([]byte(`<message from='room@conference.localhost' to='` + to + `'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='bob@localhost'/></x><body>join us</body></message>`))
		return el
	}
	h.svc.Deliver(ctx, invite("alice@localhost"))
	expect(t, "alice", a, "message from=room@conference.localhost to=alice@localhost body=join us")
	h.svc.Deliver(ctx, invite("alice@localhost/a"))
	expect(t, "alice", a, "message from=room@conference.localhost to=alice@localhost/a body=join us")
	// A gone resource falls back to the bare JID.
	h.svc.Deliver(ctx, invite("alice@localhost/gone"))
	expect(t, "alice", a, "message from=room@conference.localhost to=alice@localhost/gone body=join us")
	// Bob is offline: queued.
	h.svc.Deliver(ctx, invite("bob@localhost"))
	if n, _ := db.CountOffline(ctx, "bob"); n != 1 {
		t.Errorf("bob's offline queue holds %d, want 1", n)
	}
	// Nobody, other domains: dropped without a panic or a reply anywhere.
	h.svc.Deliver(ctx, invite("nobody@localhost"))
	h.svc.Deliver(ctx, invite("x@elsewhere.example"))
	p, _ := stanza.Parse([]byte(`<presence from='room@conference.localhost/bob' to='alice@localhost/a'/>`))
	h.svc.Deliver(ctx, p)
	expect(t, "alice", a, "presence from=room@conference.localhost/bob to=alice@localhost/a")
	// A stanza a dropped stream could not deliver, from a local user: the
	// errors of routing it go back to that user's session.
	b := h.online("bob@localhost/b", 0)
	iq, _ := stanza.Parse([]byte(`<iq type='get' id='v' from='bob@localhost/b' to='alice@localhost/gone'><query xmlns='jabber:iq:version'/></iq>`))
	h.svc.Deliver(ctx, iq)
	expect(t, "bob", b, "iq type=error from=alice@localhost/gone to=bob@localhost/b error=service-unavailable")
	msg, _ := stanza.Parse([]byte(`<message type='chat' from='bob@localhost/b' to='alice@localhost/gone'><body>after the drop</body></message>`))
	h.svc.Deliver(ctx, msg)
	expect(t, "alice", a, "message type=chat from=bob@localhost/b to=alice@localhost/gone body=after the drop")
	expect(t, "bob", b)

	// A user who blocked the room gets nothing from it.
	h.iq(a, `<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='conference.localhost'/></block></iq>`)
	h.svc.Deliver(ctx, invite("alice@localhost"))
	expect(t, "alice", a)
}
