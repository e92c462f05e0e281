package web

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

// passwords is an in-memory PasswordStore.
type passwords struct {
	mu sync.Mutex
	m  map[string]store.Credentials
}

func (p *passwords) Account(_ context.Context, user string) (store.Account, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, ok := p.m[user]
	if !ok {
		return store.Account{}, store.ErrNotFound
	}
	return store.Account{Username: user, Credentials: c}, nil
}

func (p *passwords) UpgradeCredentials(_ context.Context, user string, old, c store.Credentials) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.m[user]; !ok || !bytes.Equal(cur.Salt, old.Salt) {
		return store.ErrNotFound
	}
	p.m[user] = c
	return nil
}

// turnEnv serves /api/turn with alice (password "alice-secret", stored
// with iterations) behind a proxy at 127.0.0.1 when trusted.
func turnEnv(t *testing.T, iterations int, mod func(*Config)) (*env, *passwords) {
	t.Helper()
	c, err := sasl.NewCredentials("alice-secret", iterations)
	if err != nil {
		t.Fatal(err)
	}
	pw := &passwords{m: map[string]store.Credentials{"alice": c}}
	e := newEnv(t, mod)
	e.srv.EnableTURNAPI(pw, func(user string) any { return map[string]string{"user": user} })
	return e, pw
}

func turnGet(t *testing.T, e *env, user, pass string, header http.Header) int {
	t.Helper()
	req, _ := http.NewRequest("GET", e.ts.URL+"/api/turn", nil)
	req.SetBasicAuth(user, pass)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTURNAPIUnknownUserCostsADerivation: /api/turn checks a password for
// a user that does not exist at the same cost as for a real one.
func TestTURNAPIUnknownUserCostsADerivation(t *testing.T) {
	e, _ := turnEnv(t, sasl.DefaultIterations, func(c *Config) { c.Iterations = sasl.DefaultIterations })
	var mu sync.Mutex
	var seen []int
	defer sasl.ObserveDerivations(func(n int) { mu.Lock(); seen = append(seen, n); mu.Unlock() })()
	for _, user := range []string{"alice", "nobody"} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		if code := turnGet(t, e, user, "wrong-password", nil); code != http.StatusUnauthorized {
			t.Fatalf("%s: %d, want 401", user, code)
		}
		mu.Lock()
		got := append([]int(nil), seen...)
		mu.Unlock()
		if len(got) != 1 || got[0] != sasl.DefaultIterations {
			t.Errorf("%s: derivations %v, want one of %d iterations", user, got, sasl.DefaultIterations)
		}
	}
}

