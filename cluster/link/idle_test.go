package link

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/cluster"
	"poosms.org/poosms/stanza"
)

// placedBy returns the node the hub says hosts room, "" when none.
func (h *hub) placedBy(room string) cluster.NodeID {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.placed[room]
}

// waitFor polls cond every few milliseconds until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		<-tick.C
	}
}

func TestIdleRoomsAreGivenBackAndPlacedAgain(t *testing.T) {
	h := newHub()
	ns := startNodesIdle(t, h, 500*time.Millisecond, "a", "b")
	a, b := ns["a"], ns["b"]
	alice := a.login("alice@x/pc")
	bob := b.login("bob@x/phone")
	ctx := context.Background()
	msg := func(from *fakeSession, room string) *stanza.Element {
		return stanza.New(stanza.NSClient, "message").SetAttr("from", from.JID().String()).SetAttr("to", room).SetAttr("type", "groupchat")
	}

	// alice sends to 200 rooms that nobody is in, and to one she is in.
	a.rooms.mu.Lock()
	a.rooms.inUse = map[string]bool{"kept@conf.x": true}
	a.rooms.mu.Unlock()
	a.link.Room(ctx, alice, msg(alice, "kept@conf.x"))
	for i := range 200 {
		a.link.Room(ctx, alice, msg(alice, fmt.Sprintf("r%d@conf.x", i)))
	}
	if got := a.link.HostedRooms(); got != 201 {
		t.Fatalf("a hosts %d rooms right after the stanzas, want 201", got)
	}
	// The empty ones are given back; the one in use stays.
	waitFor(t, 5*time.Second, "a gives back its idle rooms", func() bool { return a.link.HostedRooms() == 1 })
	h.mu.Lock()
	placed := len(h.placed)
	h.mu.Unlock()
	if placed != 1 || h.placedBy("kept@conf.x") != "a" {
		t.Fatalf("after the release the cluster holds %d placements (kept@conf.x by %q), want only kept@conf.x by a", placed, h.placedBy("kept@conf.x"))
	}

	// A given-back room is placed again by the next stanza, on the node
	// it arrives at, which reads it afresh.
	b.link.Room(ctx, bob, msg(bob, "r7@conf.x"))
	if h.placedBy("r7@conf.x") != "b" || !slices.Contains(b.rooms.adopted, "r7@conf.x") {
		t.Fatalf("r7 placed by %q, b adopted %q", h.placedBy("r7@conf.x"), b.rooms.adopted)
	}
	if len(b.rooms.seen) != 1 {
		t.Fatalf("b's rooms saw %q", b.rooms.seen)
	}
}

// A stanza another node forwarded for a room the host has given back
// since: the host takes the room again when nobody holds it, and tells
// the sender to try again when another node does.
func TestForwardedStanzaForAGivenBackRoom(t *testing.T) {
	h := newHub()
	ns := startNodesIdle(t, h, 50*time.Millisecond, "a", "b")
	a, b := ns["a"], ns["b"]
	alice := a.login("alice@x/pc")
	bob := b.login("bob@x/phone")
	ctx := context.Background()
	join := func(s *fakeSession, room string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("from", s.JID().String()).SetAttr("to", room+"/"+s.JID().Localpart())
	}
	for _, room := range []string{"free@conf.x", "taken@conf.x"} {
		a.link.Room(ctx, alice, join(alice, room))
	}
	waitFor(t, 5*time.Second, "a gives back both rooms", func() bool { return a.link.HostedRooms() == 0 })

	// b forwards bob's join to a, as b would have when it looked up a
	// moment before the release.
	if err := b.node.Send(ctx, "a", addressed(kindRoom, bob.JID().String(), join(bob, "free@conf.x"))); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if h.placedBy("free@conf.x") != "a" || !slices.Contains(a.rooms.seen, "bob@x/phone presence") {
		t.Fatalf("free@conf.x placed by %q; a's rooms saw %q", h.placedBy("free@conf.x"), a.rooms.seen)
	}

	// Another node took the room meanwhile: bob is told to try again.
	h.mu.Lock()
	h.placed["taken@conf.x"] = "b"
	h.mu.Unlock()
	seen := len(a.rooms.seen)
	if err := b.node.Send(ctx, "a", addressed(kindRoom, bob.JID().String(), join(bob, "taken@conf.x"))); err != nil {
		t.Fatal(err)
	}
	h.settle(t)
	if len(a.rooms.seen) != seen {
		t.Fatalf("a ran a stanza for a room b holds: %q", a.rooms.seen[seen:])
	}
	got := bob.received()
	if len(got) == 0 || !strings.Contains(got[len(got)-1], "recipient-unavailable") {
		t.Fatalf("bob got %q, want a recipient-unavailable error", got)
	}
}
