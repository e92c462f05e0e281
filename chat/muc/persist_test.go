package muc

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

func TestPersistenceSQLite(t *testing.T) {
	db, err := store.Open(t.Context(), "sqlite:"+t.TempDir()+"/p.db", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testPersistence(t, db)
}

func TestPersistenceMySQL(t *testing.T) {
	db, err := store.Open(t.Context(), testenv.MySQLDSN(t), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	testPersistence(t, db)
}

func testPersistence(t *testing.T, db *store.DB) {
	h := newHarnessOn(t, db, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "keep", "Alice", map[string]string{
		"muc#roomconfig_persistentroom": "1",
		"muc#roomconfig_roomname":       "Kept",
		"muc#roomconfig_membersonly":    "1",
		"poosms#conference":             "members",
	})
	h.room(alice, "temp", "Alice", nil)
	h.iq(alice, adminSet("keep", `<item affiliation='member' jid='bob@localhost'/><item affiliation='outcast' jid='eve@localhost'><reason>spam</reason></item>`))
	h.send(alice, `<message type='groupchat' to='keep@conference.localhost'><subject>Stays</subject></message>`)
	h.send(alice, `<message type='groupchat' to='keep@conference.localhost'><body>remember me</body></message>`)
	alice.take()

	h.restart()
	if items := h.svc.Items(); len(items) != 1 || items[0].Name != "Kept" {
		t.Fatalf("Items after restart = %v, want the persistent room only", items)
	}
	bob := h.session("bob@localhost/b")
	h.join(bob, "keep/Bob", "")
	expect(t, "bob after restart", bob,
		"presence from=keep/Bob [member/participant jid=bob@localhost/b] 110 170",
		"message type=groupchat from=keep/Alice body=remember me delayed",
		"message type=groupchat from=keep/Alice subject=Stays")
	eve := h.session("eve@localhost/e")
	h.join(eve, "keep/Eve", "")
	expect(t, "eve", eve, "presence type=error from=keep/Eve error=forbidden")
	carol := h.session("carol@localhost/c")
	h.join(carol, "keep/Carol", "")
	expect(t, "carol", carol, "presence type=error from=keep/Carol error=registration-required")
	if got, _ := h.iq(bob, `<iq type='get' id='d' to='temp@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`); got != "iq type=error from=temp error=item-not-found" {
		t.Errorf("temporary room after restart: %s", got)
	}
	// The owner is still the owner.
	alice = h.session("alice@localhost/a2")
	h.join(alice, "keep/Alice", "")
	expectHas(t, "alice", alice, "presence from=keep/Alice [owner/moderator jid=alice@localhost/a2] 110 170")
	feats, _ := roomFeatures(t, h, alice, "keep")
	if !strings.Contains(strings.Join(feats, " "), "muc_persistent") || !strings.Contains(strings.Join(feats, " "), "muc_membersonly") {
		t.Errorf("features after restart: %v", feats)
	}
	_, el := h.iq(alice, `<iq type='get' id='f' to='keep@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`)
	if v := formValues(el.Child(NSOwner, "query").Child(NSData, "x"))["poosms#conference"]; len(v) != 1 || v[0] != "members" {
		t.Errorf("conference policy after restart = %v", v)
	}
	// Turned temporary, the room goes from the store and vanishes once empty.
	h.configure(alice, "keep", map[string]string{"muc#roomconfig_persistentroom": "0"})
	if rooms, _ := db.Rooms(t.Context()); len(rooms) != 0 {
		t.Errorf("a room made temporary is still stored: %v", rooms)
	}
	if got, _, _ := mamQuery(t, h, alice, "keep", ""); strings.Join(got, ",") != "remember me" {
		t.Errorf("archive of a live room made temporary = %v", got)
	}
	h.svc.SessionClosed(t.Context(), alice)
	h.svc.SessionClosed(t.Context(), bob)
	if page, _ := db.RoomMessages(t.Context(), store.RoomQuery{Room: "keep"}); len(page.Messages) != 0 {
		t.Errorf("the archive outlived the room: %d messages", len(page.Messages))
	}
	h.restart()
	if items := h.svc.Items(); len(items) != 0 {
		t.Errorf("Items after making the room temporary = %v", items)
	}
}

// mamQuery sends a MAM query and returns the bodies of the results and
// the <fin/> element.
func mamQuery(t *testing.T, h *harness, sess *fakeSession, room, inner string) ([]string, *stanza.Element, *stanza.Element) {
	t.Helper()
	h.send(sess, `<iq type='set' id='q' to='`+room+`@conference.localhost'><query xmlns='urn:xmpp:mam:2' queryid='Q1'>`+inner+`</query></iq>`)
	var bodies []string
	for _, el := range sess.takeEls() {
		if el.Local == "iq" {
			return bodies, el.Child(NSMAM, "fin"), el
		}
		res := el.Child(NSMAM, "result")
		if res == nil || res.Attr("queryid") != "Q1" || el.From() != room+"@conference.localhost" {
			t.Fatalf("unexpected %s", el)
		}
		fwd := res.Child(NSForward, "forwarded")
		m := fwd.Child("", "message")
		if fwd.Child(stanza.NSDelay, "delay") == nil || m.From() == "" {
			t.Errorf("result without delay or sender: %s", el)
		}
		var sid string
		for _, c := range m.Elements() {
			if c.Local == "stanza-id" {
				sid = c.Attr("id")
			}
		}
		if sid != res.Attr("id") {
			t.Errorf("result id %q, message stanza-id %q", res.Attr("id"), sid)
		}
		bodies = append(bodies, m.ChildText("", "body"))
	}
	t.Fatal("no iq reply")
	return nil, nil, nil
}

func rsmText(fin *stanza.Element, name string) string {
	return fin.Child(NSRSM, "set").ChildText(NSRSM, name)
}

func TestRoomArchive(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	for i := range 10 {
		who := alice
		if i%2 == 1 {
			who = bob
		}
		h.send(who, fmt.Sprintf(`<message type='groupchat' to='r@conference.localhost'><body>m%d</body></message>`, i))
		h.advance(time.Minute)
	}
	alice.take()
	bob.take()

	all, fin, _ := mamQuery(t, h, bob, "r", "")
	if strings.Join(all, ",") != "m0,m1,m2,m3,m4,m5,m6,m7,m8,m9" || fin.Attr("complete") != "true" {
		t.Fatalf("whole archive = %v complete=%q", all, fin.Attr("complete"))
	}

	// Forward paging, three at a time.
	var pages []string
	after := ""
	for range 5 {
		set := `<set xmlns='http://jabber.org/protocol/rsm'><max>3</max>`
		if after != "" {
			set += `<after>` + after + `</after>`
		}
		got, fin, _ := mamQuery(t, h, bob, "r", set+`</set>`)
		pages = append(pages, strings.Join(got, ","))
		if fin.Attr("complete") == "true" {
			break
		}
		after = rsmText(fin, "last")
	}
	if strings.Join(pages, "|") != "m0,m1,m2|m3,m4,m5|m6,m7,m8|m9" {
		t.Errorf("forward pages = %v", pages)
	}

	// The last page, then the one before it.
	got, fin, _ := mamQuery(t, h, bob, "r", `<set xmlns='http://jabber.org/protocol/rsm'><max>4</max><before/></set>`)
	if strings.Join(got, ",") != "m6,m7,m8,m9" || fin.Attr("complete") == "true" {
		t.Errorf("last page = %v complete=%q", got, fin.Attr("complete"))
	}
	got, _, _ = mamQuery(t, h, bob, "r", `<set xmlns='http://jabber.org/protocol/rsm'><max>4</max><before>`+rsmText(fin, "first")+`</before></set>`)
	if strings.Join(got, ",") != "m2,m3,m4,m5" {
		t.Errorf("page before = %v", got)
	}

	form := func(fields string) string {
		return `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>` + fields + `</x>`
	}
	for _, tc := range []struct {
		name, inner, want string
	}{
		{"start", form(`<field var='start'><value>2026-11-25T10:07:00Z</value></field>`), "m7,m8,m9"},
		{"end", form(`<field var='end'><value>2026-11-25T10:01:00Z</value></field>`), "m0,m1"},
		{"with occupant", form(`<field var='with'><value>r@conference.localhost/Bob</value></field>`), "m1,m3,m5,m7,m9"},
		{"with and start", form(`<field var='with'><value>r@conference.localhost/Alice</value></field><field var='start'><value>2026-11-25T10:05:00Z</value></field>`), "m6,m8"},
	} {
		got, _, _ := mamQuery(t, h, bob, "r", tc.inner)
		if strings.Join(got, ",") != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name, inner, want string
	}{
		{"unknown id", `<set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set>`, "item-not-found"},
		{"bad start", form(`<field var='start'><value>yesterday</value></field>`), "bad-request"},
		{"with a real jid", form(`<field var='with'><value>bob@localhost</value></field>`), "feature-not-implemented"},
	} {
		_, _, reply := mamQuery(t, h, bob, "r", tc.inner)
		if got := summary(reply); got != "iq type=error from=r error="+tc.want {
			t.Errorf("%s: %s", tc.name, got)
		}
	}
	// The query form.
	_, el := h.iq(bob, `<iq type='get' id='f' to='r@conference.localhost'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	v := formValues(el.Child(NSMAM, "query").Child(NSData, "x"))
	if _, ok := v["start"]; len(v["FORM_TYPE"]) != 1 || !ok {
		t.Errorf("mam form = %s", el)
	}
}

func TestRoomArchiveAccess(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "club", "Alice", map[string]string{"muc#roomconfig_membersonly": "1"})
	h.send(alice, `<message type='groupchat' to='club@conference.localhost'><body>secret</body></message>`)
	alice.take()
	carol := h.session("carol@localhost/c")
	_, _, reply := mamQuery(t, h, carol, "club", "")
	if got := summary(reply); got != "iq type=error from=club error=forbidden" {
		t.Errorf("non-member querying a members-only room: %s", got)
	}
	_, _, reply = mamQuery(t, h, carol, "nope", "")
	if got := summary(reply); got != "iq type=error from=nope error=item-not-found" {
		t.Errorf("querying a room that does not exist: %s", got)
	}
	got, _, _ := mamQuery(t, h, alice, "club", "")
	if strings.Join(got, ",") != "secret" {
		t.Errorf("owner's query = %v", got)
	}
}

func TestRetention(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Retention = time.Hour })
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>old</body></message>`)
	h.advance(90 * time.Minute)
	// Past retention: neither history on join nor the archive shows it.
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	for _, s := range bob.take() {
		if strings.Contains(s, "body=old") {
			t.Errorf("expired message in history on join: %s", s)
		}
	}
	if got, _, _ := mamQuery(t, h, bob, "r", ""); len(got) != 0 {
		t.Errorf("expired message in the archive: %v", got)
	}
	// The next message prunes it from the store.
	h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>new</body></message>`)
	page, err := h.db.RoomMessages(t.Context(), store.RoomQuery{Room: "r"})
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("stored after prune: %d, %v; want only the new message", len(page.Messages), err)
	}
	if !strings.Contains(string(page.Messages[0].Stanza), "new") {
		t.Errorf("kept %s", page.Messages[0].Stanza)
	}
}
