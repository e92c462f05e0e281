package s2s

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
)

// methods returns the authentication methods of n's streams with remote,
// outgoing ones first.
func (n *node) methods(remote string) (out, in []string) {
	for _, st := range n.Streams() {
		if st.Remote != remote {
			continue
		}
		if st.Outgoing {
			out = append(out, st.Method)
		} else {
			in = append(in, st.Method)
		}
	}
	return out, in
}

func TestDialbackWithSelfSignedCertificates(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, nil)
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	a.route(b)
	b.route(a)

	if err := a.Send(context.Background(), message("alice@a.test/phone", "bob@b.test", "hello")); err != nil {
		t.Fatal(err)
	}
	got := b.in.wait(t, 10*time.Second, hasBody("hello"))
	if got.From() != "alice@a.test/phone" || got.To() != "bob@b.test" || got.Space != stanza.NSClient {
		t.Fatalf("delivered %s", got)
	}
	// b verified a's key by calling a back; a accepted b's answer.
	if out, _ := a.methods("b.test"); !slices.Equal(out, []string{MethodDialback}) {
		t.Fatalf("a's outgoing stream: %v", out)
	}
	if _, in := b.methods("a.test"); !slices.Equal(in, []string{MethodDialback}) {
		t.Fatalf("b's incoming stream: %v", in)
	}
	// And back the other way, on b's own outgoing stream.
	if err := b.Send(context.Background(), message("bob@b.test/desk", "alice@a.test/phone", "hi back")); err != nil {
		t.Fatal(err)
	}
	a.in.wait(t, 10*time.Second, hasBody("hi back"))
}

func TestSASLExternalWithValidCertificates(t *testing.T) {
	ca := newCA(t)
	a := newNode(t, "a.test", leaf(t, ca, "a.test", "conference.a.test"), ca.pool, nil)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, nil)
	a.route(b)
	b.route(a)
	if err := a.Send(context.Background(), message("alice@a.test", "bob@b.test", "over external")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 10*time.Second, hasBody("over external"))
	if out, _ := a.methods("b.test"); !slices.Equal(out, []string{MethodSASLExternal}) {
		t.Fatalf("a's outgoing stream: %v", out)
	}
	if _, in := b.methods("a.test"); !slices.Equal(in, []string{MethodSASLExternal}) {
		t.Fatalf("b's incoming stream: %v", in)
	}
	// A service subdomain gets its own stream, proved by the same
	// certificate.
	if err := a.Send(context.Background(), message("room@conference.a.test/nick", "bob@b.test", "from the room")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 10*time.Second, hasBody("from the room"))
}

func TestSecureAuthRefusesAnInvalidCertificate(t *testing.T) {
	ca := newCA(t)
	// b's certificate is self-signed: valid for nobody a trusts.
	a := newNode(t, "a.test", leaf(t, ca, "a.test"), ca.pool, func(c *Config) { c.SecureAuth = true })
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	a.route(b)
	b.route(a)
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@b.test", "must not pass")); err != nil {
		t.Fatal(err)
	}
	bounced := a.in.wait(t, 10*time.Second, hasBody("must not pass"))
	if errorCond(bounced) != "remote-server-not-found" || bounced.To() != "alice@a.test/x" || bounced.From() != "bob@b.test" {
		t.Fatalf("bounce: %s", bounced)
	}
	if b.in.count() != 0 {
		t.Fatal("b received a stanza over a stream a should have refused")
	}

	// Incoming: b dialing a with its self-signed certificate is refused
	// too, even though b's dialback key would check out.
	if err := b.Send(context.Background(), message("bob@b.test", "alice@a.test", "nor this")); err != nil {
		t.Fatal(err)
	}
	bounced = b.in.wait(t, 10*time.Second, hasBody("nor this"))
	if errorCond(bounced) != "remote-server-not-found" {
		t.Fatalf("bounce: %s", bounced)
	}
}

