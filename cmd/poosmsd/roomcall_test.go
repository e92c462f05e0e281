package main

import (
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// Tests of the limits on a room's call, over real streams to a real node.
// Joining a call needs no media: the join result and the room events
// travel on the XMPP stream.

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
		return e.Local == "presence" && e.From() == room+"/"+nick && (hasStatus(e, 110) || e.Type() == "error")
	})
}

// joinCall asks to join room's call and returns the answer: the
// <joined/> element, or nil and the error condition.
func joinCall(p *peer, room, id string) (*stanza.Element, string) {
	p.t.Helper()
	p.send(iqTo(room, id, stanza.New(nsConf, "join")))
	r := p.expect(10*time.Second, "answer to join "+id, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if r.Type() == "result" {
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
