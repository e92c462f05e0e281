package signaling

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// loginFrom logs user in over STARTTLS from the loopback address from
// (127.0.0.0/8 all reach the listener) and returns the SASL failure
// condition, "" on success.
func loginFrom(t *testing.T, h *harness, from, user, pass, mech string) string {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: h.addr, Domain: "localhost", Username: user, Password: pass, Mechanism: mech,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second,
	})
	if err == nil {
		c.Close()
		return ""
	}
	var ae *xmppclient.AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("login %s from %s: %v", user, from, err)
	}
	return ae.Condition
}

// TestWrongPasswordsDoNotLockTheOwnerOut: a flood of wrong passwords for
// alice from one address refuses that address, not alice elsewhere.
func TestWrongPasswordsDoNotLockTheOwnerOut(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.LoginFailures = 3; c.LoginWindow = time.Hour })
	for i := range 10 {
		want := "not-authorized"
		if i >= 3 {
			want = "temporary-auth-failure"
		}
		if got := loginFrom(t, h, "127.0.0.2", "alice", "guess-number-"+string(rune('a'+i)), "PLAIN"); got != want {
			t.Fatalf("attacker's attempt %d: %q, want %q", i+1, got, want)
		}
	}
	if got := loginFrom(t, h, "127.0.0.3", "alice", "alice-secret", ""); got != "" {
		t.Fatalf("alice from her own address during the flood: %q, want success", got)
	}
	if got := loginFrom(t, h, "127.0.0.2", "alice", "alice-secret", ""); got != "temporary-auth-failure" {
		t.Fatalf("the flooding address with the right password: %q, want temporary-auth-failure", got)
	}
}

// TestThrottleLimitsSprayingAndDistributedGuessing: one address trying
// many accounts is stopped; many addresses guessing one account stop
// addresses that never logged in to it, while the owner's known address
// still gets in.
func TestThrottleLimitsSprayingAndDistributedGuessing(t *testing.T) {
	var mu sync.Mutex
	now := time.Unix(1_800_000_000, 0)
	h := newHarness(t, func(c *Config) {
		c.LoginFailures = 1 // an address: 4 failures; an account: 20
		c.LoginWindow = time.Minute
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	// Spraying: four different (unknown) accounts from one address.
	for i := range 4 {
		if got := loginFrom(t, h, "127.0.0.4", "nobody"+string(rune('a'+i)), "whatever-pass", "PLAIN"); got != "not-authorized" {
			t.Fatalf("spray %d: %q", i, got)
		}
	}
	if got := loginFrom(t, h, "127.0.0.4", "bob", "bob-secret", ""); got != "temporary-auth-failure" {
		t.Fatalf("bob from the spraying address: %q, want temporary-auth-failure", got)
	}

	// Alice has logged in from 127.0.0.10 before the attack.
	if got := loginFrom(t, h, "127.0.0.10", "alice", "alice-secret", ""); got != "" {
		t.Fatalf("alice's first login: %q", got)
	}
	for i := range 20 {
		from := netip.AddrFrom4([4]byte{127, 0, 1, byte(i + 1)}).String()
		if got := loginFrom(t, h, from, "alice", "wrong-password", "PLAIN"); got != "not-authorized" {
			t.Fatalf("guess %d from %s: %q", i+1, from, got)
		}
	}
	if got := loginFrom(t, h, "127.0.1.100", "alice", "alice-secret", ""); got != "temporary-auth-failure" {
		t.Fatalf("a new address for alice after 20 failures: %q, want temporary-auth-failure", got)
	}
	if got := loginFrom(t, h, "127.0.0.10", "alice", "alice-secret", ""); got != "" {
		t.Fatalf("alice from the address she used before: %q, want success", got)
	}
	if got := loginFrom(t, h, "127.0.1.101", "bob", "bob-secret", ""); got != "" {
		t.Fatalf("bob is not under attack: %q, want success", got)
	}
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	if got := loginFrom(t, h, "127.0.1.100", "alice", "alice-secret", ""); got != "" {
		t.Fatalf("a new address for alice after the window: %q, want success", got)
	}
}

// TestVerifierUpgradeAtPlainLogin: an account stored with 4096 iterations
// gets the configured count at its next PLAIN login, and SCRAM keeps
// working with the new verifiers.
func TestVerifierUpgradeAtPlainLogin(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SCRAMIterations = 12000 })
	accts := h.srv.accounts.(*memAccounts)
	h.srv.cfg.Registrar = accts
	old, err := sasl.NewCredentials("dave-secret", sasl.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	accts.mu.Lock()
	accts.m["dave"] = old
	accts.mu.Unlock()
	stored := func() store.Credentials {
		a, err := accts.Account(context.Background(), "dave")
		if err != nil {
			t.Fatal(err)
		}
		return a.Credentials
	}

	// SCRAM cannot upgrade (the server never sees the password).
	h.dial(t, "dave", "scram", nil)
	if got := stored().Iterations; got != sasl.MinIterations {
		t.Fatalf("after a SCRAM login: %d iterations, want the old %d", got, sasl.MinIterations)
	}
	h.dial(t, "dave", "plain", func(o *xmppclient.Options) { o.Mechanism = "PLAIN" })
	if got := stored().Iterations; got != 12000 {
		t.Fatalf("after a PLAIN login: %d iterations, want 12000", got)
	}
	for _, mech := range []string{"SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"} {
		h.dial(t, "dave", "after-"+mech, func(o *xmppclient.Options) { o.Mechanism = mech })
	}
	if got := loginFrom(t, h, "127.0.0.1", "dave", "wrong-password", ""); got != "not-authorized" {
		t.Fatalf("wrong password after the upgrade: %q", got)
	}

	// A password change in band takes the configured count too.
	c := h.dial(t, "dave", "change", nil)
	c.Send(iq("set", "pw", regQuery("dave", "dave-new-secret")))
	if r, err := c.Expect(5*time.Second, func(e *stanza.Element) bool { return e.ID() == "pw" }); err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("password change: %v %v", r, err)
	}
	if got := stored().Iterations; got != 12000 {
		t.Fatalf("after a password change: %d iterations, want 12000", got)
	}
}

