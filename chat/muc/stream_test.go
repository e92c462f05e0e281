package muc_test

import (
	"context"
	"crypto/tls"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/signaling"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stack is an in-process server: SQLite, chat, rooms and signaling wired
// as poosmsd wires them, listening on loopback.
type stack struct {
	addr string
	db   *store.DB
}

func newStack(t *testing.T) *stack {
	t.Helper()
	return newStackWith(t, muc.Config{})
}

// newStackWith is newStack with the room service configured by cfg (its
// domains are set).
func newStackWith(t *testing.T, cfg muc.Config) *stack {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, err := store.Open(ctx, "sqlite:"+dir+"/poosms.db", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range []string{"alice", "bob", "carol"} {
		c, err := sasl.NewCredentials(u+"-secret", sasl.DefaultIterations)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.CreateAccount(ctx, u, c); err != nil {
			t.Fatal(err)
		}
	}
	cs, err := chat.New(chat.Config{Domain: "localhost"}, db)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Domain, cfg.ServerDomain = "conference.localhost", "localhost"
	rooms, err := muc.New(cfg, db)
	if err != nil {
		t.Fatal(err)
	}
	router := signaling.NewRouter(signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { cs.HandleStanza(ctx, s, el) },
		Bound:  func(ctx context.Context, s *signaling.Session) { cs.SessionBound(ctx, s) },
		Closed: func(ctx context.Context, s *signaling.Session) { cs.SessionClosed(ctx, s) },
	})
	router.Handle("conference.localhost", signaling.Service{
		Handle: func(ctx context.Context, s *signaling.Session, el *stanza.Element) { rooms.HandleStanza(ctx, s, el) },
		Closed: func(ctx context.Context, s *signaling.Session) { rooms.SessionClosed(ctx, s) },
	})
	cert, err := signaling.LoadOrCreateSelfSigned(dir, "localhost", "conference.localhost")
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
	return &stack{addr: srv.Addrs()[0].String(), db: db}
}

func (s *stack) dial(t *testing.T, user string) *xmppclient.Client {
	t.Helper()
	c, err := xmppclient.Dial(t.Context(), xmppclient.Options{
		Addr: s.addr, Domain: "localhost", Username: user, Password: user + "-secret",
		Resource: "r", Timeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, c *xmppclient.Client, raw string) {
	t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(el); err != nil {
		t.Fatal(err)
	}
}

// await reads c's stanzas until one matches, failing after a deadline.
func await(t *testing.T, c *xmppclient.Client, what string, match func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	el, err := c.Expect(5*time.Second, match)
	if err != nil {
		t.Fatalf("%s waiting for %s: %v", c.JID, what, err)
	}
	return el
}

func selfPresence(el *stanza.Element) bool {
	if el.Local != "presence" || el.PresenceType() != stanza.AvailablePresence {
		return false
	}
	x := el.Child(muc.NSUser, "x")
	return x != nil && strings.Contains(x.String(), "code='110'")
}

func groupchat(body string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool {
		return el.Local == "message" && el.MessageType() == stanza.GroupChatMessage && el.ChildText("", "body") == body
	}
}

func join(t *testing.T, c *xmppclient.Client, nick string) {
	t.Helper()
	send(t, c, `<presence to='den@conference.localhost/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	await(t, c, "self-presence", selfPresence)
}

func TestRoomOverRealStreams(t *testing.T) {
	st := newStack(t)
	alice := st.dial(t, "alice")
	bob := st.dial(t, "bob")
	carol := st.dial(t, "carol")

	join(t, alice, "Alice")
	send(t, alice, `<iq type='set' id='cfg' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>`)
	await(t, alice, "configuration result", func(el *stanza.Element) bool {
		return el.Local == "iq" && el.ID() == "cfg" && el.IQType() == stanza.ResultIQ
	})
	join(t, bob, "Bob")

	// Each waits for the other's message before answering, so the order
	// is known (await skips what does not match).
	send(t, alice, `<message type='groupchat' to='den@conference.localhost' id='a1'><body>hello bob</body></message>`)
	for _, c := range []*xmppclient.Client{alice, bob} {
		m := await(t, c, "alice's message", groupchat("hello bob"))
		if m.From() != "den@conference.localhost/Alice" {
			t.Errorf("from = %s", m.From())
		}
	}
	send(t, bob, `<message type='groupchat' to='den@conference.localhost' id='b1'><body>hello alice</body></message>`)
	for _, c := range []*xmppclient.Client{alice, bob} {
		await(t, c, "bob's message", groupchat("hello alice"))
	}

	// Carol comes late: the history comes with a delay stamp, then the subject.
	join(t, carol, "Carol")
	first := await(t, carol, "history", groupchat("hello bob"))
	second := await(t, carol, "history", groupchat("hello alice"))
	for _, m := range []*stanza.Element{first, second} {
		if m.Child(stanza.NSDelay, "delay") == nil {
			t.Errorf("history without delay: %s", m)
		}
	}
	await(t, carol, "subject", func(el *stanza.Element) bool { return el.Local == "message" && el.Child("", "subject") != nil })

	send(t, carol, `<message type='groupchat' to='den@conference.localhost'><body>sorry I'm late</body></message>`)
	for _, c := range []*xmppclient.Client{alice, bob, carol} {
		m := await(t, c, "carol's message", groupchat("sorry I'm late"))
		if m.Child(stanza.NSDelay, "delay") != nil {
			t.Errorf("a live message carries a delay: %s", m)
		}
	}

	// Carol's stream ends: the others see her leave.
	carol.Close()
	for _, c := range []*xmppclient.Client{alice, bob} {
		await(t, c, "carol leaving", func(el *stanza.Element) bool {
			return el.Local == "presence" && el.PresenceType() == stanza.UnavailablePresence && el.From() == "den@conference.localhost/Carol"
		})
	}
}

// TestSlixmppRoom runs a third-party client library (slixmpp, Debian's
// python3-slixmpp) against the stack: three people in a room, history for
// a late joiner, subject, a private message, archive paging both ways and
// a kick.
func TestSlixmppRoom(t *testing.T) {
	python := testenv.Command(t, "/usr/bin/python3", "apt-get install -y python3")
	if err := exec.Command(python, "-c", "import slixmpp").Run(); err != nil {
		testenv.Require(t, "python3-slixmpp is not installed (apt-get install -y python3-slixmpp)")
	}
	st := newStack(t)
	_, port, _ := net.SplitHostPort(st.addr)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "testdata/slixmpp_muc.py", "127.0.0.1", port, "localhost").CombinedOutput()
	t.Logf("slixmpp_muc.py:\n%s", out)
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("slixmpp_muc.py failed: %v", err)
	}
}

// TestPasswordRoomArchiveOverRealStreams: the archive of a
// password-protected room is read only by those who entered it with the
// password, and by its admins and owners.
func TestPasswordRoomArchiveOverRealStreams(t *testing.T) {
	st := newStack(t)
	alice := st.dial(t, "alice")
	bob := st.dial(t, "bob")
	carol := st.dial(t, "carol")

	join(t, alice, "Alice")
	send(t, alice, `<iq type='set' id='cfg' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='muc#roomconfig_persistentroom'><value>1</value></field>`+
		`<field var='muc#roomconfig_passwordprotectedroom'><value>1</value></field>`+
		`<field var='muc#roomconfig_roomsecret'><value>s3cret</value></field></x></query></iq>`)
	await(t, alice, "configuration result", func(el *stanza.Element) bool {
		return el.Local == "iq" && el.ID() == "cfg" && el.IQType() == stanza.ResultIQ
	})
	send(t, alice, `<message type='groupchat' to='den@conference.localhost'><body>the plan</body></message>`)
	await(t, alice, "own message", groupchat("the plan"))
	send(t, alice, `<iq type='set' id='adm' to='den@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#admin'><item affiliation='admin' jid='carol@localhost'/></query></iq>`)
	await(t, alice, "admin result", func(el *stanza.Element) bool {
		return el.Local == "iq" && el.ID() == "adm" && el.IQType() == stanza.ResultIQ
	})

	// query asks c for the room's archive: the bodies, or the error condition.
	query := func(c *xmppclient.Client, id string) string {
		t.Helper()
		send(t, c, `<iq type='set' id='`+id+`' to='den@conference.localhost'><query xmlns='urn:xmpp:mam:2' queryid='`+id+`'/></iq>`)
		var bodies []string
		for {
			el := await(t, c, "archive page", func(el *stanza.Element) bool {
				return (el.Local == "iq" && el.ID() == id) || (el.Local == "message" && el.Child(muc.NSMAM, "result") != nil)
			})
			if el.Local == "message" {
				fwd := el.Child(muc.NSMAM, "result").Child(muc.NSForward, "forwarded")
				bodies = append(bodies, fwd.Child(stanza.NSClient, "message").ChildText("", "body"))
				continue
			}
			if el.IsError() {
				for _, c := range el.Child("", "error").Elements() {
					if c.Space == stanza.NSStanzas && c.Local != "text" {
						return c.Local
					}
				}
			}
			return strings.Join(bodies, ",")
		}
	}

	if got := query(bob, "b1"); got != "not-authorized" {
		t.Fatalf("bob, not in the room, read its archive: %q", got)
	}
	send(t, bob, `<presence to='den@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'><password>wrong</password></x></presence>`)
	await(t, bob, "refusal", func(el *stanza.Element) bool { return el.Local == "presence" && el.IsError() })
	if got := query(bob, "b2"); got != "not-authorized" {
		t.Fatalf("bob, refused for a wrong password, read the archive: %q", got)
	}
	send(t, bob, `<presence to='den@conference.localhost/Bob'><x xmlns='http://jabber.org/protocol/muc'><password>s3cret</password></x></presence>`)
	await(t, bob, "self-presence", selfPresence)
	if got := query(bob, "b3"); got != "the plan" {
		t.Fatalf("bob, in the room, reads %q", got)
	}
	send(t, bob, `<presence type='unavailable' to='den@conference.localhost/Bob'/>`)
	await(t, bob, "leaving", func(el *stanza.Element) bool {
		return el.Local == "presence" && el.PresenceType() == stanza.UnavailablePresence
	})
	if got := query(bob, "b4"); got != "not-authorized" {
		t.Fatalf("bob, gone from the room, read its archive: %q", got)
	}
	if got := query(carol, "c1"); got != "the plan" {
		t.Fatalf("carol, an admin, reads %q", got)
	}
	if got := query(alice, "a1"); got != "the plan" {
		t.Fatalf("alice, the owner, reads %q", got)
	}
}