func TestUnreachableDomainBounces(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.RetryMin = time.Hour })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	a.cfg.Routes["down.test"] = closed

	presence := stanza.New(stanza.NSClient, "presence").SetAttr("from", "alice@a.test/x").SetAttr("to", "bob@down.test").SetAttr("type", "error")
	for _, el := range []*stanza.Element{
		message("alice@a.test/x", "bob@down.test", "first"),
		presence, // an error is never answered
		stanza.New(stanza.NSClient, "iq").SetAttr("from", "alice@a.test/x").SetAttr("to", "down.test").SetAttr("type", "result").SetAttr("id", "r"),
	} {
		if err := a.Send(context.Background(), el); err != nil {
			t.Fatal(err)
		}
	}
	b := a.in.wait(t, 10*time.Second, hasBody("first"))
	if errorCond(b) != "remote-server-not-found" || b.To() != "alice@a.test/x" || b.ID() != "first" {
		t.Fatalf("bounce: %s", b)
	}
	// While the domain is known to be down, stanzas bounce at once.
	start := time.Now()
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@down.test", "second")); err != nil {
		t.Fatal(err)
	}
	a.in.wait(t, time.Second, hasBody("second"))
	if time.Since(start) > 500*time.Millisecond {
		t.Fatal("a stanza for a domain known to be down waited")
	}
	if n := a.in.count(); n != 2 {
		t.Fatalf("%d stanzas came back; the error and the result must not bounce", n)
	}
}

// TestAReturningDomainIsReachableAtOnce: after a failure, stanzas for a
// domain bounce until the next attempt is due; a stream that domain opens
// meanwhile shows it is back, and they go through again.
func TestAReturningDomainIsReachableAtOnce(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.RetryMin = time.Hour })
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	b.route(a)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.cfg.Routes["b.test"] = ln.Addr().String()
	ln.Close()
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@b.test", "lost")); err != nil {
		t.Fatal(err)
	}
	a.in.wait(t, 5*time.Second, hasBody("lost"))
	a.route(b) // b is back where it belongs
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@b.test", "still waiting")); err != nil {
		t.Fatal(err)
	}
	if bounced := a.in.wait(t, time.Second, hasBody("still waiting")); errorCond(bounced) != "remote-server-not-found" {
		t.Fatalf("bounce: %s", bounced)
	}
	if err := b.Send(context.Background(), message("bob@b.test", "alice@a.test", "i am back")); err != nil {
		t.Fatal(err)
	}
	a.in.wait(t, 10*time.Second, hasBody("i am back"))
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@b.test", "welcome back")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 10*time.Second, hasBody("welcome back"))
}

func TestSilentPeerTimesOut(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.Timeout = 300 * time.Millisecond })
	silent := silentListener(t)
	a.cfg.Routes["silent.test"] = silent
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@silent.test", "waiting")); err != nil {
		t.Fatal(err)
	}
	b := a.in.wait(t, 5*time.Second, hasBody("waiting"))
	if errorCond(b) != "remote-server-timeout" {
		t.Fatalf("bounce: %s", b)
	}
}

// silentListener accepts connections and never answers; it returns its
// address.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

