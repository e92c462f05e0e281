package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// TestNewcomer follows the README: alice registers on the web form, bob is
// made with "poosmsd user add", and the two chat over TLS with SCRAM; a
// message sent while bob is away waits for him with its delay stamp.
func TestNewcomer(t *testing.T) {
	databases(t, func(t *testing.T, db string) {
		cfg := testConfig(t, db)
		n := startTestNode(t, cfg)

		waitHealthy(t, n.httpURL())
		register(t, n.httpURL(), "Alice", "correct horse battery")
		addUser(t, cfg, "bob", "bob-password")

		alice := dialUser(t, n, "alice", "correct horse battery", "laptop")
		bob := dialUser(t, n, "bob", "bob-password", "phone")
		send(t, alice, "bob@localhost", "hi bob, I signed up on the web")
		expectBody(t, bob, "alice@localhost/laptop", "hi bob, I signed up on the web")
		send(t, bob, "alice@localhost", "welcome!")
		expectBody(t, alice, "bob@localhost/phone", "welcome!")

		// bob leaves; alice writes; bob comes back.
		bob.Close()
		waitFor(t, func() bool { return n.c2s.Sessions() == 1 })
		send(t, alice, "bob@localhost", "see you later")
		ping(t, alice)
		bob = dialUser(t, n, "bob", "bob-password", "phone")
		m := expectBody(t, bob, "alice@localhost/laptop", "see you later")
		d := m.Child(stanza.NSDelay, "delay")
		if d == nil {
			t.Fatalf("offline message without <delay/>: %s", m)
		}
		stamp, err := time.Parse(time.RFC3339, d.Attr("stamp"))
		if err != nil || time.Since(stamp) > time.Minute || d.Attr("from") != "localhost" {
			t.Fatalf("delay %s: want a recent UTC stamp from localhost (%v)", d, err)
		}
	})
}

func waitHealthy(t *testing.T, base string) {
	t.Helper()
	waitFor(t, func() bool {
		r, err := http.Get(base + "/healthz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == http.StatusOK
	})
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// register fills in the web form like a browser would.
func register(t *testing.T, base, user, password string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	r, err := c.Get(base + "/register")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(r.Body)
	r.Body.Close()
	m := csrfField.FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF field on the form:\n%s", page)
	}
	r, err = c.PostForm(base+"/register", url.Values{
		"csrf": {string(m[1])}, "username": {user}, "password": {password}, "confirm": {password},
	})
	if err != nil {
		t.Fatal(err)
	}
	page, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusOK || !bytes.Contains(page, []byte(strings.ToLower(user)+"@localhost")) {
		t.Fatalf("register %s: %d\n%s", user, r.StatusCode, page)
	}
}

func dialUser(t *testing.T, n *testNode, user, password, res string) *xmppclient.Client {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: n.c2sAddr(), Domain: n.cfg.Domain, Username: user, Password: password, Resource: res, Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatalf("%s logs in: %v", user, err)
	}
	t.Cleanup(func() { c.Close() })
	// Initial presence: the session becomes available for bare-JID messages.
	if err := c.Send(stanza.New(stanza.NSClient, "presence")); err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *xmppclient.Client, to, body string) {
	t.Helper()
	m := stanza.New(stanza.NSClient, "message").SetAttr("to", to).SetAttr("type", "chat").
		Append(stanza.New(stanza.NSClient, "body").SetText(body))
	if err := c.Send(m); err != nil {
		t.Fatal(err)
	}
}

func expectBody(t *testing.T, c *xmppclient.Client, from, body string) *stanza.Element {
	t.Helper()
	m, err := c.Expect(10*time.Second, func(e *stanza.Element) bool {
		return e.Local == "message" && e.ChildText("", "body") == body
	})
	if err != nil {
		t.Fatalf("%s waiting for %q: %v", c.JID, body, err)
	}
	if m.From() != from {
		t.Fatalf("message from %q, want %q", m.From(), from)
	}
	return m
}

// ping makes an IQ round trip: everything c sent before has been handled.
func ping(t *testing.T, c *xmppclient.Client) {
	t.Helper()
	iq := stanza.NewIQ(stanza.GetIQ).SetAttr("id", "ping1").SetAttr("to", "localhost").
		Append(stanza.New("urn:xmpp:ping", "ping"))
	if err := c.Send(iq); err != nil {
		t.Fatal(err)
	}
	r, err := c.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "ping1" })
	if err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("ping: %v %v", r, err)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
