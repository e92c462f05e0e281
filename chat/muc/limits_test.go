package muc_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// TestNewRoomsPerHour: entering rooms that do not exist creates them, and
// one user may create only so many within an hour, over real streams;
// entering rooms that exist, and other users, are not held back.
func TestNewRoomsPerHour(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	st := newStackWith(t, muc.Config{NewRoomsPerHour: 3, Now: clock})
	alice := st.dial(t, "alice")
	bob := st.dial(t, "bob")

	enter := func(c *xmppclient.Client, room, nick string) {
		t.Helper()
		send(t, c, `<presence to='`+room+`@conference.localhost/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	}
	// Alice creates three rooms and leaves them; they vanish, and still
	// count.
	for i := range 3 {
		room := fmt.Sprintf("r%d", i)
		enter(alice, room, "Alice")
		await(t, alice, "self-presence in "+room, selfPresence)
		send(t, alice, `<presence type='unavailable' to='`+room+`@conference.localhost/Alice'/>`)
		await(t, alice, "leaving "+room, func(el *stanza.Element) bool {
			return el.Local == "presence" && el.PresenceType() == stanza.UnavailablePresence
		})
	}
	enter(alice, "r3", "Alice")
	errp := await(t, alice, "refusal", func(el *stanza.Element) bool { return el.Local == "presence" && el.IsError() })
	if cond := errorCondition(errp); cond != "resource-constraint" || !strings.Contains(errp.String(), "at most 3 rooms an hour") {
		t.Errorf("a fourth room within the hour: %s", errp)
	}
	// Bob may create his own; alice may enter it.
	enter(bob, "bobs", "Bob")
	await(t, bob, "bob's room", selfPresence)
	send(t, bob, `<iq type='set' id='cfg' to='bobs@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	await(t, bob, "configuration result", func(el *stanza.Element) bool {
		return el.Local == "iq" && el.ID() == "cfg" && el.IQType() == stanza.ResultIQ
	})
	enter(alice, "bobs", "Alice")
	await(t, alice, "entering bob's room", selfPresence)

	// An hour after her first creation, alice may create again.
	mu.Lock()
	now = now.Add(time.Hour + time.Second)
	mu.Unlock()
	enter(alice, "r3", "Alice")
	await(t, alice, "a room an hour later", selfPresence)
}

// errorCondition is the defined condition of a stanza error.
func errorCondition(el *stanza.Element) string {
	if e := el.Child("", "error"); e != nil {
		for _, c := range e.Elements() {
			if c.Space == stanza.NSStanzas && c.Local != "text" {
				return c.Local
			}
		}
	}
	return ""
}
