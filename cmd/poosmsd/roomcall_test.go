package main

import (
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// Tests of who may be in a room's call and how the call shows them, over
// real streams to a real node. Joining a call needs no media: the join
// result and the room events travel on the XMPP stream.

const nsConf = "urn:poosms:conference:0"

// roomPeer logs user in on n (password user-password) as a peer whose
// stanzas are kept until matched.
func roomPeer(t *testing.T, n *testNode, user string) *peer {
	t.Helper()
	addUser(t, n.cfg, user, user+"-password")
	return newPeer(t, dialUser(t, n, user, user+"-password", "desk"), user, nil)
}

// enter sends presence to room/nick with password (if any) and returns
// the self-presence or the error presence.
func enter(p *peer, room, nick, password string) *stanza.Element {
	p.t.Helper()
	x := stanza.New(nsMUC, "x")
	if password != "" {
		x.Append(stanza.New(nsMUC, "password").SetText(password))
	}
	p.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/"+nick).Append(x))
	return p.expect(10*time.Second, "entering "+room+" as "+nick, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == room+"/"+nick && (hasStatus(e, 110) || e.IsError())
	})
}

// configure submits a room configuration form with the fields given
// (name, value pairs); the room must answer with a result.
func configure(p *peer, room string, fields ...string) {
	p.t.Helper()
	x := stanza.New("jabber:x:data", "x").SetAttr("type", "submit").
		Append(field("FORM_TYPE", "http://jabber.org/protocol/muc#roomconfig"))
	for i := 0; i+1 < len(fields); i += 2 {
		x.Append(field(fields[i], fields[i+1]))
	}
	p.send(iqTo(room, "cfg-"+room, stanza.New(nsMUCOwner, "query").Append(x)))
	p.iqResult("cfg-" + room)
}

// setAffiliation makes user@localhost aff in room.
func setAffiliation(p *peer, room, user, aff string) {
	p.t.Helper()
	id := "aff-" + user + "-" + aff
	item := stanza.New(nsMUCAdmin, "item").SetAttr("jid", user+"@localhost").SetAttr("affiliation", aff)
	p.send(iqTo(room, id, stanza.New(nsMUCAdmin, "query").Append(item)))
	p.iqResult(id)
}

const nsMUCAdmin = "http://jabber.org/protocol/muc#admin"

// joinCall asks to join room's call and returns the answer: the
// <joined/> element, or nil and the error condition.
func joinCall(p *peer, room, id string) (*stanza.Element, string) {
	p.t.Helper()
	p.send(iqTo(room, id, stanza.New(nsConf, "join")))
	r := p.expect(10*time.Second, "answer to join "+id, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if r.IQType() == stanza.ResultIQ {
		if j := r.Child(nsConf, "joined"); j != nil {
			return j, ""
		}
		p.t.Fatalf("%s: join result without <joined/>: %s", p, r)
	}
	return nil, errorCondition(r)
}

// errorCondition is the stanza error condition of r ("" if none).
func errorCondition(r *stanza.Element) string {
	if e := r.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Space == stanza.NSStanzas && c.Local != "text" {
				return c.Local
			}
		}
	}
	return ""
}

// callEvent waits for a conference event local about participant id.
func callEvent(p *peer, local, id string) *stanza.Element {
	p.t.Helper()
	m := p.expect(10*time.Second, local+" of "+id, func(e *stanza.Element) bool {
		ev := e.Child(nsConf, local)
		return e.Local == "message" && ev != nil && ev.Attr("id") == id
	})
	return m.Child(nsConf, local)
}

