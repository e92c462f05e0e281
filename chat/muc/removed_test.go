package muc

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"
)

// TestAccountRemoved: once alice's account is deleted, a new alice owns
// none of her rooms, is no member of the rooms she was one of, and cannot
// create a room for a minute (a session of the deleted account that has
// not ended yet must not become an owner again); a ban stays. The changes
// are in the store too, and each touched room's call is rechecked.
func TestAccountRemoved(t *testing.T) {
	var mu sync.Mutex
	var rechecked []string
	h := newHarness(t, func(c *Config) {
		c.AccessChanged = func(_ context.Context, room jid.JID) {
			mu.Lock()
			rechecked = append(rechecked, room.Localpart())
			mu.Unlock()
		}
	})
	alice := h.session("alice@localhost/a")
	bob := h.session("bob@localhost/b")
	persistent := map[string]string{"muc#roomconfig_persistentroom": "1"}
	h.room(alice, "hers", "Alice", persistent)
	h.room(bob, "club", "Bob", map[string]string{"muc#roomconfig_persistentroom": "1", "muc#roomconfig_membersonly": "1"})
	h.iq(bob, adminSet("club", `<item affiliation='admin' jid='alice@localhost'/><item affiliation='outcast' jid='eve@localhost'/>`))
	h.room(bob, "strict", "Bob", persistent)
	h.iq(bob, adminSet("strict", `<item affiliation='outcast' jid='alice@localhost'><reason>spam</reason></item>`))
	alice.take()
	bob.take()
	mu.Lock()
	rechecked = nil
	mu.Unlock()

	h.svc.AccountRemoved(context.Background(), jid.MustParse("alice@localhost"))

	mu.Lock()
	if got := slices.Sorted(slices.Values(rechecked)); !slices.Equal(got, []string{"club", "hers"}) {
		t.Errorf("calls rechecked for %v, want club and hers", got)
	}
	mu.Unlock()
	for room, want := range map[string]string{"hers": "", "club": "", "strict": "outcast"} {
		affs, err := h.db.RoomAffiliations(t.Context(), room)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, a := range affs {
			if a.JID == "alice@localhost" {
				got = a.Affiliation
			}
		}
		if got != want {
			t.Errorf("stored affiliation of alice in %s = %q, want %q", room, got, want)
		}
	}

	check := func(when string) {
		t.Helper()
		again := h.session("alice@localhost/new")
		h.join(again, "hers/Al", "")
		expectHas(t, when+": the new alice in her old room", again, "presence from=hers/Al [none/participant jid=alice@localhost/new] 110 170")
		if got, _ := h.iq(again, `<iq type='get' id='cfg' to='hers@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`); got != "iq type=error from=hers error=forbidden" {
			t.Errorf("%s: the new alice asks for the old room's configuration: %s", when, got)
		}
		h.join(again, "club/Al", "")
		expect(t, when+": the new alice in the members-only room", again, "presence type=error from=club/Al error=registration-required")
		h.join(again, "strict/Al", "")
		expect(t, when+": the new alice in the room that banned the old", again, "presence type=error from=strict/Al error=forbidden")
		h.send(again, `<presence type='unavailable' to='hers@conference.localhost/Al'/>`)
		again.take()
	}
	check("at once")

	// A session of the deleted account cannot create a room just now.
	alice.take()
	h.join(alice, "fresh/Alice", "")
	expect(t, "alice creating a room", alice, "presence type=error from=fresh/Alice error=not-allowed")
	h.advance(2 * time.Minute)
	h.join(alice, "fresh/Alice", "")
	expectHas(t, "alice creating a room later", alice, "presence from=fresh/Alice [owner/moderator jid=alice@localhost/a] 110 170 201")

	h.restart()
	check("after a restart")
}
