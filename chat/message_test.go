package chat

import (
	"strconv"
	"testing"
	"time"
)

func TestMessageRouting(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob", "carol")
	a := h.online("alice@localhost/a", 0)
	sessions := map[string]*fakeSession{
		"a":  a,
		"b1": h.online("bob@localhost/b1", 5),
		"b2": h.online("bob@localhost/b2", 5),
		"b3": h.online("bob@localhost/b3", 1),
		"b4": h.online("bob@localhost/b4", -1),
		"b0": h.bind("bob@localhost/b0"), // bound, never available
		"c":  h.online("carol@localhost/c", -1),
	}
	for _, s := range sessions {
		s.take()
	}

	msg := func(typ, to string) string {
		return `<message type='` + typ + `' to='` + to + `'><body>hi</body></message>`
	}
	got := func(typ, to string) string {
		return "message type=" + typ + " from=alice@localhost/a to=" + to + " body=hi"
	}
	for _, tc := range []struct {
		name    string
		stanza  string
		want    map[string][]string
		offline int // messages queued for carol afterwards
	}{
		{"chat to bare: highest priority resources", msg("chat", "bob@localhost"),
			map[string][]string{"b1": {got("chat", "bob@localhost")}, "b2": {got("chat", "bob@localhost")}}, 0},
		{"normal to bare: highest priority resources", msg("normal", "bob@localhost"),
			map[string][]string{"b1": {got("normal", "bob@localhost")}, "b2": {got("normal", "bob@localhost")}}, 0},
		{"headline to bare: every non-negative resource", msg("headline", "bob@localhost"),
			map[string][]string{"b1": {got("headline", "bob@localhost")}, "b2": {got("headline", "bob@localhost")}, "b3": {got("headline", "bob@localhost")}}, 0},
		{"to a full JID", msg("chat", "bob@localhost/b3"),
			map[string][]string{"b3": {got("chat", "bob@localhost/b3")}}, 0},
		{"to a full JID with negative priority", msg("chat", "bob@localhost/b4"),
			map[string][]string{"b4": {got("chat", "bob@localhost/b4")}}, 0},
		{"to a full JID that never sent presence", msg("chat", "bob@localhost/b0"),
			map[string][]string{"b0": {got("chat", "bob@localhost/b0")}}, 0},
		{"chat to a gone resource goes to the bare JID", msg("chat", "bob@localhost/gone"),
			map[string][]string{"b1": {got("chat", "bob@localhost/gone")}, "b2": {got("chat", "bob@localhost/gone")}}, 0},
		{"groupchat to a gone resource", msg("groupchat", "bob@localhost/gone"),
			map[string][]string{"a": {"message type=error from=bob@localhost/gone to=alice@localhost/a body=hi error=service-unavailable"}}, 0},
		{"headline to a gone resource is dropped", msg("headline", "bob@localhost/gone"), nil, 0},
		{"error to a bare JID is dropped", msg("error", "bob@localhost"), nil, 0},
		{"unknown user", msg("chat", "nobody@localhost"),
			map[string][]string{"a": {"message type=error from=nobody@localhost to=alice@localhost/a body=hi error=service-unavailable"}}, 0},
		{"the server with a body", msg("chat", "localhost"),
			map[string][]string{"a": {"message type=error from=localhost to=alice@localhost/a body=hi error=service-unavailable"}}, 0},
		{"the server without a body", `<message to='localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`, nil, 0},
		{"another domain", msg("chat", "zoe@remote.example"),
			map[string][]string{"a": {"message type=error from=zoe@remote.example to=alice@localhost/a body=hi error=remote-server-not-found"}}, 0},
		{"no to: the sender's own bare JID", `<message type='chat'><body>hi</body></message>`,
			map[string][]string{"a": {got("chat", "alice@localhost")}}, 0},
		{"only negative priority: stored offline", msg("chat", "carol@localhost"), nil, 1},
		{"chat state alone is not stored", `<message type='chat' to='carol@localhost'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`, nil, 1},
		{"malformed address", msg("chat", "a@b@c"),
			map[string][]string{"a": {"message type=error to=alice@localhost/a body=hi error=jid-malformed"}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.send(a, tc.stanza)
			for name, s := range sessions {
				expect(t, name, s, tc.want[name]...)
			}
			if n := h.st.Queued("carol"); n != tc.offline {
				t.Errorf("carol has %d offline messages, want %d", n, tc.offline)
			}
		})
	}
}

func TestOfflineMessagesDeliveredInOrderWithDelay(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	for i := 1; i <= 3; i++ {
		h.send(a, `<message type='chat' to='bob@localhost'><body>m`+strconv.Itoa(i)+`</body></message>`)
		h.now = h.now.Add(90 * time.Second)
	}
	h.send(a, `<message to='bob@localhost/phone'><body>m4</body></message>`)
	expect(t, "alice gets no error", a)
	if n := h.st.Queued("bob"); n != 4 {
		t.Fatalf("bob has %d offline messages, want 4", n)
	}

	// A session with negative priority does not take them.
	b := h.bind("bob@localhost/b")
	h.send(b, `<presence><priority>-1</priority></presence>`)
	expect(t, "bob at negative priority", b, "presence from=bob@localhost/b to=bob@localhost prio=-1")

	h.send(b, `<presence><priority>2</priority></presence>`)
	expect(t, "bob at priority 2", b,
		"presence from=bob@localhost/b to=bob@localhost prio=2",
		"message type=chat from=alice@localhost/a to=bob@localhost body=m1 delay=localhost@2026-11-25T10:00:00Z",
		"message type=chat from=alice@localhost/a to=bob@localhost body=m2 delay=localhost@2026-11-25T10:01:30Z",
		"message type=chat from=alice@localhost/a to=bob@localhost body=m3 delay=localhost@2026-11-25T10:03:00Z",
		"message from=alice@localhost/a to=bob@localhost/phone body=m4 delay=localhost@2026-11-25T10:04:30Z")
	if n := h.st.Queued("bob"); n != 0 {
		t.Errorf("%d offline messages left after delivery", n)
	}

	// They are delivered once only.
	b2 := h.bind("bob@localhost/b2")
	h.send(b2, `<presence/>`)
	for _, s := range b2.take() {
		if len(s) > 7 && s[:7] == "message" {
			t.Errorf("second session got %s", s)
		}
	}
}

func TestOfflineQueueFullAnswersSender(t *testing.T) {
	h := newHarness(t, Config{OfflineLimit: 2}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	for i := 1; i <= 2; i++ {
		h.send(a, `<message type='chat' to='bob@localhost' id='m`+strconv.Itoa(i)+`'><body>m`+strconv.Itoa(i)+`</body></message>`)
	}
	expect(t, "alice after two", a)
	h.send(a, `<message type='chat' to='bob@localhost' id='m3'><body>m3</body></message>`)
	expect(t, "alice after the third", a, "message type=error from=bob@localhost to=alice@localhost/a body=m3 error=resource-constraint")
	if n := h.st.Queued("bob"); n != 2 {
		t.Errorf("bob has %d offline messages, want 2", n)
	}
}

func TestOfflineDeliveryStopsAtGoneSession(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.send(a, `<message type='chat' to='bob@localhost'><body>kept</body></message>`)
	b := h.bind("bob@localhost/b")
	b.SetGone(ErrSessionGone) // the stream died before presence was handled
	h.send(b, `<presence/>`)
	if n := h.st.Queued("bob"); n != 1 {
		t.Errorf("bob has %d offline messages, want the undelivered one kept", n)
	}
}