// TestCallNeedsTheRoom: only the room's occupants join its call, unless
// the room lets others in (poosms#conference_nonoccupants); leaving the
// room ends one's place in the call.
func TestCallNeedsTheRoom(t *testing.T) {
	n := startTestNode(t, testConfig(t, ""))
	alice, bob, carol := roomPeer(t, n, "alice"), roomPeer(t, n, "bob"), roomPeer(t, n, "carol")
	const room = "standup@conference.localhost"
	createRoom(alice, room, "Alice")

	if _, cond := joinCall(bob, room, "b1"); cond != "forbidden" {
		t.Fatalf("bob, not in the room, joins its call: %q, want forbidden", cond)
	}
	if _, cond := joinCall(bob, "nowhere@conference.localhost", "b2"); cond != "forbidden" {
		t.Fatalf("bob opens the call of a room that does not exist: %q, want forbidden", cond)
	}
	enter(bob, room, "Bob", "")
	joined, cond := joinCall(bob, room, "b3")
	if joined == nil {
		t.Fatalf("bob, in the room, is refused its call: %s", cond)
	}
	// Leaving the room takes bob out of the call.
	bob.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/Bob").SetAttr("type", "unavailable"))
	if left := callEvent(bob, "participant-left", joined.Attr("participant")); left.Attr("reason") != "removed" {
		t.Fatalf("bob left the room; his call ended with %s", left)
	}

	// The room may let users who are not in it call.
	configure(alice, room, "poosms#conference_nonoccupants", "1")
	if joined, cond := joinCall(carol, room, "c1"); joined == nil {
		t.Fatalf("carol is refused the call of a room open to callers: %s", cond)
	}
	// A ban still counts, and puts the banned out of the call.
	setAffiliation(alice, room, "carol", "outcast")
	carol.expect(10*time.Second, "carol removed from the call", func(e *stanza.Element) bool {
		l := e.Child(nsConf, "participant-left")
		return l != nil && l.Attr("reason") == "removed"
	})
	if _, cond := joinCall(carol, room, "c2"); cond != "forbidden" {
		t.Fatalf("carol, banned, joins the call: %q", cond)
	}
}

// TestPasswordRoomCall: the call of a password-protected room is for those
// who entered the room with the password, and for its admins and owners,
// even when the room lets users who are not in it call.
func TestPasswordRoomCall(t *testing.T) {
	n := startTestNode(t, testConfig(t, ""))
	alice, bob, dave := roomPeer(t, n, "alice"), roomPeer(t, n, "bob"), roomPeer(t, n, "dave")
	const room = "vault@conference.localhost"
	createRoom(alice, room, "Alice")
	configure(alice, room, "muc#roomconfig_passwordprotectedroom", "1", "muc#roomconfig_roomsecret", "s3cret",
		"poosms#conference_nonoccupants", "1")
	setAffiliation(alice, room, "dave", "admin")

	if _, cond := joinCall(bob, room, "b1"); cond != "forbidden" {
		t.Fatalf("bob, without the password, joins the call: %q, want forbidden", cond)
	}
	if r := enter(bob, room, "Bob", "guess"); !r.IsError() {
		t.Fatalf("a wrong password let bob in: %s", r)
	}
	if _, cond := joinCall(bob, room, "b2"); cond != "forbidden" {
		t.Fatalf("bob, refused for a wrong password, joins the call: %q, want forbidden", cond)
	}
	if r := enter(bob, room, "Bob", "s3cret"); r.IsError() {
		t.Fatalf("the password did not let bob in: %s", r)
	}
	if joined, cond := joinCall(bob, room, "b3"); joined == nil {
		t.Fatalf("bob, in with the password, is refused the call: %s", cond)
	}
	if joined, cond := joinCall(dave, room, "d1"); joined == nil {
		t.Fatalf("dave, an admin, is refused the call: %s", cond)
	}
}

