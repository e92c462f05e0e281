package s2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// rawPeer is a hand-driven server stream to a node, for tests that do
// what a well-behaved server would not.
type rawPeer struct {
	t        *testing.T
	c        *conn
	id       string
	features *stanza.Element
}

// dialRaw opens a stream from 'from' to 'to' at addr and negotiates TLS
// with cert (nil: none); tls=false stops before STARTTLS.
func dialRaw(t *testing.T, addr, from, to string, cert *tls.Certificate, withTLS bool) *rawPeer {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, c: newConn(nc, 1<<20, 5*time.Second)}
	t.Cleanup(func() { p.c.close() })
	p.c.raw.limits(5*time.Second, time.Time{})
	p.open(from, to)
	if !withTLS {
		return p
	}
	p.send("<starttls xmlns='" + nsTLS + "'/>")
	if el := p.next(); el.Local != "proceed" {
		t.Fatalf("starttls answered %s", el)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, ServerName: to}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	if err := p.c.upgrade(context.Background(), tls.Client(p.c.raw, cfg)); err != nil {
		t.Fatal(err)
	}
	p.open(from, to)
	return p
}

func (p *rawPeer) open(from, to string) {
	p.t.Helper()
	if err := p.c.writeHeader(from, to, ""); err != nil {
		p.t.Fatal(err)
	}
	ev, err := p.c.next()
	if err != nil || ev.header == nil {
		p.t.Fatalf("no stream header: %v", err)
	}
	p.id = ev.header.id
	p.features = p.next()
}

func (p *rawPeer) send(raw string) {
	p.t.Helper()
	if err := p.c.writeRaw([]byte(raw)); err != nil {
		p.t.Fatal(err)
	}
}

func (p *rawPeer) next() *stanza.Element {
	p.t.Helper()
	ev, err := p.c.next()
	if err != nil || ev.el == nil {
		p.t.Fatalf("expected an element, got %+v, %v", ev, err)
	}
	return ev.el
}

// streamError reads until the node's stream error and returns its
// condition.
func (p *rawPeer) streamError() stanza.StreamCondition {
	p.t.Helper()
	for {
		ev, err := p.c.next()
		if err != nil {
			p.t.Fatalf("the stream ended without a stream error: %v", err)
		}
		if ev.closed {
			p.t.Fatal("the stream closed without a stream error")
		}
		if ev.el != nil && ev.el.Space == stanza.NSStream && ev.el.Local == "error" {
			return peerStreamError(ev.el).cond
		}
	}
}

// external authenticates with SASL EXTERNAL and restarts the stream.
func (p *rawPeer) external(from, to string) {
	p.t.Helper()
	p.send("<auth xmlns='" + nsSASL + "' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte(from)) + "</auth>")
	if el := p.next(); el.Local != "success" {
		p.t.Fatalf("SASL EXTERNAL answered %s", el)
	}
	p.c.restart()
	p.open(from, to)
}

func TestIncomingStanzasMustComeFromTheProvedDomain(t *testing.T) {
	ca := newCA(t)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, nil)
	evilCert := leaf(t, ca, "evil.test")
	addr := b.Addrs()[0].String()

	for _, tc := range []struct {
		name, stanza string
		cond         stanza.StreamCondition
	}{
		{"a from in another domain", "<message from='alice@a.test' to='bob@b.test'><body>spoof</body></message>", "invalid-from"},
		{"a from in a subdomain of the proved one", "<message from='x@sub.evil.test' to='bob@b.test'><body>spoof</body></message>", "invalid-from"},
		{"no from", "<message to='bob@b.test'><body>spoof</body></message>", "improper-addressing"},
		{"a to not served here", "<message from='m@evil.test' to='carol@c.test'><body>relay</body></message>", "host-unknown"},
		{"a to that is no JID", "<message from='m@evil.test' to='@@'><body>x</body></message>", "improper-addressing"},
		{"a client-namespace stanza", "<message xmlns='jabber:client' from='m@evil.test' to='bob@b.test'/>", "invalid-namespace"},
		{"a DTD", "<!DOCTYPE x [<!ENTITY a 'b'>]>", "restricted-xml"},
		{"a stanza over the size limit", "<message from='m@evil.test' to='bob@b.test'><body>" + strings.Repeat("x", 300000) + "</body></message>", "policy-violation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := dialRaw(t, addr, "evil.test", "b.test", &evilCert, true)
			p.external("evil.test", "b.test")
			p.send(tc.stanza)
			if got := p.streamError(); got != tc.cond {
				t.Fatalf("stream error %q, want %q", got, tc.cond)
			}
		})
	}
	// A legitimate stanza from the proved domain passes.
	p := dialRaw(t, addr, "evil.test", "b.test", &evilCert, true)
	p.external("evil.test", "b.test")
	// Its delay stamps pass too, but for one claiming to be this server's,
	// which would pass for the stamp of a message kept here.
	p.send("<message from='m@evil.test/r' to='bob@b.test' type='chat'><body>legit</body>" +
		"<delay xmlns='urn:xmpp:delay' from='b.test' stamp='2001-01-01T00:00:00Z'/>" +
		"<delay xmlns='urn:xmpp:delay' from='evil.test' stamp='2002-02-02T00:00:00Z'/></message>")
	got := b.in.wait(t, 5*time.Second, hasBody("legit"))
	if got.From() != "m@evil.test/r" || got.Space != stanza.NSClient || got.Child(stanza.NSClient, "body") == nil {
		t.Fatalf("delivered %s", got)
	}
	var stamps []string
	for _, d := range got.Elements() {
		if d.Local == "delay" {
			stamps = append(stamps, d.Attr("from"))
		}
	}
	if len(stamps) != 1 || stamps[0] != "evil.test" {
		t.Errorf("delivered with delay stamps from %q, want only evil.test's", stamps)
	}
	if n := b.in.count(); n != 1 {
		t.Fatalf("%d stanzas delivered; the spoofed ones must not be", n)
	}
}

