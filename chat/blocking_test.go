package chat

import (
	"slices"
	"testing"

	"poosms.org/poosms/stanza"
)

func blockItems(el *stanza.Element, local string) []string {
	var out []string
	if q := el.Child(NSBlocking, local); q != nil {
		for _, it := range q.Elements() {
			out = append(out, it.Attr("jid"))
		}
	}
	return out
}

func TestBlocking(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob", "carol")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	a2 := h.online("alice@localhost/a2", 0)
	b := h.online("bob@localhost/b", 0)
	c := h.online("carol@localhost/c", 0)

	// Both of alice's sessions ask for the (empty) list.
	for _, s := range []*fakeSession{a, a2} {
		reply, _ := h.iq(s, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
		if reply.IQType() != stanza.ResultIQ || len(blockItems(reply, "blocklist")) != 0 {
			t.Fatalf("blocklist: %s", reply)
		}
	}
	for _, s := range []*fakeSession{a, a2, b, c} {
		s.take()
	}

	reply, extra := h.iq(a, `<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/><item jid='spam.example'/></block></iq>`)
	if reply.IQType() != stanza.ResultIQ || len(extra) != 1 || !slices.Equal(blockItems(extra[0], "block"), []string{"bob@localhost", "spam.example"}) {
		t.Fatalf("block: %s, pushes %v", reply, extra)
	}
	if p := one(t, "a2", a2); p.IQType() != stanza.SetIQ || !slices.Equal(blockItems(p, "block"), []string{"bob@localhost", "spam.example"}) {
		t.Errorf("push to a2: %s", p)
	}
	// Bob sees both of alice's sessions go offline.
	expectSet(t, "bob", b,
		"presence type=unavailable from=alice@localhost/a to=bob@localhost",
		"presence type=unavailable from=alice@localhost/a2 to=bob@localhost")

	// Bob's messages and IQs are refused without saying why; alice's to
	// bob are refused with the blocked condition.
	h.send(b, `<message type='chat' to='alice@localhost'><body>hey</body></message>`)
	expect(t, "bob", b, "message type=error from=alice@localhost to=bob@localhost/b body=hey error=service-unavailable")
	if el := b.Received(); len(el) != 0 {
		t.Fatalf("left over %v", el)
	}
	expect(t, "alice", a)
	h.send(b, `<iq type='get' id='v' to='alice@localhost/a'><query xmlns='jabber:iq:version'/></iq>`)
	expect(t, "bob", b, "iq type=error from=alice@localhost/a to=bob@localhost/b error=service-unavailable")
	h.send(a, `<message type='chat' to='bob@localhost/b'><body>hi</body></message>`)
	reply = one(t, "alice", a)
	if errorCondition(reply) != "not-acceptable" || reply.Child("", "error").Child(NSBlockingErrs, "blocked") == nil {
		t.Errorf("to a blocked contact: %s", reply)
	}
	expect(t, "bob", b)
	// Presence no longer flows either way.
	h.send(b, `<presence><show>away</show></presence>`)
	expect(t, "alice", a)
	b.take()
	h.send(a, `<presence><show>dnd</show></presence>`)
	expect(t, "bob", b)
	a.take()
	a2.take()
	// Carol is not concerned.
	h.send(c, `<message type='chat' to='alice@localhost/a'><body>carol</body></message>`)
	expect(t, "alice", a, "message type=chat from=carol@localhost/c to=alice@localhost/a body=carol")

	// A new session loads the stored list.
	a3 := h.bind("alice@localhost/a3")
	h.send(b, `<message type='chat' to='alice@localhost/a3'><body>new</body></message>`)
	expect(t, "a3", a3)
	b.take()

	// Unblock bob: a push, and bob sees alice again (he is subscribed).
	reply, extra = h.iq(a, `<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></unblock></iq>`)
	if reply.IQType() != stanza.ResultIQ || len(extra) != 1 || !slices.Equal(blockItems(extra[0], "unblock"), []string{"bob@localhost"}) {
		t.Fatalf("unblock: %s %v", reply, extra)
	}
	one(t, "a2", a2)
	expectSet(t, "bob", b,
		"presence from=alice@localhost/a to=bob@localhost",
		"presence from=alice@localhost/a2 to=bob@localhost")
	h.send(b, `<message type='chat' to='alice@localhost/a'><body>back</body></message>`)
	expect(t, "alice", a, "message type=chat from=bob@localhost/b to=alice@localhost/a body=back")

	reply, _ = h.iq(a, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`)
	if got := blockItems(reply, "blocklist"); !slices.Equal(got, []string{"spam.example"}) {
		t.Errorf("list after unblock: %q", got)
	}
	// Unblock everything: an empty unblock push.
	_, extra = h.iq(a, `<iq type='set' id='ua'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	if len(extra) != 1 || extra[0].Child(NSBlocking, "unblock") == nil || len(blockItems(extra[0], "unblock")) != 0 {
		t.Errorf("unblock-all push %v", extra)
	}
	for _, tc := range []struct {
		raw  string
		cond stanza.Condition
	}{
		{`<iq type='set' id='e'><block xmlns='urn:xmpp:blocking'/></iq>`, "bad-request"},
		{`<iq type='set' id='e'><block xmlns='urn:xmpp:blocking'><item jid='@@'/></block></iq>`, "jid-malformed"},
		{`<iq type='get' id='e'><block xmlns='urn:xmpp:blocking'/></iq>`, "bad-request"},
	} {
		if reply, _ := h.iq(a, tc.raw); errorCondition(reply) != tc.cond {
			t.Errorf("%s: %s, want %s", tc.raw, reply, tc.cond)
		}
	}
}

func TestBlockedSenderWhileOffline(t *testing.T) {
	h, db := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.iq(a, `<iq type='set' id='blk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost/phone'/></block></iq>`)
	h.close(a)
	b := h.online("bob@localhost/phone", 0)
	h.send(b, `<message type='chat' to='alice@localhost'><body>queued?</body></message>`)
	expect(t, "bob", b, "message type=error from=alice@localhost to=bob@localhost/phone body=queued? error=service-unavailable")
	if n, _ := db.CountOffline(t.Context(), "alice"); n != 0 {
		t.Errorf("a blocked message was queued offline")
	}
	// Another of bob's resources is not blocked.
	b2 := h.online("bob@localhost/laptop", 0)
	h.send(b2, `<message type='chat' to='alice@localhost'><body>queued</body></message>`)
	expect(t, "bob", b2)
	if n, _ := db.CountOffline(t.Context(), "alice"); n != 1 {
		t.Errorf("offline queue %d, want 1", n)
	}
}
