package chat

import (
	"context"
	"testing"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// nullSession discards what it is sent.
type nullSession struct{ j jid.JID }

func (n *nullSession) JID() jid.JID               { return n.j }
func (n *nullSession) Send(*stanza.Element) error { return nil }

func BenchmarkChatMessageToBareJID(b *testing.B) {
	svc, err := New(Config{Domain: "localhost"}, testfake.NewStore("alice", "bob"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	alice := &nullSession{jid.MustParse("alice@localhost/a")}
	bob := &nullSession{jid.MustParse("bob@localhost/b")}
	for _, s := range []Session{alice, bob} {
		svc.SessionBound(ctx, s)
		svc.HandleStanza(ctx, s, stanza.New(stanza.NSClient, "presence"))
	}
	msg, _ := stanza.Parse([]byte(`<message type='chat' to='bob@localhost' id='x'><body>hello</body></message>`))
	b.ReportAllocs()
	for b.Loop() {
		svc.HandleStanza(ctx, alice, msg)
	}
}
