package chat

import (
	"context"
	"path/filepath"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// BenchmarkArchivedMessage routes a chat message between two online users
// with the archive on: both archive rows in one transaction, blocking and
// carbons checked. SQLite on a file, and MySQL when POOSMS_TEST_MYSQL_DSN
// is set.
func BenchmarkArchivedMessage(b *testing.B) {
	b.Run("SQLite", func(b *testing.B) {
		benchArchived(b, "sqlite:"+filepath.Join(b.TempDir(), "bench.db"))
	})
	b.Run("MySQL", func(b *testing.B) { benchArchived(b, testenv.MySQLDSN(b)) })
}

func benchArchived(b *testing.B, dsn string) {
	ctx := context.Background()
	db, err := store.Open(ctx, dsn, "")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateAccount(ctx, u, store.Credentials{Iterations: 4096}); err != nil {
			b.Fatal(err)
		}
	}
	svc, err := New(Config{Domain: "localhost"}, db)
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	alice := &nullSession{jid.MustParse("alice@localhost/a")}
	bob := &nullSession{jid.MustParse("bob@localhost/b")}
	for _, s := range []Session{alice, bob} {
		svc.SessionBound(ctx, s)
		svc.HandleStanza(ctx, s, stanza.New(stanza.NSClient, "presence"))
	}
	b.ReportAllocs()
	for b.Loop() {
		msg, _ := stanza.Parse([]byte(`<message type='chat' to='bob@localhost' id='x'><body>hello</body></message>`))
		svc.HandleStanza(ctx, alice, msg)
	}
}
