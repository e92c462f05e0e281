package main

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// Deleting an account, over real streams and real poosmsd processes: the
// account's sessions end on every node, its contacts are told and forget
// it, and a new account with the same name inherits nothing — no rooms,
// no contacts, no presence, no messages, no files, no profile.

// markers are strings only the deleted account's data holds.
const (
	oldCard     = "OldAliceCard"
	oldNick     = "OldAliceNick"
	oldBookmark = "OldAliceBookmark"
	oldListing  = "OldAliceListing"
)

// solo starts one poosmsd process on db ("" is its own SQLite file),
// wrapped as a cluster node of one for the peer helpers.
func solo(t *testing.T, bin, db string) *clusterNode {
	t.Helper()
	var extra []string
	if db != "" {
		extra = []string{"--db", db}
	}
	nd := &clusterNode{id: "solo", d: testenv.NewDaemon(t, bin, append(extra, "--log-level", "info")...), log: &nodeLog{}}
	nd.start(t)
	t.Cleanup(func() {
		nd.kill()
		if t.Failed() {
			t.Logf("---- log of poosmsd ----\n%s", nd.log.tail(80))
		}
	})
	return nd
}

// poosmsd runs a one-off command against nd's store, as an operator would.
func poosmsd(t *testing.T, nd *clusterNode, db, stdin string, args ...string) {
	t.Helper()
	if db != "" {
		args = append(args, "--db", db)
	}
	nd.d.Run(t, stdin, args...)
}

func iqOf(typ, id, to string, payload *stanza.Element) *stanza.Element {
	iq := stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).SetAttr("id", id).Append(payload)
	if to != "" {
		iq.SetAttr("to", to)
	}
	return iq
}