func TestAStalledPeerHoldsUpNoOther(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) {
		c.QueueStanzas = 5
		c.Timeout = 2 * time.Second
	})
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	a.route(b)
	b.route(a)
	a.cfg.Routes["stalled.test"] = silentListener(t)

	for i := range 8 {
		if err := a.Send(context.Background(), message("alice@a.test/x", "bob@stalled.test", "stalled "+string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	// Beyond the queue's bound, stanzas come back at once.
	full := a.in.wait(t, time.Second, hasBody("stalled f"))
	if errorCond(full) != "resource-constraint" {
		t.Fatalf("bounce: %s", full)
	}
	// Meanwhile b is reached as if nothing were wrong.
	start := time.Now()
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@b.test", "unaffected")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 5*time.Second, hasBody("unaffected"))
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Fatalf("b was reached only after %s", d)
	}
	// And what waited for the stalled domain bounces, never disappears.
	for _, body := range []string{"stalled a", "stalled e"} {
		if b := a.in.wait(t, 5*time.Second, hasBody(body)); errorCond(b) != "remote-server-timeout" {
			t.Fatalf("bounce: %s", b)
		}
	}
}

func TestIdleStreamsCloseAndReopen(t *testing.T) {
	events := make(chan availEvent, 16)
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) {
		c.IdleTimeout = 300 * time.Millisecond
		c.Availability = func(d string, up bool) { events <- availEvent{d, up} }
	})
	b := newNode(t, "b.test", leaf(t, nil, "b.test"), nil, nil)
	a.route(b)
	b.route(a)
	expect := func(want availEvent) {
		t.Helper()
		select {
		case ev := <-events:
			if ev != want {
				t.Fatalf("availability %v, want %v", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no availability event %v", want)
		}
	}
	if err := a.Send(context.Background(), message("alice@a.test", "bob@b.test", "one")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 5*time.Second, hasBody("one"))
	expect(availEvent{"b.test", true})
	expect(availEvent{"b.test", false})
	if a.Connected("b.test") {
		t.Fatal("the idle stream is still counted")
	}
	if err := a.Send(context.Background(), message("alice@a.test", "bob@b.test", "two")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 5*time.Second, hasBody("two"))
	expect(availEvent{"b.test", true})
}

func TestSendRefusesWhatIsNotFederation(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.Deny = []string{"evil.test"} })
	if err := a.Send(context.Background(), message("alice@a.test", "room@conference.a.test", "x")); err != ErrLocal {
		t.Fatalf("to a hosted domain: %v", err)
	}
	if err := a.Send(context.Background(), message("mallory@elsewhere.test", "bob@b.test", "x")); err == nil {
		t.Fatal("a stanza from a domain not hosted here was accepted")
	}
	if err := a.Send(context.Background(), message("alice@a.test/x", "bob@sub.evil.test", "denied")); err != nil {
		t.Fatal(err)
	}
	if b := a.in.wait(t, time.Second, hasBody("denied")); errorCond(b) != "remote-server-not-found" {
		t.Fatalf("bounce: %s", b)
	}
}

func TestDirectTLSThroughSRV(t *testing.T) {
	ca := newCA(t)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, func(c *Config) { c.TLSAddr = "127.0.0.1:0" })
	_, port, _ := net.SplitHostPort(b.Addrs()[1].String())
	p := uint16(mustAtoi(t, port))
	a := newNode(t, "a.test", leaf(t, ca, "a.test"), ca.pool, func(c *Config) {
		c.Resolver = fakeSRV{"_xmpps-server._tcp.b.test": {{Target: "localhost.", Port: p, Priority: 1}}}
	})
	b.route(a)
	if err := a.Send(context.Background(), message("alice@a.test", "bob@b.test", "direct")); err != nil {
		t.Fatal(err)
	}
	b.in.wait(t, 10*time.Second, hasBody("direct"))
}

func mustAtoi(t *testing.T, s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(c-'0')
	}
	return n
}

type fakeSRV map[string][]*net.SRV

func (f fakeSRV) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	recs, ok := f["_"+service+"._"+proto+"."+name]
	if !ok {
		return "", nil, &net.DNSError{Err: "no such host", IsNotFound: true}
	}
	return name, recs, nil
}

