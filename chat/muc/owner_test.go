package muc

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// roomFeatures returns the disco#info features of room as seen by sess.
func roomFeatures(t *testing.T, h *harness, sess *fakeSession, room string) ([]string, *stanza.Element) {
	t.Helper()
	_, el := h.iq(sess, `<iq type='get' id='i' to='`+room+`@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if el.IQType() != stanza.ResultIQ {
		t.Fatalf("disco#info on %s: %s", room, summary(el))
	}
	var out []string
	q := el.Child(NSDiscoInfo, "query")
	for _, f := range q.Elements() {
		if f.Local == "feature" {
			out = append(out, f.Attr("var"))
		}
	}
	return out, q
}

func TestConfigurationInDisco(t *testing.T) {
	for _, tc := range []struct {
		fields map[string]string
		want   []string
	}{
		{nil, []string{"muc_public", "muc_temporary", "muc_open", "muc_unsecured", "muc_unmoderated", "muc_semianonymous"}},
		{map[string]string{
			"muc#roomconfig_publicroom": "0", "muc#roomconfig_persistentroom": "1", "muc#roomconfig_membersonly": "1",
			"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "x",
			"muc#roomconfig_moderatedroom": "1", "muc#roomconfig_whois": "anyone",
		}, []string{"muc_hidden", "muc_persistent", "muc_membersonly", "muc_passwordprotected", "muc_moderated", "muc_nonanonymous"}},
	} {
		h := newHarness(t, nil)
		alice := h.session("alice@localhost/a")
		h.room(alice, "r", "Alice", tc.fields)
		got, q := roomFeatures(t, h, alice, "r")
		for _, f := range append(tc.want, NSMUC, NSMAM, NSStanzaID, NSConference, NSSelfPing, NSStableID) {
			if !slices.Contains(got, f) {
				t.Errorf("features %v lack %s", got, f)
			}
		}
		if len(got) != 14 {
			t.Errorf("%d features, want 14 (one of each pair): %v", len(got), got)
		}
		if q.Child(NSDiscoInfo, "identity").Attr("category") != "conference" || q.Child(NSData, "x") == nil {
			t.Errorf("disco#info = %s, want a conference identity and a roominfo form", q)
		}
	}
}

func TestConfigForm(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", map[string]string{"muc#roomconfig_roomname": "The Den", "poosms#conference": "moderators"})
	_, el := h.iq(alice, `<iq type='get' id='f' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`)
	x := el.Child(NSOwner, "query").Child(NSData, "x")
	vals := formValues(x)
	for k, want := range map[string]string{
		"FORM_TYPE":                            NSMUC + "#roomconfig",
		"muc#roomconfig_roomname":              "The Den",
		"poosms#conference":                    "moderators",
		"muc#roomconfig_whois":                 "moderators",
		"muc#roomconfig_maxusers":              "100",
		"muc#roomconfig_persistentroom":        "0",
		"muc#roomconfig_allowinvites":          "0",
		"muc#roomconfig_changesubject":         "0",
		"muc#roomconfig_roomsecret":            "",
		"muc#roomconfig_publicroom":            "1",
		"muc#roomconfig_membersonly":           "0",
		"muc#roomconfig_moderatedroom":         "0",
		"muc#roomconfig_roomdesc":              "",
		"muc#roomconfig_passwordprotectedroom": "0",
	} {
		v, ok := vals[k]
		if !ok || strings.Join(v, "") != want {
			t.Errorf("field %s = %v (present %v), want %q", k, v, ok, want)
		}
	}
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	if got, _ := h.iq(bob, `<iq type='get' id='f' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`); got != "iq type=error from=r error=forbidden" {
		t.Errorf("non-owner asking for the form: %s", got)
	}
	for _, bad := range []map[string]string{
		{"muc#roomconfig_whois": "everyone"},
		{"poosms#conference": "nobody"},
		{"muc#roomconfig_maxusers": "lots"},
		{"muc#roomconfig_publicroom": "maybe"},
		{"muc#roomconfig_passwordprotectedroom": "1"},
	} {
		var b strings.Builder
		for k, v := range bad {
			b.WriteString(`<field var='` + k + `'><value>` + v + `</value></field>`)
		}
		got, _ := h.iq(alice, `<iq type='set' id='c' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+b.String()+`</x></query></iq>`)
		if got != "iq type=error from=r error=not-acceptable" {
			t.Errorf("submitting %v: %s", bad, got)
		}
	}
	// Configuration changes are announced to occupants.
	h.configure(alice, "r", map[string]string{"muc#roomconfig_whois": "anyone"})
	expect(t, "bob", bob, "message type=groupchat from=r 104 172")
}

