package muc

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

func TestCreateInstantRoom(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	bob := h.session("bob@localhost/b")

	h.join(alice, "den/Alice", "")
	expect(t, "alice on creating", alice,
		"presence from=den/Alice [owner/moderator jid=alice@localhost/a] 110 170 201",
		"message type=groupchat from=den subject=")

	// Locked until the owner configures it.
	h.join(bob, "den/Bob", "")
	expect(t, "bob before configuration", bob, "presence type=error from=den/Bob error=item-not-found")
	if items := h.svc.Items(); len(items) != 0 {
		t.Errorf("a locked room is listed: %v", items)
	}

	// An empty submission makes it an instant room with the defaults.
	h.send(alice, `<iq type='set' id='c1' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	expect(t, "alice after configuring", alice, "iq type=result from=den")

	h.join(bob, "den/Bob", "")
	expect(t, "bob joining", bob,
		"presence from=den/Alice [owner/moderator]",
		"presence from=den/Bob [none/participant jid=bob@localhost/b] 110 170",
		"message type=groupchat from=den subject=")
	// Alice is a moderator: she sees Bob's real JID.
	expect(t, "alice seeing bob", alice, "presence from=den/Bob [none/participant jid=bob@localhost/b]")
	if items := h.svc.Items(); len(items) != 1 || items[0].JID != "den@conference.localhost" {
		t.Errorf("Items = %v, want the room", items)
	}
}

func TestCancelledCreationDestroysRoom(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.join(alice, "den/Alice", "")
	alice.take()
	h.send(alice, `<iq type='set' id='c1' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='cancel'/></query></iq>`)
	expect(t, "alice", alice, "presence type=unavailable from=den/Alice [none/none jid=alice@localhost/a] 110 destroy=:", "iq type=result from=den")
	if got, _ := h.iq(alice, `<iq type='get' id='d' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); got != "iq type=error from=den error=item-not-found" {
		t.Errorf("disco on a cancelled room = %s", got)
	}
}

func TestJoinRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]string
		setup  func(h *harness, owner *fakeSession)
		x      string
		want   string
	}{
		{name: "nickname taken", want: "conflict"},
		{name: "no password", fields: map[string]string{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3"}, want: "not-authorized"},
		{name: "wrong password", fields: map[string]string{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3"}, x: "<password>nope</password>", want: "not-authorized"},
		{name: "members only", fields: map[string]string{"muc#roomconfig_membersonly": "1"}, want: "registration-required"},
		{name: "banned", setup: func(h *harness, owner *fakeSession) {
			h.iq(owner, `<iq type='set' id='b' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='outcast' jid='bob@localhost'/></query></iq>`)
		}, want: "forbidden"},
		{name: "full", fields: map[string]string{"muc#roomconfig_maxusers": "1"}, want: "service-unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			owner := h.session("alice@localhost/a")
			h.room(owner, "r", "Taken", tc.fields)
			if tc.setup != nil {
				tc.setup(h, owner)
			}
			bob := h.session("bob@localhost/b")
			nick := "Bob"
			if tc.want == "conflict" {
				nick = "Taken"
			}
			h.join(bob, "r/"+nick, tc.x)
			expect(t, "bob", bob, "presence type=error from=r/"+nick+" error="+tc.want)
			expect(t, "owner", owner) // nobody entered
		})
	}
}

func TestJoinAllowed(t *testing.T) {
	h := newHarness(t, nil)
	owner := h.session("alice@localhost/a")
	h.room(owner, "r", "Alice", map[string]string{
		"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3",
		"muc#roomconfig_membersonly": "1",
	})
	h.iq(owner, `<iq type='set' id='m' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='member' jid='bob@localhost'/></query></iq>`)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "<password>s3</password>")
	expectHas(t, "bob", bob, "presence from=r/Bob [member/participant jid=bob@localhost/b] 110 170")
}

func TestNonAnonymousRoomShowsJIDs(t *testing.T) {
	h := newHarness(t, nil)
	owner := h.session("alice@localhost/a")
	h.room(owner, "r", "Alice", map[string]string{"muc#roomconfig_whois": "anyone"})
	bob := h.session("bob@localhost/b")
	carol := h.session("carol@localhost/c")
	h.join(bob, "r/Bob", "")
	bob.take()
	h.join(carol, "r/Carol", "")
	expect(t, "carol", carol,
		"presence from=r/Alice [owner/moderator jid=alice@localhost/a]",
		"presence from=r/Bob [none/participant jid=bob@localhost/b]",
		"presence from=r/Carol [none/participant jid=carol@localhost/c] 110 100 170",
		"message type=groupchat from=r subject=")
	expect(t, "bob", bob, "presence from=r/Carol [none/participant jid=carol@localhost/c]")
}

func TestSemiAnonymousRoomHidesJIDsFromParticipants(t *testing.T) {
	h := newHarness(t, nil)
	owner := h.session("alice@localhost/a")
	h.room(owner, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	carol := h.session("carol@localhost/c")
	h.join(bob, "r/Bob", "")
	bob.take()
	owner.take()
	h.join(carol, "r/Carol", "")
	expect(t, "carol", carol,
		"presence from=r/Alice [owner/moderator]",
		"presence from=r/Bob [none/participant]",
		"presence from=r/Carol [none/participant jid=carol@localhost/c] 110 170",
		"message type=groupchat from=r subject=")
	expect(t, "bob", bob, "presence from=r/Carol [none/participant]")
	expect(t, "alice (moderator)", owner, "presence from=r/Carol [none/participant jid=carol@localhost/c]")
}

func TestGroupchat(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()

	h.send(bob, `<message type='groupchat' to='r@conference.localhost' id='m1'><body>hi all</body><stanza-id xmlns='urn:xmpp:sid:0' id='fake' by='r@conference.localhost'/></message>`)
	for name, s := range map[string]*fakeSession{"alice": alice, "bob (echo)": bob} {
		els := s.takeEls()
		if len(els) != 1 {
			t.Fatalf("%s got %d stanzas", name, len(els))
		}
		m := els[0]
		if got := summary(m); got != "message type=groupchat from=r/Bob body=hi all" {
			t.Errorf("%s got %s", name, got)
		}
		if m.ID() != "m1" || m.To() != s.JID().String() {
			t.Errorf("%s: id=%q to=%q", name, m.ID(), m.To())
		}
		var ids []string
		for _, c := range m.Elements() {
			if c.Space == NSStanzaID && c.Local == "stanza-id" {
				ids = append(ids, c.Attr("id")+"@"+c.Attr("by"))
			}
		}
		if len(ids) != 1 || strings.HasPrefix(ids[0], "fake@") || !strings.HasSuffix(ids[0], "@r@conference.localhost") {
			t.Errorf("%s: stanza-ids %v, want one the room made", name, ids)
		}
	}

	// Someone who is not in the room cannot post.
	carol := h.session("carol@localhost/c")
	h.send(carol, `<message type='groupchat' to='r@conference.localhost'><body>x</body></message>`)
	expect(t, "carol", carol, "message type=error from=r body=x error=not-acceptable")
	// Nor can a message to the room be anything but groupchat.
	h.send(bob, `<message type='chat' to='r@conference.localhost'><body>x</body></message>`)
	expect(t, "bob", bob, "message type=error from=r body=x error=bad-request")
	// A room that does not exist.
	h.send(bob, `<message type='groupchat' to='nope@conference.localhost'><body>x</body></message>`)
	expect(t, "bob", bob, "message type=error from=nope body=x error=item-not-found")
	expect(t, "alice", alice)
}

func TestModeratedRoomVoice(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", map[string]string{"muc#roomconfig_moderatedroom": "1"})
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	expectHas(t, "bob", bob, "presence from=r/Bob [none/visitor jid=bob@localhost/b] 110 170")
	alice.take()
	h.send(bob, `<message type='groupchat' to='r@conference.localhost'><body>may I?</body></message>`)
	expect(t, "bob without voice", bob, "message type=error from=r body=may I? error=forbidden")
	expect(t, "alice", alice)

	// The moderator grants voice.
	if got, _ := h.iq(alice, `<iq type='set' id='v' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item nick='Bob' role='participant'/></query></iq>`); got != "iq type=result from=r" {
		t.Fatalf("grant voice: %s", got)
	}
	expect(t, "bob with voice", bob, "presence from=r/Bob [none/participant jid=bob@localhost/b] 110")
	h.send(bob, `<message type='groupchat' to='r@conference.localhost'><body>thanks</body></message>`)
	expect(t, "alice", alice, "message type=groupchat from=r/Bob body=thanks")
}

func TestHistoryOnJoin(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HistoryOnJoin = 4 })
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	for _, body := range []string{"one", "two", "three", "four", "five"} {
		h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>`+body+`</body></message>`)
		h.advance(time.Minute)
	}
	// A chat state is relayed but is not history.
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	alice.take()
	hist := func(body string) string { return "message type=groupchat from=r/Alice body=" + body + " delayed" }
	for i, tc := range []struct {
		x    string
		want []string
	}{
		{"", []string{hist("two"), hist("three"), hist("four"), hist("five")}},
		{"<history maxstanzas='2'/>", []string{hist("four"), hist("five")}},
		{"<history maxstanzas='0'/>", nil},
		{"<history maxstanzas='100'/>", []string{hist("two"), hist("three"), hist("four"), hist("five")}},
		{"<history seconds='150'/>", []string{hist("four"), hist("five")}},
		{"<history since='2026-11-25T10:02:00Z'/>", []string{hist("three"), hist("four"), hist("five")}},
		{"<history maxchars='0'/>", nil},
		{"<history maxchars='" + strconv.Itoa(h.svc.rooms["r"].history[3].size) + "'/>", []string{hist("five")}},
		{"<history maxchars='" + strconv.Itoa(h.svc.rooms["r"].history[3].size*2) + "'/>", []string{hist("four"), hist("five")}},
	} {
		s := h.session("u" + string(rune('a'+i)) + "@localhost/x")
		h.join(s, "r/U"+string(rune('a'+i)), tc.x)
		var got []string
		for _, el := range s.takeEls() {
			if el.Local == "message" && el.Child("", "body") != nil {
				got = append(got, summary(el))
				d := el.Child("urn:xmpp:delay", "delay")
				if d.Attr("from") != "r@conference.localhost" || d.Attr("stamp") == "" {
					t.Errorf("history delay = %s", d)
				}
			}
		}
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("join with %q got history:\n  %s\nwant:\n  %s", tc.x, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
		}
	}
}

func TestSubject(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()

	h.send(bob, `<message type='groupchat' to='r@conference.localhost'><subject>mine</subject></message>`)
	expect(t, "bob (participant)", bob, "message type=error from=r subject=mine error=forbidden")
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><subject>Plans</subject></message>`)
	expect(t, "bob", bob, "message type=groupchat from=r/Alice subject=Plans")
	expect(t, "alice", alice, "message type=groupchat from=r/Alice subject=Plans")

	carol := h.session("carol@localhost/c")
	h.join(carol, "r/Carol", "")
	got := carol.take()
	if last := got[len(got)-1]; last != "message type=groupchat from=r/Alice subject=Plans" {
		t.Errorf("carol's last stanza on joining = %s, want the subject", last)
	}

	// With changesubject, participants may.
	h.configure(alice, "r", map[string]string{"muc#roomconfig_changesubject": "1"})
	bob.take()
	h.send(bob, `<message type='groupchat' to='r@conference.localhost'><subject>ours</subject></message>`)
	expect(t, "bob", bob, "message type=groupchat from=r/Bob subject=ours")
}

