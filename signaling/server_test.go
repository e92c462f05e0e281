package signaling

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type memAccounts struct {
	mu sync.Mutex
	m  map[string]store.Credentials
}

func (a *memAccounts) Account(_ context.Context, name string) (store.Account, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.m[name]
	if !ok {
		return store.Account{}, store.ErrNotFound
	}
	return store.Account{Username: name, Credentials: c}, nil
}

// echoService is a stand-in for chat: it routes messages between bound
// sessions by full JID and answers pings.
type echoService struct {
	mu          sync.Mutex
	sessions    map[string]*Session
	undelivered chan *stanza.Element
}

func (e *echoService) service() Service {
	return Service{
		Handle: func(_ context.Context, s *Session, el *stanza.Element) {
			if el.Local == "iq" && el.IQType() == stanza.GetIQ {
				_ = s.Send(stanza.Result(el))
				return
			}
			e.mu.Lock()
			dst := e.sessions[el.To()]
			e.mu.Unlock()
			if dst != nil && dst.Send(el) != nil {
				// A session that has just stopped takes nothing more: the
				// router has the stanza back, as chat's does.
				e.undelivered <- el
			}
		},
		Bound: func(_ context.Context, s *Session) {
			e.mu.Lock()
			e.sessions[s.JID().String()] = s
			e.mu.Unlock()
		},
		Closed: func(_ context.Context, s *Session) {
			e.mu.Lock()
			if e.sessions[s.JID().String()] == s {
				delete(e.sessions, s.JID().String())
			}
			e.mu.Unlock()
		},
		Undelivered: func(_ context.Context, el *stanza.Element) {
			e.undelivered <- el
		},
	}
}

type harness struct {
	echo    *echoService
	srv     *Server
	addr    string // STARTTLS port
	tlsAddr string // direct TLS port
	ws      *httptest.Server
}

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	cert, err := LoadOrCreateSelfSigned(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	accts := &memAccounts{m: map[string]store.Credentials{}}
	for _, u := range []string{"alice", "bob", "carol"} {
		c, err := sasl.NewCredentials(u+"-secret", sasl.DefaultIterations)
		if err != nil {
			t.Fatal(err)
		}
		accts.m[u] = c
	}
	cfg := Config{
		Domain:     "localhost",
		TLS:        &tls.Config{Certificates: []tls.Certificate{cert}},
		C2SAddr:    "127.0.0.1:0",
		C2STLSAddr: "127.0.0.1:0",
		AllowPlain: true,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	echo := &echoService{sessions: map[string]*Session{}, undelivered: make(chan *stanza.Element, 100)}
	srv, err := New(cfg, accts, NewRouter(echo.service()))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	h := &harness{echo: echo, srv: srv, addr: srv.Addrs()[0].String(), tlsAddr: srv.Addrs()[1].String()}
	h.ws = httptest.NewServer(srv.WebSocketHandler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		h.ws.Close()
	})
	return h
}

func (h *harness) dial(t *testing.T, user, res string, mod func(*xmppclient.Options)) *xmppclient.Client {
	t.Helper()
	o := xmppclient.Options{Addr: h.addr, Domain: "localhost", Username: user, Password: user + "-secret", Resource: res, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&o)
	}
	c, err := xmppclient.Dial(context.Background(), o)
	if err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func msg(to, body string) *stanza.Element {
	return stanza.New(stanza.NSClient, "message").SetAttr("to", to).SetAttr("type", "chat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body))
}

// exchange proves two clients can talk through the server, and that the
// server stamped the sender.
func exchange(t *testing.T, a, b *xmppclient.Client, body string) {
	t.Helper()
	if err := a.Send(msg(b.JID.String(), body)); err != nil {
		t.Fatal(err)
	}
	el, err := b.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
	if err != nil {
		t.Fatalf("%s waiting for %q: %v", b.JID, body, err)
	}
	if got := el.ChildText("", "body"); got != body {
		t.Fatalf("body = %q, want %q", got, body)
	}
	if el.From() != a.JID.String() {
		t.Fatalf("from = %q, want the sender's full JID %q", el.From(), a.JID)
	}
}

func TestLoginMechanisms(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "phone", nil)
	for _, tc := range []struct {
		name string
		mod  func(*xmppclient.Options)
	}{
		{"SCRAM-SHA-256 after STARTTLS", nil},
		{"SCRAM-SHA-1", func(o *xmppclient.Options) { o.Mechanism = "SCRAM-SHA-1" }},
		{"SCRAM-SHA-256-PLUS tls-exporter", func(o *xmppclient.Options) { o.Mechanism = "SCRAM-SHA-256-PLUS" }},
		{"SCRAM-SHA-1-PLUS tls-server-end-point", func(o *xmppclient.Options) {
			o.Mechanism, o.ChannelBinding = "SCRAM-SHA-1-PLUS", "tls-server-end-point"
		}},
		{"PLAIN inside TLS", func(o *xmppclient.Options) { o.Mechanism = "PLAIN" }},
		{"direct TLS", func(o *xmppclient.Options) { o.Addr, o.DirectTLS = h.tlsAddr, true }},
		{"TLS 1.2 with -PLUS", func(o *xmppclient.Options) {
			o.Mechanism = "SCRAM-SHA-256-PLUS"
			o.ChannelBinding = "tls-server-end-point"
			o.TLSConfig = &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := h.dial(t, "alice", "", tc.mod)
			if a.JID.Bare().String() != "alice@localhost" || a.JID.Resourcepart() == "" {
				t.Fatalf("bound JID %s: want alice@localhost with a server-chosen resource", a.JID)
			}
			exchange(t, a, bob, "hello via "+tc.name)
			exchange(t, bob, a, "reply via "+tc.name)
		})
	}
}

