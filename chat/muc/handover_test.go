package muc

import (
	"context"
	"testing"
)

// Two services on one store stand for two nodes of a cluster: a room
// changed on one is read again by the other when it adopts the room, and
// an evicted room's occupants are told to rejoin while its record stays.
func TestAdoptAndEvict(t *testing.T) {
	a := newHarness(t, nil)
	b := newHarnessOn(t, a.db, nil) // loads the rooms as they are now
	alice := a.session("alice@localhost/a")
	a.room(alice, "moved", "Alice", map[string]string{
		"muc#roomconfig_persistentroom": "1",
		"muc#roomconfig_membersonly":    "1",
	})
	a.iq(alice, adminSet("moved", `<item affiliation='member' jid='bob@localhost'/>`))
	alice.take()

	// b has no copy yet (the room was made after it started), or an old
	// one: either way adoption reads the store.
	if err := b.svc.Adopt(context.Background(), "moved"); err != nil {
		t.Fatal(err)
	}
	bob := b.session("bob@localhost/b")
	b.join(bob, "moved/Bob", "")
	// A members-only room admits bob: b knows the affiliation a granted.
	expect(t, "bob joining the adopted room", bob,
		"presence from=moved/Bob [member/participant jid=bob@localhost/b] 110 170",
		"message type=groupchat from=moved subject=")

	// a loses the room: alice is told it moved, and the record stays.
	a.svc.Evict(context.Background(), "moved")
	expect(t, "alice evicted", alice, "presence type=unavailable from=moved/Alice [owner/none jid=alice@localhost/a] 110 332")
	rooms, err := a.db.Rooms(context.Background())
	if err != nil || len(rooms) != 1 || rooms[0].Name != "moved" {
		t.Fatalf("stored rooms after eviction = %v, %v", rooms, err)
	}
	// A session that was in the evicted room is in no room of a's now.
	a.svc.SessionClosed(context.Background(), alice)
	if got := alice.take(); len(got) != 0 {
		t.Fatalf("closing alice after eviction sent %q", got)
	}

	// A room the store no longer has is forgotten at adoption.
	carol := b.session("carol@localhost/c")
	b.room(carol, "gone", "Carol", nil)
	b.send(carol, `<presence type='unavailable' to='gone@conference.localhost/Carol'/>`)
	carol.take()
	if err := b.svc.Adopt(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	for _, it := range b.svc.Items() {
		if it.JID == "gone@conference.localhost" {
			t.Fatal("a room the store does not have survived adoption")
		}
	}
}
