package web

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdg-go/scram"

	"poosms.org/poosms/store"
)

// The real store satisfies Accounts.
var _ Accounts = (*store.DB)(nil)

// fakeAccounts is an in-memory account store.
type fakeAccounts struct {
	mu    sync.Mutex
	users map[string]store.Credentials
	err   error // returned by CreateAccount when set
}

func (f *fakeAccounts) CreateAccount(_ context.Context, username string, c store.Credentials) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if _, ok := f.users[username]; ok {
		return store.ErrExists
	}
	f.users[username] = c
	return nil
}

func (f *fakeAccounts) get(username string) (store.Credentials, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.users[username]
	return c, ok
}

func (f *fakeAccounts) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.users)
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type env struct {
	srv      *Server
	ts       *httptest.Server
	accounts *fakeAccounts
	clock    *fakeClock
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{
		accounts: &fakeAccounts{users: map[string]store.Credentials{"bob": {}}},
		clock:    &fakeClock{t: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)},
	}
	cfg := Config{
		Domain:       "Example.ORG",
		Registration: true,
		C2SAddr:      ":5222",
		C2STLSAddr:   ":5223",
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:          e.clock.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := New(cfg, e.accounts)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.ts = httptest.NewServer(srv.Handler())
	t.Cleanup(e.ts.Close)
	return e
}

// browser is an HTTP client with its own cookie jar.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second}
}

var tokenRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func get(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// formToken opens the registration form and returns its CSRF token.
func (e *env) formToken(t *testing.T, c *http.Client) string {
	t.Helper()
	resp, body := get(t, c, e.ts.URL+"/register")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /register: %s", resp.Status)
	}
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the form:\n%s", body)
	}
	return m[1]
}

func (e *env) post(t *testing.T, c *http.Client, v url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := c.PostForm(e.ts.URL+"/register", v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func form(token, user, pass, confirm string) url.Values {
	return url.Values{"csrf": {token}, "username": {user}, "password": {pass}, "confirm": {confirm}}
}

func TestRegisterCreatesAccount(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	tok := e.formToken(t, c)
	resp, body := e.post(t, c, form(tok, "  Alice ", "correct horse", "correct horse"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /register: %s\n%s", resp.Status, body)
	}
	creds, ok := e.accounts.get("alice")
	if !ok {
		t.Fatalf("no account alice after registering \"Alice\"; have %d accounts", e.accounts.count())
	}
	if creds.Iterations < 4096 {
		t.Errorf("iterations = %d, want at least 4096", creds.Iterations)
	}
	// The stored verifiers must be those of the chosen password.
	for _, h := range []struct {
		fn     scram.HashGeneratorFcn
		stored []byte
	}{{scram.SHA1, creds.StoredKeySHA1}, {scram.SHA256, creds.StoredKeySHA256}} {
		cl, err := h.fn.NewClient("alice", "correct horse", "")
		if err != nil {
			t.Fatal(err)
		}
		want, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(creds.Salt), Iters: creds.Iterations})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(want.StoredKey, h.stored) {
			t.Error("stored SCRAM key does not match the password that was entered")
		}
	}
	for _, want := range []string{
		"alice@example.org",
		"5222", "5223",
		"ws://" + strings.TrimPrefix(e.ts.URL, "http://") + "/xmpp-websocket",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("success page does not show %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "correct horse") {
		t.Error("success page shows the password")
	}
}

func TestRegisterHidesDisabledTLSPort(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.C2STLSAddr = ""; c.C2SAddr = "0.0.0.0:15222" })
	c := browser(t)
	_, body := e.post(t, c, form(e.formToken(t, c), "carol", "longenough", "longenough"))
	if !strings.Contains(body, "15222") || strings.Contains(body, "direct TLS") {
		t.Errorf("success page with TLS port disabled:\n%s", body)
	}
}