func TestPrivateMessages(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()

	h.send(bob, `<message type='chat' to='r@conference.localhost/Alice' id='p1'><body>psst</body></message>`)
	els := alice.takeEls()
	if len(els) != 1 || summary(els[0]) != "message type=chat from=r/Bob body=psst" || els[0].To() != "alice@localhost/a" {
		t.Fatalf("alice got %v", els)
	}
	if els[0].Child(NSUser, "x") == nil {
		t.Error("a private message carries no <x xmlns='muc#user'/>")
	}
	expect(t, "bob", bob)

	h.send(bob, `<message type='chat' to='r@conference.localhost/Nobody'><body>?</body></message>`)
	expect(t, "bob", bob, "message type=error from=r/Nobody body=? error=item-not-found")
	carol := h.session("carol@localhost/c")
	h.send(carol, `<message type='chat' to='r@conference.localhost/Alice'><body>hi</body></message>`)
	expect(t, "carol (not in the room)", carol, "message type=error from=r/Alice body=hi error=not-acceptable")
	expect(t, "alice", alice)
}

func TestNickChange(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()

	h.send(bob, `<presence to='r@conference.localhost/Alice'/>`)
	expect(t, "bob taking a used nick", bob, "presence type=error from=r/Alice error=conflict")
	h.send(bob, `<presence to='r@conference.localhost/Robert'/>`)
	expect(t, "bob", bob,
		"presence type=unavailable from=r/Bob [none/participant jid=bob@localhost/b nick=Robert] 110 303",
		"presence from=r/Robert [none/participant jid=bob@localhost/b] 110")
	expect(t, "alice", alice,
		"presence type=unavailable from=r/Bob [none/participant jid=bob@localhost/b nick=Robert] 303",
		"presence from=r/Robert [none/participant jid=bob@localhost/b]")
	// Private messages follow the new nick.
	h.send(alice, `<message type='chat' to='r@conference.localhost/Robert'><body>hey</body></message>`)
	expect(t, "bob", bob, "message type=chat from=r/Alice body=hey")
}