// ask sends an IQ and returns the answer, whatever its type.
func (p *peer) ask(typ, id, to string, payload *stanza.Element) *stanza.Element {
	p.t.Helper()
	p.send(iqOf(typ, id, to, payload))
	return p.expect(15*time.Second, "answer to iq "+id, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
}

// must sends an IQ that must succeed.
func (p *peer) must(typ, id, to string, payload *stanza.Element) *stanza.Element {
	p.t.Helper()
	r := p.ask(typ, id, to, payload)
	if r.IQType() != stanza.ResultIQ {
		p.t.Fatalf("%s: iq %s failed: %s", p, id, r)
	}
	return r
}

// rosterJIDs fetches the roster (which also subscribes to roster pushes).
func (p *peer) rosterJIDs() []string {
	p.t.Helper()
	r := p.must("get", "roster-"+strconv.FormatInt(time.Now().UnixNano(), 36), "", stanza.New("jabber:iq:roster", "query"))
	var out []string
	for _, it := range r.Child("jabber:iq:roster", "query").Elements() {
		out = append(out, it.Attr("jid"))
	}
	return out
}

func dataForm(typ string, fields ...*stanza.Element) *stanza.Element {
	return stanza.New("jabber:x:data", "x").SetAttr("type", typ).Append(fields...)
}

// configureRoom submits the room's configuration form with fields.
func configureRoom(p *peer, room string, fields ...*stanza.Element) {
	p.t.Helper()
	p.must("set", "cfg-"+room, room, stanza.New(nsMUCOwner, "query").Append(dataForm("submit", fields...)))
}

// expectStreamError waits for p's stream to end with the stream error cond.
func (p *peer) expectStreamError(d time.Duration, cond string) {
	p.t.Helper()
	p.expect(d, "a "+cond+" stream error", func(e *stanza.Element) bool {
		return e.Local == "error" && e.Child(nsStreams, cond) != nil
	})
	if _, err := p.next(5*time.Second, func(*stanza.Element) bool { return false }); err == nil || !strings.Contains(err.Error(), "stream ended") {
		p.t.Errorf("%s: stream still open after the stream error: %v", p, err)
	}
}

// nothingFrom runs act, then sends a marker message from by to p's full
// JID, and fails if p got a presence from fromBare in between.
func nothingFrom(t *testing.T, p, by *peer, fromBare, what string, act func()) {
	t.Helper()
	marker := "marker " + strconv.FormatInt(time.Now().UnixNano(), 36)
	p.ping(marker) // what came before is not act's doing
	p.kept = nil
	act()
	p.ping(marker + "-after")
	by.send(stanza.New(stanza.NSClient, "message").SetAttr("to", p.x.JID.String()).SetAttr("type", "chat").
		Append(stanza.New(stanza.NSClient, "body").SetText(marker)))
	p.expectBody(15*time.Second, by.user+"@localhost", marker)
	for _, el := range p.kept {
		if bareOf(el.From()) == fromBare && el.Local == "presence" {
			t.Errorf("%s: %s: got %s", p, what, el)
		}
	}
}

// oldAlice is what the deleted alice leaves behind: the upload URL of one
// of her files, and her two sessions.
type oldAlice struct {
	desk, phone *peer
	file        string
}

// seedAlice gives alice (on deskNode and phoneNode) contacts in every
// state, a room of her own, a membership, a profile, files and queued
// messages. bob is online on bobNode and asked for his roster; carol and
// dave are offline.
func seedAlice(t *testing.T, deskNode, phoneNode *clusterNode, bob *peer) oldAlice {
	t.Helper()
	desk := dialPeer(t, deskNode, "alice", "desk", true)
	desk.rosterJIDs()
	subscribe(t, desk, bob)
	carol := dialPeer(t, deskNode, "carol", "pc", true)
	subscribe(t, desk, carol)
	carol.close()
	// A request dave has not answered.
	desk.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", "dave@localhost").SetAttr("type", "subscribe"))

	// Her profile: vCard, a PEP node, bookmarks, a blocklist, a listing.
	desk.must("set", "vcard", "", stanza.New("vcard-temp", "vCard").Append(stanza.New("vcard-temp", "FN").SetText(oldCard)))
	desk.must("set", "nick", "", stanza.New("http://jabber.org/protocol/pubsub", "pubsub").Append(
		stanza.New("http://jabber.org/protocol/pubsub", "publish").SetAttr("node", "http://jabber.org/protocol/nick").Append(
			stanza.New("http://jabber.org/protocol/pubsub", "item").Append(
				stanza.New("http://jabber.org/protocol/nick", "nick").SetText(oldNick)))))
	desk.must("set", "bookmarks", "", stanza.New("jabber:iq:private", "query").Append(
		stanza.New("storage:bookmarks", "storage").Append(
			stanza.New("storage:bookmarks", "conference").SetAttr("jid", "hers@conference.localhost").SetAttr("name", oldBookmark))))
	desk.must("set", "block", "", stanza.New("urn:xmpp:blocking", "block").Append(
		stanza.New("urn:xmpp:blocking", "item").SetAttr("jid", "eve@localhost")))
	desk.must("set", "optin", "directory.localhost", stanza.New("jabber:iq:register", "query").Append(
		dataForm("submit", field("FORM_TYPE", "jabber:iq:register"), field("nick", oldListing), field("interests", "deletion"))))

	// A shared file.
	content := bytes.Repeat([]byte("old alice "), 100)
	slot := desk.must("get", "slot", "upload.localhost", stanza.New("urn:xmpp:http:upload:0", "request").
		SetAttr("filename", "old.txt").SetAttr("size", strconv.Itoa(len(content)))).Child("", "slot")
	put, file := slot.Child("", "put").Attr("url"), slot.Child("", "get").Attr("url")
	resp, err := http.DefaultClient.Do(mustRequest(t, http.MethodPut, put, content))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("alice uploads: %v %v", resp, err)
	}
	resp.Body.Close()

	// Her room, and a membership in bob's members-only room.
	createRoom(desk, "hers@conference.localhost", "Alice")
	configureRoom(desk, "hers@conference.localhost", field("muc#roomconfig_persistentroom", "1"))
	createRoom(bob, "club@conference.localhost", "Bob")
	configureRoom(bob, "club@conference.localhost", field("muc#roomconfig_persistentroom", "1"), field("muc#roomconfig_membersonly", "1"))
	bob.must("set", "member", "club@conference.localhost", stanza.New("http://jabber.org/protocol/muc#admin", "query").Append(
		stanza.New("http://jabber.org/protocol/muc#admin", "item").SetAttr("affiliation", "member").SetAttr("jid", "alice@localhost")))
	joinRoom(desk, "club@conference.localhost", "Alice")

	// Messages waiting: hers to carol, and bob's to her once she is away.
	desk.chat("carol@localhost", "the old alice wrote this")
	phone := dialPeer(t, phoneNode, "alice", "phone", false)
	phone.rosterJIDs()
	desk.send(stanza.NewPresence(stanza.UnavailablePresence))
	desk.ping("seeded")
	bob.expectPresence(15*time.Second, desk.x.JID.String(), "unavailable")
	bob.chat("alice@localhost", "for the old alice")
	bob.ping("queued")
	return oldAlice{desk: desk, phone: phone, file: file}
}