func TestIncomingAuthenticationCannotBeSkippedOrFaked(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, nil)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, nil)
	b.route(a)
	addr := b.Addrs()[0].String()
	evilCert := leaf(t, ca, "evil.test")

	t.Run("stanzas before TLS", func(t *testing.T) {
		p := dialRaw(t, addr, "a.test", "b.test", nil, false)
		p.send("<message from='alice@a.test' to='bob@b.test'/>")
		if got := p.streamError(); got != "policy-violation" {
			t.Fatalf("stream error %q", got)
		}
	})
	t.Run("stanzas before authentication", func(t *testing.T) {
		p := dialRaw(t, addr, "a.test", "b.test", nil, true)
		p.send("<message from='alice@a.test' to='bob@b.test'/>")
		if got := p.streamError(); got != "invalid-from" {
			t.Fatalf("stream error %q", got)
		}
	})
	t.Run("SASL EXTERNAL for a domain the certificate is not valid for", func(t *testing.T) {
		p := dialRaw(t, addr, "a.test", "b.test", &evilCert, true)
		if offersExternal(p.features) {
			t.Fatal("EXTERNAL offered for a certificate valid for another domain")
		}
		p.send("<auth xmlns='" + nsSASL + "' mechanism='EXTERNAL'>=</auth>")
		if el := p.next(); el.Local != "failure" {
			t.Fatalf("answered %s", el)
		}
		p.send("<message from='alice@a.test' to='bob@b.test'/>")
		if got := p.streamError(); got != "invalid-from" {
			t.Fatalf("stream error %q", got)
		}
	})
	t.Run("SASL EXTERNAL with another authorization identity", func(t *testing.T) {
		p := dialRaw(t, addr, "evil.test", "b.test", &evilCert, true)
		p.send("<auth xmlns='" + nsSASL + "' mechanism='EXTERNAL'>" + base64.StdEncoding.EncodeToString([]byte("a.test")) + "</auth>")
		if el := p.next(); el.Local != "failure" {
			t.Fatalf("answered %s", el)
		}
	})
	t.Run("a dialback key the authoritative server never gave", func(t *testing.T) {
		p := dialRaw(t, addr, "a.test", "b.test", nil, true)
		p.send("<db:result from='a.test' to='b.test'>" + strings.Repeat("ab", 32) + "</db:result>")
		el := p.next()
		if el.Space != nsDialback || el.Type() != "invalid" {
			t.Fatalf("dialback answered %s", el)
		}
		p.send("<message from='alice@a.test' to='bob@b.test'><body>forged</body></message>")
		if got := p.streamError(); got != "invalid-from" {
			t.Fatalf("stream error %q", got)
		}
	})
	t.Run("a key for another stream", func(t *testing.T) {
		// a's key for some other stream id, as an eavesdropper could have
		// seen it, does not fit this stream.
		p := dialRaw(t, addr, "a.test", "b.test", nil, true)
		key := a.dialbackKey("b.test", "a.test", "another-stream")
		p.send("<db:result from='a.test' to='b.test'>" + key + "</db:result>")
		if el := p.next(); el.Type() != "invalid" {
			t.Fatalf("dialback answered %s", el)
		}
	})
	t.Run("claiming the server's own domain", func(t *testing.T) {
		p := dialRaw(t, addr, "", "b.test", nil, true)
		p.send("<db:result from='b.test' to='b.test'>" + strings.Repeat("ab", 32) + "</db:result>")
		if el := p.next(); !el.IsError() || stanza.ErrorCondition(el) != "forbidden" {
			t.Fatalf("dialback answered %s", el)
		}
	})
	t.Run("a stream to a domain not served here", func(t *testing.T) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		p := &rawPeer{t: t, c: newConn(nc, 1<<20, 5*time.Second)}
		defer p.c.close()
		p.c.raw.limits(5*time.Second, time.Time{})
		_ = p.c.writeHeader("a.test", "c.test", "")
		if got := p.streamError(); got != "host-unknown" {
			t.Fatalf("stream error %q", got)
		}
	})
	if b.in.count() != 0 {
		t.Fatalf("%d stanzas were delivered from unauthenticated streams", b.in.count())
	}
}

// TestAuthoritativeAnswers: a node vouches only for keys it gave.
func TestAuthoritativeAnswers(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, nil)
	p := dialRaw(t, a.Addrs()[0].String(), "b.test", "a.test", nil, true)
	good := a.dialbackKey("b.test", "a.test", "stream-1")
	p.send("<db:verify from='b.test' to='a.test' id='stream-1'>" + good + "</db:verify>")
	if el := p.next(); el.Type() != "valid" || el.Attr("id") != "stream-1" || el.From() != "a.test" || el.To() != "b.test" {
		t.Fatalf("answered %s", el)
	}
	p.send("<db:verify from='c.test' to='a.test' id='stream-1'>" + good + "</db:verify>")
	if el := p.next(); el.Type() != "invalid" {
		t.Fatalf("a key for b.test was confirmed to c.test: %s", el)
	}
	p.send("<db:verify from='b.test' to='a.test' id='stream-2'>" + good + "</db:verify>")
	if el := p.next(); el.Type() != "invalid" {
		t.Fatalf("a key was confirmed for another stream: %s", el)
	}
}
