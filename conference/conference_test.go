package conference

import (
	"context"
	"sync"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/sfu"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

const domain = "conference.localhost"

func parse(t *testing.T, s string) *stanza.Element {
	t.Helper()
	el, err := stanza.Parse([]byte(s))
	if err != nil {
		t.Fatalf("parse %s: %v", s, err)
	}
	return el
}

// Which stanzas to conference.DOMAIN are the call's, which the rooms'.
func TestForCall(t *testing.T) {
	for _, c := range []struct {
		name, el string
		call     bool
	}{
		{"join", `<iq type='set' id='1' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`, true},
		{"offer", `<iq type='set' id='1' to='room@conference.localhost'><offer xmlns='urn:poosms:conference:0'>v=0</offer></iq>`, true},
		{"conference namespace to an occupant", `<iq type='set' id='1' to='room@conference.localhost/nick'><leave xmlns='urn:poosms:conference:0'/></iq>`, true},
		{"conference get", `<iq type='get' id='1' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`, true},
		{"answer to the SFU's offer", `<iq type='result' id='1' to='room@conference.localhost'><answer xmlns='urn:poosms:conference:0'>v=0</answer></iq>`, true},
		{"empty result to the room", `<iq type='result' id='1' to='room@conference.localhost'/>`, true},
		{"error to the room", `<iq type='error' id='1' to='room@conference.localhost'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, true},

		{"result to an occupant (a relayed request)", `<iq type='result' id='1' to='room@conference.localhost/nick'/>`, false},
		{"error to an occupant", `<iq type='error' id='1' to='room@conference.localhost/nick'/>`, false},
		{"result to the service (its ping of a remote occupant)", `<iq type='result' id='1' to='conference.localhost'/>`, false},
		{"result to a malformed address", `<iq type='result' id='1' to='@@conference.localhost'/>`, false},
		{"disco to the room", `<iq type='get' id='1' to='room@conference.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`, false},
		{"room configuration", `<iq type='set' id='1' to='room@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'/></iq>`, false},
		{"iq with no payload", `<iq type='set' id='1' to='room@conference.localhost'/>`, false},
		{"groupchat message", `<message type='groupchat' to='room@conference.localhost'><body>hi</body></message>`, false},
		{"message in the conference namespace", `<message to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></message>`, false},
		{"presence", `<presence to='room@conference.localhost/nick'/>`, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := forCall(parse(t, c.el)); got != c.call {
				t.Fatalf("forCall(%s) = %v, want %v", c.el, got, c.call)
			}
		})
	}
}

// Before Start nothing runs and what arrives is dropped.
func TestNotStarted(t *testing.T) {
	s := newService(t, nil)
	alice := testfake.NewSession("alice@localhost/pc")
	ctx := t.Context()
	s.HandleStanza(ctx, alice, parse(t, `<presence from='alice@localhost/pc' to='room@conference.localhost/al'/>`))
	s.HandleStanza(ctx, alice, parse(t, `<iq type='set' id='j' from='alice@localhost/pc' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`))
	s.HandleRemote(ctx, parse(t, `<presence from='zoe@far.example/z' to='room@conference.localhost/zo'/>`))
	s.SessionClosed(ctx, alice)
	s.Adopt(ctx, jid.MustParse("room@"+domain))
	s.Moved(ctx, jid.MustParse("room@"+domain))
	if got := alice.Take(); len(got) != 0 {
		t.Fatalf("alice got %d stanzas before Start", len(got))
	}
	if s.InUse(ctx, jid.MustParse("room@"+domain)) || s.UDPAddr() != nil {
		t.Fatal("in use, or a media port, before Start")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// The room decides who takes part in its call: the SFU admits the room's
// occupants only, and leaving the room ends one's place in the call.
func TestRoomsAndCallsWired(t *testing.T) {
	var remote sent
	s := newService(t, remote.send)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.UDPAddr() == nil {
		t.Fatal("no media port")
	}
	ctx := t.Context()
	room := jid.MustParse("room@" + domain)
	alice := testfake.NewSession("alice@localhost/pc")
	bob := testfake.NewSession("bob@localhost/phone")
	join := func(who string) *stanza.Element {
		return parse(t, `<iq type='set' id='j' from='`+who+`' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`)
	}

	// bob is not in the room: the call refuses him.
	s.HandleStanza(ctx, bob, join("bob@localhost/phone"))
	if r := one(t, bob); r.Type() != "error" || stanza.ErrorCondition(r) != "forbidden" {
		t.Fatalf("bob, not in the room, joined the call: %s", r)
	}

	// alice enters the room (the rooms answer), then joins its call.
	s.HandleStanza(ctx, alice, parse(t, `<presence from='alice@localhost/pc' to='room@conference.localhost/al'><x xmlns='http://jabber.org/protocol/muc'/></presence>`))
	if got := alice.Take(); len(got) == 0 || got[0].Local != "presence" || got[0].Type() != "" {
		t.Fatalf("alice entering the room got %v", got)
	}
	s.HandleStanza(ctx, alice, join("alice@localhost/pc"))
	if r := one(t, alice); r.Type() != "result" || r.Child(sfu.NS, "joined") == nil {
		t.Fatalf("alice, in the room, did not join the call: %s", r)
	}
	if !s.InUse(ctx, room) {
		t.Fatal("room with an occupant and a call not in use")
	}

	// A user of another server who is not in the room: refused too, the
	// answer going back through federation; an address of this server
	// through federation is dropped.
	s.HandleRemote(ctx, parse(t, `<iq type='set' id='r' from='zoe@far.example/z' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`))
	s.HandleRemote(ctx, parse(t, `<iq type='set' id='f' from='mallory@localhost/m' to='room@conference.localhost'><join xmlns='urn:poosms:conference:0'/></iq>`))
	if got := remote.take(); len(got) != 1 || got[0].Type() != "error" || got[0].To() != "zoe@far.example/z" || stanza.ErrorCondition(got[0]) != "forbidden" {
		t.Fatalf("federation sent %v", got)
	}

	// alice leaves the room: her call ends with it, and the room is idle.
	s.HandleStanza(ctx, alice, parse(t, `<presence type='unavailable' from='alice@localhost/pc' to='room@conference.localhost/al'/>`))
	if s.InUse(ctx, room) {
		t.Fatal("the call went on after its only participant left the room")
	}
}

// sent records what the rooms send through federation.
type sent struct {
	mu  sync.Mutex
	els []*stanza.Element
}

func (r *sent) send(el *stanza.Element) error {
	c, err := stanza.Parse([]byte(el.String()))
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.els = append(r.els, c)
	r.mu.Unlock()
	return nil
}

func (r *sent) take() []*stanza.Element {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.els
	r.els = nil
	return out
}

// one returns the one stanza sess received since the last take.
func one(t *testing.T, sess *testfake.Session) *stanza.Element {
	t.Helper()
	got := sess.Take()
	if len(got) != 1 {
		t.Fatalf("%s got %d stanzas, want 1: %v", sess.JID(), len(got), got)
	}
	return got[0]
}

// newService is a service on a fresh SQLite store, its media on loopback,
// not started.
func newService(t *testing.T, sendRemote func(*stanza.Element) error) *Service {
	t.Helper()
	db, err := store.Open(context.Background(), "sqlite:"+t.TempDir()+"/conference.db", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := New(Config{
		Domain: domain,
		Rooms:  muc.Config{ServerDomain: "localhost", SendRemote: sendRemote},
		Calls:  sfu.Config{UDPAddr: "127.0.0.1:0", IncludeLoopback: true},
	}, db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