func TestRegisterFormErrors(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, tc := range []struct {
		name                  string
		user, pass, confirm   string
		wantStatus            int
		wantMsg, wantUserKept string
	}{
		{"taken", "Bob", "longenough", "longenough", http.StatusConflict, "already taken", "Bob"},
		{"mismatch", "dave", "longenough", "longenougH", http.StatusBadRequest, "do not match", "dave"},
		{"short password", "dave", "short12", "short12", http.StatusBadRequest, "at least 8 characters", "dave"},
		{"at sign", "dave@example.org", "longenough", "longenough", http.StatusBadRequest, "cannot contain @", "dave@example.org"},
		{"space", "dave smith", "longenough", "longenough", http.StatusBadRequest, "cannot contain spaces", "dave smith"},
		{"forbidden character", "dave<b>", "longenough", "longenough", http.StatusBadRequest, "not allowed", "dave&lt;b&gt;"},
		{"empty", "", "longenough", "longenough", http.StatusBadRequest, "choose a username", ""},
		{"too long", long, "longenough", "longenough", http.StatusBadRequest, "too long", long},
		{"two problems", "a b", "short", "short", http.StatusBadRequest, "at least 8 characters", "a b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := browser(t)
			resp, body := e.post(t, c, form(e.formToken(t, c), tc.user, tc.pass, tc.confirm))
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %s, want %d", resp.Status, tc.wantStatus)
			}
			if !strings.Contains(body, tc.wantMsg) {
				t.Errorf("page does not say %q:\n%s", tc.wantMsg, body)
			}
			if !strings.Contains(body, `name="username" type="text" value="`+tc.wantUserKept+`"`) {
				t.Errorf("username %q not kept in the form:\n%s", tc.wantUserKept, body)
			}
			if strings.Contains(body, tc.pass) {
				t.Errorf("page echoes the password %q", tc.pass)
			}
			if !tokenRE.MatchString(body) {
				t.Error("error page has no form token to try again with")
			}
			if n := e.accounts.count(); n != 1 {
				t.Errorf("%d accounts after a refused registration, want only bob", n)
			}
		})
	}
}

func TestRegisterLongestUsername(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	name := strings.Repeat("z", MaxUsernameBytes)
	resp, body := e.post(t, c, form(e.formToken(t, c), name, "longenough", "longenough"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("64-byte username: %s\n%s", resp.Status, body)
	}
}

func TestRegisterStoreFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.accounts.err = errors.New("disk full")
	c := browser(t)
	resp, body := e.post(t, c, form(e.formToken(t, c), "erin", "longenough", "longenough"))
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "not created") {
		t.Errorf("store failure: %s\n%s", resp.Status, body)
	}
	if strings.Contains(body, "disk full") {
		t.Error("internal error text shown to the user")
	}
}

func TestRegisterCSRF(t *testing.T) {
	e := newEnv(t, nil)
	alice, mallory := browser(t), browser(t)
	aliceTok := e.formToken(t, alice)
	malloryTok := e.formToken(t, mallory)

	for _, tc := range []struct {
		name   string
		client *http.Client
		token  string
	}{
		{"missing token", alice, ""},
		{"token from another cookie", alice, malloryTok},
		{"no cookie", &http.Client{Timeout: 30 * time.Second}, aliceTok},
		{"forged token", alice, strings.Repeat("A", len(aliceTok))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(t, tc.client, form(tc.token, "frank", "longenough", "longenough"))
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("status = %s, want 403", resp.Status)
			}
			if !strings.Contains(body, "fill it in again") {
				t.Errorf("page does not explain the refusal:\n%s", body)
			}
			if _, ok := e.accounts.get("frank"); ok {
				t.Fatal("account created despite a bad form token")
			}
		})
	}

	// The refusal page carries a fresh token that works.
	resp, body := e.post(t, alice, form("", "frank", "longenough", "longenough"))
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status = %s", resp.Status)
	}
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no token on the refusal page")
	}
	if resp, body := e.post(t, alice, form(m[1], "frank", "longenough", "longenough")); resp.StatusCode != http.StatusOK {
		t.Errorf("retry with the fresh token: %s\n%s", resp.Status, body)
	}
}

func TestCSRFCookieAttributes(t *testing.T) {
	e := newEnv(t, nil)
	resp, _ := get(t, &http.Client{}, e.ts.URL+"/register")
	sc := resp.Header.Get("Set-Cookie")
	for _, want := range []string{csrfCookie + "=", "HttpOnly", "SameSite=Strict", "Path=/register"} {
		if !strings.Contains(sc, want) {
			t.Errorf("Set-Cookie %q lacks %q", sc, want)
		}
	}
}

