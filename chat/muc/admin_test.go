package muc

import (
	"strings"
	"testing"
)

const adminNS = "http://jabber.org/protocol/muc#admin"

func adminSet(room, items string) string {
	return `<iq type='set' id='adm' to='` + room + `@conference.localhost'><query xmlns='` + adminNS + `'>` + items + `</query></iq>`
}

// fourRoom is a room r with owner Alice, admin Dave, member Bob and
// Carol with no affiliation, all in the room.
func fourRoom(t *testing.T, h *harness, fields map[string]string) (alice, dave, bob, carol *fakeSession) {
	t.Helper()
	alice = h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", fields)
	if got, _ := h.iq(alice, adminSet("r", `<item affiliation='admin' jid='dave@localhost'/><item affiliation='member' jid='bob@localhost'/>`)); got != "iq type=result from=r" {
		t.Fatalf("set affiliations: %s", got)
	}
	dave = h.session("dave@localhost/d")
	bob = h.session("bob@localhost/b")
	carol = h.session("carol@localhost/c")
	h.join(dave, "r/Dave", "")
	h.join(bob, "r/Bob", "")
	h.join(carol, "r/Carol", "")
	for _, s := range []*fakeSession{alice, dave, bob, carol} {
		s.take()
	}
	return alice, dave, bob, carol
}

func TestKick(t *testing.T) {
	h := newHarness(t, nil)
	alice, dave, bob, carol := fourRoom(t, h, nil)
	if got, _ := h.iq(dave, adminSet("r", `<item nick='Carol' role='none'><reason>rude</reason></item>`)); got != "iq type=result from=r" {
		t.Fatalf("kick: %s", got)
	}
	expect(t, "carol", carol, "presence type=unavailable from=r/Carol [none/none jid=carol@localhost/c actor=Dave reason=rude] 110 307")
	expect(t, "bob", bob, "presence type=unavailable from=r/Carol [none/none actor=Dave reason=rude] 307")
	expect(t, "alice", alice, "presence type=unavailable from=r/Carol [none/none jid=carol@localhost/c actor=Dave reason=rude] 307")
	// A kicked user may come back.
	h.join(carol, "r/Carol", "")
	expectHas(t, "carol", carol, "presence from=r/Carol [none/participant jid=carol@localhost/c] 110 170")
}

func TestBan(t *testing.T) {
	h := newHarness(t, nil)
	alice, _, bob, carol := fourRoom(t, h, nil)
	if got, _ := h.iq(alice, adminSet("r", `<item affiliation='outcast' jid='carol@localhost'><reason>spam</reason></item>`)); got != "iq type=result from=r" {
		t.Fatalf("ban: %s", got)
	}
	expect(t, "carol", carol, "presence type=unavailable from=r/Carol [outcast/none jid=carol@localhost/c actor=Alice reason=spam] 110 301")
	expect(t, "bob", bob, "presence type=unavailable from=r/Carol [outcast/none actor=Alice reason=spam] 301")
	h.join(carol, "r/Carol", "")
	expect(t, "carol rejoining", carol, "presence type=error from=r/Carol error=forbidden")
	// The outcast list shows her with the reason.
	_, el := h.iq(alice, `<iq type='get' id='l' to='r@conference.localhost'><query xmlns='`+adminNS+`'><item affiliation='outcast'/></query></iq>`)
	if s := el.String(); !strings.Contains(s, "jid='carol@localhost'") || !strings.Contains(s, "spam") {
		t.Errorf("outcast list = %s", s)
	}
	// Lifting the ban lets her in again.
	h.iq(alice, adminSet("r", `<item affiliation='none' jid='carol@localhost'/>`))
	h.join(carol, "r/Carol", "")
	expectHas(t, "carol", carol, "presence from=r/Carol [none/participant jid=carol@localhost/c] 110 170")
}

