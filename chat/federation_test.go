package chat

import (
	"context"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// fakeFed records what the service sends to other servers.
type fakeFed struct{ fakeSession }

func (f *fakeFed) Send(_ context.Context, el *stanza.Element) error { return f.fakeSession.Send(el) }

// remote hands the service a stanza from another server, as s2s does.
func (h *harness) remote(raw string) {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	h.svc.HandleRemote(context.Background(), el)
}

func newFedHarness(t *testing.T, cfg Config, users ...string) (*harness, *fakeFed) {
	fed := &fakeFed{fakeSession{new(testfake.Session)}}
	cfg.Federation = fed
	h, _ := newDBHarness(t, cfg, users...)
	return h, fed
}

// TestRemoteUsersAreNeverLocalOnes: a user of another server who happens
// to share a local user's name gets nothing of that user's: not the
// roster, not the archive, not the right to act on the account.
func TestRemoteUsersAreNeverLocalOnes(t *testing.T) {
	h, fed := newFedHarness(t, Config{}, "alice", "bob")
	alice := h.online("alice@localhost/desk", 0)
	h.setItem("bob", "carol@elsewhere.example", store.SubTo)
	h.setItem("bob", "alice@localhost", store.SubNone)

	for _, tc := range []struct{ name, raw, cond string }{
		{"roster", `<iq from='alice@evil.example/x' to='alice@localhost' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>`, "forbidden"},
		{"archive", `<iq from='alice@evil.example/x' to='alice@localhost' type='set' id='2'><query xmlns='urn:xmpp:mam:2'/></iq>`, "service-unavailable"},
		{"blocklist", `<iq from='alice@evil.example/x' to='localhost' type='get' id='3'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, "service-unavailable"},
		{"carbons", `<iq from='alice@evil.example/x' to='localhost' type='set' id='4'><enable xmlns='urn:xmpp:carbons:2'/></iq>`, "service-unavailable"},
		{"vcard set", `<iq from='alice@evil.example/x' to='alice@localhost' type='set' id='5'><vCard xmlns='vcard-temp'><FN>pwned</FN></vCard></iq>`, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.remote(tc.raw)
			got := fed.take()
			if len(got) != 1 || !strings.Contains(got[0], "error="+tc.cond) || !strings.Contains(got[0], "to=alice@evil.example/x") {
				t.Fatalf("answered %v, want one error %s to the requester", got, tc.cond)
			}
		})
	}
	// Server questions are answered.
	h.remote(`<iq from='alice@evil.example/x' to='localhost' type='get' id='6'><ping xmlns='urn:xmpp:ping'/></iq>`)
	if got := fed.take(); len(got) != 1 || !strings.HasPrefix(got[0], "iq type=result from=localhost") {
		t.Fatalf("ping answered %v", got)
	}

	// A message from alice@evil.example is not alice's own: it is kept as
	// received from that address, and carbons treat it as incoming.
	h.remote(`<message from='alice@evil.example/x' to='alice@localhost' type='chat'><body>not you</body></message>`)
	expect(t, "alice", alice, "message type=chat from=alice@evil.example/x to=alice@localhost body=not you")
	page, err := h.svc.archive.QueryArchive(t.Context(), "alice", store.ArchiveQuery{Max: 10})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].With != "alice@evil.example/x" {
		t.Fatalf("archive %+v, %v", page.Messages, err)
	}

	// Subscription stanzas from bob@evil.example touch the recipient's
	// roster only, never the local bob's.
	h.remote(`<presence from='bob@evil.example' to='alice@localhost' type='unsubscribed'/>`)
	h.remote(`<presence from='bob@evil.example' to='alice@localhost' type='subscribe'/>`)
	if it, _ := h.db.RosterItem(t.Context(), "bob", "carol@elsewhere.example"); it.Subscription != store.SubTo {
		t.Fatalf("the local bob's roster changed: %+v", it)
	}
	if it, _ := h.db.RosterItem(t.Context(), "bob", "alice@localhost"); it.PendingIn || it.Subscription != store.SubNone {
		t.Fatalf("the local bob's roster changed: %+v", it)
	}
	if it, err := h.db.RosterItem(t.Context(), "alice", "bob@evil.example"); err != nil || !it.PendingIn {
		t.Fatalf("alice did not get bob@evil.example's request: %+v %v", it, err)
	}
}

// TestOutgoingToAnotherServer: alice's message to someone of another
// server goes to federation, into her archive and to her other
// sessions; not when she blocked the recipient.
func TestOutgoingToAnotherServer(t *testing.T) {
	h, fed := newFedHarness(t, Config{}, "alice")
	h.setItem("alice", "bob@remote.example", store.SubBoth)
	desk := h.online("alice@localhost/desk", 0)
	laptop := h.online("alice@localhost/laptop", 0)
	h.send(laptop, `<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>`)
	laptop.take()
	if got := fed.take(); !sameSet(got, []string{
		"presence from=alice@localhost/desk to=bob@remote.example", "presence type=probe from=alice@localhost/desk to=bob@remote.example",
		"presence from=alice@localhost/laptop to=bob@remote.example", "presence type=probe from=alice@localhost/laptop to=bob@remote.example",
	}) {
		t.Fatalf("logging in sent %v", got)
	}

	h.send(desk, `<message to='bob@remote.example' type='chat' id='m1'><body>hi</body></message>`)
	if got := fed.take(); len(got) != 1 || got[0] != "message type=chat from=alice@localhost/desk to=bob@remote.example body=hi" {
		t.Fatalf("federation got %v", got)
	}
	if got := laptop.takeAll(); len(got) != 1 || got[0].Child(NSCarbons, "sent") == nil {
		t.Fatalf("laptop got %v, want a sent carbon", got)
	}
	page, err := h.svc.archive.QueryArchive(t.Context(), "alice", store.ArchiveQuery{Max: 10})
	if err != nil || len(page.Messages) != 1 || page.Messages[0].With != "bob@remote.example" {
		t.Fatalf("archive %+v, %v", page.Messages, err)
	}

	h.send(desk, `<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='bob@remote.example'/></block></iq>`)
	desk.take()
	fed.take()
	h.send(desk, `<message to='bob@remote.example' type='chat' id='m2'><body>blocked</body></message>`)
	if got := fed.take(); len(got) != 0 {
		t.Fatalf("a message to someone alice blocked went out: %v", got)
	}
	if got := desk.take(); len(got) != 1 || !strings.Contains(got[0], "error=not-acceptable") {
		t.Fatalf("alice got %v", got)
	}
	// Nor does her presence reach him, nor her probes when she logs in.
	h.send(desk, `<presence><status>busy</status></presence>`)
	h.online("alice@localhost/phone", 0)
	for _, s := range fed.take() {
		if strings.Contains(s, "bob@remote.example") {
			t.Fatalf("presence went to someone alice blocked: %s", s)
		}
	}
}

// TestBlockedRemoteSendersAreRefused: a user's blocklist applies to users
// of other servers, online or not, without telling them they are
// blocked.
func TestBlockedRemoteSendersAreRefused(t *testing.T) {
	h, fed := newFedHarness(t, Config{}, "alice")
	desk := h.online("alice@localhost/desk", 0)
	h.send(desk, `<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><item jid='remote.example'/></block></iq>`)
	desk.take()
	fed.take()
	for _, online := range []bool{true, false} {
		if !online {
			h.close(desk)
		}
		h.remote(`<message from='bob@remote.example/x' to='alice@localhost' type='chat' id='m'><body>hello?</body></message>`)
		if got := fed.take(); len(got) != 1 || !strings.Contains(got[0], "error=service-unavailable") {
			t.Fatalf("online=%v: bob got %v", online, got)
		}
		h.remote(`<presence from='bob@remote.example' to='alice@localhost' type='subscribe'/>`)
		if it, err := h.db.RosterItem(t.Context(), "alice", "bob@remote.example"); err == nil {
			t.Fatalf("online=%v: a blocked subscription request reached the roster: %+v", online, it)
		}
	}
	if got := desk.take(); len(got) != 0 {
		t.Fatalf("alice received %v from someone she blocked", got)
	}
	if n, _ := h.db.OfflineMessages(t.Context(), "alice"); len(n) != 0 {
		t.Fatalf("%d messages from someone alice blocked were kept for her", len(n))
	}
}

// TestPresenceFromALostServerExpires: presence seen from another server
// is probed again when the streams with it are lost, reported
// unavailable when nothing confirms it, and probed once more when the
// server is back.
func TestPresenceFromALostServerExpires(t *testing.T) {
	h, fed := newFedHarness(t, Config{RemotePresenceTimeout: 50 * time.Millisecond}, "alice")
	alice := h.online("alice@localhost/desk", 0)
	fed.take()
	h.remote(`<presence from='bob@remote.example/phone' to='alice@localhost'/>`)
	h.remote(`<presence from='carol@remote.example/pc' to='alice@localhost'/>`)
	h.remote(`<presence from='dave@other.example/pc' to='alice@localhost'/>`)
	alice.take()

	// carol confirms in time; bob does not; dave's server is fine.
	h.svc.RemoteAvailability("remote.example", false)
	probes := fed.take()
	want := []string{"presence type=probe from=alice@localhost to=bob@remote.example", "presence type=probe from=alice@localhost to=carol@remote.example"}
	if !sameSet(probes, want) {
		t.Fatalf("probes %v, want %v", probes, want)
	}
	h.remote(`<presence from='carol@remote.example/pc' to='alice@localhost'/>`)
	alice.take()
	deadline := time.Now().Add(5 * time.Second)
	var got []string
	for len(got) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		got = alice.take()
	}
	if !sameSet(got, []string{"presence type=unavailable from=bob@remote.example/phone to=alice@localhost"}) {
		t.Fatalf("alice got %v, want bob alone reported unavailable", got)
	}

	// When a stream with remote.example is back, bob is asked again.
	h.svc.RemoteAvailability("remote.example", true)
	if got := fed.take(); !sameSet(got, []string{"presence type=probe from=alice@localhost to=bob@remote.example"}) {
		t.Fatalf("back: probes %v", got)
	}
}

// TestAnUnreachableServersPresenceExpiresAtOnce: a probe that comes back
// unreachable ends the wait.
func TestAnUnreachableServersPresenceExpiresAtOnce(t *testing.T) {
	h, fed := newFedHarness(t, Config{RemotePresenceTimeout: time.Hour}, "alice")
	alice := h.online("alice@localhost/desk", 0)
	h.remote(`<presence from='bob@remote.example/phone' to='alice@localhost'/>`)
	alice.take()
	h.svc.RemoteAvailability("remote.example", false)
	fed.take()
	h.remote(`<presence from='bob@remote.example' to='alice@localhost' type='error'><error type='cancel'><remote-server-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`)
	expect(t, "alice", alice, "presence type=unavailable from=bob@remote.example/phone to=alice@localhost")
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		if seen[x] == 0 {
			return false
		}
		seen[x]--
	}
	return true
}
