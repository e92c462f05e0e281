package muc

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// encodedSession takes shared encodings as signaling's sessions do, and
// records what its client would read.
type encodedSession struct {
	fakeSession
}

func (e *encodedSession) SendEncoded(_ *stanza.Element, w stanza.Encoded, to string) error {
	el, err := stanza.Parse(w.Append(nil, to, ""))
	if err != nil {
		panic(err)
	}
	e.Add(el)
	return nil
}

// canonical renders a stanza with its attributes sorted, as XML compares.
func canonical(el *stanza.Element) string {
	c := el.Copy()
	slices.SortFunc(c.Attrs, func(a, b stanza.Attr) int { return strings.Compare(a.Local, b.Local) })
	return c.String()
}

// Sessions that take shared encodings get what the others get, each
// addressed to itself: room messages, presence as a moderator and as a
// participant see it and as the occupant itself does, and leaving.
func TestFanOutSharedAndCopiedAgree(t *testing.T) {
	h := newHarness(t, nil)
	owner := h.session("owner@localhost/a")
	ownerShared := &encodedSession{*newFakeSession("owner@localhost/b")}
	dave := h.session("dave@localhost/d")
	bobShared := &encodedSession{*newFakeSession("bob@localhost/b")}
	carol := h.session("carol@localhost/c")
	send := func(s Session, raw string) {
		el, err := stanza.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		el.SetAttr("from", s.JID().String())
		h.svc.HandleStanza(context.Background(), s, el)
	}
	h.room(owner, "r", "Owner", nil)
	join := `<x xmlns='http://jabber.org/protocol/muc'/>`
	send(ownerShared, `<presence to='r@conference.localhost/Owner'>`+join+`</presence>`)
	send(bobShared, `<presence to='r@conference.localhost/Bob'>`+join+`</presence>`)
	send(dave, `<presence to='r@conference.localhost/Dave'>`+join+`</presence>`)
	send(carol, `<presence to='r@conference.localhost/Carol'>`+join+`</presence>`)
	for _, s := range []*fakeSession{owner, &ownerShared.fakeSession, dave, &bobShared.fakeSession} {
		s.takeEls()
	}

	send(owner, `<message type='groupchat' to='r@conference.localhost' id='m1'><body>hello</body><x xmlns='urn:x' a='1'/></message>`)
	send(carol, `<presence to='r@conference.localhost/Carol'><status>away for a while</status></presence>`)
	send(owner, `<presence to='r@conference.localhost/Owner'><show>dnd</show></presence>`)
	send(carol, `<presence type='unavailable' to='r@conference.localhost/Carol'><status>bye</status></presence>`)
	for _, pair := range [][2]*fakeSession{{owner, &ownerShared.fakeSession}, {dave, &bobShared.fakeSession}} {
		a, b := pair[0].takeEls(), pair[1].takeEls()
		if len(a) != 4 || len(b) != 4 {
			t.Fatalf("%s got %d stanzas, %s %d; want 4 each", pair[0].JID(), len(a), pair[1].JID(), len(b))
		}
		for i := range a {
			if a[i].To() != pair[0].JID().String() || b[i].To() != pair[1].JID().String() {
				t.Fatalf("stanza %d addressed to %s and %s", i, a[i].To(), b[i].To())
			}
			a[i].SetAttr("to", "x")
			b[i].SetAttr("to", "x")
			if ca, cb := canonical(a[i]), canonical(b[i]); ca != cb {
				t.Errorf("stanza %d differs:\ncopied %s\nshared %s", i, ca, cb)
			}
		}
	}
}

// keeper keeps what it is sent, as a session's queue does, and nothing
// more: stanzas as they are given, encodings by reference.
type keeper struct {
	jid  jid.JID
	els  []*stanza.Element
	encs []stanza.Encoded
}

func (k *keeper) JID() jid.JID                  { return k.jid }
func (k *keeper) Send(el *stanza.Element) error { k.els = append(k.els, el); return nil }
func (k *keeper) SendEncoded(_ *stanza.Element, w stanza.Encoded, _ string) error {
	k.encs = append(k.encs, w)
	return nil
}

// A room message costs its size once, however many occupants it goes to:
// the bytes allocated per extra occupant do not grow with the message,
// even one of a thousand elements, which a copied tree repeats each time.
func TestFanOutMemoryDoesNotScaleWithOccupants(t *testing.T) {
	msg := `<message type='groupchat' to='big@conference.localhost' id='x'><body>` + strings.Repeat("b", 32<<10) + `</body>` +
		`<x xmlns='urn:x'>` + strings.Repeat("<i/>", 1000) + `</x></message>`
	fanOut := func(n int) uint64 {
		h := newHarness(t, nil)
		sessions := make([]*keeper, n)
		for i := range sessions {
			s := &keeper{jid: jid.MustParse(fmt.Sprintf("u%d@localhost/r", i))}
			sessions[i] = s
			el, _ := stanza.Parse([]byte(fmt.Sprintf(`<presence to='big@conference.localhost/U%d'/>`, i)))
			h.svc.HandleStanza(context.Background(), s, el)
			if i == 0 {
				cfg, _ := stanza.Parse([]byte(`<iq type='set' id='c' to='big@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`))
				h.svc.HandleStanza(context.Background(), s, cfg)
			}
		}
		el, _ := stanza.Parse([]byte(msg))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		h.svc.HandleStanza(context.Background(), sessions[0], el)
		runtime.ReadMemStats(&after)
		for _, s := range sessions {
			if len(s.els)+len(s.encs) == 0 {
				t.Fatalf("%s got nothing", s.JID())
			}
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	few, many := fanOut(5), fanOut(50)
	per := (int64(many) - int64(few)) / 45
	t.Logf("%d bytes for 5 occupants, %d for 50: %d per extra occupant, for a message of %d bytes", few, many, per, len(msg))
	if per > 2048 {
		t.Fatalf("each extra occupant costs %d bytes of a %d-byte message: it is copied per occupant", per, len(msg))
	}
}