func TestDestroy(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", map[string]string{"muc#roomconfig_persistentroom": "1"})
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	alice.take()
	if got, _ := h.iq(bob, `<iq type='set' id='x' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy/></query></iq>`); got != "iq type=error from=r error=forbidden" {
		t.Errorf("non-owner destroying: %s", got)
	}
	h.send(alice, `<iq type='set' id='x' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><destroy jid='new@conference.localhost'><reason>moved</reason></destroy></query></iq>`)
	expect(t, "bob", bob, "presence type=unavailable from=r/Bob [none/none jid=bob@localhost/b] 110 destroy=new@conference.localhost:moved")
	expect(t, "alice", alice,
		"presence type=unavailable from=r/Alice [none/none jid=alice@localhost/a] 110 destroy=new@conference.localhost:moved",
		"iq type=result from=r")
	if rooms, _ := h.db.Rooms(t.Context()); len(rooms) != 0 {
		t.Errorf("a destroyed persistent room is still stored: %v", rooms)
	}
	h.restart()
	if items := h.svc.Items(); len(items) != 0 {
		t.Errorf("destroyed room came back: %v", items)
	}
}

func TestServiceDisco(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "open", "Alice", map[string]string{"muc#roomconfig_roomname": "Open room"})
	h.room(alice, "secret", "Alice", map[string]string{"muc#roomconfig_publicroom": "0"})
	_, el := h.iq(alice, `<iq type='get' id='i' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	var items []string
	for _, it := range el.Child(NSDiscoItems, "query").Elements() {
		items = append(items, it.Attr("jid")+"="+it.Attr("name"))
	}
	if !slices.Equal(items, []string{"open@conference.localhost=Open room"}) {
		t.Errorf("service items = %v, want only the public room", items)
	}
	_, el = h.iq(alice, `<iq type='get' id='i' to='conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	q := el.Child(NSDiscoInfo, "query")
	id := q.Child(NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "conference" || id.Attr("type") != "text" || !strings.Contains(q.String(), NSMUC+"'") {
		t.Errorf("service info = %s", q)
	}
	if got, _ := h.iq(alice, `<iq type='get' id='p' to='conference.localhost'><ping xmlns='urn:xmpp:ping'/></iq>`); got != "iq type=result from=conference.localhost" {
		t.Errorf("ping to the service: %s", got)
	}
	if got, _ := h.iq(alice, `<iq type='get' id='v' to='conference.localhost'><query xmlns='jabber:iq:version'/></iq>`); got != "iq type=error from=conference.localhost error=service-unavailable" {
		t.Errorf("unknown request to the service: %s", got)
	}
}

func TestRoomItemsPerPrivacy(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	bob.take()
	items := func(s *fakeSession) int {
		_, el := h.iq(s, `<iq type='get' id='i' to='r@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
		return len(el.Child(NSDiscoItems, "query").Elements())
	}
	if n := items(alice); n != 2 {
		t.Errorf("moderator sees %d occupants, want 2", n)
	}
	if n := items(bob); n != 0 {
		t.Errorf("participant of a semi-anonymous room sees %d occupants, want none", n)
	}
	if n := items(h.session("carol@localhost/c")); n != 0 {
		t.Errorf("outsider sees %d occupants", n)
	}
}

func TestInvitations(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", map[string]string{"muc#roomconfig_membersonly": "1",
		"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "pw", "muc#roomconfig_persistentroom": "1"})
	h.send(alice, `<message to='r@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='bob@localhost'><reason>join us</reason></invite></x></message>`)
	got := h.takeDelivered()
	want := "message from=r invite-from=alice@localhost:join us password=pw body=alice@localhost invites you to the room r@conference.localhost to=bob@localhost"
	if len(got) != 1 || got[0] != want {
		t.Fatalf("delivered %v, want %q", got, want)
	}
	// The invitee became a member and can enter the members-only room.
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "<password>pw</password>")
	expectHas(t, "bob", bob, "presence from=r/Bob [member/participant jid=bob@localhost/b] 110 170")
	if affs, _ := h.db.RoomAffiliations(t.Context(), "r"); len(affs) != 2 {
		t.Errorf("stored affiliations %v, want the owner and the new member", affs)
	}
	// A member may not invite unless the room allows it.
	h.send(bob, `<message to='r@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'/></x></message>`)
	expect(t, "bob inviting", bob, "message type=error from=r invite-from=: error=forbidden")
	// Unless the room allows it.
	h.configure(alice, "r", map[string]string{"muc#roomconfig_allowinvites": "1"})
	bob.take()
	h.send(bob, `<message to='r@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='carol@localhost'/></x></message>`)
	if got := h.takeDelivered(); len(got) != 1 || !strings.Contains(got[0], "invite-from=bob@localhost") {
		t.Errorf("bob's invitation with allowinvites: %v", got)
	}
	expect(t, "bob inviting with allowinvites", bob)
	// A decline goes back to the inviter.
	carol := h.session("carol@localhost/c")
	h.send(carol, `<message to='r@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'><decline to='alice@localhost'><reason>busy</reason></decline></x></message>`)
	if got := h.takeDelivered(); len(got) != 1 || got[0] != "message from=r decline-from=carol@localhost to=alice@localhost" {
		t.Errorf("decline delivered as %v", got)
	}
	// Outsiders cannot invite.
	h.send(carol, `<message to='r@conference.localhost'><x xmlns='http://jabber.org/protocol/muc#user'><invite to='dave@localhost'/></x></message>`)
	expect(t, "carol inviting", carol, "message type=error from=r invite-from=: error=not-acceptable")
}

// TestMayConference: a room's call admits the sessions that are in the
// room, within the room's rules, and says how the room shows each one.
func TestMayConference(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "open", "Alice", nil)
	h.room(alice, "club", "Alice", map[string]string{"muc#roomconfig_membersonly": "1", "poosms#conference": "members"})
	h.room(alice, "stage", "Alice", map[string]string{"poosms#conference": "moderators"})
	h.room(alice, "lobby", "Alice", map[string]string{"poosms#conference_nonoccupants": "1"})
	h.room(alice, "public", "Alice", map[string]string{"muc#roomconfig_whois": "anyone"})
	h.room(alice, "vault", "Alice", map[string]string{
		"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "s3", "poosms#conference_nonoccupants": "1"})
	h.iq(alice, adminSet("open", `<item affiliation='outcast' jid='eve@localhost'/>`))
	h.iq(alice, adminSet("club", `<item affiliation='member' jid='bob@localhost'/>`))
	h.iq(alice, adminSet("stage", `<item affiliation='member' jid='bob@localhost'/>`))
	h.iq(alice, adminSet("stage", `<item affiliation='admin' jid='dave@localhost'/>`))
	h.iq(alice, adminSet("vault", `<item affiliation='admin' jid='dave@localhost'/>`))

	bob := h.session("bob@localhost/b")
	bobPhone := h.session("bob@localhost/phone") // bob's other session, in no room
	carol := h.session("carol@localhost/c")
	dave := h.session("dave@localhost/d")
	eve := h.session("eve@localhost/e")
	frank := h.session("frank@localhost/f")
	for _, rn := range []string{"open/Bob", "club/Bob", "stage/Bob", "public/Bob"} {
		h.join(bob, rn, "")
	}
	h.join(bob, "vault/Bob", "<password>s3</password>")
	h.join(carol, "stage/Carol", "")
	h.join(carol, "club/Carol", "") // refused: not a member
	h.join(dave, "stage/Dave", "")
	h.join(eve, "open/Eve", "") // refused: banned
	remote := h.session("eve@remote.example/x")

	for _, tc := range []struct {
		room string
		sess *fakeSession
		want string // error condition, or the occupant JID and whether real JIDs show
	}{
		{"open", bob, "open/Bob hidden"},
		{"open", alice, "open/Alice shown"}, // the owner is a moderator
		{"open", bobPhone, "not-acceptable"},
		{"open", carol, "not-acceptable"},
		{"open", eve, "forbidden"},
		{"club", bob, "club/Bob hidden"},
		{"club", carol, "registration-required"},
		{"stage", bob, "forbidden"},
		{"stage", carol, "forbidden"},
		{"stage", dave, "stage/Dave shown"},
		{"public", bob, "public/Bob shown"},
		{"lobby", frank, " hidden"}, // not in the room, which allows that
		{"vault", bob, "vault/Bob hidden"},
		{"vault", frank, "not-authorized"}, // no password given, though the room lets others call
		{"vault", dave, " shown"},          // an admin needs no password
		{"new", bob, "not-acceptable"},
		{"open", remote, "forbidden"},
	} {
		roomJID := jid.MustParse(tc.room + "@conference.localhost")
		occupant, err := h.svc.MayConference(t.Context(), roomJID, tc.sess)
		got := strings.TrimPrefix(occupant, tc.room+"@conference.localhost/")
		if got != "" {
			got = tc.room + "/" + got
		}
		got += map[bool]string{true: " shown", false: " hidden"}[h.svc.SeesRealJIDs(roomJID, tc.sess)]
		var de *DeniedError
		if errors.As(err, &de) {
			got = de.Condition
		} else if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("MayConference(%s, %s) = %q, want %q", tc.room, tc.sess.JID(), got, tc.want)
		}
	}
	// A moderator by role (granted while in the room) may start one.
	h.iq(alice, adminSet("stage", `<item affiliation='admin' jid='carol@localhost'/>`))
	h.iq(alice, adminSet("stage", `<item affiliation='member' jid='carol@localhost'/>`))
	h.iq(alice, adminSet("stage", `<item nick='Carol' role='moderator'/>`))
	stage := jid.MustParse("stage@conference.localhost")
	if _, err := h.svc.MayConference(t.Context(), stage, carol); err != nil || !h.svc.SeesRealJIDs(stage, carol) {
		t.Errorf("a moderator by role: %v, sees real JIDs %v", err, h.svc.SeesRealJIDs(stage, carol))
	}
	// Out of the room, out of its call.
	h.send(bob, `<presence type='unavailable' to='open@conference.localhost/Bob'/>`)
	if _, err := h.svc.MayConference(t.Context(), jid.MustParse("open@conference.localhost"), bob); err == nil {
		t.Error("bob may still call after leaving the room")
	}
}
