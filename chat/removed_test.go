package chat

import (
	"context"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/store"
)

// TestAccountRemovedTellsContacts: each contact of a deleted account is
// told what RFC 6121 has a server say when every subscription between them
// ends, according to the item it held, and its sessions that asked for the
// roster get a push removing the item. Sessions another node serves are
// left to that node; a directed presence to the deleted account is
// forgotten.
func TestAccountRemovedTellsContacts(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob", "carol", "dave", "erin", "frank")
	bob := h.online("bob@localhost/desk", 0)   // saw alice's presence and shared his
	carol := h.online("carol@localhost/pc", 0) // asked to see alice's presence
	dave := h.online("dave@localhost/pc", 0)   // alice asked to see his
	erin := h.online("erin@localhost/pc", 0)   // saw alice's presence only
	quiet := h.bind("frank@localhost/bot")     // bound, not available, no roster
	remote := newFakeSession("bob@localhost/phone")
	h.svc.SetRemote(remote, ResourceState{Available: true, Interested: true})
	// erin sent alice's phone directed presence: once alice is gone, her
	// unavailable presence must not go to whoever takes the name.
	h.send(erin, `<presence to='alice@localhost/phone'/>`)
	// alice's laptop, served by another node, is still available.
	h.svc.SetRemote(newFakeSession("alice@localhost/laptop"), ResourceState{Available: true})

	h.svc.AccountRemoved(context.Background(), jid.MustParse("alice@localhost"), []store.PurgedContact{
		{Owner: "bob", Subscription: store.SubBoth, Listed: true},
		{Owner: "carol", Subscription: store.SubNone, AskOut: true, Listed: true},
		{Owner: "dave", Subscription: store.SubNone, PendingIn: true},
		{Owner: "erin", Subscription: store.SubTo, Listed: true},
		{Owner: "frank", Subscription: store.SubBoth, Listed: true},
	})

	expect(t, "bob", bob,
		"presence type=unavailable from=alice@localhost/laptop to=bob@localhost",
		"presence type=unavailable from=alice@localhost to=bob@localhost",
		"presence type=unsubscribed from=alice@localhost to=bob@localhost",
		"presence type=unsubscribe from=alice@localhost to=bob@localhost",
		"iq type=set to=bob@localhost/desk item=alice@localhost:remove")
	expect(t, "carol", carol,
		"presence type=unsubscribed from=alice@localhost to=carol@localhost",
		"iq type=set to=carol@localhost/pc item=alice@localhost:remove")
	expect(t, "dave", dave, "presence type=unsubscribe from=alice@localhost to=dave@localhost")
	expect(t, "erin", erin,
		"presence type=unavailable from=alice@localhost/laptop to=erin@localhost",
		"presence type=unavailable from=alice@localhost to=erin@localhost",
		"presence type=unsubscribed from=alice@localhost to=erin@localhost",
		"iq type=set to=erin@localhost/pc item=alice@localhost:remove")
	expect(t, "frank (neither available nor interested)", quiet)
	expect(t, "bob's session on another node", remote)

	// erin goes away: nobody named alice hears of it.
	alice := h.bind("alice@localhost/phone")
	h.send(erin, `<presence type='unavailable'/>`)
	expect(t, "a new alice", alice)
}
