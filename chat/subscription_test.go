package chat

import (
	"testing"

	"poosms.org/poosms/store"
)

func TestSubscriptionHandshake(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)

	h.send(a, `<presence type='subscribe' to='bob@localhost'/>`)
	expect(t, "alice after subscribe", a, "iq type=set to=alice@localhost/a item=bob@localhost:none:subscribe")
	expect(t, "bob after subscribe", b, "presence type=subscribe from=alice@localhost to=bob@localhost")

	h.send(b, `<presence type='subscribed' to='alice@localhost'/>`)
	expect(t, "bob after approving", b, "iq type=set to=bob@localhost/b item=alice@localhost:from")
	expect(t, "alice after approval", a,
		"iq type=set to=alice@localhost/a item=bob@localhost:to",
		"presence type=subscribed from=bob@localhost to=alice@localhost",
		"presence from=bob@localhost/b to=alice@localhost")

	h.send(b, `<presence type='subscribe' to='alice@localhost'/>`)
	expect(t, "bob after subscribe", b, "iq type=set to=bob@localhost/b item=alice@localhost:from:subscribe")
	expect(t, "alice after bob's request", a, "presence type=subscribe from=bob@localhost to=alice@localhost")

	h.send(a, `<presence type='subscribed' to='bob@localhost'/>`)
	expect(t, "alice after approving", a, "iq type=set to=alice@localhost/a item=bob@localhost:both")
	expect(t, "bob after approval", b,
		"iq type=set to=bob@localhost/b item=alice@localhost:both",
		"presence type=subscribed from=alice@localhost to=bob@localhost",
		"presence from=alice@localhost/a to=bob@localhost")

	h.send(a, `<presence><status>away</status></presence>`)
	expect(t, "bob sees the update", b, "presence from=alice@localhost/a to=bob@localhost status=away")
	expect(t, "alice sees her own update", a, "presence from=alice@localhost/a to=alice@localhost status=away")

	for _, c := range []struct{ owner, contact string }{{"alice", "bob@localhost"}, {"bob", "alice@localhost"}} {
		it, ok := h.st.Item(c.owner, c.contact)
		if !ok || it.Subscription != store.SubBoth || it.AskOut || it.PendingIn || !it.Listed {
			t.Errorf("%s's item for %s = %+v, %v; want listed both without pending", c.owner, c.contact, it, ok)
		}
	}
}

func TestSubscriptionRequestWaitsForPresenceThenDenied(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.send(a, `<presence type='subscribe' to='bob@localhost'/>`)
	expect(t, "alice", a, "iq type=set to=alice@localhost/a item=bob@localhost:none:subscribe")

	b := h.bind("bob@localhost/b")
	h.send(b, `<iq type='get' id='r'><query xmlns='jabber:iq:roster'/></iq>`)
	expect(t, "bob's roster hides the pending request", b, "iq type=result to=bob@localhost/b")
	h.send(b, `<presence/>`)
	expect(t, "bob at initial presence", b,
		"presence from=bob@localhost/b to=bob@localhost",
		"presence type=subscribe from=alice@localhost to=bob@localhost")

	// A second resource coming online is told again.
	b2 := h.bind("bob@localhost/b2")
	h.send(b2, `<presence/>`)
	expect(t, "bob's second resource", b2,
		"presence from=bob@localhost/b2 to=bob@localhost",
		"presence from=bob@localhost/b to=bob@localhost/b2",
		"presence type=subscribe from=alice@localhost to=bob@localhost")
	b.take()

	h.send(b, `<presence type='unsubscribed' to='alice@localhost'/>`)
	expect(t, "alice after denial", a,
		"iq type=set to=alice@localhost/a item=bob@localhost:none",
		"presence type=unsubscribed from=bob@localhost to=alice@localhost")
	expect(t, "bob", b)
	if it, ok := h.st.Item("bob", "alice@localhost"); ok {
		t.Errorf("bob still keeps %+v", it)
	}
}