// TestUnknownUserCostsOneDerivation: PLAIN for a user that does not exist
// makes the same PBKDF2 derivation, at the configured count, as a wrong
// password for a real account.
func TestUnknownUserCostsOneDerivation(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.SCRAMIterations = 11000 })
	var mu sync.Mutex
	var seen []int
	defer sasl.ObserveDerivations(func(n int) { mu.Lock(); seen = append(seen, n); mu.Unlock() })()
	for _, user := range []string{"alice", "nobody"} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		if got := loginFrom(t, h, "127.0.0.1", user, "wrong-password", "PLAIN"); got != "not-authorized" {
			t.Fatalf("%s: %q", user, got)
		}
		mu.Lock()
		got := append([]int(nil), seen...)
		mu.Unlock()
		want := sasl.DefaultIterations // alice's stored count
		if user == "nobody" {
			want = 11000
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: derivations %v, want one of %d iterations", user, got, want)
		}
	}
}

// wsLogin logs in over WebSocket with SCRAM-SHA-256, sending headers with
// the upgrade request, and returns the SASL failure condition ("" on
// success) or the handshake error.
func wsLogin(t *testing.T, h *harness, header http.Header, user, pass string) (cond string, dialErr error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.ws.URL, "http"),
		&websocket.DialOptions{Subprotocols: []string{"xmpp"}, HTTPHeader: header})
	if err != nil {
		if resp != nil {
			return "", errors.New(resp.Status)
		}
		return "", err
	}
	defer ws.CloseNow()
	send := func(s string) {
		if err := ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() *stanza.Element {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		el, err := stanza.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		return el
	}
	send("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
	recv() // open
	recv() // features
	cl, _ := scramClient(user, pass)
	first, _ := cl.Step("")
	send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>" + b64(first) + "</auth>")
	el := recv()
	if el.Local == "challenge" {
		final, err := cl.Step(unb64(el.Text()))
		if err != nil {
			t.Fatal(err)
		}
		send("<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + b64(final) + "</response>")
		el = recv()
	}
	if el.Local == "success" {
		return "", nil
	}
	if f := el.FirstElement(); el.Local == "failure" && f != nil {
		return f.Local, nil
	}
	t.Fatalf("unexpected answer %s", el)
	return "", nil
}

func forwardedFor(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }

// TestWebSocketClientAddressBehindProxy: behind a trusted proxy each
// client has its own throttle bucket; from any other peer the forwarding
// headers are ignored, so a client cannot pick its bucket.
func TestWebSocketClientAddressBehindProxy(t *testing.T) {
	t.Run("trusted proxy", func(t *testing.T) {
		h := newHarness(t, func(c *Config) {
			c.LoginFailures = 2
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		})
		for range 2 {
			if cond, err := wsLogin(t, h, forwardedFor("198.51.100.1"), "alice", "wrong-password"); cond != "not-authorized" {
				t.Fatalf("guess behind the proxy: %q %v", cond, err)
			}
		}
		if cond, _ := wsLogin(t, h, forwardedFor("198.51.100.1"), "alice", "alice-secret"); cond != "temporary-auth-failure" {
			t.Fatalf("the guessing client: %q, want temporary-auth-failure", cond)
		}
		// A forged entry to the left of what the proxy appended changes nothing.
		if cond, _ := wsLogin(t, h, forwardedFor("203.0.113.50, 198.51.100.1"), "alice", "alice-secret"); cond != "temporary-auth-failure" {
			t.Fatalf("the guessing client with a forged hop: %q, want temporary-auth-failure", cond)
		}
		if cond, err := wsLogin(t, h, forwardedFor("198.51.100.2"), "alice", "alice-secret"); cond != "" || err != nil {
			t.Fatalf("alice behind the same proxy: %q %v, want success", cond, err)
		}
		// Forwarded (RFC 7239) names the client as well.
		if cond, err := wsLogin(t, h, http.Header{"Forwarded": {`for="[2001:db8::7]:4711";proto=https`}}, "alice", "alice-secret"); cond != "" || err != nil {
			t.Fatalf("alice with Forwarded: %q %v, want success", cond, err)
		}
	})
	t.Run("untrusted peer spoofing the header", func(t *testing.T) {
		h := newHarness(t, func(c *Config) { c.LoginFailures = 2 })
		for range 2 {
			if cond, _ := wsLogin(t, h, forwardedFor("198.51.100.1"), "alice", "wrong-password"); cond != "not-authorized" {
				t.Fatalf("guess: %q", cond)
			}
		}
		// Claiming another address does not escape the peer's bucket.
		if cond, _ := wsLogin(t, h, forwardedFor("198.51.100.2"), "alice", "alice-secret"); cond != "temporary-auth-failure" {
			t.Fatalf("spoofed X-Forwarded-For: %q, want temporary-auth-failure", cond)
		}
		if cond, _ := wsLogin(t, h, http.Header{"Forwarded": {"for=198.51.100.3"}}, "alice", "alice-secret"); cond != "temporary-auth-failure" {
			t.Fatalf("spoofed Forwarded: %q, want temporary-auth-failure", cond)
		}
	})
}

// TestWebSocketOrigin: a browser page on another site cannot open a
// stream; the server's own page, listed origins and native clients (no
// Origin) can.
func TestWebSocketOrigin(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.WebSocketOrigins = []string{"https://app.example.org", "*.example.net"}
	})
	self := "http://" + strings.TrimPrefix(h.ws.URL, "http://")
	for _, tc := range []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{self, true},
		{"https://app.example.org", true},
		{"https://chat.example.net", true},
		{"https://evil.example", false},
		{"http://app.example.org", false}, // the listed origin is https only
		{"https://app.example.org.evil.example", false},
		{"null", false},
	} {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		cond, err := wsLogin(t, h, hdr, "alice", "alice-secret")
		if tc.ok && (err != nil || cond != "") {
			t.Errorf("Origin %q: %v %q, want a login", tc.origin, err, cond)
		}
		if !tc.ok && (err == nil || !strings.Contains(err.Error(), "403")) {
			t.Errorf("Origin %q: %v %q, want the handshake refused with 403", tc.origin, err, cond)
		}
	}
}
