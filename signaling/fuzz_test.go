package signaling

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// Small limits, so the fuzzer reaches them with short inputs.
var fuzzLimits = stanza.Limits{MaxElements: 16, MaxDepth: 4, MaxAttributes: 12}

const fuzzMaxBytes = 1024

// fuzzTLSState is a TLS server connection's state, set by fuzzServer.
var fuzzTLSState tls.ConnectionState

// fuzzServer is a started server of localhost with alice (password
// alice-secret), PLAIN allowed, and a service that echoes stanzas between
// bound sessions.
func fuzzServer(f *testing.F) *Server {
	f.Helper()
	cert, err := LoadOrCreateSelfSigned(f.TempDir(), "localhost")
	if err != nil {
		f.Fatal(err)
	}
	c, err := sasl.NewCredentials("alice-secret", sasl.MinIterations)
	if err != nil {
		f.Fatal(err)
	}
	accts := &memAccounts{m: map[string]store.Credentials{"alice": c}}
	echo := &echoService{sessions: map[string]*Session{}}
	svc := echo.service()
	svc.Undelivered = func(context.Context, *stanza.Element) {}
	srv, err := New(Config{
		Domain:         "localhost",
		TLS:            &tls.Config{Certificates: []tls.Certificate{cert}},
		C2SAddr:        "127.0.0.1:0",
		AllowPlain:     true,
		MaxStanzaBytes: fuzzMaxBytes,
		StanzaLimits:   fuzzLimits,
		// No throttling: the fuzzer logs in wrongly again and again.
		LoginFailures: 1 << 30,
		ResumeTimeout: 50 * time.Millisecond,
		Logger:        slog.New(slog.DiscardHandler),
	}, accts, NewRouter(svc))
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	// A real handshake's state, so channel bindings work as on a TLS stream.
	a, b := net.Pipe()
	hs := make(chan error, 1)
	cl := tls.Client(b, &tls.Config{InsecureSkipVerify: true})
	go func() { hs <- cl.Handshake() }()
	st := tls.Server(a, srv.cfg.TLS)
	if err := st.Handshake(); err != nil {
		f.Fatal(err)
	}
	if err := <-hs; err != nil {
		f.Fatal(err)
	}
	fuzzTLSState = st.ConnectionState()
	a.Close()
	b.Close()
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			f.Errorf("close: %v", err)
		}
	})
	return srv
}

// fuzzConn is a client connection that sends fixed bytes, then ends; it
// keeps what the server writes.
type fuzzConn struct {
	in     *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed chan struct{}
	once   sync.Once
}

func newFuzzConn(b []byte) *fuzzConn {
	return &fuzzConn{in: bytes.NewReader(b), closed: make(chan struct{})}
}

func (c *fuzzConn) Read(p []byte) (int, error) { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.out.Write(p)
}
func (c *fuzzConn) Close() error        { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fuzzConn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5222} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
}
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

func (c *fuzzConn) output() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

// waitClosed fails t unless the server closed c soon after its input ran
// out: a stream that ended must end its session.
func waitClosed(t *testing.T, closed <-chan struct{}, in []byte) {
	t.Helper()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("the session did not end 10 s after its input %q ran out", in)
	}
}

// FuzzTCPStream feeds bytes to a server's TCP stream handling as a client
// connection would (stream header, negotiation, stanzas within the
// limits): the session ends when the input does, and everything the
// server wrote is well-formed XML.
func FuzzTCPStream(f *testing.F) {
	srv := fuzzServer(f)
	const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>`
	for _, s := range []string{
		header,
		header + `</stream:stream>`,
		header + `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>`,
		header + `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>biwsbj1hbGljZSxyPWFiYw==</auth><response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9YWJj</response>`,
		header + `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>`,
		header + `<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>`,
		header + `<a><b><c><d><e/></d></c></b></a>`,
		header + `text`,
		header + `<!-- c -->`,
		`<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'>`,
		`<stream xmlns='jabber:client'>`,
		header + `<message><body>` + strings.Repeat("x", fuzzMaxBytes) + `</body></message>`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := newFuzzConn(in)
		srv.serve(newTCPTransport(c, nil, fuzzMaxBytes, fuzzLimits, time.Second), false, noPlaces)
		waitClosed(t, c.closed, in)
		checkStreamOutput(t, in, c.output())
	})
}

