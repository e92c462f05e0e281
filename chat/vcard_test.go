package chat

import (
	"testing"

	"poosms.org/poosms/stanza"
)

func TestVCard(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)

	reply, _ := h.iq(a, `<iq type='get' id='v0'><vCard xmlns='vcard-temp'/></iq>`)
	if v := reply.Child(NSVCard, "vCard"); reply.IQType() != stanza.ResultIQ || v == nil || len(v.Elements()) != 0 {
		t.Errorf("empty vCard: %s", reply)
	}
	reply, _ = h.iq(a, `<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>alice</NICKNAME></vCard></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("set: %s", reply)
	}
	reply, _ = h.iq(a, `<iq type='get' id='v2'><vCard xmlns='vcard-temp'/></iq>`)
	if got := reply.Child(NSVCard, "vCard").ChildText(NSVCard, "FN"); got != "Alice Liddell" {
		t.Errorf("own vCard FN %q in %s", got, reply)
	}
	// Anyone local reads it, from alice's bare JID.
	reply, _ = h.iq(b, `<iq type='get' id='v3' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`)
	if reply.From() != "alice@localhost" || reply.Child(NSVCard, "vCard").ChildText(NSVCard, "NICKNAME") != "alice" {
		t.Errorf("bob reading alice's vCard: %s", reply)
	}
	for _, tc := range []struct {
		raw  string
		cond stanza.Condition
	}{
		{`<iq type='set' id='v4' to='alice@localhost'><vCard xmlns='vcard-temp'><FN>Mallory</FN></vCard></iq>`, "forbidden"},
		{`<iq type='get' id='v5' to='nobody@localhost'><vCard xmlns='vcard-temp'/></iq>`, "service-unavailable"},
	} {
		if reply, _ := h.iq(b, tc.raw); errorCondition(reply) != tc.cond {
			t.Errorf("%s: %s, want %s", tc.raw, reply, tc.cond)
		}
	}
}

func TestPrivateStorage(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)
	reply, _ := h.iq(a, `<iq type='set' id='p1'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'><theme>dark</theme></prefs></query></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("set: %s", reply)
	}
	reply, _ = h.iq(a, `<iq type='get' id='p2'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`)
	if got := reply.Child(NSPrivate, "query").Child("urn:example:prefs", "prefs").ChildText("urn:example:prefs", "theme"); got != "dark" {
		t.Errorf("get: %s", reply)
	}
	// Nothing stored under another namespace, and bob sees nothing of alice's.
	reply, _ = h.iq(b, `<iq type='get' id='p3'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`)
	if p := reply.Child(NSPrivate, "query").Child("urn:example:prefs", "prefs"); p == nil || len(p.Elements()) != 0 {
		t.Errorf("bob's empty storage: %s", reply)
	}
	for _, tc := range []struct {
		raw  string
		cond stanza.Condition
	}{
		{`<iq type='set' id='e1'><query xmlns='jabber:iq:private'><x/></query></iq>`, "not-acceptable"},
		{`<iq type='set' id='e2'><query xmlns='jabber:iq:private'/></iq>`, "bad-request"},
		{`<iq type='get' id='e3' to='alice@localhost'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`, "service-unavailable"},
		{`<iq type='get' id='e4' to='localhost'><query xmlns='jabber:iq:private'><prefs xmlns='urn:example:prefs'/></query></iq>`, "service-unavailable"},
	} {
		if reply, _ := h.iq(b, tc.raw); errorCondition(reply) != tc.cond {
			t.Errorf("%s: %s, want %s", tc.raw, reply, tc.cond)
		}
	}
}
