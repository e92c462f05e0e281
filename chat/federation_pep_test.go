package chat

import (
	"crypto/sha1"
	"slices"
	"testing"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// remoteCapsPresence is the presence a remote client with features sends.
func remoteCapsPresence(from, to string, features ...string) (string, *stanza.Element) {
	info := clientInfo(features...)
	ver := capsVerOf(info, sha1.New())
	return `<presence from='` + from + `' to='` + to + `'><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://far.example' ver='` + ver + `'/></presence>`, info
}

// TestRemotePEPNotifications: a contact's client on another server that
// announces +notify in its presence hears of the user's PEP nodes: the
// server asks it what its capabilities mean (through federation), sends
// it the last items, then new ones; a client of someone who is not
// subscribed is not asked and hears nothing; an unavailable client hears
// nothing more; an answer to a question never asked changes nothing.
func TestRemotePEPNotifications(t *testing.T) {
	h, fed := newFedHarness(t, Config{}, "alice")
	h.setItem("alice", "bob@far.example", store.SubBoth)
	h.setItem("alice", "carol@far.example", store.SubTo) // carol does not see alice's presence
	a := h.online("alice@localhost/a", 0)
	h.iq(a, publish(nodeAvatar, "av1", `<metadata xmlns='urn:xmpp:avatar:metadata'/>`, ""))
	a.take()
	fed.take()

	pres, info := remoteCapsPresence("bob@far.example/phone", "alice@localhost", nodeDevices+"+notify", nodeAvatar+"+notify")
	h.remote(pres)
	var q *stanza.Element
	for _, el := range fed.takeAll() {
		if el.Local == "iq" && el.Child(NSDiscoInfo, "query") != nil {
			q = el
		}
	}
	if q == nil || q.From() != "localhost" || q.To() != "bob@far.example/phone" {
		t.Fatalf("bob's client was not asked what its capabilities mean: %v", q)
	}
	// A forged answer (another id, another sender) is ignored.
	h.remote(`<iq type='result' id='rcaps999' from='bob@far.example/phone' to='localhost'>` + info.String() + `</iq>`)
	h.remote(`<iq type='result' id='` + q.ID() + `' from='mallory@far.example/x' to='localhost'>` + info.String() + `</iq>`)
	if got := fed.take(); len(got) != 0 {
		t.Fatalf("forged answers made the server send %v", got)
	}
	r := stanza.Result(q, info.Copy().SetAttr("node", q.Child(NSDiscoInfo, "query").Attr("node")))
	r.SetAttr("from", q.To())
	r.SetAttr("to", q.From())
	h.remote(r.String())
	if got := events(&fed.fakeSession); !slices.Equal(got, []string{"alice@localhost " + nodeAvatar + ":item:av1:delayed"}) {
		t.Fatalf("bob's client got %v, want alice's last avatar", got)
	}

	// dave is no contact of alice's: his client is not even asked. carol's
	// is (alice sees her presence), but carol does not see alice's, so
	// she hears of nothing.
	pres, _ = remoteCapsPresence("dave@far.example/pc", "alice@localhost", nodeDevices+"+notify")
	h.remote(pres)
	if got := fed.take(); len(got) != 0 {
		t.Fatalf("a stranger's client was sent %v", got)
	}
	pres, info = remoteCapsPresence("carol@far.example/pc", "alice@localhost", nodeAvatar+"+notify", nodeDevices+"+notify")
	h.remote(pres)
	for _, el := range fed.takeAll() {
		if el.Local == "iq" && el.To() == "carol@far.example/pc" {
			r := stanza.Result(el, info.Copy().SetAttr("node", el.Child(NSDiscoInfo, "query").Attr("node")))
			r.SetAttr("from", el.To())
			r.SetAttr("to", el.From())
			h.remote(r.String())
		}
	}
	if got := fed.take(); len(got) != 0 {
		t.Fatalf("a contact not subscribed to alice was sent %v", got)
	}

	h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'><device id='7'/></list>`, ""))
	got := fed.takeAll()
	if len(got) != 1 || got[0].To() != "bob@far.example/phone" || got[0].Child(NSPubSubEvent, "event") == nil {
		t.Fatalf("the device list went to %v, want bob's client alone", got)
	}

	// bob's client goes: it hears no more.
	h.remote(`<presence from='bob@far.example/phone' to='alice@localhost' type='unavailable'/>`)
	h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'><device id='8'/></list>`, ""))
	if got := fed.take(); len(got) != 0 {
		t.Fatalf("an unavailable client was sent %v", got)
	}

	// Back, with capabilities the server now knows: no question, the last
	// items at once; then its server is lost, and it hears nothing more.
	pres, _ = remoteCapsPresence("bob@far.example/phone", "alice@localhost", nodeDevices+"+notify", nodeAvatar+"+notify")
	h.remote(pres)
	if got := events(&fed.fakeSession); len(got) != 2 {
		t.Fatalf("bob's client back got %v, want the two last items", got)
	}
	h.svc.RemoteAvailability("far.example", false)
	h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'><device id='9'/></list>`, ""))
	for _, el := range fed.takeAll() {
		if el.Child(NSPubSubEvent, "event") != nil {
			t.Fatalf("a client of a lost server was sent %s", el)
		}
	}
}