// checkStreamOutput fails t unless out, what the server wrote on a TCP
// stream, is well-formed XML (cut off at most at its end).
func checkStreamOutput(t *testing.T, in, out []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(out))
	d.Strict = true
	for {
		_, err := d.Token()
		if err == nil {
			continue
		}
		var syn *xml.SyntaxError
		if errors.Is(err, io.EOF) || errors.As(err, &syn) && syn.Msg == "unexpected EOF" {
			return
		}
		t.Fatalf("input %q: the server wrote XML that is not well-formed (%v):\n%s", in, err, out)
	}
}

// frameTransport is a WebSocket transport whose frames are given: the
// framing path of wsTransport (wsFrame), on a connection that looks
// encrypted so that PLAIN is offered and the fuzzer can log in.
type frameTransport struct {
	frames [][]byte
	mu     sync.Mutex
	out    [][]byte
	closed chan struct{}
	once   sync.Once
}

func (t *frameTransport) next() (event, error) {
	t.mu.Lock()
	if len(t.frames) == 0 {
		t.mu.Unlock()
		return event{}, io.EOF
	}
	b := t.frames[0]
	t.frames = t.frames[1:]
	t.mu.Unlock()
	return wsFrame(websocket.MessageText, b, fuzzMaxBytes, fuzzLimits)
}

func (t *frameTransport) waitStanza() error { return nil }
func (t *frameTransport) park(func()) bool  { return false }
func (t *frameTransport) restart()          {}
func (t *frameTransport) writeHeader(id, from string) error {
	return t.put([]byte("<open xmlns='" + nsFraming + "' id='" + stanza.Escape(id) + "' from='" + stanza.Escape(from) + "' version='1.0'/>"))
}
func (t *frameTransport) write(el *stanza.Element) error {
	if el.Space == stanza.NSStream {
		return t.put(appendPrefixed(nil, el))
	}
	return t.put(el.AppendXML(nil, ""))
}
func (t *frameTransport) writeEncoded(w stanza.Encoded, to string) error {
	return t.put(w.Append(nil, to, ""))
}
func (t *frameTransport) writeClose() error {
	return t.put([]byte("<close xmlns='" + nsFraming + "'/>"))
}
func (t *frameTransport) put(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.closed:
		return net.ErrClosed
	default:
	}
	t.out = append(t.out, b)
	return nil
}
func (t *frameTransport) startTLS(*tls.Config) error { return errNoTLSUpgrade }
func (t *frameTransport) tlsState() *tls.ConnectionState {
	st := fuzzTLSState
	return &st
}
func (t *frameTransport) remoteAddr() net.Addr                   { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)} }
func (t *frameTransport) setReadLimits(time.Duration, time.Time) {}
func (t *frameTransport) close() error                           { t.once.Do(func() { close(t.closed) }); return nil }

// FuzzWebSocketSession runs a whole session over RFC 7395 framing: the
// input is split into frames at each NUL byte. The session ends when the
// frames do, and every frame the server wrote is one well-formed element.
func FuzzWebSocketSession(f *testing.F) {
	srv := fuzzServer(f)
	frames := func(fs ...string) []byte { return []byte(strings.Join(fs, "\x00")) }
	open := `<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`
	login := []string{open, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAGFsaWNlLXNlY3JldA==</auth>`, open,
		`<iq type='set' id='b' xmlns='jabber:client'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>`}
	for _, s := range [][]string{
		{open},
		{open, `<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`},
		login,
		append(login, `<iq type='get' id='p' xmlns='jabber:client'><ping xmlns='urn:xmpp:ping'/></iq>`),
		append(login, `<message to='alice@localhost/r' xmlns='jabber:client'><body>hi</body></message>`),
		append(login, `<enable xmlns='urn:xmpp:sm:3' resume='true'/>`, `<r xmlns='urn:xmpp:sm:3'/>`, `<a xmlns='urn:xmpp:sm:3' h='7'/>`),
		append(login, `<presence xmlns='jabber:client'><show>away</show></presence>`, `<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>`),
		{open, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM=</auth>`},
		{open, `<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHdyb25n</auth>`, `<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>`},
		{`<message/>`},
		{open, `<a><b><c><d><e/></d></c></b></a>`},
	} {
		f.Add(frames(s...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		ft := &frameTransport{closed: make(chan struct{})}
		for fr := range bytes.SplitSeq(in, []byte{0}) {
			ft.frames = append(ft.frames, fr)
		}
		srv.serve(ft, true, noPlaces)
		waitClosed(t, ft.closed, in)
		ft.mu.Lock()
		out := ft.out
		ft.mu.Unlock()
		for _, fr := range out {
			if _, err := stanza.Parse(fr); err != nil {
				t.Fatalf("input %q: the server wrote a frame that is not one element (%v): %s", in, err, fr)
			}
		}
	})
}

