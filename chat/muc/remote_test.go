package muc

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// remoteWire records what the service sends to users of other servers,
// as federation would carry it.
type remoteWire struct {
	mu  sync.Mutex
	got []*stanza.Element
}

func (w *remoteWire) send(el *stanza.Element) error {
	c, err := stanza.Parse([]byte(el.String()))
	if err != nil {
		panic(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.got = append(w.got, c)
	return nil
}

// take returns the summaries of what went to full since the last take.
func (w *remoteWire) take(full string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	var keep []*stanza.Element
	for _, el := range w.got {
		if el.To() == full {
			out = append(out, summary(el))
		} else {
			keep = append(keep, el)
		}
	}
	w.got = keep
	return out
}

func newRemoteHarness(t *testing.T) (*harness, *remoteWire) {
	w := &remoteWire{}
	h := newHarness(t, func(c *Config) { c.SendRemote = w.send })
	return h, w
}

// remote has a user of another server send raw XML, as federation hands
// it over.
func (h *harness) remote(from, raw string) {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	el.SetAttr("from", from)
	h.svc.HandleRemote(context.Background(), el)
}

func has(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

// TestRemoteOccupant: a user of another server enters a room, reads its
// history, speaks, sends and receives private messages, and leaves; the
// local occupants see it as any other.
func TestRemoteOccupant(t *testing.T) {
	h, w := newRemoteHarness(t)
	alice := h.session("alice@localhost/desk")
	h.room(alice, "lobby", "Alice", map[string]string{"muc#roomconfig_whois": "anyone"})
	h.send(alice, `<message to='lobby@conference.localhost' type='groupchat'><body>before you came</body></message>`)
	alice.take()

	const bob = "bob@far.example/phone"
	h.remote(bob, `<presence to='lobby@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	got := w.take(bob)
	for _, want := range []string{
		"presence from=lobby/Alice [owner/moderator jid=alice@localhost/desk]",
		"presence from=lobby/Bob [none/participant jid=bob@far.example/phone] 110 100 170",
		"message type=groupchat from=lobby/Alice body=before you came delayed",
	} {
		if !has(got, want) {
			t.Errorf("bob entering lacks %q; got %v", want, got)
		}
	}
	expect(t, "alice", alice, "presence from=lobby/Bob [none/participant jid=bob@far.example/phone]")

	h.remote(bob, `<message to='lobby@conference.localhost' type='groupchat'><body>hi all</body></message>`)
	expect(t, "alice", alice, "message type=groupchat from=lobby/Bob body=hi all")
	if got := w.take(bob); !has(got, "message type=groupchat from=lobby/Bob body=hi all") {
		t.Errorf("bob's own message did not come back to him: %v", got)
	}
	h.remote(bob, `<message to='lobby@conference.localhost/Alice' type='chat'><body>psst</body></message>`)
	expect(t, "alice", alice, "message type=chat from=lobby/Bob body=psst")
	h.send(alice, `<message to='lobby@conference.localhost/Bob' type='chat'><body>yes?</body></message>`)
	if got := w.take(bob); !has(got, "message type=chat from=lobby/Alice body=yes?") {
		t.Errorf("alice's private message to bob: %v", got)
	}

	h.remote(bob, `<presence to='lobby@conference.localhost/Bob' type='unavailable'/>`)
	expect(t, "alice", alice, "presence type=unavailable from=lobby/Bob [none/none jid=bob@far.example/phone]")
	h.svc.mu.Lock()
	n := len(h.svc.remotes)
	h.svc.mu.Unlock()
	if n != 0 {
		t.Errorf("%d sessions of other servers kept after the last one left", n)
	}
}

// TestRemoteRules: bans and members-only rooms apply to users of other
// servers by their bare JID; they cannot create rooms; and a user of
// another server cannot pass for a local user.
func TestRemoteRules(t *testing.T) {
	h, w := newRemoteHarness(t)
	alice := h.session("alice@localhost/desk")
	h.room(alice, "club", "Alice", map[string]string{"muc#roomconfig_membersonly": "1"})

	const bob = "bob@far.example/phone"
	h.remote(bob, `<presence to='club@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	if got := w.take(bob); !has(got, "presence type=error from=club/Bob error=registration-required") {
		t.Fatalf("bob, not a member, enters a members-only room: %v", got)
	}
	h.iq(alice, `<iq type='set' id='m' to='club@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@far.example' affiliation='member'/></query></iq>`)
	h.remote(bob, `<presence to='club@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	if got := w.take(bob); !has(got, "presence from=club/Bob [member/participant jid=bob@far.example/phone] 110") {
		t.Fatalf("bob, a member, cannot enter: %v", got)
	}
	alice.take()

	// A ban puts him out, and keeps him out.
	h.iq(alice, `<iq type='set' id='b' to='club@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item jid='bob@far.example' affiliation='outcast'/></query></iq>`)
	if got := w.take(bob); !has(got, "presence type=unavailable from=club/Bob [outcast/none jid=bob@far.example/phone actor=Alice] 110 301") {
		t.Errorf("bob was not told of his ban: %v", got)
	}
	h.remote("bob@far.example/laptop", `<presence to='club@conference.localhost/Bobby'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	if got := w.take("bob@far.example/laptop"); !has(got, "presence type=error from=club/Bobby error=forbidden") {
		t.Errorf("banned bob enters from another device: %v", got)
	}

	// Users of other servers make no rooms here.
	h.remote(bob, `<presence to='newroom@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	if got := w.take(bob); !has(got, "presence type=error from=newroom/Bob error=not-allowed") {
		t.Errorf("a user of another server created a room: %v", got)
	}
	if items := h.svc.Items(); slices.ContainsFunc(items, func(i DiscoItem) bool { return strings.HasPrefix(i.JID, "newroom@") }) {
		t.Errorf("the room exists: %v", items)
	}

	// A stanza claiming a local user's address through federation is
	// dropped, not taken as alice's.
	h.remote("alice@localhost/evil", `<message to='club@conference.localhost' type='groupchat'><body>I am alice</body></message>`)
	expect(t, "alice", alice)
	if got := w.take("alice@localhost/evil"); len(got) != 0 {
		t.Errorf("answered a forged local address: %v", got)
	}

	// Without federation the service takes nothing from other servers.
	plain := newHarness(t, nil)
	owner := plain.session("alice@localhost/desk")
	plain.room(owner, "lobby", "Alice", nil)
	plain.remote(bob, `<presence to='lobby@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	expect(t, "alice without federation", owner)
}

// TestRemoteGhost: an occupant whose server answers with an error saying
// it cannot be reached leaves every room (status 333), and checking the
// occupants of a lost server pings each of them.
func TestRemoteGhost(t *testing.T) {
	h, w := newRemoteHarness(t)
	alice := h.session("alice@localhost/desk")
	h.room(alice, "a", "Alice", nil)
	h.room(alice, "b", "Alice", nil)
	const bob, carol = "bob@far.example/phone", "carol@other.example/pc"
	for _, r := range []string{"a", "b"} {
		h.remote(bob, `<presence to='`+r+`@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	}
	h.remote(carol, `<presence to='a@conference.localhost/Carol'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	w.take(bob)
	w.take(carol)
	alice.take()

	h.svc.CheckRemoteDomain("far.example")
	got := w.take(bob)
	if len(got) != 1 || !strings.HasPrefix(got[0], "iq type=get from=conference.localhost") {
		t.Fatalf("bob's server was not asked about him: %v", got)
	}
	if got := w.take(carol); len(got) != 0 {
		t.Errorf("carol, of a server not lost, was pinged: %v", got)
	}

	// An error answer to a relayed IQ says nothing about bob's presence.
	h.remote(bob, `<iq type='error' id='x' to='a@conference.localhost/Alice'><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	expect(t, "alice", alice)
	// The bounce of the ping does.
	h.remote(bob, `<iq type='error' id='ghost' to='conference.localhost'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`)
	expect(t, "alice", alice,
		"presence type=unavailable from=a/Bob [none/none jid=bob@far.example/phone] 333",
		"presence type=unavailable from=b/Bob [none/none jid=bob@far.example/phone] 333")
	if got := w.take(bob); len(got) != 0 {
		t.Errorf("the removed bob was sent %v", got)
	}
	h.svc.mu.Lock()
	_, kept := h.svc.remotes[bob]
	h.svc.mu.Unlock()
	if kept {
		t.Error("bob's session is still kept")
	}
	// The bounce of a groupchat message does the same for carol.
	h.remote(carol, `<message type='error' to='a@conference.localhost/Alice'><error type='cancel'><remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>`)
	expect(t, "alice", alice, "presence type=unavailable from=a/Carol [none/none jid=carol@other.example/pc] 333")
}

// TestRemoteConference: a user of another server takes part in a room's
// call only as an occupant, whatever the room allows others.
func TestRemoteConference(t *testing.T) {
	h, _ := newRemoteHarness(t)
	alice := h.session("alice@localhost/desk")
	h.room(alice, "call", "Alice", map[string]string{"poosms#conference_nonoccupants": "1"})
	room := jid.MustParse("call@conference.localhost")
	bob := jid.MustParse("bob@far.example/phone")
	if _, err := h.svc.MayConference(context.Background(), room, h.svc.RemoteSession(bob)); err == nil {
		t.Fatal("bob, not in the room, may join its call")
	}
	h.remote(bob.String(), `<presence to='call@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	occ, err := h.svc.MayConference(context.Background(), room, h.svc.RemoteSession(bob))
	if err != nil || occ != "call@conference.localhost/Bob" {
		t.Fatalf("bob, in the room, joins its call: %q, %v", occ, err)
	}
	// A session of a local user is not mistaken for one of another server.
	if _, err := h.svc.MayConference(context.Background(), room, h.session("eve@far.example/x")); err == nil {
		t.Error("a session that is not of this server nor federated may call")
	}
}
