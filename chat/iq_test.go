package chat

import (
	"context"
	"slices"
	"testing"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// lastIQ sends raw from sess and returns the single stanza it got back.
func lastIQ(t *testing.T, h *harness, sess *fakeSession, raw string) *stanza.Element {
	t.Helper()
	h.send(sess, raw)
	got := sess.Take()
	if len(got) != 1 {
		t.Fatalf("got %d replies to %s, want 1", len(got), raw)
	}
	return got[0]
}

func TestServerDisco(t *testing.T) {
	h := newHarness(t, Config{}, "alice")
	h.svc.AddFeature("urn:xmpp:mam:2")
	h.svc.AddFeature("urn:xmpp:mam:2") // once only
	h.svc.AddItem("conference.localhost", "Rooms")
	a := h.online("alice@localhost/a", 0)

	r := lastIQ(t, h, a, `<iq type='get' id='i1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if r.Type() != "result" || r.ID() != "i1" || r.From() != "localhost" || r.To() != "alice@localhost/a" {
		t.Fatalf("reply %s", r)
	}
	q := r.Child(NSDiscoInfo, "query")
	id := q.Child(NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "server" || id.Attr("type") != "im" {
		t.Errorf("identity in %s", r)
	}
	var features []string
	for _, f := range q.Elements() {
		if f.Local == "feature" {
			features = append(features, f.Attr("var"))
		}
	}
	want := []string{
		"http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/disco#items",
		"urn:xmpp:ping",
		"jabber:iq:version",
		"msgoffline",
		"urn:xmpp:carbons:2",
		"urn:xmpp:mam:2",
	}
	if !slices.Equal(features, want) {
		t.Errorf("features = %q, want %q", features, want)
	}

	r = lastIQ(t, h, a, `<iq type='get' id='i2' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>`)
	items := r.Child(NSDiscoItems, "query").Elements()
	if len(items) != 1 || items[0].Attr("jid") != "conference.localhost" || items[0].Attr("name") != "Rooms" {
		t.Errorf("items reply %s", r)
	}

	r = lastIQ(t, h, a, `<iq type='get' id='v' to='localhost'><query xmlns='jabber:iq:version'/></iq>`)
	if got := r.Child(NSVersion, "query").ChildText(NSVersion, "name"); got != "poosms" {
		t.Errorf("version name %q in %s", got, r)
	}
}

func TestIQRouting(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob", "carol")
	h.befriend("alice", "bob")
	h.svc.HandleIQ("urn:example:echo", "echo", func(_ context.Context, _ Session, iq *stanza.Element) *stanza.Element {
		return stanza.Result(iq, stanza.New("urn:example:echo", "echo").SetText("back"))
	})
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)
	c := h.online("carol@localhost/c", 0)
	a.take()
	b.take()

	for _, tc := range []struct {
		name, from, stanza string
		want               map[string][]string
	}{
		{"ping the server", "a", `<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`,
			map[string][]string{"a": {"iq type=result from=localhost to=alice@localhost/a"}}},
		{"ping without to", "a", `<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>`,
			map[string][]string{"a": {"iq type=result to=alice@localhost/a"}}},
		{"unknown payload", "a", `<iq type='get' id='u' to='localhost'><query xmlns='urn:example:nothing'/></iq>`,
			map[string][]string{"a": {"iq type=error from=localhost to=alice@localhost/a error=service-unavailable"}}},
		{"registered payload", "a", `<iq type='get' id='e' to='localhost'><echo xmlns='urn:example:echo'/></iq>`,
			map[string][]string{"a": {"iq type=result from=localhost to=alice@localhost/a"}}},
		{"result to the server is swallowed", "a", `<iq type='result' id='push1' to='localhost'/>`, nil},
		{"result without to is swallowed", "a", `<iq type='result' id='push1'/>`, nil},
		{"error to the server is swallowed", "a", `<iq type='error' id='x' to='localhost'><error type='cancel'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`, nil},
		{"to a full JID with a session", "a", `<iq type='get' id='f' to='bob@localhost/b'><query xmlns='urn:example:x'/></iq>`,
			map[string][]string{"b": {"iq type=get from=alice@localhost/a to=bob@localhost/b"}}},
		{"result to a full JID with a session", "b", `<iq type='result' id='f' to='alice@localhost/a'/>`,
			map[string][]string{"a": {"iq type=result from=bob@localhost/b to=alice@localhost/a"}}},
		{"to a full JID without a session", "a", `<iq type='get' id='g' to='bob@localhost/gone'><query xmlns='urn:example:x'/></iq>`,
			map[string][]string{"a": {"iq type=error from=bob@localhost/gone to=alice@localhost/a error=service-unavailable"}}},
		{"result to a full JID without a session", "a", `<iq type='result' id='g' to='bob@localhost/gone'/>`, nil},
		{"disco on a contact who is subscribed", "a", `<iq type='get' id='d' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			map[string][]string{"a": {"iq type=result from=bob@localhost to=alice@localhost/a"}}},
		{"disco on a stranger", "c", `<iq type='get' id='d' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			map[string][]string{"c": {"iq type=error from=bob@localhost to=carol@localhost/c error=service-unavailable"}}},
		{"disco on oneself", "c", `<iq type='get' id='d' to='carol@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			map[string][]string{"c": {"iq type=result from=carol@localhost to=carol@localhost/c"}}},
		{"disco on an unknown user", "c", `<iq type='get' id='d' to='nobody@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`,
			map[string][]string{"c": {"iq type=error from=nobody@localhost to=carol@localhost/c error=service-unavailable"}}},
		{"unknown payload to a user", "c", `<iq type='get' id='d' to='bob@localhost'><query xmlns='urn:example:x'/></iq>`,
			map[string][]string{"c": {"iq type=error from=bob@localhost to=carol@localhost/c error=service-unavailable"}}},
		{"another domain", "a", `<iq type='get' id='r' to='remote.example'><ping xmlns='urn:xmpp:ping'/></iq>`,
			map[string][]string{"a": {"iq type=error from=remote.example to=alice@localhost/a error=remote-server-not-found"}}},
		{"no payload", "a", `<iq type='get' id='n' to='localhost'/>`,
			map[string][]string{"a": {"iq type=error from=localhost to=alice@localhost/a error=bad-request"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sessions := map[string]*fakeSession{"a": a, "b": b, "c": c}
			h.send(sessions[tc.from], tc.stanza)
			for name, s := range sessions {
				expect(t, name, s, tc.want[name]...)
			}
		})
	}
}

func TestAccountDiscoIdentity(t *testing.T) {
	h := newHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	r := lastIQ(t, h, a, `<iq type='get' id='d' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	id := r.Child(NSDiscoInfo, "query").Child(NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "account" || id.Attr("type") != "registered" {
		t.Errorf("account disco %s", r)
	}
}

func TestHandleIQExtension(t *testing.T) {
	h := newHarness(t, Config{}, "alice")
	var seen []string
	h.svc.HandleIQ("urn:example:store", "query", func(_ context.Context, sess Session, iq *stanza.Element) *stanza.Element {
		seen = append(seen, iq.To())
		if iq.Type() == "set" {
			sess.Send(stanza.Result(iq)) // answers by itself
			return nil
		}
		return stanza.Result(iq, stanza.New("urn:example:store", "query").SetText("data"))
	})
	a := h.online("alice@localhost/a", 0)
	r := lastIQ(t, h, a, `<iq type='get' id='1'><query xmlns='urn:example:store'/></iq>`)
	if got := r.ChildText("urn:example:store", "query"); got != "data" || r.Type() != "result" {
		t.Errorf("reply %s", r)
	}
	r = lastIQ(t, h, a, `<iq type='set' id='2' to='alice@localhost'><query xmlns='urn:example:store'/></iq>`)
	if r.Type() != "result" || r.ID() != "2" {
		t.Errorf("reply %s", r)
	}
	lastIQ(t, h, a, `<iq type='get' id='3' to='localhost'><query xmlns='urn:example:store'/></iq>`)
	if want := []string{"", "alice@localhost", "localhost"}; !slices.Equal(seen, want) {
		t.Errorf("handler saw to=%q, want %q", seen, want)
	}
}

func TestBadIQType(t *testing.T) {
	h := newHarness(t, Config{}, "alice")
	a := h.online("alice@localhost/a", 0)
	h.send(a, `<iq type='fetch' id='1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`)
	expect(t, "alice", a, "iq type=error from=localhost to=alice@localhost/a error=bad-request")
}

func TestNewValidatesConfig(t *testing.T) {
	st := testfake.NewStore()
	for _, cfg := range []Config{{}, {Domain: "a@b"}, {Domain: "localhost/x"}, {Domain: "localhost", OfflineLimit: -1}} {
		if _, err := New(cfg, st); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	if _, err := New(Config{Domain: "localhost"}, nil); err == nil {
		t.Error("New with a nil store accepted")
	}
	s, err := New(Config{Domain: "LocalHost"}, st)
	if err != nil || s.domain != "localhost" || s.limit != 1000 {
		t.Errorf("defaults: %v, domain %q, limit %d", err, s.domain, s.limit)
	}
}
