package component

import (
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// TestStrangersOnlyDiscover: a user of another server (or a server) may
// ask a service what it is, and nothing else; this server's users may
// ask anything.
func TestStrangersOnlyDiscover(t *testing.T) {
	why := Refusals{Message: "no messages", Stranger: "local users only"}
	for _, tc := range []struct {
		from, raw string
		want      stanza.Condition // "" for the payload, else the error condition
	}{
		{"bob@far.example/x", `<iq type='get' id='1' to='svc.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, ""},
		{"far.example", `<iq type='get' id='2' to='svc.localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`, ""},
		{"bob@far.example/x", `<iq type='set' id='3' to='svc.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, "forbidden"},
		{"bob@far.example/x", `<iq type='get' id='4' to='svc.localhost'><query xmlns='jabber:iq:search'/></iq>`, "forbidden"},
		{"bob@far.example/x", `<iq type='get' id='5' to='svc.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/><query xmlns='jabber:iq:search'/></iq>`, "forbidden"},
		{"localhost", `<iq type='get' id='6' to='svc.localhost'><query xmlns='jabber:iq:search'/></iq>`, "forbidden"},
		{"alice@localhost/a", `<iq type='get' id='7' to='svc.localhost'><query xmlns='jabber:iq:search'/></iq>`, ""},
	} {
		el, err := stanza.Parse([]byte(tc.raw))
		if err != nil {
			t.Fatal(err)
		}
		q, reply := Request(el, jid.MustParse(tc.from), "svc.localhost", "localhost", why)
		switch {
		case tc.want == "" && (q == nil || reply != nil):
			t.Errorf("%s from %s: refused: %v", el.ID(), tc.from, reply)
		case tc.want != "" && (reply == nil || stanza.ErrorCondition(reply) != tc.want):
			t.Errorf("%s from %s: %v, want %s", el.ID(), tc.from, reply, tc.want)
		}
	}
}
