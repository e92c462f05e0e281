package chat_test

import (
	"testing"
	"time"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// TestStreamsCapsPoisoning: mallory announces the caps hash of bob's
// client and answers the server's query with features that hash the same
// (an escaped '<' inside one feature reads as a separator) but lack the
// device-list +notify. Bob, announcing that hash with the genuine client,
// is still asked, and hears alice's device list.
func TestStreamsCapsPoisoning(t *testing.T) {
	const (
		disco   = "http://jabber.org/protocol/disco#info"
		devices = "eu.siacs.conversations.axolotl.devicelist"
	)
	st := newStack(t, "", "alice", "bob", "mallory")
	alice := st.login(t, "alice", "laptop")
	bob := st.login(t, "bob", "phone")
	mallory := st.login(t, "mallory", "x")
	befriend(t, alice, bob)

	ver, genuine := clientCaps(devices+"+notify", disco)
	_, forged := clientCaps(devices + "+notify<" + disco) // sent as var='…+notify&lt;http://…'
	if !announceCaps(t, mallory, ver, forged) {
		t.Fatal("the server did not ask mallory about her caps")
	}
	call(t, mallory, `<iq type='get' id='m1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`, "m1", nil) // her answer is handled

	if !announceCaps(t, bob, ver, genuine) {
		t.Fatal("bob was not asked about his caps: mallory's forged answer speaks for him")
	}
	r := call(t, alice, `<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+devices+`'><item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='7'/></list></item></publish></pubsub></iq>`, "p1", nil)
	if r.IQType() != stanza.ResultIQ {
		t.Fatalf("publish: %s", r)
	}
	ev := message(bob, t, func(el *stanza.Element) bool { return el.Child(chat.NSPubSubEvent, "event") != nil })
	if ev.From() != "alice@localhost" {
		t.Errorf("event %s", ev)
	}
}

// announceCaps sends presence with a sha-1 caps ver and answers the
// server's disco#info query with info; it reports whether a query came.
func announceCaps(t *testing.T, c *xmppclient.Client, ver string, info *stanza.Element) bool {
	t.Helper()
	if err := c.SendRaw(`<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://client.example' ver='` + ver + `'/></presence>`); err != nil {
		t.Fatal(err)
	}
	q, err := c.Expect(5*time.Second, func(el *stanza.Element) bool {
		return el.Local == "iq" && el.IQType() == stanza.GetIQ && el.Child(chat.NSDiscoInfo, "query") != nil
	})
	if err != nil {
		return false
	}
	if q.Child(chat.NSDiscoInfo, "query").Attr("node") != "https://client.example#"+ver {
		t.Errorf("caps query %s", q)
	}
	info = info.Copy().SetAttr("node", "https://client.example#"+ver)
	r := stanza.NewIQ(stanza.ResultIQ).SetAttr("id", q.ID()).SetAttr("to", q.From()).Append(info)
	if err := c.Send(r); err != nil {
		t.Fatal(err)
	}
	return true
}
