package muc

import (
	"context"
	"fmt"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// FuzzRoomConfig submits a room configuration form (muc#roomconfig) as
// the owner of a new room: the owner gets one answer; an accepted form
// leaves a configuration the room can live with, and a refused one leaves
// the room as it was.
func FuzzRoomConfig(f *testing.F) {
	db, err := store.Open(context.Background(), "sqlite:"+f.TempDir()+"/muc.db", "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { db.Close() })
	svc, err := New(Config{Domain: "conference.localhost", ServerDomain: "localhost", Now: func() time.Time { return t0 }}, db)
	if err != nil {
		f.Fatal(err)
	}
	field := func(name, value string) string {
		return `<field var='` + name + `'><value>` + value + `</value></field>`
	}
	for _, s := range []string{
		field("muc#roomconfig_roomname", "Standup") + field("muc#roomconfig_persistentroom", "1") + field("muc#roomconfig_maxusers", "20"),
		field("muc#roomconfig_passwordprotectedroom", "true") + field("muc#roomconfig_roomsecret", "s3cret"),
		field("muc#roomconfig_passwordprotectedroom", "1"),
		field("muc#roomconfig_membersonly", "1") + field("muc#roomconfig_whois", "anyone") + field("poosms#conference", "members"),
		field("muc#roomconfig_maxusers", "100001"),
		field("muc#roomconfig_whois", "nobody"),
		field("muc#roomconfig_moderatedroom", "maybe"),
		`<field var='muc#roomconfig_roomdesc'/>` + field("poosms#conference_nonoccupants", "0"),
	} {
		f.Add(s, "submit")
	}
	f.Add("", "cancel")
	f.Add("", "form")
	n := 0
	f.Fuzz(func(t *testing.T, fields, typ string) {
		n++
		name := fmt.Sprintf("r%d", n)
		room := name + "@conference.localhost"
		// A new user each time: one user may create only so many rooms an hour.
		owner := newFakeSession(fmt.Sprintf("u%d@localhost/r", n))
		send := func(raw string) {
			el, err := stanza.Parse([]byte(raw))
			if err != nil {
				t.Fatalf("parse %s: %v", raw, err)
			}
			el.SetAttr("from", owner.JID().String())
			svc.HandleStanza(context.Background(), owner, el)
		}
		send(`<presence to='` + room + `/owner'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
		owner.takeEls()
		svc.mu.Lock()
		r := svc.rooms[name]
		var before roomConfig
		if r != nil {
			before = r.cfg
		}
		svc.mu.Unlock()
		if r == nil {
			t.Fatal("the room was not created")
		}
		raw := `<iq xmlns='jabber:client' type='set' id='cfg' to='` + room + `'><query xmlns='` + NSOwner + `'><x xmlns='jabber:x:data' type='` + stanza.Escape(typ) + `'>` + fields + `</x></query></iq>`
		el, err := stanza.Limits{}.Parse([]byte(raw))
		if err != nil {
			svc.SessionClosed(context.Background(), owner)
			return
		}
		el.SetAttr("from", owner.JID().String())
		svc.HandleStanza(context.Background(), owner, el)
		var reply *stanza.Element
		for _, g := range owner.takeEls() {
			if g.Local == "iq" {
				if reply != nil {
					t.Fatalf("two answers: %s and %s", reply, g)
				}
				reply = g
			}
		}
		svc.mu.Lock()
		c := r.cfg
		svc.mu.Unlock()
		switch {
		case reply == nil:
			t.Fatalf("no answer to %s", raw)
		case reply.IsError():
			if c != before {
				t.Fatalf("refused form %s changed the room: %+v → %+v", raw, before, c)
			}
		case reply.IQType() == stanza.ResultIQ:
			if c.PasswordProtected && c.Password == "" || !c.PasswordProtected && c.Password != "" ||
				c.MaxUsers < 0 || c.MaxUsers > 100000 ||
				c.WhoIs != whoisAnyone && c.WhoIs != whoisModerators ||
				c.Conference != confAnyone && c.Conference != confMembers && c.Conference != confModerators {
				t.Fatalf("form %s accepted, leaving %+v", raw, c)
			}
		default:
			t.Fatalf("answer %s", reply)
		}
		send(`<iq type='set' id='d' to='` + room + `'><query xmlns='` + NSOwner + `'><destroy/></query></iq>`)
		owner.takeEls()
		svc.SessionClosed(context.Background(), owner)
	})
}
