package chat_test

import (
	"crypto/sha1"
	"encoding/base64"
	"testing"
	"time"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// befriend makes a and b subscribed to each other over their streams.
func befriend(t *testing.T, a, b *xmppclient.Client) {
	t.Helper()
	for _, p := range [][2]*xmppclient.Client{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		if err := from.SendRaw(`<presence type='subscribe' to='` + to.JID.Bare().String() + `'/>`); err != nil {
			t.Fatal(err)
		}
		if _, err := to.Expect(5*time.Second, func(el *stanza.Element) bool {
			return el.Local == "presence" && el.PresenceType() == stanza.SubscribePresence
		}); err != nil {
			t.Fatalf("%s waiting for a subscription request: %v", to.JID, err)
		}
		if err := to.SendRaw(`<presence type='subscribed' to='` + from.JID.Bare().String() + `'/>`); err != nil {
			t.Fatal(err)
		}
		if _, err := from.Expect(5*time.Second, func(el *stanza.Element) bool {
			return el.Local == "presence" && el.PresenceType() == stanza.SubscribedPresence
		}); err != nil {
			t.Fatalf("%s waiting for approval: %v", from.JID, err)
		}
	}
}

// answerCaps announces caps with features in a presence update and answers
// the server's disco#info query about them.
func answerCaps(t *testing.T, c *xmppclient.Client, features ...string) {
	t.Helper()
	ver, info := clientCaps(features...)
	if !announceCaps(t, c, ver, info) {
		t.Fatalf("%s: no caps query", c.JID)
	}
}

// clientCaps is the disco#info of a client/phone with features, already
// sorted, and its XEP-0115 §5.1 sha-1 ver.
func clientCaps(features ...string) (ver string, info *stanza.Element) {
	info = stanza.New(chat.NSDiscoInfo, "query").Append(
		stanza.New(chat.NSDiscoInfo, "identity").SetAttr("category", "client").SetAttr("type", "phone"))
	s := "client/phone//<"
	for _, f := range features {
		info.Append(stanza.New(chat.NSDiscoInfo, "feature").SetAttr("var", f))
		s += f + "<"
	}
	sum := sha1.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:]), info
}

func TestStreamsPEPBlockingAndVCard(t *testing.T) {
	st := newStack(t, "", "alice", "bob")
	alice := st.login(t, "alice", "laptop")
	bob := st.login(t, "bob", "phone")
	befriend(t, alice, bob)
	const devices = "eu.siacs.conversations.axolotl.devicelist"
	answerCaps(t, bob, "http://jabber.org/protocol/disco#info", devices+"+notify")

	// Alice publishes her OMEMO device list and a bundle; bob hears the list
	// and fetches the bundle.
	r := call(t, alice, `<iq type='set' id='p1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+devices+`'><item id='current'><list xmlns='eu.siacs.conversations.axolotl'><device id='7'/></list></item></publish>`+
		`<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field><field var='pubsub#access_model'><value>open</value></field></x></publish-options></pubsub></iq>`, "p1", nil)
	if r.IQType() != stanza.ResultIQ {
		t.Fatalf("publish: %s", r)
	}
	ev := message(bob, t, func(el *stanza.Element) bool { return el.Child(chat.NSPubSubEvent, "event") != nil })
	if ev.From() != "alice@localhost" || ev.MessageType() != stanza.HeadlineMessage {
		t.Errorf("event %s", ev)
	}
	r = call(t, alice, `<iq type='set' id='p2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='eu.siacs.conversations.axolotl.bundles:7'><item id='current'><bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle></item></publish></pubsub></iq>`, "p2", nil)
	if r.IQType() != stanza.ResultIQ {
		t.Fatalf("publish bundle: %s", r)
	}
	r = call(t, bob, `<iq type='get' id='b1' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='eu.siacs.conversations.axolotl.bundles:7'/></pubsub></iq>`, "b1", nil)
	if r.IQType() != stanza.ResultIQ || r.Child(chat.NSPubSub, "pubsub").Child(chat.NSPubSub, "items").Child(chat.NSPubSub, "item") == nil {
		t.Errorf("bundle fetch: %s", r)
	}

	// vCards.
	r = call(t, alice, `<iq type='set' id='v1'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>`, "v1", nil)
	if r.IQType() != stanza.ResultIQ {
		t.Fatalf("vcard set: %s", r)
	}
	r = call(t, bob, `<iq type='get' id='v2' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>`, "v2", nil)
	if r.Child(chat.NSVCard, "vCard").ChildText(chat.NSVCard, "FN") != "Alice" {
		t.Errorf("vcard get: %s", r)
	}

	// Alice blocks bob: bob sees her leave, his messages bounce unexplained.
	call(t, alice, `<iq type='get' id='bl'><blocklist xmlns='urn:xmpp:blocking'/></iq>`, "bl", nil)
	var side []*stanza.Element
	r = call(t, alice, `<iq type='set' id='bk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>`, "bk", &side)
	if r.IQType() != stanza.ResultIQ {
		t.Fatalf("block: %s", r)
	}
	if _, err := bob.Expect(5*time.Second, func(el *stanza.Element) bool {
		return el.Local == "presence" && el.PresenceType() == stanza.UnavailablePresence && el.From() == alice.JID.String()
	}); err != nil {
		t.Errorf("bob did not see alice leave: %v", err)
	}
	if err := bob.SendRaw(`<message type='chat' to='alice@localhost'><body>hello?</body></message>`); err != nil {
		t.Fatal(err)
	}
	bounce := message(bob, t, func(el *stanza.Element) bool { return el.IsError() })
	if e := bounce.Child("", "error"); e == nil || e.Child(stanza.NSStanzas, "service-unavailable") == nil || e.Child(chat.NSBlockingErrs, "blocked") != nil {
		t.Errorf("bounce %s", bounce)
	}
}