// FuzzWebSocketFrame: a frame becomes an open, a close or an element
// within the limits, or a stream error with a condition, never anything
// else.
func FuzzWebSocketFrame(f *testing.F) {
	for _, s := range []string{
		`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>`,
		`<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>`,
		`<message xmlns='jabber:client' to='a@b'><body>hi</body></message>`,
		`<open/>`,
		`<a><b><c><d><e/></d></c></b></a>`,
		`<message/><message/>`,
		`<?xml version='1.0'?><iq/>`,
		`<!DOCTYPE x><x/>`,
	} {
		f.Add([]byte(s), true)
	}
	f.Add([]byte{0x81, 0x00}, false)
	f.Fuzz(func(t *testing.T, b []byte, text bool) {
		typ := websocket.MessageBinary
		if text {
			typ = websocket.MessageText
		}
		ev, err := wsFrame(typ, b, fuzzMaxBytes, fuzzLimits)
		if err != nil {
			var se *streamError
			if !errors.As(err, &se) || se.cond == "" {
				t.Fatalf("%q: %v is not a stream error", b, err)
			}
			return
		}
		if !text || len(b) > fuzzMaxBytes {
			t.Fatalf("%q (text %v) accepted", b, text)
		}
		n := 0
		if ev.open != nil {
			n++
			if ev.open.Space != nsFraming || ev.open.Local != "open" {
				t.Fatalf("%q opened with %s", b, ev.open)
			}
		}
		if ev.close {
			n++
		}
		if ev.el != nil {
			n++
			if ev.el.Space == nsFraming && (ev.el.Local == "open" || ev.el.Local == "close") {
				t.Fatalf("%q: framing element %s read as a stanza", b, ev.el)
			}
		}
		if n != 1 {
			t.Fatalf("%q gave %d events", b, n)
		}
	})
}

// FuzzJID: an address a client sends is read (canonicalJID) as one whose
// printed form reads as the same address, and normalising a username (PRECIS UsernameCaseMapped,
// as SASL does) is idempotent.
func FuzzJID(f *testing.F) {
	srv := &Server{cfg: Config{Domain: "localhost"}}
	for _, s := range []string{
		"alice@localhost/phone", "Alice@LocalHost", "localhost", "room@conference.localhost/Nick Name",
		"\u2126@example.org", "a@[::1]/r", "a@127.0.0.1", "@localhost", "a@b@c", "a@b/c/d", "ﬀ@x", "A\u030a@x",
		"user@xn--bcher-kva.example", "bücher.example", "a@-b.example", "a@localhost.", strings.Repeat("a", 1024) + "@x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if j, err := canonicalJID(s); err == nil {
			again, err := canonicalJID(j.String())
			if err != nil || !again.Equal(j) || again.String() != j.String() {
				t.Fatalf("%q read as %q, which reads as %q (%v)", s, j.String(), again.String(), err)
			}
			if b := j.Bare(); b.Resourcepart() != "" || b.Localpart() != j.Localpart() || b.Domainpart() != j.Domainpart() {
				t.Fatalf("bare of %q is %q", j.String(), b.String())
			}
			if len(j.Localpart()) > 1023 || len(j.Domainpart()) > 1023 || len(j.Resourcepart()) > 1023 {
				t.Fatalf("%q parsed with a part longer than 1023 bytes", s)
			}
		}
		if u, err := srv.normalizeUser(s); err == nil {
			u2, err := srv.normalizeUser(u)
			if err != nil || u2 != u {
				t.Fatalf("username %q normalises to %q, which normalises to %q (%v)", s, u, u2, err)
			}
		}
	})
}

// An address that jid.Parse accepts but prints as another one is refused
// as a client's to (jid-malformed), not routed to a domain that the next
// reader takes for a different one.
func TestCanonicalJID(t *testing.T) {
	for s, ok := range map[string]bool{
		"alice@localhost/r": true, "Alice@LocalHost": true, "localhost.": true,
		"..": false, "alice@localhost..": false, "a@b../r": false,
	} {
		if _, err := canonicalJID(s); (err == nil) != ok {
			t.Errorf("canonicalJID(%q): %v, want ok=%v", s, err, ok)
		}
	}
}

// noPlaces holds no place against the per-address limits, which the
// fuzz targets do not test.
var noPlaces = places{stream: func() {}, negotiating: func() {}}