func TestRegisterRateLimit(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	tok := e.formToken(t, c)
	for i := range 10 {
		resp, _ := e.post(t, c, form(tok, "gina", "longenough", "mismatch!"))
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("attempt %d: %s, want 400", i+1, resp.Status)
		}
	}
	resp, body := e.post(t, c, form(tok, "gina", "longenough", "longenough"))
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("11th attempt: %s, want 429", resp.Status)
	}
	if !strings.Contains(body, "Too many attempts") || !strings.Contains(body, "10 minutes") {
		t.Errorf("429 page does not explain:\n%s", body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "600" {
		t.Errorf("Retry-After = %q, want 600", ra)
	}
	if _, ok := e.accounts.get("gina"); ok {
		t.Fatal("account created while rate limited")
	}

	e.clock.Advance(9 * time.Minute)
	if resp, _ := e.post(t, c, form(tok, "gina", "longenough", "longenough")); resp.StatusCode != http.StatusTooManyRequests {
		t.Errorf("after 9 minutes: %s, want still 429", resp.Status)
	}
	e.clock.Advance(time.Minute)
	if resp, body := e.post(t, c, form(tok, "gina", "longenough", "longenough")); resp.StatusCode != http.StatusOK {
		t.Errorf("after the window: %s\n%s", resp.Status, body)
	}
}

func TestLimiterForgetsOldAddresses(t *testing.T) {
	clock := &fakeClock{t: time.Unix(0, 0)}
	l := newLimiter(1, time.Minute, clock.Now)
	for i := range maxTracked + 10 {
		l.allow(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(l.seen); n > maxTracked {
		t.Errorf("limiter tracks %d addresses, want at most %d", n, maxTracked)
	}
}

func TestClientAddrGroupsIPv6(t *testing.T) {
	s := newEnv(t, nil).srv
	for _, tc := range []struct{ remote, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"[::ffff:192.0.2.9]:80", "192.0.2.9"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if got := s.clientAddr(r); got != tc.want {
			t.Errorf("clientAddr(%s) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestRegistrationClosed(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = false })
	c := browser(t)
	resp, body := get(t, c, e.ts.URL+"/register")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Registration is closed") {
		t.Errorf("GET /register when closed: %s\n%s", resp.Status, body)
	}
	resp, body = e.post(t, c, form("x", "henry", "longenough", "longenough"))
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Registration is closed") {
		t.Errorf("POST /register when closed: %s\n%s", resp.Status, body)
	}
	if _, ok := e.accounts.get("henry"); ok {
		t.Error("account created with registration closed")
	}
	for _, page := range []string{"/", "/welcome"} {
		if _, body = get(t, c, e.ts.URL+page); strings.Contains(body, `href="/register"`) {
			t.Errorf("%s links to a closed registration form", page)
		}
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	if resp, _ := get(t, c, e.ts.URL+"/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("before SetReady: %s, want 503", resp.Status)
	}
	var ready atomic.Bool
	e.srv.SetReady(ready.Load)
	if resp, _ := get(t, c, e.ts.URL+"/healthz"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("not ready yet: %s, want 503", resp.Status)
	}
	ready.Store(true)
	if resp, body := get(t, c, e.ts.URL+"/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("ready: %s %q, want 200 ok", resp.Status, body)
	}
}

func TestLandingStaticAndMount(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Mount("/xmpp-websocket", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "websocket here")
	}))
	c := browser(t)
	resp, body := get(t, c, e.ts.URL+"/welcome")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/register"`) || !strings.Contains(body, "example.org") {
		t.Errorf("landing: %s\n%s", resp.Status, body)
	}
	resp, body = get(t, c, e.ts.URL+"/static/style.css")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "main") {
		t.Errorf("style.css: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	if resp, body := get(t, c, e.ts.URL+"/xmpp-websocket"); resp.StatusCode != http.StatusOK || body != "websocket here" {
		t.Errorf("mounted handler: %s %q", resp.Status, body)
	}
	if resp, _ := get(t, c, e.ts.URL+"/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %s, want 404", resp.Status)
	}
}

func TestFormIsAccessible(t *testing.T) {
	e := newEnv(t, nil)
	_, body := get(t, browser(t), e.ts.URL+"/register")
	for _, want := range []string{
		`<label for="username">`, `<label for="password">`, `<label for="confirm">`,
		`autocomplete="username"`, `autocomplete="new-password"`,
		`name="viewport"`, `lang="en"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("form lacks %s", want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{Domain: "a b"}, nil); err == nil {
		t.Error("New accepted a domain with a space")
	}
	if _, err := New(Config{Domain: "example.org", Registration: true}, nil); err == nil {
		t.Error("New accepted open registration without an account store")
	}
	if _, err := New(Config{Domain: "example.org"}, nil); err != nil {
		t.Errorf("closed registration without a store: %v", err)
	}
}