func TestOrderTargets(t *testing.T) {
	srv := func(target string, port, prio, weight uint16) *net.SRV {
		return &net.SRV{Target: target, Port: port, Priority: prio, Weight: weight}
	}
	first := func(int) int { return 0 }
	for _, tc := range []struct {
		name          string
		direct, plain []*net.SRV
		want          []target
		err           bool
	}{
		{name: "no records: the domain on 5269", want: []target{{host: "x.test", port: 5269}}},
		{name: "priorities mixed across both services",
			direct: []*net.SRV{srv("tls.x.test.", 5270, 10, 0)},
			plain:  []*net.SRV{srv("a.x.test.", 5269, 5, 0), srv("b.x.test.", 5269, 20, 0)},
			want: []target{{host: "a.x.test", port: 5269}, {host: "tls.x.test", port: 5270, direct: true},
				{host: "b.x.test", port: 5269}}},
		{name: "a dot for direct TLS leaves STARTTLS",
			direct: []*net.SRV{srv(".", 0, 0, 0)},
			plain:  []*net.SRV{srv("a.x.test.", 5269, 5, 0)},
			want:   []target{{host: "a.x.test", port: 5269}}},
		{name: "a dot for both: no service, no fallback",
			direct: []*net.SRV{srv(".", 0, 0, 0)}, plain: []*net.SRV{srv(".", 0, 0, 0)}, err: true},
		{name: "a dot for STARTTLS only: no fallback",
			plain: []*net.SRV{srv(".", 0, 0, 0)}, err: true},
		{name: "zero weights come first within a priority when the draw is 0",
			plain: []*net.SRV{srv("heavy.", 1, 1, 50), srv("zero.", 2, 1, 0)},
			want:  []target{{host: "zero", port: 2}, {host: "heavy", port: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := orderTargets("x.test", tc.direct, tc.plain, first)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	// The weights decide: with draws at the top, the heavy record wins.
	got, _ := orderTargets("x.test", nil, []*net.SRV{srv("light.", 1, 1, 1), srv("heavy.", 2, 1, 99)}, func(n int) int { return n - 1 })
	if got[0].host != "heavy" {
		t.Fatalf("weighted order %v", got)
	}
}

// TestDialbackKeyMatchesXEP0185 checks the key derivation against the
// example of XEP-0185 §3.
func TestDialbackKeyMatchesXEP0185(t *testing.T) {
	s := &Server{cfg: Config{DialbackSecret: []byte("s3cr3tf0rd14lb4ck")}}
	got := s.dialbackKey("xmpp.example.com", "example.org", "D60000229F")
	if want := "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"; got != want {
		t.Fatalf("key %s, want %s", got, want)
	}
	if !s.checkDialbackKey("xmpp.example.com", "example.org", "D60000229F", got) || s.checkDialbackKey("xmpp.example.com", "example.org", "other", got) {
		t.Fatal("checkDialbackKey")
	}
}

func TestNamespacesOnTheWire(t *testing.T) {
	inner := stanza.New(stanza.NSClient, "message").Append(stanza.New(stanza.NSClient, "body").SetText("fwd"))
	el := stanza.New(stanza.NSClient, "message").SetAttr("to", "b@b.test").
		Append(stanza.New(stanza.NSClient, "body").SetText("hi")).
		Append(stanza.New("urn:xmpp:forward:0", "forwarded").Append(inner))
	got := string(appendS2S(nil, el))
	want := "<message to='b@b.test'><body>hi</body><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'><body>fwd</body></message></forwarded></message>"
	if got != want {
		t.Fatalf("wire form\n got %s\nwant %s", got, want)
	}
	parsed, err := stanza.Parse([]byte("<message xmlns='jabber:server'>" + strings.TrimPrefix(got, "<message to='b@b.test'>")))
	if err != nil {
		t.Fatal(err)
	}
	toClientNS(parsed)
	if parsed.Space != stanza.NSClient || parsed.Child(stanza.NSClient, "body") == nil {
		t.Fatalf("read back %s", parsed)
	}
	fwd := parsed.Child("urn:xmpp:forward:0", "forwarded").Child("", "message")
	if fwd.Space != stanza.NSClient {
		t.Fatalf("the forwarded message moved to %s", fwd.Space)
	}
	if db := string(appendS2S(nil, dialbackElement("result", "a.test", "b.test", "", "valid", ""))); db != "<db:result from='a.test' to='b.test' type='valid'/>" {
		t.Fatalf("dialback element %s", db)
	}
}

// TestLinksToManyDomainsAreForgotten: stanzas to a great many domains
// leave no lasting state once their links are idle.
func TestLinksToManyDomainsAreForgotten(t *testing.T) {
	refuse := fakeSRV{}
	n := 3 * minSweep
	for i := range n {
		// Every domain says, through its SRV record, that it offers no
		// service: the attempt fails at once.
		refuse["_xmpp-server._tcp.d"+strconv.Itoa(i)+".test"] = []*net.SRV{{Target: "."}}
	}
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) {
		c.RetryMin = time.Nanosecond
		c.Resolver = refuse
	})
	for i := range n {
		if err := a.Send(context.Background(), message("alice@a.test/x", "bob@d"+strconv.Itoa(i)+".test", "m"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if i%256 == 255 {
			waitFor(t, 10*time.Second, "the stanzas to bounce", func() bool { return a.in.count() == i+1 })
		}
	}
	a.mu.Lock()
	left := len(a.links)
	a.mu.Unlock()
	if left > minSweep+1 {
		t.Fatalf("%d links remain after %d to idle domains", left, n)
	}
}

// TestIncomingStreamsAreBounded: past the limit, new connections are
// closed at once.
func TestIncomingStreamsAreBounded(t *testing.T) {
	a := newNode(t, "a.test", leaf(t, nil, "a.test"), nil, func(c *Config) { c.MaxIncoming = 2 })
	addr := a.Addrs()[0].String()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, 5*time.Second, "two incoming streams", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.ins) == 2
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("the third connection was not closed: %v", err)
	}
}

// TestRoutesCoverSubdomains: a static route serves the domain's services
// too, unless they have routes of their own.
func TestRoutesCoverSubdomains(t *testing.T) {
	s := &Server{cfg: Config{Routes: map[string]string{"b.test": "10.0.0.1:5269", "upload.b.test": "10.0.0.2:5269"}}}
	for _, tc := range []struct{ domain, want string }{
		{"b.test", "10.0.0.1:5269"},
		{"conference.b.test", "10.0.0.1:5269"},
		{"upload.b.test", "10.0.0.2:5269"},
		{"x.upload.b.test", "10.0.0.2:5269"},
		{"notb.test", ""},
		{"test", ""},
	} {
		if got, _ := s.route(tc.domain); got != tc.want {
			t.Errorf("route(%s) = %q, want %q", tc.domain, got, tc.want)
		}
	}
}

// TestIncomingStanzasAreRateLimited: a peer sending faster than the rate
// waits; nothing is lost.
func TestIncomingStanzasAreRateLimited(t *testing.T) {
	ca := newCA(t)
	b := newNode(t, "b.test", leaf(t, ca, "b.test"), ca.pool, func(c *Config) {
		c.StanzaRate, c.StanzaBurst = 20, 5
	})
	cert := leaf(t, ca, "a.test")
	p := dialRaw(t, b.Addrs()[0].String(), "a.test", "b.test", &cert, true)
	p.external("a.test", "b.test")
	start := time.Now()
	for i := range 15 {
		p.send("<message from='alice@a.test' to='bob@b.test'><body>n" + strconv.Itoa(i) + "</body></message>")
	}
	b.in.wait(t, 10*time.Second, hasBody("n14"))
	// 5 at once, then 10 more at 20 a second.
	if d := time.Since(start); d < 450*time.Millisecond {
		t.Fatalf("15 stanzas delivered in %s despite a rate of 20/s with bursts of 5", d)
	}
	if n := b.in.count(); n != 15 {
		t.Fatalf("%d of 15 stanzas delivered", n)
	}
}