func TestFeaturesBeforeTLS(t *testing.T) {
	h := newHarness(t, nil)
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", NoTLS: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st := c.Features.Child("urn:ietf:params:xml:ns:xmpp-tls", "starttls")
	if st == nil || st.Child("", "required") == nil {
		t.Fatalf("features %s: want STARTTLS required", c.Features)
	}
	if c.Features.Child("", "mechanisms") != nil {
		t.Fatalf("features %s: SASL offered before TLS", c.Features)
	}
	// Trying SASL anyway is refused.
	c.SendRaw("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>")
	el, err := c.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if el.Local != "failure" || el.Child("", "encryption-required") == nil {
		t.Fatalf("got %s, want <failure><encryption-required/>", el)
	}
}

func TestMechanismsAfterTLS(t *testing.T) {
	h := newHarness(t, nil)
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []string
	for _, m := range c.Features.Child("", "mechanisms").Elements() {
		got = append(got, m.Text())
	}
	want := "SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-1 PLAIN"
	if strings.Join(got, " ") != want {
		t.Fatalf("mechanisms %v, want %s", got, want)
	}
	if c.Features.Child("urn:xmpp:sasl-cb:0", "sasl-channel-binding") == nil {
		t.Fatalf("no XEP-0440 channel-binding list in %s", c.Features)
	}
}

func TestWrongPasswordAndThrottle(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	var mu sync.Mutex
	h := newHarness(t, func(c *Config) {
		c.LoginFailures = 3
		c.LoginWindow = time.Minute
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	login := func(user, pass string) error {
		c, err := xmppclient.Dial(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Username: user, Password: pass, Timeout: 5 * time.Second})
		if err == nil {
			c.Close()
		}
		return err
	}
	cond := func(err error) string {
		var ae *xmppclient.AuthError
		if errors.As(err, &ae) {
			return ae.Condition
		}
		return "unexpected: " + err.Error()
	}
	for i := 0; i < 3; i++ {
		if err := login("alice", "wrong-password"); err == nil || cond(err) != "not-authorized" {
			t.Fatalf("attempt %d: %v, want not-authorized", i, err)
		}
	}
	if err := login("alice", "alice-secret"); err == nil || cond(err) != "temporary-auth-failure" {
		t.Fatalf("right password for alice after 3 failures from this address: %v, want temporary-auth-failure", err)
	}
	// Other accounts from this address are not refused yet (the address
	// as a whole has 4 × 3 tries); a user that does not exist looks like a
	// wrong password.
	if err := login("nobody", "whatever-pass"); err == nil || cond(err) != "not-authorized" {
		t.Fatalf("unknown user: %v, want not-authorized", err)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if err := login("alice", "alice-secret"); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

// rawStream opens a TLS stream ready for SASL and returns the connection;
// the caller writes input and reads the server's answer as text.
func rawAfterTLS(t *testing.T, h *harness) net.Conn {
	t.Helper()
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Conn().Close() })
	return c.Conn()
}

// readUntilClosed returns everything the server writes until it closes.
func readUntilClosed(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading until the server closes: %v (got %q)", err, b)
	}
	return string(b)
}

func TestBadInputEndsOnlyThatStream(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxStanzaBytes = 8192 })
	alice := h.dial(t, "alice", "desk", nil)
	bob := h.dial(t, "bob", "desk", nil)
	cases := []struct {
		name  string
		input string
		bound bool // send after login instead of before auth
		cond  string
	}{
		{"doctype before the stream", "<?xml version='1.0'?><!DOCTYPE foo [<!ENTITY a 'b'>]><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>", false, "restricted-xml"},
		{"billion laughs", "<!DOCTYPE lolz [<!ENTITY lol 'lol'><!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]><message><body>&lol2;</body></message>", true, "restricted-xml"},
		{"undeclared entity", "<message to='bob@localhost'><body>&lol9;</body></message>", true, "not-well-formed"},
		{"processing instruction", "<?evil stuff?>", true, "restricted-xml"},
		{"malformed XML", "<message><body>unclosed</message>", true, "not-well-formed"},
		{"oversized stanza", "<message to='bob@localhost'><body>" + strings.Repeat("x", 9000) + "</body></message>", true, "policy-violation"},
		{"stanza before auth", "<message to='bob@localhost'><body>hi</body></message>", false, "not-authorized"},
		{"spoofed from", "<message to='bob@localhost/desk' from='carol@localhost/x'><body>I am carol</body></message>", true, "invalid-from"},
		{"unknown top-level element", "<foo xmlns='urn:example'/>", true, "unsupported-stanza-type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var conn net.Conn
			if tc.bound {
				c := h.dial(t, "carol", "", nil)
				conn = c.Conn()
			} else if strings.HasPrefix(tc.input, "<?xml") {
				var err error
				conn, err = net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
			} else {
				conn = rawAfterTLS(t, h)
			}
			if _, err := io.WriteString(conn, tc.input); err != nil {
				t.Fatal(err)
			}
			out := readUntilClosed(t, conn)
			if !strings.Contains(out, "<"+tc.cond+" xmlns='urn:ietf:params:xml:ns:xmpp-streams'") {
				t.Fatalf("server wrote %q; want stream error %s", out, tc.cond)
			}
			if !strings.HasSuffix(out, "</stream:stream>") {
				t.Fatalf("server did not close the stream: %q", out)
			}
			// Everyone else is still served.
			exchange(t, alice, bob, "still here after "+tc.name)
		})
	}
}

