package signaling

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// noArchive is a store whose archive keeps nothing, so that the benchmark
// measures the path without the database.
type noArchive struct{ *store.DB }

func (noArchive) ArchiveMessages(context.Context, []store.ArchiveEntry) error { return nil }

// BenchmarkRoutedMessage follows one chat message between two online users
// of one server, without the sockets: alice's reader parses it off her
// stream, stamps it and hands it to the router, the router to the chat
// service, which archives it (or not: "no-archive") and queues it for bob;
// bob's writer takes it from his queue and writes it to his stream. The
// figure per operation is per message.
func BenchmarkRoutedMessage(b *testing.B) {
	b.Run("no-archive", func(b *testing.B) {
		db := openBenchStore(b)
		benchRouted(b, noArchive{db}, db)
	})
	b.Run("SQLite", func(b *testing.B) {
		db := openBenchStore(b)
		benchRouted(b, db, db)
	})
}

func openBenchStore(b *testing.B) *store.DB {
	db, err := store.Open(context.Background(), "sqlite:"+filepath.Join(b.TempDir(), "bench.db"), "")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateAccount(context.Background(), u, store.Credentials{Iterations: 4096}); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

func benchRouted(b *testing.B, st chat.Store, accounts Accounts) {
	ctx := context.Background()
	svc, err := chat.New(chat.Config{Domain: "localhost"}, st)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	router := NewRouter(Service{Handle: func(ctx context.Context, s *Session, el *stanza.Element) { svc.HandleStanza(ctx, s, el) }})
	srv, err := New(Config{Domain: "localhost", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, accounts, router)
	if err != nil {
		b.Fatal(err)
	}

	const msg = "<message to='bob@localhost/phone' type='chat' id='a1b2c3'><body>hello there, how are you today?</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
	head := "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
	in := newTCPTransport(memConn{r: bytes.NewReader([]byte(head + strings.Repeat(msg, b.N+1)))}, nil, 1<<20, stanza.Limits{}, 0)
	if ev, err := in.next(); err != nil || ev.open == nil {
		b.Fatalf("header: %v", err)
	}
	session := func(full string) *Session {
		s := &Session{srv: srv, log: srv.log,
			t: newTCPTransport(memConn{r: bytes.NewReader(nil)}, nil, 1<<20, stanza.Limits{}, 0)}
		s.setJID(jid.MustParse(full))
		s.q.init(1<<20, 1<<30, func() {}) // the benchmark drains the queue itself
		s.q.open()
		s.bound.Store(true)
		svc.SessionBound(ctx, s)
		svc.HandleStanza(ctx, s, stanza.New(stanza.NSClient, "presence"))
		return s
	}
	alice, bob := session("alice@localhost/laptop"), session("bob@localhost/phone")
	drain := func(s *Session) int {
		n := 0
		for {
			o, ok, _, _ := s.q.take()
			if !ok {
				return n
			}
			s.wmu.Lock()
			s.writeOneLocked(o)
			s.wmu.Unlock()
			n++
		}
	}
	drain(alice)
	drain(bob)

	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev, err := in.next()
		if err != nil || ev.el == nil {
			b.Fatalf("stanza %d: %v", i, err)
		}
		el := ev.el
		if err := alice.stamp(el); err != nil {
			b.Fatal(err)
		}
		srv.router.route(ctx, alice, el)
		if n := drain(bob); n != 1 {
			b.Fatalf("bob was sent %d stanzas, want 1", n)
		}
	}
}
