package signaling

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

func (a *memAccounts) CreateAccount(_ context.Context, name string, c store.Credentials) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[name]; ok {
		return store.ErrExists
	}
	a.m[name] = c
	return nil
}

func (a *memAccounts) SetCredentials(_ context.Context, name string, c store.Credentials) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[name]; !ok {
		return store.ErrNotFound
	}
	a.m[name] = c
	return nil
}

func (a *memAccounts) UpgradeCredentials(_ context.Context, name string, old, c store.Credentials) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.m[name]; !ok || !bytes.Equal(cur.Salt, old.Salt) || cur.Iterations != old.Iterations {
		return store.ErrNotFound
	}
	a.m[name] = c
	return nil
}

func (a *memAccounts) DeleteAccount(_ context.Context, name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.m[name]; !ok {
		return store.ErrNotFound
	}
	delete(a.m, name)
	return nil
}

func iq(typ, id string, payload *stanza.Element) *stanza.Element {
	return stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).SetAttr("id", id).Append(payload)
}

func regQuery(user, pass string) *stanza.Element {
	q := stanza.New(nsRegister, "query")
	if user != "" {
		q.Append(stanza.New(nsRegister, "username").SetText(user))
	}
	return q.Append(stanza.New(nsRegister, "password").SetText(pass))
}

func TestInBandRegistration(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.InBandRegistration = true })
	h.srv.cfg.Registrar = h.srv.accounts.(*memAccounts)
	opts := func(user, pass string) xmppclient.Options {
		return xmppclient.Options{Addr: h.addr, Domain: "localhost", Username: user, Password: pass, Timeout: 5 * time.Second}
	}
	c, err := xmppclient.Connect(context.Background(), opts("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Features.Child(nsRegisterFeature, "register") == nil {
		t.Fatalf("no registration feature in %s", c.Features)
	}
	for _, tc := range []struct {
		user, pass, cond string
	}{
		{"Dave", "dave-password", ""},
		{"dave", "another-password", "conflict"},
		{"eve@evil", "eve-password", "not-acceptable"},
		{"eve", "short", "not-acceptable"},
	} {
		c.Send(iq("set", "r-"+tc.user, regQuery(tc.user, tc.pass)))
		r, err := c.Expect(5*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" })
		if err != nil {
			t.Fatal(err)
		}
		if tc.cond == "" && r.IQType() != stanza.ResultIQ || tc.cond != "" && r.Child("", "error").Child("", tc.cond) == nil {
			t.Fatalf("register %s: %s, want %q", tc.user, r, tc.cond)
		}
	}
	dave, err := xmppclient.Dial(context.Background(), opts("dave", "dave-password"))
	if err != nil {
		t.Fatalf("the new account cannot log in: %v", err)
	}
	// Change the password in band, then remove the account.
	dave.Send(iq("set", "pw", regQuery("dave", "new-password-1")))
	if r, err := dave.Expect(5*time.Second, func(e *stanza.Element) bool { return e.ID() == "pw" }); err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("password change: %v %v", r, err)
	}
	dave.Close()
	if _, err := xmppclient.Dial(context.Background(), opts("dave", "dave-password")); err == nil {
		t.Fatal("the old password still works")
	}
	dave, err = xmppclient.Dial(context.Background(), opts("dave", "new-password-1"))
	if err != nil {
		t.Fatalf("new password: %v", err)
	}
	dave.Send(iq("set", "rm", stanza.New(nsRegister, "query").Append(stanza.New(nsRegister, "remove"))))
	out := readUntilClosed(t, dave.Conn())
	if !strings.Contains(out, "id='rm'") || !strings.Contains(out, "not-authorized") {
		t.Fatalf("removal: server wrote %q", out)
	}
	var ae *xmppclient.AuthError
	if _, err := xmppclient.Dial(context.Background(), opts("dave", "new-password-1")); !errors.As(err, &ae) {
		t.Fatalf("a removed account logs in: %v", err)
	}
}

func TestInBandRegistrationOffByDefault(t *testing.T) {
	h := newHarness(t, nil)
	c, err := xmppclient.Connect(context.Background(), xmppclient.Options{Addr: h.addr, Domain: "localhost", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Features.Child(nsRegisterFeature, "register") != nil {
		t.Fatal("registration offered although it is off")
	}
	c.Send(iq("set", "r", regQuery("mallory", "mallory-password")))
	r, err := c.Recv()
	if err != nil || r.Child("", "error").Child("", "not-allowed") == nil {
		t.Fatalf("got %v %v, want not-allowed", r, err)
	}
}