func TestAdminPermissions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		actor string // Alice owner, Dave admin, Bob member, Carol none
		items string
		want  string
	}{
		{"participant cannot kick", "Carol", `<item nick='Bob' role='none'/>`, "forbidden"},
		{"moderator cannot kick an admin", "Dave", `<item nick='Alice' role='none'/>`, "not-allowed"},
		{"owner cannot kick an admin", "Alice", `<item nick='Dave' role='none'/>`, "not-allowed"},
		{"admin cannot grant admin", "Dave", `<item affiliation='admin' jid='bob@localhost'/>`, "not-allowed"},
		{"admin cannot ban an owner", "Dave", `<item affiliation='outcast' jid='alice@localhost'/>`, "not-allowed"},
		{"member cannot ban", "Bob", `<item affiliation='outcast' jid='carol@localhost'/>`, "forbidden"},
		{"last owner stays", "Alice", `<item affiliation='member' jid='alice@localhost'/>`, "conflict"},
		{"unknown nick", "Alice", `<item nick='Zed' role='none'/>`, "item-not-found"},
		{"bad role", "Alice", `<item nick='Bob' role='king'/>`, "bad-request"},
		{"bad affiliation", "Alice", `<item jid='bob@localhost' affiliation='king'/>`, "bad-request"},
		{"neither", "Alice", `<item nick='Bob'/>`, "bad-request"},
		{"bad jid", "Alice", `<item affiliation='member' jid='@@'/>`, "jid-malformed"},
		{"one bad item spoils all", "Dave", `<item nick='Carol' role='none'/><item nick='Alice' role='none'/>`, "not-allowed"},
		{"admin bans a member", "Dave", `<item affiliation='outcast' jid='bob@localhost'/>`, ""},
		{"owner makes an admin", "Alice", `<item affiliation='admin' jid='carol@localhost'/>`, ""},
		{"owner adds an owner then steps down", "Alice", `<item affiliation='owner' jid='dave@localhost'/><item affiliation='admin' jid='alice@localhost'/>`, ""},
		{"admin grants moderation", "Dave", `<item nick='Bob' role='moderator'/>`, ""},
		{"moderator mutes a participant", "Dave", `<item nick='Carol' role='visitor'/>`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			alice, dave, bob, carol := fourRoom(t, h, nil)
			actor := map[string]*fakeSession{"Alice": alice, "Dave": dave, "Bob": bob, "Carol": carol}[tc.actor]
			got, _ := h.iq(actor, adminSet("r", tc.items))
			want := "iq type=result from=r"
			if tc.want != "" {
				want = "iq type=error from=r error=" + tc.want
			}
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			if tc.want != "" {
				// Nothing changed for anyone.
				for n, s := range actor2(alice, dave, bob, carol) {
					if s == actor {
						continue
					}
					expect(t, n, s)
				}
			}
		})
	}
}

func actor2(alice, dave, bob, carol *fakeSession) map[string]*fakeSession {
	return map[string]*fakeSession{"alice": alice, "dave": dave, "bob": bob, "carol": carol}
}

func TestRoleAndAffiliationBroadcast(t *testing.T) {
	h := newHarness(t, nil)
	alice, dave, bob, carol := fourRoom(t, h, nil)
	h.iq(dave, adminSet("r", `<item nick='Carol' role='visitor'/>`))
	expect(t, "carol", carol, "presence from=r/Carol [none/visitor jid=carol@localhost/c] 110")
	expect(t, "bob", bob, "presence from=r/Carol [none/visitor]")
	h.send(carol, `<message type='groupchat' to='r@conference.localhost'><body>hello?</body></message>`)
	expect(t, "muted carol", carol, "message type=error from=r body=hello? error=forbidden")
	// Making Carol an admin makes her a moderator.
	h.iq(alice, adminSet("r", `<item affiliation='admin' jid='carol@localhost'/>`))
	expect(t, "bob", bob, "presence from=r/Carol [admin/moderator]")
	expect(t, "dave", dave, "presence from=r/Carol [admin/moderator jid=carol@localhost/c]")
}

func TestAdminLists(t *testing.T) {
	h := newHarness(t, nil)
	alice, dave, bob, _ := fourRoom(t, h, nil)
	list := func(s *fakeSession, attr string) string {
		_, el := h.iq(s, `<iq type='get' id='l' to='r@conference.localhost'><query xmlns='`+adminNS+`'><item `+attr+`/></query></iq>`)
		if el.IsError() {
			return summary(el)
		}
		var out []string
		for _, it := range el.Child(adminNS, "query").Elements() {
			out = append(out, it.Attr("jid")+":"+it.Attr("nick")+":"+it.Attr("affiliation")+":"+it.Attr("role"))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		who  *fakeSession
		attr string
		want string
	}{
		{alice, "affiliation='owner'", "alice@localhost::owner:"},
		{dave, "affiliation='member'", "bob@localhost::member:"},
		{alice, "affiliation='admin'", "dave@localhost::admin:"},
		{bob, "affiliation='member'", "iq type=error from=r error=forbidden"},
		{dave, "role='moderator'", "alice@localhost/a:Alice:owner:moderator dave@localhost/d:Dave:admin:moderator"},
		{dave, "role='participant'", "bob@localhost/b:Bob:member:participant carol@localhost/c:Carol:none:participant"},
		{bob, "role='participant'", "iq type=error from=r error=forbidden"},
		{alice, "affiliation='none'", "iq type=error from=r error=bad-request"},
	} {
		if got := list(tc.who, tc.attr); got != tc.want {
			t.Errorf("%s asking %s: %s, want %s", tc.who.JID(), tc.attr, got, tc.want)
		}
	}
}

func TestMembersOnlyRemovesNonMembers(t *testing.T) {
	h := newHarness(t, nil)
	alice, _, bob, carol := fourRoom(t, h, nil)
	h.configure(alice, "r", map[string]string{"muc#roomconfig_membersonly": "1"})
	expect(t, "carol", carol, "presence type=unavailable from=r/Carol [none/none jid=carol@localhost/c] 110 322")
	expect(t, "bob", bob, "presence type=unavailable from=r/Carol [none/none] 322", "message type=groupchat from=r 104")
	// Taking membership away removes a member too.
	h.iq(alice, adminSet("r", `<item affiliation='none' jid='bob@localhost'/>`))
	expect(t, "bob", bob, "presence type=unavailable from=r/Bob [none/none jid=bob@localhost/b actor=Alice] 110 321")
}