func TestStatusChangeIsBroadcast(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()
	h.send(bob, `<presence to='r@conference.localhost/Bob'><show>away</show><status>lunch</status></presence>`)
	expect(t, "alice", alice, "presence from=r/Bob [none/participant jid=bob@localhost/b] status=lunch")
	expect(t, "bob", bob, "presence from=r/Bob [none/participant jid=bob@localhost/b] 110 status=lunch")
}

func TestLeaveAndTemporaryRoomVanishes(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	h.send(bob, `<message type='groupchat' to='r@conference.localhost'><body>bye</body></message>`)
	bob.take()
	alice.take()

	h.send(bob, `<presence type='unavailable' to='r@conference.localhost/Bob'><status>gone</status></presence>`)
	expect(t, "bob", bob, "presence type=unavailable from=r/Bob [none/none jid=bob@localhost/b] 110 status=gone")
	expect(t, "alice", alice, "presence type=unavailable from=r/Bob [none/none jid=bob@localhost/b] status=gone")

	// The owner's stream ends: the temporary room goes, with its archive.
	h.svc.SessionClosed(t.Context(), alice)
	expect(t, "alice", alice, "presence type=unavailable from=r/Alice [owner/none jid=alice@localhost/a] 110")
	if got, _ := h.iq(bob, `<iq type='get' id='d' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); got != "iq type=error from=r error=item-not-found" {
		t.Errorf("disco on a vanished room = %s", got)
	}
	page, err := h.db.RoomMessages(t.Context(), storeQuery("r"))
	if err != nil || len(page.Messages) != 0 {
		t.Errorf("archive of a vanished room: %d messages, %v", len(page.Messages), err)
	}
	// The name is free again, for a new owner.
	h.join(bob, "r/Bob", "")
	expectHas(t, "bob", bob, "presence from=r/Bob [owner/moderator jid=bob@localhost/b] 110 170 201")
}

func TestSessionClosedLeavesEveryRoom(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r1", "Alice", nil)
	h.room(alice, "r2", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r1/Bob", "")
	h.join(bob, "r2/Bobby", "")
	alice.take()
	h.svc.SessionClosed(t.Context(), bob)
	expect(t, "alice", alice,
		"presence type=unavailable from=r1/Bob [none/none jid=bob@localhost/b]",
		"presence type=unavailable from=r2/Bobby [none/none jid=bob@localhost/b]")
}

func TestSeveralSessionsShareANick(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	phone := h.session("bob@localhost/phone")
	laptop := h.session("bob@localhost/laptop")
	h.join(phone, "r/Bob", "")
	h.join(laptop, "r/Bob", "")
	phone.take()
	expectHas(t, "laptop", laptop, "presence from=r/Bob [none/participant jid=bob@localhost/phone] 110 170")
	alice.take()
	h.send(alice, `<message type='chat' to='r@conference.localhost/Bob'><body>both?</body></message>`)
	expect(t, "phone", phone, "message type=chat from=r/Alice body=both?")
	expect(t, "laptop", laptop, "message type=chat from=r/Alice body=both?")
	// One session leaving keeps Bob in the room.
	h.send(phone, `<presence type='unavailable' to='r@conference.localhost/Bob'/>`)
	expect(t, "alice", alice)
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>still?</body></message>`)
	expect(t, "laptop", laptop, "message type=groupchat from=r/Alice body=still?")
	expect(t, "phone", phone, "presence type=unavailable from=r/Bob [none/participant jid=bob@localhost/phone] 110")
}

func TestNoNickAndBadAddresses(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.send(alice, `<presence to='r@conference.localhost'/>`)
	expect(t, "alice", alice, "presence type=error from=r error=jid-malformed")
	stranger := h.session("eve@elsewhere.example/x")
	h.join(stranger, "r/Eve", "")
	expect(t, "remote user", stranger, "presence type=error from=r/Eve error=not-allowed")
	h.send(alice, `<iq type='get' id='v' to='r@conference.localhost/Nick'><query xmlns='jabber:iq:version'/></iq>`)
	expect(t, "iq to an occupant of a room one is not in", alice, "iq type=error from=r/Nick error=not-acceptable")
}