func mustRequest(t *testing.T, method, url string, body []byte) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// bobIsTold: bob, who saw alice's presence and shared his, is told she
// is gone (unavailable from her bare JID), that both subscriptions ended,
// and gets a roster push removing her.
func bobIsTold(t *testing.T, bob *peer) {
	t.Helper()
	const d = 15 * time.Second
	bob.expectPresence(d, "alice@localhost", "unavailable")
	bob.expectPresence(d, "alice@localhost", "unsubscribed")
	bob.expectPresence(d, "alice@localhost", "unsubscribe")
	bob.expect(d, "a roster push removing alice", func(e *stanza.Element) bool {
		q := e.Child("jabber:iq:roster", "query")
		if e.Local != "iq" || e.IQType() != stanza.SetIQ || q == nil {
			return false
		}
		it := q.Child("jabber:iq:roster", "item")
		return it != nil && it.Attr("jid") == "alice@localhost" && it.Attr("subscription") == "remove"
	})
}

// nothingInherited logs a new alice in on node and checks she has none of
// the old one's data, rooms, contacts or presence, and that the old
// contacts (bob online, carol and dave offline, on node) forgot her.
func nothingInherited(t *testing.T, node *clusterNode, bob *peer, old oldAlice) {
	t.Helper()
	alice := dialPeer(t, node, "alice", "new", false)
	if got := alice.rosterJIDs(); len(got) != 0 {
		t.Errorf("the new alice's roster = %v, want empty", got)
	}
	if offline, archive := collectStored(alice); len(offline) != 0 || len(archive) != 0 {
		t.Errorf("the new alice got the old one's messages: offline %q, archive %q", offline, archive)
	}
	answers := []*stanza.Element{
		alice.ask("get", "vcard", "", stanza.New("vcard-temp", "vCard")),
		alice.ask("get", "nick", "alice@localhost", stanza.New("http://jabber.org/protocol/pubsub", "pubsub").Append(
			stanza.New("http://jabber.org/protocol/pubsub", "items").SetAttr("node", "http://jabber.org/protocol/nick"))),
		alice.ask("get", "bookmarks2", "alice@localhost", stanza.New("http://jabber.org/protocol/pubsub", "pubsub").Append(
			stanza.New("http://jabber.org/protocol/pubsub", "items").SetAttr("node", "urn:xmpp:bookmarks:1"))),
		alice.ask("get", "bookmarks", "", stanza.New("jabber:iq:private", "query").Append(stanza.New("storage:bookmarks", "storage"))),
		alice.ask("get", "blocklist", "", stanza.New("urn:xmpp:blocking", "blocklist")),
		bob.ask("set", "find", "directory.localhost", stanza.New("jabber:iq:search", "query").Append(
			dataForm("submit", field("FORM_TYPE", "jabber:iq:search"), field("interest", "deletion")))),
	}
	for _, r := range answers {
		s := r.String()
		for _, m := range []string{oldCard, oldNick, oldBookmark, oldListing, "eve@localhost"} {
			if strings.Contains(s, m) {
				t.Errorf("the old alice's %q is still there: %s", m, s)
			}
		}
	}
	if resp, err := http.Get(old.file); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("the old alice's file: %v %v, want 404", resp, err)
	} else {
		resp.Body.Close()
	}

	// Her old room is not hers; bob's members-only room is closed to her.
	self := joinRoom(alice, "hers@conference.localhost", "Al")
	if it := self.Child(nsMUCUser, "x").Child(nsMUCUser, "item"); it == nil || it.Attr("affiliation") != "none" {
		t.Errorf("the new alice's affiliation in the old one's room: %s", self)
	}
	if r := alice.ask("get", "cfg", "hers@conference.localhost", stanza.New(nsMUCOwner, "query")); !r.IsError() || r.Child("", "error").Child("urn:ietf:params:xml:ns:xmpp-stanzas", "forbidden") == nil {
		t.Errorf("the new alice reads the old room's configuration: %s", r)
	}
	if r := alice.ask("set", "destroy", "hers@conference.localhost", stanza.New(nsMUCOwner, "query").Append(stanza.New(nsMUCOwner, "destroy"))); !r.IsError() {
		t.Errorf("the new alice destroys the old one's room: %s", r)
	}
	alice.send(stanza.New(stanza.NSClient, "presence").SetAttr("to", "club@conference.localhost/Al").Append(stanza.New(nsMUC, "x")))
	alice.expect(15*time.Second, "refusal to enter the members-only room", func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == "club@conference.localhost/Al" && e.IsError() &&
			e.Child("", "error").Child("urn:ietf:params:xml:ns:xmpp-stanzas", "registration-required") != nil
	})

	// No presence either way between bob and the new alice.
	nothingFrom(t, alice, bob, "bob@localhost", "bob's presence reached the new alice", func() {
		bob.send(stanza.New(stanza.NSClient, "presence").Append(stanza.New(stanza.NSClient, "status").SetText("still here")))
	})
	nothingFrom(t, bob, alice, "alice@localhost", "the new alice's presence reached bob", func() {
		alice.send(stanza.New(stanza.NSClient, "presence").Append(stanza.New(stanza.NSClient, "status").SetText("new here")))
	})
	for _, j := range bob.rosterJIDs() {
		if j == "alice@localhost" {
			t.Error("bob's roster still lists alice")
		}
	}

	// Carol, offline meanwhile, finds alice gone from her roster and no
	// message from her; dave has no request from her any more.
	carol := dialPeer(t, node, "carol", "pc2", false)
	for _, j := range carol.rosterJIDs() {
		if j == "alice@localhost" {
			t.Error("carol's roster still lists alice")
		}
	}
	if offline, _ := collectStored(carol); len(offline) != 0 {
		t.Errorf("carol got what the old alice left in her queue: %q", offline)
	}
	dave := dialPeer(t, node, "dave", "pc", false)
	nothingFrom(t, dave, bob, "alice@localhost", "dave still has the old alice's request", func() {
		dave.send(stanza.New(stanza.NSClient, "presence"))
	})
}

