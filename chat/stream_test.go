package chat_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// TestMain checks that no test leaves a goroutine behind (the archive
// pruner included).
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stack is poosms's chat over real streams: SQLite in a temp folder, the
// chat service and the signaling server on loopback.
type stack struct {
	addr string
}

func newStack(t *testing.T, dsn string, users ...string) *stack {
	t.Helper()
	return newStackWith(t, dsn, chat.Config{ArchiveRetention: 24 * time.Hour}, users...)
}

// newStackWith is newStack with the chat service configured by cfg (its
// domain is set to localhost).
func newStackWith(t *testing.T, dsn string, cfg chat.Config, users ...string) *stack {
	t.Helper()
	dir := t.TempDir()
	if dsn == "" {
		dsn = "sqlite:" + filepath.Join(dir, "poosms.db")
	}
	db, err := store.Open(t.Context(), dsn, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range users {
		c, err := sasl.NewCredentials(u+"-secret", sasl.DefaultIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAccount(t.Context(), u, c); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Domain = "localhost"
	svc, err := chat.New(cfg, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	router := signaling.NewRouter(signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { svc.HandleStanza(ctx, s, el) },
		Bound:  func(ctx context.Context, s *signaling.Session) { svc.SessionBound(ctx, s) },
		Closed: func(ctx context.Context, s *signaling.Session) { svc.SessionClosed(ctx, s) },
	})
	cert, err := signaling.LoadOrCreateSelfSigned(filepath.Join(dir, "tls"), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := signaling.New(signaling.Config{
		Domain:  "localhost",
		TLS:     &tls.Config{Certificates: []tls.Certificate{cert}},
		C2SAddr: "127.0.0.1:0",
	}, db, router)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return &stack{addr: srv.Addrs()[0].String()}
}

// login connects user/res, sends initial presence and waits for its echo.
func (s *stack) login(t *testing.T, user, res string) *xmppclient.Client {
	t.Helper()
	c, err := xmppclient.Dial(t.Context(), xmppclient.Options{
		Addr: s.addr, Domain: "localhost", Username: user, Password: user + "-secret", Resource: res, Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("login %s/%s: %v", user, res, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SendRaw("<presence/>"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expect(5*time.Second, func(el *stanza.Element) bool {
		return el.Local == "presence" && el.From() == c.JID.String()
	}); err != nil {
		t.Fatalf("%s: own presence: %v", c.JID, err)
	}
	return c
}

// call sends an IQ and returns its answer, collecting other stanzas that
// arrive meanwhile into side (when not nil).
func call(t *testing.T, c *xmppclient.Client, raw, id string, side *[]*stanza.Element) *stanza.Element {
	t.Helper()
	if err := c.SendRaw(raw); err != nil {
		t.Fatal(err)
	}
	el, err := c.Expect(5*time.Second, func(el *stanza.Element) bool {
		if el.Local == "iq" && el.ID() == id {
			return true
		}
		if side != nil {
			*side = append(*side, el)
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s waiting for iq %s: %v", c.JID, id, err)
	}
	return el
}

func message(c *xmppclient.Client, t *testing.T, match func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	el, err := c.Expect(5*time.Second, func(el *stanza.Element) bool { return el.Local == "message" && match(el) })
	if err != nil {
		t.Fatalf("%s waiting for a message: %v", c.JID, err)
	}
	return el
}

func TestStreamsCarbonsAndArchivePaging(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { streamsCarbonsAndArchive(t, "") })
	t.Run("MySQL", func(t *testing.T) { streamsCarbonsAndArchive(t, testenv.MySQLDSN(t)) })
}

func streamsCarbonsAndArchive(t *testing.T, dsn string) {
	st := newStack(t, dsn, "alice", "bob")
	one := st.login(t, "alice", "one")
	two := st.login(t, "alice", "two")
	bob := st.login(t, "bob", "phone")
	for i, c := range []*xmppclient.Client{one, two} {
		id := fmt.Sprintf("cb%d", i)
		if r := call(t, c, `<iq type='set' id='`+id+`'><enable xmlns='urn:xmpp:carbons:2'/></iq>`, id, nil); r.IQType() != stanza.ResultIQ {
			t.Fatalf("enable carbons: %s", r)
		}
	}

	var sent []string
	for i := range 5 {
		if i%2 == 0 {
			// alice/one → bob: bob gets it, alice/two a sent carbon.
			body := fmt.Sprintf("alice says %d", i)
			sent = append(sent, body)
			if err := one.SendRaw(`<message type='chat' to='bob@localhost' id='a` + fmt.Sprint(i) + `'><body>` + body + `</body></message>`); err != nil {
				t.Fatal(err)
			}
			got := message(bob, t, func(el *stanza.Element) bool { return el.ChildText("", "body") == body })
			if sid := got.Child(chat.NSSID, "stanza-id"); sid == nil || sid.Attr("by") != "bob@localhost" {
				t.Errorf("bob's copy without his stanza-id: %s", got)
			}
			cc := message(two, t, func(el *stanza.Element) bool { return el.Child(chat.NSCarbons, "sent") != nil })
			inner := cc.Child(chat.NSCarbons, "sent").Child(chat.NSForward, "forwarded").Child(stanza.NSClient, "message")
			if inner.ChildText("", "body") != body || inner.From() != one.JID.String() || cc.From() != "alice@localhost" {
				t.Errorf("sent carbon %s", cc)
			}
		} else {
			// bob → alice/one: alice/two gets a received carbon.
			body := fmt.Sprintf("bob says %d", i)
			sent = append(sent, body)
			if err := bob.SendRaw(`<message type='chat' to='alice@localhost/one'><body>` + body + `</body></message>`); err != nil {
				t.Fatal(err)
			}
			message(one, t, func(el *stanza.Element) bool { return el.ChildText("", "body") == body })
			cc := message(two, t, func(el *stanza.Element) bool { return el.Child(chat.NSCarbons, "received") != nil })
			inner := cc.Child(chat.NSCarbons, "received").Child(chat.NSForward, "forwarded").Child(stanza.NSClient, "message")
			if inner.ChildText("", "body") != body {
				t.Errorf("received carbon %s", cc)
			}
		}
	}

	// alice/two pages her archive two at a time, newest page first, as a
	// client catching up does, then forward from the start.
	page := func(set string, n int) (bodies []string, fin *stanza.Element) {
		t.Helper()
		id := fmt.Sprintf("mam%d", n)
		var side []*stanza.Element
		r := call(t, two, `<iq type='set' id='`+id+`'><query xmlns='urn:xmpp:mam:2' queryid='q`+id+`'>`+
			`<set xmlns='http://jabber.org/protocol/rsm'><max>2</max>`+set+`</set></query></iq>`, id, &side)
		if r.IQType() != stanza.ResultIQ {
			t.Fatalf("mam: %s", r)
		}
		for _, el := range side {
			res := el.Child(chat.NSMAM, "result")
			if res == nil || res.Attr("queryid") != "q"+id {
				continue
			}
			m := res.Child(chat.NSForward, "forwarded").Child(stanza.NSClient, "message")
			bodies = append(bodies, m.ChildText("", "body"))
		}
		return bodies, r.Child(chat.NSMAM, "fin")
	}
	var backwards []string
	before := ""
	for n := 0; ; n++ {
		bodies, fin := page("<before>"+before+"</before>", n)
		backwards = append(bodies, backwards...)
		set := fin.Child(chat.NSRSM, "set")
		if set.ChildText(chat.NSRSM, "count") != "5" {
			t.Errorf("count %s", set.ChildText(chat.NSRSM, "count"))
		}
		if fin.Attr("complete") == "true" {
			break
		}
		before = set.ChildText(chat.NSRSM, "first")
		if n > 5 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(backwards, sent) {
		t.Errorf("archive paged backwards:\n %s\nwant\n %s", strings.Join(backwards, "\n "), strings.Join(sent, "\n "))
	}
	var forwards []string
	after := ""
	for n := 10; ; n++ {
		set := ""
		if after != "" {
			set = "<after>" + after + "</after>"
		}
		bodies, fin := page(set, n)
		forwards = append(forwards, bodies...)
		if fin.Attr("complete") == "true" {
			break
		}
		after = fin.Child(chat.NSRSM, "set").ChildText(chat.NSRSM, "last")
		if n > 15 {
			t.Fatal("paging does not end")
		}
	}
	if !slices.Equal(forwards, sent) {
		t.Errorf("archive paged forwards: %q, want %q", forwards, sent)
	}
}