func TestResourceConflictReplacesOldSession(t *testing.T) {
	h := newHarness(t, nil)
	old := h.dial(t, "alice", "laptop", nil)
	bob := h.dial(t, "bob", "", nil)
	fresh := h.dial(t, "alice", "laptop", nil)
	el, err := old.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "error" })
	if err != nil {
		t.Fatalf("old session: %v", err)
	}
	if el.Child("", "conflict") == nil {
		t.Fatalf("old session got %s, want conflict", el)
	}
	exchange(t, bob, fresh, "to the new laptop session")
}

func TestAuthTimeout(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.AuthTimeout = 300 * time.Millisecond })
	conn := rawAfterTLS(t, h)
	out := readUntilClosed(t, conn)
	if !strings.Contains(out, "connection-timeout") {
		t.Fatalf("unauthenticated connection: server wrote %q, want connection-timeout", out)
	}
}

func TestSlowReaderIsDisconnected(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.WriteQueue = 4; c.WriteTimeout = 300 * time.Millisecond })
	slow := h.dial(t, "alice", "slow", nil)
	bob := h.dial(t, "bob", "", nil)
	// bob floods; alice never reads. Her queue fills and she is dropped
	// instead of the server buffering without bound.
	big := strings.Repeat("y", 4000)
	deadline := time.Now().Add(10 * time.Second)
	for h.srv.Sessions() == 2 {
		if time.Now().After(deadline) {
			t.Fatal("the slow reader was never disconnected")
		}
		if err := bob.Send(msg(slow.JID.String(), big)); err != nil {
			t.Fatal(err)
		}
		// bob's own pings keep his session round-tripping.
		bob.Send(stanza.NewIQ(stanza.GetIQ).SetAttr("id", "p").Append(stanza.New("urn:xmpp:ping", "ping")))
		if _, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" }); err != nil {
			t.Fatalf("bob stalled: %v", err)
		}
	}
	if h.srv.Sessions() != 1 {
		t.Fatalf("sessions = %d, want only bob's", h.srv.Sessions())
	}
}

func TestWebSocket(t *testing.T) {
	h := newHarness(t, nil)
	bob := h.dial(t, "bob", "desk", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	url := "ws" + strings.TrimPrefix(h.ws.URL, "http")
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{"xmpp"}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send := func(s string) {
		t.Helper()
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *stanza.Element {
		t.Helper()
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		el, err := stanza.Parse(b)
		if err != nil {
			t.Fatalf("frame %q: %v", b, err)
		}
		return el
	}
	open := "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
	send(open)
	if el := recv(); el.Local != "open" {
		t.Fatalf("want <open/>, got %s", el)
	}
	f := recv()
	if f.Local != "features" || f.Child("", "mechanisms") == nil {
		t.Fatalf("features %s: want SASL offered on loopback WebSocket", f)
	}
	// SCRAM-SHA-256 over the WebSocket.
	cl, _ := scramClient("alice", "alice-secret")
	first, _ := cl.Step("")
	send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" + b64(first) + "</auth>")
	ch := recv()
	final, err := cl.Step(unb64(ch.Text()))
	if err != nil {
		t.Fatal(err)
	}
	send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b64(final) + "</response>")
	if el := recv(); el.Local != "success" {
		t.Fatalf("want success, got %s", el)
	}
	send(open)
	recv() // open
	recv() // features
	send("<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>")
	if el := recv(); el.IQType() != stanza.ResultIQ {
		t.Fatalf("bind: %s", el)
	}
	send("<message xmlns='jabber:client' to='bob@localhost/desk' type='chat'><body>from the browser</body></message>")
	el, err := bob.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
	if err != nil || el.ChildText("", "body") != "from the browser" || el.From() != "alice@localhost/web" {
		t.Fatalf("bob got %v, %v", el, err)
	}
	bob.Send(msg("alice@localhost/web", "to the browser"))
	if el := recv(); el.ChildText("", "body") != "to the browser" || el.Space != stanza.NSClient {
		t.Fatalf("browser got %s", el)
	}
	send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
	if el := recv(); el.Local != "close" {
		t.Fatalf("want <close/>, got %s", el)
	}
}
