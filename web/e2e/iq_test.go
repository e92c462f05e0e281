package e2e_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// register makes an account through the registration form.
func register(t *testing.T, base, user string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	resp, err := c.Get(base + "/register")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no form token on /register")
	}
	resp, err = c.PostForm(base+"/register", url.Values{"csrf": {string(m[1])}, "username": {user}, "password": {password}, "confirm": {password}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("register %s: %v %v", user, resp, err)
	}
	resp.Body.Close()
}

func xmppLogin(t *testing.T, srv *server, user, res string) *xmppclient.Client {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{Addr: srv.c2s, Domain: "localhost",
		Username: user, Password: password, Resource: res, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("%s logs in: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBrowserIQAnswersOnlyFromAddressee: the browser client settles an IQ
// only with the answer of the entity it asked. Mallory, who knows (or
// guesses) the id of alice's pending request to bob, cannot answer it in
// bob's place. The login form also says what "remember me" keeps.
func TestBrowserIQAnswersOnlyFromAddressee(t *testing.T) {
	requireChromium(t)
	srv := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	alice := newPerson(t, ctx, "alice")
	alice.signUp(srv.url)
	register(t, srv.url, "bob")
	register(t, srv.url, "mallory")
	bob := xmppLogin(t, srv, "bob", "desk")
	mallory := xmppLogin(t, srv, "mallory", "x")

	aliceJID := eval[string](alice, `window.poosms.conn.jid`)
	id := eval[string](alice, `(async () => {
		const m = await import('/client/xmpp.js');
		window.iqOutcome = 'pending';
		window.poosms.conn.iq('get', 'bob@localhost/desk', m.x('query', { xmlns: 'urn:example:slow' }))
			.then((r) => { window.iqOutcome = 'result from ' + r.getAttribute('from'); },
				(e) => { window.iqOutcome = 'error ' + e.condition; });
		return [...window.poosms.conn.iqs.keys()].at(-1);
	})()`)
	req, err := bob.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if err != nil {
		t.Fatalf("bob never got alice's request %s: %v", id, err)
	}

	// Mallory answers in bob's place, with a result and an error, then
	// pings alice: her answer to the ping shows she has read both.
	for _, typ := range []string{"result", "error"} {
		spoof := stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).SetAttr("id", id).SetAttr("to", aliceJID)
		if typ == "error" {
			spoof.Append(stanza.New(stanza.NSClient, "error").SetAttr("type", "cancel").
				Append(stanza.New("urn:ietf:params:xml:ns:xmpp-stanzas", "item-not-found")))
		}
		if err := mallory.Send(spoof); err != nil {
			t.Fatal(err)
		}
	}
	ping := stanza.NewIQ(stanza.GetIQ).SetAttr("id", "probe").SetAttr("to", aliceJID).
		Append(stanza.New("urn:xmpp:ping", "ping"))
	if err := mallory.Send(ping); err != nil {
		t.Fatal(err)
	}
	if r, err := mallory.Expect(10*time.Second, func(e *stanza.Element) bool { return e.ID() == "probe" }); err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("alice's answer to mallory's ping: %v %v", r, err)
	}
	if got := eval[string](alice, `window.iqOutcome`); got != "pending" {
		t.Fatalf("after mallory's forged answers alice's request is %q, want still pending", got)
	}

	// Bob's own answer settles it.
	if err := bob.Send(stanza.Result(req)); err != nil {
		t.Fatal(err)
	}
	alice.waitFor("bob's answer", `window.iqOutcome === 'result from bob@localhost/desk'`, 10*time.Second)

	// The login form says what "remember me" keeps, and where.
	alice.run(chromedp.Click(chromedp.CSS("#logout")))
	alice.waitFor("logged out", `!document.getElementById('login-view').hidden`, 10*time.Second)
	text := eval[string](alice, `document.getElementById('login-remember-help')?.textContent || ''`)
	for _, want := range []string{"not the password", "this browser", "until you log out", "can log in as you"} {
		if !strings.Contains(text, want) {
			t.Errorf("the remember-me help %q does not say %q", text, want)
		}
	}
}
