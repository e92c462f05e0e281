package muc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// discardSession accepts and drops everything, like a fast client.
type discardSession struct{ jid jid.JID }

func (d *discardSession) JID() jid.JID               { return d.jid }
func (d *discardSession) Send(*stanza.Element) error { return nil }

// encodedDiscard takes shared encodings, as signaling's sessions do, and
// drops them.
type encodedDiscard struct{ discardSession }

func (*encodedDiscard) SendEncoded(*stanza.Element, stanza.Encoded, string) error { return nil }

// nullStore stores nothing; it isolates the room service's own cost.
type nullStore struct{}

func (nullStore) Rooms(context.Context) ([]store.Room, error) { return nil, nil }
func (nullStore) Room(context.Context, string) (store.Room, error) {
	return store.Room{}, store.ErrNotFound
}
func (nullStore) PutRoom(context.Context, store.Room) error                               { return nil }
func (nullStore) DeleteRoomArchive(context.Context, string) error                         { return nil }
func (nullStore) DeleteRoom(context.Context, string) error                                { return nil }
func (nullStore) SetRoomAffiliation(context.Context, string, store.RoomAffiliation) error { return nil }
func (nullStore) AppendRoomMessage(context.Context, store.RoomMessage) error              { return nil }
func (nullStore) PruneRoomMessages(context.Context, time.Time) (int64, error)             { return 0, nil }
func (nullStore) RoomAffiliations(context.Context, string) ([]store.RoomAffiliation, error) {
	return nil, nil
}
func (nullStore) RoomMessages(context.Context, store.RoomQuery) (store.RoomPage, error) {
	return store.RoomPage{Complete: true}, nil
}

// benchRoom fills a room with n occupants and returns one of them.
func benchRoom(b *testing.B, st Store, n int) (*Service, Session) {
	return benchRoomOf(b, st, n, func(j jid.JID) Session { return &discardSession{jid: j} })
}

func benchRoomOf(b *testing.B, st Store, n int, newSession func(jid.JID) Session) (*Service, Session) {
	svc, err := New(Config{Domain: "conference.localhost", ServerDomain: "localhost"}, st)
	if err != nil {
		b.Fatal(err)
	}
	var first Session
	for i := range n {
		s := newSession(jid.MustParse(fmt.Sprintf("u%d@localhost/r", i)))
		el, _ := stanza.Parse([]byte(fmt.Sprintf(`<presence from='%s' to='bench@conference.localhost/U%d'/>`, s.JID(), i)))
		svc.HandleStanza(context.Background(), s, el)
		if i == 0 {
			first = s
			cfg, _ := stanza.Parse([]byte(`<iq type='set' id='c' to='bench@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`))
			svc.HandleStanza(context.Background(), s, cfg)
		}
	}
	return svc, first
}

func benchGroupchat(b *testing.B, st Store, occupants int) {
	svc, sender := benchRoom(b, st, occupants)
	msg, _ := stanza.Parse([]byte(`<message type='groupchat' to='bench@conference.localhost' id='x'><body>hello everyone in the room</body></message>`))
	b.ReportAllocs()
	for b.Loop() {
		svc.HandleStanza(context.Background(), sender, msg.Copy())
	}
	b.ReportMetric(float64(occupants), "occupants")
}

func BenchmarkGroupchat10NoStore(b *testing.B)  { benchGroupchat(b, nullStore{}, 10) }
func BenchmarkGroupchat100NoStore(b *testing.B) { benchGroupchat(b, nullStore{}, 100) }

func BenchmarkGroupchat10SQLite(b *testing.B) {
	db, err := store.Open(b.Context(), "sqlite:"+b.TempDir()+"/b.db", "")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	benchGroupchat(b, db, 10)
}

// BenchmarkGroupchatFanOut sends a room message to occupants whose
// sessions take shared encodings (as signaling's do): a chat line, and a
// hostile one of 16 KiB of text and 1,000 empty elements. B/op is the
// memory one fan-out allocates; it grows with the message once, not once
// per occupant.
func BenchmarkGroupchatFanOut(b *testing.B) {
	for _, m := range []struct{ name, payload string }{
		{"chat", "<body>hello everyone in the room</body>"},
		{"hostile", "<body>" + strings.Repeat("b", 16<<10) + "</body><x xmlns='urn:x'>" + strings.Repeat("<i/>", 1000) + "</x>"},
	} {
		for _, n := range []int{10, 100} {
			b.Run(fmt.Sprintf("%s/%d", m.name, n), func(b *testing.B) {
				svc, sender := benchRoomOf(b, nullStore{}, n, func(j jid.JID) Session { return &encodedDiscard{discardSession{jid: j}} })
				msg, _ := stanza.Parse([]byte(`<message type='groupchat' to='bench@conference.localhost' id='x'>` + m.payload + `</message>`))
				b.ReportAllocs()
				for b.Loop() {
					svc.HandleStanza(context.Background(), sender, msg.Copy())
				}
			})
		}
	}
}
