package chat

import (
	"testing"

	"mellium.im/xmpp/jid"
)

func TestInitialPresenceBroadcastAndProbes(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob", "carol", "dave")
	h.befriend("alice", "bob")
	h.befriend("alice", "dave")
	b := h.online("bob@localhost/b", 3)
	c := h.online("carol@localhost/c", 0)  // no subscription with alice
	quiet := h.bind("bob@localhost/quiet") // bound, never available

	a1 := h.bind("alice@localhost/one")
	h.send(a1, `<presence><priority>1</priority></presence>`)
	expect(t, "a1", a1,
		"presence from=alice@localhost/one to=alice@localhost prio=1",
		"presence from=bob@localhost/b to=alice@localhost/one prio=3",
		"presence type=unavailable from=dave@localhost to=alice@localhost/one")
	expect(t, "bob", b, "presence from=alice@localhost/one to=bob@localhost prio=1")
	expect(t, "carol", c)
	expect(t, "bob's quiet session", quiet)

	a2 := h.bind("alice@localhost/two")
	h.send(a2, `<presence/>`)
	expect(t, "a2", a2,
		"presence from=alice@localhost/two to=alice@localhost",
		"presence from=bob@localhost/b to=alice@localhost/two prio=3",
		"presence type=unavailable from=dave@localhost to=alice@localhost/two",
		"presence from=alice@localhost/one to=alice@localhost/two prio=1")
	expect(t, "a1 sees a2", a1, "presence from=alice@localhost/two to=alice@localhost")
	expect(t, "bob sees a2", b, "presence from=alice@localhost/two to=bob@localhost")

	// An update is broadcast but probes are not repeated.
	h.send(a2, `<presence><show>away</show></presence>`)
	expect(t, "a2 update", a2, "presence from=alice@localhost/two to=alice@localhost")
	expectSet(t, "a1 sees the update", a1, "presence from=alice@localhost/two to=alice@localhost")
	expect(t, "bob sees the update", b, "presence from=alice@localhost/two to=bob@localhost")

	// Explicit unavailable.
	h.send(a2, `<presence type='unavailable'><status>bye</status></presence>`)
	expect(t, "bob after a2 left", b, "presence type=unavailable from=alice@localhost/two to=bob@localhost status=bye")
	expect(t, "a1 after a2 left", a1, "presence type=unavailable from=alice@localhost/two to=alice@localhost status=bye")
	expect(t, "a2 after leaving", a2, "presence type=unavailable from=alice@localhost/two to=alice@localhost status=bye")

	// The stream of a1 ends.
	h.close(a1)
	expect(t, "bob after a1 closed", b, "presence type=unavailable from=alice@localhost/one to=bob@localhost")
	expect(t, "carol at the end", c)

	if got := h.svc.Online(jid.MustParse("bob@localhost")); len(got) != 1 || got[0] != b {
		t.Errorf("Online(bob) = %v, want only the available session", got)
	}
	if got := h.svc.Online(jid.MustParse("alice@localhost")); len(got) != 0 {
		t.Errorf("Online(alice) = %v, want none", got)
	}
}

func TestDirectedPresence(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "carol")
	a := h.online("alice@localhost/a", 0)
	c := h.online("carol@localhost/c", 0)

	h.send(a, `<presence to='carol@localhost'><status>hi</status></presence>`)
	expect(t, "carol gets directed presence", c, "presence from=alice@localhost/a to=carol@localhost status=hi")
	expect(t, "alice", a)

	// Broadcasts do not reach carol, who is not subscribed.
	h.send(a, `<presence><show>away</show></presence>`)
	expect(t, "carol after broadcast", c)
	a.take()

	h.close(a)
	expect(t, "carol after alice's stream ended", c, "presence type=unavailable from=alice@localhost/a to=carol@localhost")

	t.Run("directed unavailable stops tracking", func(t *testing.T) {
		a := h.online("alice@localhost/a2", 0)
		h.send(a, `<presence to='carol@localhost/c'/>`)
		h.send(a, `<presence type='unavailable' to='carol@localhost/c'/>`)
		expect(t, "carol", c,
			"presence from=alice@localhost/a2 to=carol@localhost/c",
			"presence type=unavailable from=alice@localhost/a2 to=carol@localhost/c")
		h.close(a)
		expect(t, "carol after close", c)
	})

	t.Run("to another domain", func(t *testing.T) {
		a := h.online("alice@localhost/a3", 0)
		h.send(a, `<presence to='zoe@remote.example'/>`)
		expect(t, "alice", a, "presence type=error from=zoe@remote.example to=alice@localhost/a3 error=remote-server-not-found")
	})

	t.Run("from a session that never went available", func(t *testing.T) {
		q := h.bind("alice@localhost/quiet")
		h.send(q, `<presence to='carol@localhost'/>`)
		expect(t, "carol", c, "presence from=alice@localhost/quiet to=carol@localhost")
		h.close(q)
		expect(t, "carol after close", c, "presence type=unavailable from=alice@localhost/quiet to=carol@localhost")
	})
}

func TestSessionReplacedKeepsNewSession(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	b := h.online("bob@localhost/b", 0)
	old := h.online("alice@localhost/a", 0)
	b.take()

	repl := h.bind("alice@localhost/a") // same full JID: replaces old
	expect(t, "bob sees the old session go", b, "presence type=unavailable from=alice@localhost/a to=bob@localhost")
	h.close(old) // the old stream ends after the new one was bound
	expect(t, "bob after old closed", b)

	h.send(b, `<message to='alice@localhost/a' type='chat'><body>x</body></message>`)
	expect(t, "new session gets messages", repl, "message type=chat from=bob@localhost/b to=alice@localhost/a body=x")
}

func TestPresenceFromClosedSessionIsIgnored(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	b := h.online("bob@localhost/b", 0)
	a := h.bind("alice@localhost/a")
	h.svc.SessionClosed(t.Context(), a) // ended before its presence was handled
	h.send(a, `<presence/>`)
	expect(t, "bob", b)
	if got := h.svc.Online(jid.MustParse("alice@localhost")); len(got) != 0 {
		t.Errorf("closed session is online: %v", got)
	}
}
