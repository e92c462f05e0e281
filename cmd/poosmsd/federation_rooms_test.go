package main

import (
	"testing"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// Group rooms across servers: users of another server in our rooms, ours
// in theirs. The scenarios run against another poosmsd, Prosody and
// ejabberd.

// enterFedRoom sends presence to room/nick and returns the self-presence
// (status 110) or the error presence.
func enterFedRoom(t *testing.T, c *xmppclient.Client, room, nick string) *stanza.Element {
	t.Helper()
	c.Send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/"+nick).Append(stanza.New(nsMUC, "x")))
	return want(t, c, "the room's answer to entering "+room, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == room+"/"+nick && (hasStatus(e, 110) || e.IsError())
	})
}

// createFedRoom creates room as nick, an instant room, with the
// configuration fields given (name, value pairs).
func createFedRoom(t *testing.T, c *xmppclient.Client, room, nick string, fields ...string) {
	t.Helper()
	self := enterFedRoom(t, c, room, nick)
	if self.IsError() {
		t.Fatalf("%s cannot create %s: %s", c.JID, room, self)
	}
	if !hasStatus(self, 201) && len(fields) == 0 {
		return
	}
	x := stanza.New("jabber:x:data", "x").SetAttr("type", "submit")
	if len(fields) > 0 {
		x.Append(field("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"))
	}
	for i := 0; i+1 < len(fields); i += 2 {
		x.Append(field(fields[i], fields[i+1]))
	}
	c.Send(iq("set", room, "cfg-"+nick, stanza.New(nsMUCOwner, "query").Append(x)))
	if r := want(t, c, "the room's configuration accepted", isIQ("cfg-"+nick)); r.IQType() != stanza.ResultIQ {
		t.Fatalf("%s configuring %s: %s", c.JID, room, r)
	}
}

func groupMessage(room, body string) *stanza.Element {
	return stanza.New(stanza.NSClient, "message").SetAttr("to", room).SetAttr("type", "groupchat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body))
}

func isGroupchat(from, body string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		return e.Local == "message" && e.MessageType() == stanza.GroupChatMessage && e.From() == from && e.ChildText("", "body") == body
	}
}

// isRoomPresence matches presence from room/nick of type typ carrying
// every status code given.
func isRoomPresence(from, typ string, codes ...int) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		if e.Local != "presence" || e.From() != from || e.Type() != typ {
			return false
		}
		for _, c := range codes {
			if !hasStatus(e, c) {
				return false
			}
		}
		return true
	}
}

// setFedAffiliation gives bare an affiliation in room, as its admin c.
func setFedAffiliation(t *testing.T, c *xmppclient.Client, room, bare, aff string) {
	t.Helper()
	id := "aff-" + aff
	c.Send(iq("set", room, id, stanza.New(nsMUCAdmin, "query").
		Append(stanza.New(nsMUCAdmin, "item").SetAttr("jid", bare).SetAttr("affiliation", aff))))
	if r := want(t, c, "the affiliation set", isIQ(id)); r.IQType() != stanza.ResultIQ {
		t.Fatalf("setting %s %s in %s: %s", bare, aff, room, r)
	}
}