func TestSelfPing(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()
	ping := func(s *fakeSession, nick string) string {
		got, _ := h.iq(s, `<iq type='get' id='p' to='r@conference.localhost/`+nick+`'><ping xmlns='urn:xmpp:ping'/></iq>`)
		return got
	}
	if got := ping(bob, "Bob"); got != "iq type=result from=r/Bob" {
		t.Errorf("self-ping while joined: %s", got)
	}
	// A ping to someone else is theirs to answer.
	h.send(bob, `<iq type='get' id='p2' to='r@conference.localhost/Alice'><ping xmlns='urn:xmpp:ping'/></iq>`)
	expect(t, "alice", alice, "iq type=get from=r/Bob")
	h.svc.SessionClosed(t.Context(), bob)
	if got := ping(bob, "Bob"); got != "iq type=error from=r/Bob error=not-acceptable" {
		t.Errorf("self-ping after leaving: %s", got)
	}
}

func TestRejoinFromTheSameSession(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>before</body></message>`)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "<history maxstanzas='0'/>")
	bob.take()
	alice.take()
	// Bob's client lost track and enters again: it gets the whole state.
	h.join(bob, "r/Bob", "")
	expect(t, "bob", bob,
		"presence from=r/Alice [owner/moderator]",
		"presence from=r/Bob [none/participant jid=bob@localhost/b] 110 170",
		"message type=groupchat from=r/Alice body=before delayed",
		"message type=groupchat from=r subject=")
	expect(t, "alice", alice, "presence from=r/Bob [none/participant jid=bob@localhost/b]")
	// Still one occupant.
	h.send(alice, `<message type='chat' to='r@conference.localhost/Bob'><body>once</body></message>`)
	expect(t, "bob", bob, "message type=chat from=r/Alice body=once")
}

func TestIQRelayBetweenOccupants(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()

	h.send(bob, `<iq type='get' id='v1' to='r@conference.localhost/Alice'><vCard xmlns='vcard-temp'/></iq>`)
	els := alice.takeEls()
	if len(els) != 1 || els[0].Local != "iq" || els[0].From() != "r@conference.localhost/Bob" || els[0].To() != "alice@localhost/a" {
		t.Fatalf("alice got %v", els)
	}
	relayedID := els[0].ID()
	if relayedID == "v1" || relayedID == "" {
		t.Errorf("relayed id %q: the room must use its own", relayedID)
	}
	if els[0].Child("vcard-temp", "vCard") == nil {
		t.Errorf("payload lost: %s", els[0])
	}
	expect(t, "bob", bob)

	// Someone else answering in Alice's place is ignored.
	carol := h.session("carol@localhost/c")
	h.join(carol, "r/Carol", "")
	carol.take()
	bob.take()
	alice.take()
	h.send(carol, `<iq type='result' id='`+relayedID+`' to='r@conference.localhost/Bob'><vCard xmlns='vcard-temp'><FN>fake</FN></vCard></iq>`)
	expect(t, "bob after a spoofed answer", bob)

	h.send(alice, `<iq type='result' id='`+relayedID+`' to='r@conference.localhost/Bob'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`)
	els = bob.takeEls()
	if len(els) != 1 || els[0].IQType() != stanza.ResultIQ || els[0].ID() != "v1" || els[0].From() != "r@conference.localhost/Alice" || els[0].To() != "bob@localhost/b" {
		t.Fatalf("bob got %v", els)
	}
	if fn := els[0].Child("vcard-temp", "vCard").ChildText("vcard-temp", "FN"); fn != "Alice" {
		t.Errorf("answer payload FN = %q", fn)
	}
	// An answer is delivered once.
	h.send(alice, `<iq type='result' id='`+relayedID+`' to='r@conference.localhost/Bob'/>`)
	expect(t, "bob after a repeated answer", bob)

	h.send(bob, `<iq type='get' id='v2' to='r@conference.localhost/Nobody'><vCard xmlns='vcard-temp'/></iq>`)
	expect(t, "bob asking nobody", bob, "iq type=error from=r/Nobody error=item-not-found")
	outsider := h.session("dave@localhost/d")
	h.send(outsider, `<iq type='get' id='v3' to='r@conference.localhost/Alice'><vCard xmlns='vcard-temp'/></iq>`)
	expect(t, "outsider", outsider, "iq type=error from=r/Alice error=not-acceptable")
	expect(t, "alice", alice)
}