// TestCallShowsTheRoom: in a call, the others appear by their address in
// the room (room/nick); their real JIDs only to those the room lets see
// them (moderators in a semi-anonymous room, everyone in a non-anonymous
// one). A new nickname shows in the call.
func TestCallShowsTheRoom(t *testing.T) {
	n := startTestNode(t, testConfig(t, ""))
	alice, bob, carol := roomPeer(t, n, "alice"), roomPeer(t, n, "bob"), roomPeer(t, n, "carol")
	const room = "standup@conference.localhost"
	createRoom(alice, room, "Alice") // the owner: a moderator
	enter(bob, room, "Bobby", "")    // a participant

	aj, _ := joinCall(alice, room, "a1")
	bj, _ := joinCall(bob, room, "b1")
	if aj == nil || bj == nil {
		t.Fatal("alice or bob could not join the call")
	}
	aliceID, bobID := aj.Attr("participant"), bj.Attr("participant")
	// bob, who may not see real JIDs, sees alice by her nickname only.
	var seen *stanza.Element
	for _, p := range bj.Elements() {
		if p.Local == "participant" && p.Attr("id") == aliceID {
			seen = p
		}
	}
	if seen == nil || seen.Attr("occupant") != room+"/Alice" || seen.Attr("jid") != "" {
		t.Fatalf("bob's join result shows alice as %v, want occupant %s/Alice and no real JID", seen, room)
	}
	// alice, a moderator, sees bob's nickname and his real JID.
	if ev := callEvent(alice, "participant-joined", bobID); ev.Attr("occupant") != room+"/Bobby" || ev.Attr("jid") != "bob@localhost/desk" {
		t.Fatalf("alice sees bob join as %s", ev)
	}

	// bob takes another nickname: the call says so, to each as the room would.
	bob.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"/Bob"))
	if ev := callEvent(alice, "participant-changed", bobID); ev.Attr("occupant") != room+"/Bob" || ev.Attr("jid") != "bob@localhost/desk" {
		t.Fatalf("alice sees bob's new nickname as %s", ev)
	}

	// carol joins while the room is semi-anonymous: bob does not see who she is.
	enter(carol, room, "Carol", "")
	cj, _ := joinCall(carol, room, "c1")
	if cj == nil {
		t.Fatal("carol could not join the call")
	}
	carolID := cj.Attr("participant")
	for _, p := range cj.Elements() {
		if p.Local == "participant" && p.Attr("id") == bobID && (p.Attr("occupant") != room+"/Bob" || p.Attr("jid") != "") {
			t.Fatalf("carol's join result shows bob as %s", p)
		}
	}
	if ev := callEvent(bob, "participant-joined", carolID); ev.Attr("occupant") != room+"/Carol" || ev.Attr("jid") != "" {
		t.Fatalf("bob sees carol join as %s, want her nickname only", ev)
	}
	// The room becomes non-anonymous: from then on everyone sees real JIDs.
	configure(alice, room, "muc#roomconfig_whois", "anyone")
	carol.send(iqTo(room, "c-leave", stanza.New(nsConf, "leave")))
	carol.iqResult("c-leave")
	if ev := callEvent(bob, "participant-left", carolID); ev.Attr("jid") != "carol@localhost/desk" {
		t.Fatalf("in a non-anonymous room bob sees carol leave as %s", ev)
	}
	if strings.Contains(bob.keptSummary(), "alice@localhost") {
		t.Fatalf("bob saw alice's real JID while the room was semi-anonymous:\n%s", bob.keptSummary())
	}
}

// TestConferencesPerUser: one user opens at most max-conferences-per-user
// conferences at once, so one user cannot take the node's limit; joining
// a conference that runs already is not limited.
func TestConferencesPerUser(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.MaxConferencesPerUser = 2
	n := startTestNode(t, cfg)
	alice, bob := roomPeer(t, n, "alice"), roomPeer(t, n, "bob")
	for _, r := range []string{"one", "two", "three", "four"} {
		createRoom(alice, r+"@conference.localhost", "Alice")
	}
	createRoom(bob, "bobs@conference.localhost", "Bob")
	enter(alice, "bobs@conference.localhost", "Alice", "")

	first, _ := joinCall(alice, "one@conference.localhost", "a1")
	if first == nil {
		t.Fatal("alice cannot open her first conference")
	}
	if j, cond := joinCall(alice, "two@conference.localhost", "a2"); j == nil {
		t.Fatalf("alice cannot open her second conference: %s", cond)
	}
	alice.send(iqTo("three@conference.localhost", "a3", stanza.New(nsConf, "join")))
	r := alice.expect(10*time.Second, "answer to a3", func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "a3" })
	if errorCondition(r) != "resource-constraint" || !strings.Contains(r.Child("", "error").ChildText(stanza.NSStanzas, "text"), "2 conferences") {
		t.Fatalf("alice's third conference: %s, want resource-constraint saying the limit", r)
	}
	// Someone else's conference is not hers to count.
	if j, cond := joinCall(bob, "bobs@conference.localhost", "b1"); j == nil {
		t.Fatalf("bob cannot open his conference: %s", cond)
	}
	if j, cond := joinCall(alice, "bobs@conference.localhost", "a4"); j == nil {
		t.Fatalf("alice cannot join bob's running conference: %s", cond)
	}
	// Once one of hers ends, she may open another.
	alice.send(iqTo("one@conference.localhost", "a5", stanza.New(nsConf, "leave")))
	alice.iqResult("a5")
	if j, cond := joinCall(alice, "four@conference.localhost", "a6"); j == nil {
		t.Fatalf("alice cannot open a conference after ending one: %s", cond)
	}
}