// theirUsersInOurRooms: bob of far enters a room of ours, reads its
// history, speaks and exchanges private messages with alice; a ban puts
// him out and keeps him out, and a members-only room lets him in only
// once he is a member. It returns alice's and bob's clients, both in
// lobby@conference.OURS.
func theirUsersInOurRooms(t *testing.T, ours, far fedSide) (alice, bob *xmppclient.Client) {
	t.Helper()
	alice = ours.login(t, "alice", "rooms")
	bob = far.login(t, "bob", "rooms")
	aliceNick, bobNick := "Alice", "Bob"
	lobby := "lobby@conference." + ours.domain
	createFedRoom(t, alice, lobby, aliceNick)
	alice.Send(groupMessage(lobby, "before bob came"))
	want(t, alice, "her own message", isGroupchat(lobby+"/"+aliceNick, "before bob came"))

	if self := enterFedRoom(t, bob, lobby, bobNick); self.IsError() {
		t.Fatalf("bob of %s cannot enter %s: %s", far.domain, lobby, self)
	}
	hist := want(t, bob, "the room's history", isGroupchat(lobby+"/"+aliceNick, "before bob came"))
	if hist.Child(stanza.NSDelay, "delay") == nil {
		t.Errorf("history without a delay: %s", hist)
	}
	want(t, alice, "bob entering", isRoomPresence(lobby+"/"+bobNick, ""))

	bob.Send(groupMessage(lobby, "hello from "+far.domain))
	want(t, alice, "bob's message", isGroupchat(lobby+"/"+bobNick, "hello from "+far.domain))
	alice.Send(chatMessage(lobby+"/"+bobNick, "psst bob"))
	want(t, bob, "alice's private message", isMessage(lobby+"/"+aliceNick, "psst bob"))
	bob.Send(chatMessage(lobby+"/"+aliceNick, "psst alice"))
	want(t, alice, "bob's private message", isMessage(lobby+"/"+bobNick, "psst alice"))

	// A members-only room: bob needs to be a member.
	club := "club@conference." + ours.domain
	createFedRoom(t, alice, club, aliceNick, "muc#roomconfig_membersonly", "1")
	if r := enterFedRoom(t, bob, club, bobNick); !r.IsError() || stanza.ErrorCondition(r) != "registration-required" {
		t.Fatalf("bob, not a member, enters a members-only room: %s", r)
	}
	setFedAffiliation(t, alice, club, "bob@"+far.domain, "member")
	if r := enterFedRoom(t, bob, club, bobNick); r.IsError() {
		t.Fatalf("bob, a member, cannot enter: %s", r)
	}
	// A ban puts him out, and keeps him out.
	setFedAffiliation(t, alice, club, "bob@"+far.domain, "outcast")
	want(t, bob, "his ban", isRoomPresence(club+"/"+bobNick, "unavailable", 301))
	if r := enterFedRoom(t, bob, club, bobNick); !r.IsError() || stanza.ErrorCondition(r) != "forbidden" {
		t.Fatalf("bob, banned, enters again: %s", r)
	}
	return alice, bob
}

// ourUsersInTheirRooms: alice enters a room on far's room service, reads
// its history, speaks, exchanges private messages with bob, and leaves.
func ourUsersInTheirRooms(t *testing.T, ours, far fedSide, mucDomain string, alice, bob *xmppclient.Client) {
	t.Helper()
	hall := "hall@" + mucDomain
	createFedRoom(t, bob, hall, "Bobby")
	bob.Send(groupMessage(hall, "welcome to "+far.domain))
	want(t, bob, "his own message", isGroupchat(hall+"/Bobby", "welcome to "+far.domain))

	if self := enterFedRoom(t, alice, hall, "Ally"); self.IsError() {
		t.Fatalf("alice cannot enter %s: %s", hall, self)
	}
	want(t, alice, "the room's history", isGroupchat(hall+"/Bobby", "welcome to "+far.domain))
	want(t, bob, "alice entering", isRoomPresence(hall+"/Ally", ""))
	alice.Send(groupMessage(hall, "hi from "+ours.domain))
	want(t, bob, "alice's message", isGroupchat(hall+"/Ally", "hi from "+ours.domain))
	want(t, alice, "her own message", isGroupchat(hall+"/Ally", "hi from "+ours.domain))
	bob.Send(chatMessage(hall+"/Ally", "private to ally"))
	want(t, alice, "bob's private message", isMessage(hall+"/Bobby", "private to ally"))
	alice.Send(chatMessage(hall+"/Bobby", "private to bobby"))
	want(t, bob, "alice's private message", isMessage(hall+"/Ally", "private to bobby"))

	alice.Send(stanza.New(stanza.NSClient, "presence").SetAttr("to", hall+"/Ally").SetAttr("type", "unavailable"))
	want(t, bob, "alice leaving", isRoomPresence(hall+"/Ally", "unavailable"))
	want(t, alice, "her own departure", isRoomPresence(hall+"/Ally", "unavailable", 110))
}

// TestFederationRooms: between two poosmsd servers, a user of beta.test
// takes part in a room of alpha.test and a user of alpha.test in a room
// of beta.test; when beta.test dies, its users leave alpha's rooms (status
// 333) instead of staying there as ghosts.
func TestFederationRooms(t *testing.T) {
	alpha, beta, far := alphaAndBetaProcess(t)
	alice, bob := theirUsersInOurRooms(t, alpha.side(), far)
	ourUsersInTheirRooms(t, alpha.side(), far, "conference.beta.test", alice, bob)

	beta.Kill()
	want(t, alice, "bob removed with his server", isRoomPresence("lobby@conference.alpha.test/Bob", "unavailable", 333))
}