// TestTURNAPIThrottle: wrong passwords at /api/turn count in the shared
// login throttle, per client; behind a trusted proxy the client is the
// forwarded address, so one guesser does not shut out the owner.
func TestTURNAPIThrottle(t *testing.T) {
	lim := loginlimit.New(loginlimit.Config{Failures: 3})
	e, _ := turnEnv(t, sasl.MinIterations, func(c *Config) {
		c.Limiter = lim
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	guesser := http.Header{"X-Forwarded-For": {"198.51.100.1"}}
	for i := range 3 {
		if code := turnGet(t, e, "alice", "wrong-password", guesser); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	if code := turnGet(t, e, "alice", "alice-secret", guesser); code != http.StatusTooManyRequests {
		t.Fatalf("the guesser with the right password: %d, want 429", code)
	}
	if r, _ := lim.Check("alice", "198.51.100.1"); r != loginlimit.ByAccountAtAddress {
		t.Fatalf("the shared limiter says %v for the guesser", r)
	}
	if code := turnGet(t, e, "alice", "alice-secret", http.Header{"X-Forwarded-For": {"198.51.100.2"}}); code != http.StatusOK {
		t.Fatalf("alice behind the same proxy: %d, want 200", code)
	}
}

// TestTURNAPIIgnoresForwardingFromUntrustedPeers: without
// --trusted-proxies a client cannot leave its bucket by naming another
// address in X-Forwarded-For or Forwarded.
func TestTURNAPIIgnoresForwardingFromUntrustedPeers(t *testing.T) {
	e, _ := turnEnv(t, sasl.MinIterations, func(c *Config) { c.Limiter = loginlimit.New(loginlimit.Config{Failures: 2}) })
	for i := range 2 {
		hdr := http.Header{"X-Forwarded-For": {"198.51.100." + string(rune('1'+i))}}
		if code := turnGet(t, e, "alice", "wrong-password", hdr); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i+1, code)
		}
	}
	for _, hdr := range []http.Header{
		{"X-Forwarded-For": {"198.51.100.9"}},
		{"Forwarded": {"for=198.51.100.9"}},
	} {
		if code := turnGet(t, e, "alice", "alice-secret", hdr); code != http.StatusTooManyRequests {
			t.Errorf("right password with %v: %d, want 429 (the peer's bucket)", hdr, code)
		}
	}
}

// TestTURNAPIUpgradesVerifiers: a successful /api/turn login stores
// verifiers with the configured count.
func TestTURNAPIUpgradesVerifiers(t *testing.T) {
	e, pw := turnEnv(t, sasl.MinIterations, func(c *Config) { c.Iterations = 15000 })
	if code := turnGet(t, e, "alice", "alice-secret", nil); code != http.StatusOK {
		t.Fatalf("/api/turn: %d", code)
	}
	a, _ := pw.Account(context.Background(), "alice")
	if a.Iterations != 15000 || !sasl.CheckPassword(a.Credentials, "alice-secret") {
		t.Fatalf("after the login: %d iterations (password still checks: %v), want 15000", a.Iterations, sasl.CheckPassword(a.Credentials, "alice-secret"))
	}
	if code := turnGet(t, e, "alice", "alice-secret", nil); code != http.StatusOK {
		t.Fatalf("/api/turn after the upgrade: %d", code)
	}
}

// TestRegisterUsesConfiguredIterations: the form's accounts get the
// configured count.
func TestRegisterUsesConfiguredIterations(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Iterations = 13000 })
	c := browser(t)
	if resp, body := e.post(t, c, form(e.formToken(t, c), "hanna", "longenough", "longenough")); resp.StatusCode != http.StatusOK {
		t.Fatalf("register: %s\n%s", resp.Status, body)
	}
	if cr, _ := e.accounts.get("hanna"); cr.Iterations != 13000 {
		t.Fatalf("iterations = %d, want 13000", cr.Iterations)
	}
}

// TestCSRFCookieSecureOverHTTPS: the form's cookie is Secure when the page
// is served over HTTPS, directly or by a trusted proxy, and a proxy header
// from anyone else changes nothing.
func TestCSRFCookieSecureOverHTTPS(t *testing.T) {
	secure := func(c *http.Client, url string, hdr http.Header) bool {
		t.Helper()
		req, _ := http.NewRequest("GET", url+"/register", nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		sc := resp.Header.Get("Set-Cookie")
		if !strings.HasPrefix(sc, csrfCookie+"=") {
			t.Fatalf("no CSRF cookie: %q", sc)
		}
		return strings.Contains(sc, "; Secure")
	}
	proto := http.Header{"X-Forwarded-Proto": {"https"}}
	fwd := http.Header{"Forwarded": {"for=198.51.100.1;proto=https"}}

	trusting := newEnv(t, func(c *Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} })
	if !secure(http.DefaultClient, trusting.ts.URL, proto) || !secure(http.DefaultClient, trusting.ts.URL, fwd) {
		t.Error("behind a trusted proxy saying https: cookie not Secure")
	}
	if secure(http.DefaultClient, trusting.ts.URL, nil) {
		t.Error("plain HTTP without a proxy header: cookie Secure")
	}
	untrusting := newEnv(t, nil)
	if secure(http.DefaultClient, untrusting.ts.URL, nil) {
		t.Error("plain HTTP: cookie Secure")
	}
	if secure(http.DefaultClient, untrusting.ts.URL, proto) || secure(http.DefaultClient, untrusting.ts.URL, fwd) {
		t.Error("a proxy header from an untrusted peer made the cookie Secure")
	}

	s, err := New(Config{Domain: "example.org", Registration: true}, &fakeAccounts{users: map[string]store.Credentials{}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(s.Handler())
	defer ts.Close()
	if !secure(ts.Client(), ts.URL, nil) {
		t.Error("direct HTTPS: cookie not Secure")
	}
}
