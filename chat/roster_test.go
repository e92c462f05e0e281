package chat

import (
	"strings"
	"testing"
)

func TestRosterCRUDPushesToInterestedResources(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a1 := h.online("alice@localhost/one", 0)
	a2 := h.online("alice@localhost/two", 0)
	a3 := h.bind("alice@localhost/quiet") // never asked for the roster
	a1.take()

	h.send(a1, `<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>`)
	expect(t, "a1", a1,
		"iq type=set to=alice@localhost/one item=bob@localhost:none:name=Bob:group=Friends",
		"iq type=result to=alice@localhost/one")
	expect(t, "a2", a2, "iq type=set to=alice@localhost/two item=bob@localhost:none:name=Bob:group=Friends")
	expect(t, "a3", a3)

	h.send(a2, `<iq type='get' id='g1'><query xmlns='jabber:iq:roster'/></iq>`)
	expect(t, "a2 get", a2, "iq type=result to=alice@localhost/two item=bob@localhost:none:name=Bob:group=Friends")

	h.send(a2, `<iq type='set' id='s2'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bobby'><group>Work</group><group>Friends</group></item></query></iq>`)
	expect(t, "a1 update", a1, "iq type=set to=alice@localhost/one item=bob@localhost:none:name=Bobby:group=Work:group=Friends")
	expect(t, "a2 update", a2,
		"iq type=set to=alice@localhost/two item=bob@localhost:none:name=Bobby:group=Work:group=Friends",
		"iq type=result to=alice@localhost/two")

	h.send(a1, `<iq type='set' id='s3'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>`)
	expect(t, "a1 remove", a1,
		"iq type=set to=alice@localhost/one item=bob@localhost:remove",
		"iq type=result to=alice@localhost/one")
	expect(t, "a2 remove", a2, "iq type=set to=alice@localhost/two item=bob@localhost:remove")
	if _, ok := h.st.Item("alice", "bob@localhost"); ok {
		t.Error("removed item is still stored")
	}

	h.send(a1, `<iq type='set' id='s4'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>`)
	expect(t, "a1 remove again", a1, "iq type=error to=alice@localhost/one error=item-not-found")
	expect(t, "a3 at end", a3)
}

func TestRosterSetValidation(t *testing.T) {
	long := strings.Repeat("x", 1024)
	for _, tc := range []struct {
		name, query, want string
	}{
		{"two items", `<item jid='a@localhost'/><item jid='b@localhost'/>`, "bad-request"},
		{"no item", ``, "bad-request"},
		{"long name", `<item jid='b@localhost' name='` + long + `'/>`, "not-acceptable"},
		{"empty group", `<item jid='b@localhost'><group/></item>`, "not-acceptable"},
		{"long group", `<item jid='b@localhost'><group>` + long + `</group></item>`, "not-acceptable"},
		{"duplicate group", `<item jid='b@localhost'><group>g</group><group>g</group></item>`, "bad-request"},
		{"bad jid", `<item jid='@@'/>`, "jid-malformed"},
		{"missing jid", `<item name='x'/>`, "jid-malformed"},
		{"full jid", `<item jid='b@localhost/phone'/>`, "bad-request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{}, "alice", "bob")
			a := h.online("alice@localhost/one", 0)
			h.send(a, `<iq type='set' id='v'><query xmlns='jabber:iq:roster'>`+tc.query+`</query></iq>`)
			expect(t, "alice", a, "iq type=error to=alice@localhost/one error="+tc.want)
			if items, _ := h.st.RosterItems(t.Context(), "alice"); len(items) != 0 {
				t.Errorf("roster changed: %+v", items)
			}
		})
	}
}

func TestRosterOfAnotherUserIsForbidden(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/one", 0)
	h.send(a, `<iq type='get' id='x' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>`)
	expect(t, "alice", a, "iq type=error from=bob@localhost to=alice@localhost/one error=forbidden")
}

func TestRosterSetKeepsSubscription(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/one", 0)
	h.send(a, `<iq type='set' id='s'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='B' subscription='none' ask='subscribe'/></query></iq>`)
	expect(t, "alice", a,
		"iq type=set to=alice@localhost/one item=bob@localhost:both:name=B",
		"iq type=result to=alice@localhost/one")
}