func TestUnsubscribePaths(t *testing.T) {
	t.Run("unsubscribe then unsubscribed", func(t *testing.T) {
		h := newHarness(t, Config{}, "alice", "bob")
		h.befriend("alice", "bob")
		a := h.online("alice@localhost/a", 0)
		b := h.online("bob@localhost/b", 0)
		a.take()

		h.send(a, `<presence type='unsubscribe' to='bob@localhost'/>`)
		expect(t, "alice", a,
			"iq type=set to=alice@localhost/a item=bob@localhost:from",
			"presence type=unavailable from=bob@localhost/b to=alice@localhost")
		expect(t, "bob", b,
			"iq type=set to=bob@localhost/b item=alice@localhost:to",
			"presence type=unsubscribe from=alice@localhost to=bob@localhost")

		h.send(a, `<presence type='unsubscribed' to='bob@localhost'/>`)
		expect(t, "alice", a, "iq type=set to=alice@localhost/a item=bob@localhost:none")
		expect(t, "bob", b,
			"iq type=set to=bob@localhost/b item=alice@localhost:none",
			"presence type=unsubscribed from=alice@localhost to=bob@localhost",
			"presence type=unavailable from=alice@localhost/a to=bob@localhost")

		// Bob no longer sees alice's presence.
		h.send(a, `<presence><show>dnd</show></presence>`)
		expect(t, "bob after alice's update", b)
	})

	t.Run("roster remove cancels both ways", func(t *testing.T) {
		h := newHarness(t, Config{}, "alice", "bob")
		h.befriend("alice", "bob")
		a := h.online("alice@localhost/a", 0)
		b := h.online("bob@localhost/b", 0)
		a.take()

		h.send(a, `<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>`)
		expect(t, "alice", a,
			"iq type=set to=alice@localhost/a item=bob@localhost:remove",
			"iq type=result to=alice@localhost/a",
			"presence type=unavailable from=bob@localhost/b to=alice@localhost")
		expect(t, "bob", b,
			"iq type=set to=bob@localhost/b item=alice@localhost:to",
			"presence type=unsubscribe from=alice@localhost to=bob@localhost",
			"iq type=set to=bob@localhost/b item=alice@localhost:none",
			"presence type=unsubscribed from=alice@localhost to=bob@localhost",
			"presence type=unavailable from=alice@localhost/a to=bob@localhost")
	})

	t.Run("subscribe to a user that does not exist", func(t *testing.T) {
		h := newHarness(t, Config{}, "alice")
		a := h.online("alice@localhost/a", 0)
		h.send(a, `<presence type='subscribe' to='ghost@localhost'/>`)
		expect(t, "alice", a,
			"iq type=set to=alice@localhost/a item=ghost@localhost:none:subscribe",
			"iq type=set to=alice@localhost/a item=ghost@localhost:none",
			"presence type=unsubscribed from=ghost@localhost to=alice@localhost")
	})

	t.Run("subscribe to another domain", func(t *testing.T) {
		h := newHarness(t, Config{}, "alice")
		a := h.online("alice@localhost/a", 0)
		h.send(a, `<presence type='subscribe' to='zoe@remote.example'/>`)
		expect(t, "alice", a, "presence type=error from=zoe@remote.example to=alice@localhost/a error=remote-server-not-found")
		if _, ok := h.st.Item("alice", "zoe@remote.example"); ok {
			t.Error("roster changed for an unreachable contact")
		}
	})

	t.Run("approval without request is ignored", func(t *testing.T) {
		h := newHarness(t, Config{}, "alice", "bob")
		a := h.online("alice@localhost/a", 0)
		b := h.online("bob@localhost/b", 0)
		h.send(b, `<presence type='subscribed' to='alice@localhost'/>`)
		expect(t, "alice", a)
		expect(t, "bob", b)
		if _, ok := h.st.Item("bob", "alice@localhost"); ok {
			t.Error("a pre-approval was stored")
		}
	})
}