// TestAccountDeletion runs the deletion both ways on one poosmsd process:
// in band by one of alice's sessions, and by "poosmsd user del" run as a
// separate process while the server runs.
func TestAccountDeletion(t *testing.T) {
	bin := testenv.BuildPoosmsd(t)
	databases(t, func(t *testing.T, db string) {
		for _, how := range []string{"in band", "user del"} {
			t.Run(strings.ReplaceAll(how, " ", "-"), func(t *testing.T) {
				if db != "" {
					db = testenv.MySQLDSN(t)
				}
				nd := solo(t, bin, db)
				for _, u := range []string{"alice", "bob", "carol", "dave"} {
					poosmsd(t, nd, db, u+"-password\n", "user", "add", u)
				}
				bob := dialPeer(t, nd, "bob", "desk", true)
				bob.rosterJIDs()
				old := seedAlice(t, nd, nd, bob)
				deleteAlice(t, how, old, func() { poosmsd(t, nd, db, "", "user", "del", "alice") })
				bobIsTold(t, bob)
				poosmsd(t, nd, db, "alice-password\n", "user", "add", "alice")
				nothingInherited(t, nd, bob, old)
			})
		}
	})
}

// deleteAlice deletes alice how ("in band" from her phone, or "user del"
// through cli) and checks both her sessions end.
func deleteAlice(t *testing.T, how string, old oldAlice, cli func()) {
	t.Helper()
	switch how {
	case "in band":
		old.phone.send(iqOf("set", "remove", "", stanza.New("jabber:iq:register", "query").Append(stanza.New("jabber:iq:register", "remove"))))
		old.phone.iqResult("remove")
	default:
		cli()
	}
	// Her sessions end at once, or within the journal's poll (a second).
	old.phone.expectStreamError(15*time.Second, "not-authorized")
	old.desk.expectStreamError(15*time.Second, "not-authorized")
}

// TestClusterAccountDeletion: alice has a session on each of two nodes,
// bob is on the second, her room is hosted by the first. Deleting her (in
// band from the second node, or with "poosmsd user del" beside the
// cluster) ends both sessions, bob is told, and a new alice owns nothing.
func TestClusterAccountDeletion(t *testing.T) {
	redisURL := sharedRedisURL(t)
	bin := testenv.BuildPoosmsd(t)
	for _, how := range []string{"in band", "user del"} {
		t.Run(strings.ReplaceAll(how, " ", "-"), func(t *testing.T) {
			c := newCluster(t, bin, redisURL, 2)
			c.addUsers("alice", "bob", "carol", "dave")
			n1, n2 := c.node("n1"), c.node("n2")
			bob := dialPeer(t, n2, "bob", "desk", true)
			bob.rosterJIDs()
			old := seedAlice(t, n1, n2, bob)
			deleteAlice(t, how, old, func() { n1.d.Run(t, "", "user", "del", "alice", "--db", c.dsn) })
			bobIsTold(t, bob)
			n1.d.Run(t, "alice-password\n", "user", "add", "alice", "--db", c.dsn)
			nothingInherited(t, n2, bob, old)
			if t.Failed() {
				t.Logf("room leases: %v", c.leases())
			}
		})
	}
}
