package directory

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// fakeSession records what the service sends it.
type fakeSession = testfake.Session

type harness struct {
	t   *testing.T
	svc *Service
	db  *store.DB
}

var t0 = time.Date(2026, 11, 26, 2, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, users ...string) *harness {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range users {
		if err := db.CreateAccount(t.Context(), u, store.Credentials{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := New(Config{Domain: "directory.localhost", ServerDomain: "localhost", MaxResults: 3,
		Now: func() time.Time { return t0 }, Logger: slog.New(slog.DiscardHandler)}, db)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, svc: svc, db: db}
}

func (h *harness) session(full string) *fakeSession {
	return testfake.NewSession(full)
}

// iq sends raw (an <iq/> without from) as sess and returns the one reply.
func (h *harness) iq(sess *fakeSession, raw string) *stanza.Element {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	h.svc.HandleStanza(context.Background(), sess, el)
	got := sess.Take()
	if len(got) != 1 {
		h.t.Fatalf("%s: got %d replies, want 1", raw, len(got))
	}
	if got[0].ID() != el.ID() || got[0].To() != sess.JID().String() || got[0].From() != el.To() {
		h.t.Fatalf("reply %s does not answer %s", got[0], raw)
	}
	return got[0]
}

// ok sends raw and fails unless the reply is a result.
func (h *harness) ok(sess *fakeSession, raw string) *stanza.Element {
	h.t.Helper()
	r := h.iq(sess, raw)
	if r.IQType() != stanza.ResultIQ {
		h.t.Fatalf("%s: reply %s, want a result", raw, r)
	}
	return r
}

// condition returns the error condition of a reply, or "".
func condition(r *stanza.Element) string {
	if !r.IsError() {
		return ""
	}
	for _, c := range r.Child("", "error").Elements() {
		if c.Space == stanza.NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return "?"
}

// optIn lists sess's user with the given form fields (values split on |).
func (h *harness) optIn(sess *fakeSession, fields map[string]string) {
	h.t.Helper()
	h.ok(sess, listingIQ(fields))
}

func listingIQ(fields map[string]string) string {
	var b strings.Builder
	b.WriteString(`<iq type='set' id='reg' to='directory.localhost'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>`)
	b.WriteString(`<field var='FORM_TYPE'><value>jabber:iq:register</value></field>`)
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b.WriteString(`<field var='` + k + `'>`)
		for _, v := range strings.Split(fields[k], "|") {
			b.WriteString(`<value>` + stanza.Escape(v) + `</value>`)
		}
		b.WriteString(`</field>`)
	}
	b.WriteString(`</x></query></iq>`)
	return b.String()
}

// find searches with the data form and returns the JIDs found.
func (h *harness) find(sess *fakeSession, fields map[string]string) []string {
	h.t.Helper()
	var b strings.Builder
	b.WriteString(`<iq type='set' id='s' to='directory.localhost'><query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'>`)
	b.WriteString(`<field var='FORM_TYPE' type='hidden'><value>jabber:iq:search</value></field>`)
	for k, v := range fields {
		b.WriteString(`<field var='` + k + `'><value>` + stanza.Escape(v) + `</value></field>`)
	}
	b.WriteString(`</x></query></iq>`)
	r := h.ok(sess, b.String())
	x := r.Child(NSSearch, "query").Child(NSData, "x")
	if x == nil || x.Attr("type") != "result" {
		h.t.Fatalf("search reply %s has no result form", r)
	}
	var out []string
	for _, it := range x.Elements() {
		if it.Local != "item" {
			continue
		}
		out = append(out, itemValues(it)[fieldJID]...)
	}
	return out
}

func itemValues(it *stanza.Element) map[string][]string { return formValues(it) }

func TestNobodyListedWithoutOptingIn(t *testing.T) {
	h := newHarness(t, "alice", "bob", "carol")
	alice := h.session("alice@localhost/pc")
	if got := h.find(alice, nil); len(got) != 0 {
		t.Fatalf("empty directory lists %v", got)
	}
	for _, name := range []string{"bob", "carol", "alice"} {
		if got := h.find(alice, map[string]string{"nick": name}); len(got) != 0 {
			t.Errorf("search for %q before anyone opted in = %v", name, got)
		}
	}
	// Legacy search too.
	r := h.ok(alice, `<iq type='set' id='l' to='directory.localhost'><query xmlns='jabber:iq:search'><nick>bob</nick></query></iq>`)
	if items := r.Child(NSSearch, "query").Elements(); len(items) != 0 {
		t.Errorf("legacy search found %v", r)
	}

	bob := h.session("bob@localhost/phone")
	h.optIn(bob, map[string]string{"nick": "Bobby"})
	if got := h.find(alice, nil); !slices.Equal(got, []string{"bob@localhost"}) {
		t.Errorf("after bob opted in, everyone = %v, want only bob", got)
	}
}

func TestSearchByEachField(t *testing.T) {
	h := newHarness(t, "alice", "bob", "carol", "dave")
	h.optIn(h.session("alice@localhost/a"), map[string]string{
		"nick": "Alice W", "country": "de", "languages": "de-at, en", "interests": "Jazz|rock climbing"})
	h.optIn(h.session("bob@localhost/b"), map[string]string{
		"nick": "Bob", "country": "FRA", "languages": "fr", "interests": "jazz, chess"})
	h.optIn(h.session("carol@localhost/c"), map[string]string{
		"nick": "Carol", "country": "BR", "languages": "pt-BR\nen", "interests": "Go"})
	dave := h.session("dave@localhost/d") // searches, never listed

	for _, tc := range []struct {
		q    map[string]string
		want []string
	}{
		{map[string]string{"nick": "ali"}, []string{"alice@localhost"}},
		{map[string]string{"nick": "CAROL"}, []string{"carol@localhost"}},
		{map[string]string{"country": "DE"}, []string{"alice@localhost"}},
		{map[string]string{"country": "fr"}, []string{"bob@localhost"}},
		{map[string]string{"language": "en"}, []string{"alice@localhost", "carol@localhost"}},
		{map[string]string{"language": "de"}, []string{"alice@localhost"}},
		{map[string]string{"language": "pt"}, []string{"carol@localhost"}},
		{map[string]string{"interest": "jazz"}, []string{"alice@localhost", "bob@localhost"}},
		{map[string]string{"interest": "climb"}, []string{"alice@localhost"}},
		{map[string]string{"interest": "jazz", "country": "FR"}, []string{"bob@localhost"}},
		{map[string]string{"interest": "chess", "language": "en"}, nil},
		{map[string]string{"nick": "dave"}, nil},
	} {
		if got := h.find(dave, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("search %v = %v, want %v", tc.q, got, tc.want)
		}
	}

	// The result form carries the listing as entered (normalised).
	r := h.ok(dave, `<iq type='set' id='s' to='directory.localhost'><query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'><field var='nick'><value>alice</value></field></x></query></iq>`)
	x := r.Child(NSSearch, "query").Child(NSData, "x")
	var item *stanza.Element
	for _, c := range x.Elements() {
		if c.Local == "item" {
			item = c
		}
	}
	if item == nil {
		t.Fatalf("no item in %s", r)
	}
	v := itemValues(item)
	if first(v["nick"]) != "Alice W" || first(v["country"]) != "DE" ||
		!slices.Equal(v["languages"], []string{"de-AT", "en"}) ||
		!slices.Equal(v["interests"], []string{"Jazz", "rock climbing"}) {
		t.Errorf("result item = %v", v)
	}
	if x.Child(NSData, "reported") == nil {
		t.Errorf("result form without <reported/>: %s", x)
	}

	// Legacy search by nickname answers legacy items.
	r = h.ok(dave, `<iq type='set' id='l' to='directory.localhost'><query xmlns='jabber:iq:search'><nick>bo</nick></query></iq>`)
	items := r.Child(NSSearch, "query").Elements()
	if len(items) != 1 || items[0].Attr("jid") != "bob@localhost" || items[0].ChildText(NSSearch, "nick") != "Bob" {
		t.Errorf("legacy search = %s", r)
	}
	// Legacy fields the directory does not keep find nobody, not everybody.
	r = h.ok(dave, `<iq type='set' id='l' to='directory.localhost'><query xmlns='jabber:iq:search'><email>a@b</email></query></iq>`)
	if len(r.Child(NSSearch, "query").Elements()) != 0 {
		t.Errorf("search by email = %s", r)
	}
}

func TestSearchResultsAreCapped(t *testing.T) {
	users := []string{"a", "b", "c", "d", "e"}
	h := newHarness(t, users...)
	for _, u := range users {
		h.optIn(h.session(u+"@localhost/x"), map[string]string{"nick": "same " + u})
	}
	if got := h.find(h.session("a@localhost/x"), map[string]string{"nick": "same"}); len(got) != 3 {
		t.Errorf("search found %d listings, want MaxResults=3: %v", len(got), got)
	}
}

func TestOptOutRemoves(t *testing.T) {
	h := newHarness(t, "alice", "bob")
	alice, bob := h.session("alice@localhost/a"), h.session("bob@localhost/b")
	h.optIn(alice, map[string]string{"nick": "Alice", "interests": "go"})
	if got := h.find(bob, map[string]string{"interest": "go"}); len(got) != 1 {
		t.Fatalf("before opting out: %v", got)
	}
	h.ok(alice, `<iq type='set' id='rm' to='directory.localhost'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
	for _, q := range []map[string]string{nil, {"interest": "go"}, {"nick": "Alice"}} {
		if got := h.find(bob, q); len(got) != 0 {
			t.Errorf("search %v after opting out = %v", q, got)
		}
	}
	r := h.ok(alice, `<iq type='get' id='g' to='directory.localhost'><query xmlns='jabber:iq:register'/></iq>`)
	if r.Child(NSRegister, "query").Child(NSRegister, "registered") != nil {
		t.Errorf("registration form after opting out still says registered: %s", r)
	}
	// A second removal is still a success.
	h.ok(alice, `<iq type='set' id='rm' to='directory.localhost'><query xmlns='jabber:iq:register'><remove/></query></iq>`)
}

func TestListingFormShowsAndEditsListing(t *testing.T) {
	h := newHarness(t, "alice")
	alice := h.session("alice@localhost/a")
	r := h.ok(alice, `<iq type='get' id='g' to='directory.localhost'><query xmlns='jabber:iq:register'/></iq>`)
	q := r.Child(NSRegister, "query")
	if q.Child(NSRegister, "registered") != nil || q.Child(NSData, "x") == nil {
		t.Fatalf("form before listing = %s", r)
	}
	h.optIn(alice, map[string]string{"nick": "  Alice  in   Chains ", "country": "GB", "languages": "en-GB|fr", "interests": "music"})
	r = h.ok(alice, `<iq type='get' id='g' to='directory.localhost'><query xmlns='jabber:iq:register'/></iq>`)
	q = r.Child(NSRegister, "query")
	if q.Child(NSRegister, "registered") == nil {
		t.Errorf("form after listing lacks <registered/>: %s", r)
	}
	v := formValues(q.Child(NSData, "x"))
	if first(v["nick"]) != "Alice in Chains" || first(v["country"]) != "GB" ||
		!slices.Equal(v["languages"], []string{"en-GB", "fr"}) || !slices.Equal(v["interests"], []string{"music"}) {
		t.Errorf("form values = %v", v)
	}
	if q.ChildText(NSRegister, "nick") != "Alice in Chains" {
		t.Errorf("legacy nick = %q", q.ChildText(NSRegister, "nick"))
	}
	// A legacy nickname change keeps the rest.
	h.ok(alice, `<iq type='set' id='n' to='directory.localhost'><query xmlns='jabber:iq:register'><nick>Al</nick></query></iq>`)
	e, err := h.db.DirectoryEntry(t.Context(), "alice")
	if err != nil || e.Nick != "Al" || e.Country != "GB" || len(e.Interests) != 1 || !e.Updated.Equal(t0) {
		t.Errorf("after legacy nick change = %+v, %v", e, err)
	}
	// Cancelling changes nothing.
	h.ok(alice, `<iq type='set' id='c' to='directory.localhost'><query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='cancel'/></query></iq>`)
	if e, _ := h.db.DirectoryEntry(t.Context(), "alice"); e.Nick != "Al" {
		t.Errorf("cancel changed the listing: %+v", e)
	}
}

func TestInvalidListingsRefused(t *testing.T) {
	h := newHarness(t, "alice")
	alice := h.session("alice@localhost/a")
	for _, tc := range []struct {
		fields map[string]string
		want   string
	}{
		{map[string]string{"nick": ""}, "not-acceptable"},
		{map[string]string{"nick": "   "}, "not-acceptable"},
		{map[string]string{"nick": strings.Repeat("x", MaxNickRunes+1)}, "not-acceptable"},
		{map[string]string{"nick": "a", "country": "Atlantis"}, "not-acceptable"},
		{map[string]string{"nick": "a", "country": "EU"}, "not-acceptable"},
		{map[string]string{"nick": "a", "languages": "klingonese"}, "not-acceptable"},
		{map[string]string{"nick": "a", "interests": strings.Repeat("i,", MaxInterests+1)}, "not-acceptable"},
		{map[string]string{"nick": "a", "interests": strings.Repeat("y", MaxInterestRunes+1)}, "not-acceptable"},
	} {
		r := h.iq(alice, listingIQ(tc.fields))
		if got := condition(r); got != tc.want {
			t.Errorf("listing %v: condition %q, want %q", tc.fields, got, tc.want)
		}
	}
	if _, err := h.db.DirectoryEntry(t.Context(), "alice"); err == nil {
		t.Error("a refused listing was stored")
	}
	r := h.iq(alice, `<iq type='set' id='s' to='directory.localhost'><query xmlns='jabber:iq:search'><x xmlns='jabber:x:data' type='submit'><field var='country'><value>Narnia</value></field></x></query></iq>`)
	if condition(r) != "not-acceptable" {
		t.Errorf("search by an unknown country = %s", r)
	}
}

func TestOnlyLocalUsers(t *testing.T) {
	h := newHarness(t, "alice")
	h.optIn(h.session("alice@localhost/a"), map[string]string{"nick": "Alice"})
	for _, from := range []string{"mallory@evil.example/x", "localhost", "alice@directory.localhost/x"} {
		s := h.session(from)
		for _, raw := range []string{
			`<iq type='get' id='1' to='directory.localhost'><query xmlns='jabber:iq:search'/></iq>`,
			`<iq type='set' id='2' to='directory.localhost'><query xmlns='jabber:iq:search'><nick>a</nick></query></iq>`,
			`<iq type='set' id='3' to='directory.localhost'><query xmlns='jabber:iq:register'><remove/></query></iq>`,
		} {
			if r := h.iq(s, raw); condition(r) != "forbidden" {
				t.Errorf("%s from %s: %s, want forbidden", raw, from, r)
			}
		}
	}
	if _, err := h.db.DirectoryEntry(t.Context(), "alice"); err != nil {
		t.Errorf("a remote removal took effect: %v", err)
	}
}

func TestDiscoAndOtherStanzas(t *testing.T) {
	h := newHarness(t, "alice")
	alice := h.session("alice@localhost/a")
	r := h.ok(alice, `<iq type='get' id='d' to='directory.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	q := r.Child(NSDiscoInfo, "query")
	id := q.Child(NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "directory" || id.Attr("type") != "user" {
		t.Errorf("identity = %v", id)
	}
	var features []string
	for _, f := range q.Elements() {
		if f.Local == "feature" {
			features = append(features, f.Attr("var"))
		}
	}
	slices.Sort(features)
	want := []string{NSDiscoInfo, NSDiscoItems, NSRegister, NSSearch, NSPing}
	slices.Sort(want)
	if !slices.Equal(features, want) {
		t.Errorf("features = %v, want %v", features, want)
	}
	r = h.ok(alice, `<iq type='get' id='s' to='directory.localhost'><query xmlns='jabber:iq:search'/></iq>`)
	x := r.Child(NSSearch, "query").Child(NSData, "x")
	if x == nil || x.Attr("type") != "form" {
		t.Fatalf("search form = %s", r)
	}
	var vars []string
	for _, f := range x.Elements() {
		if f.Local == "field" {
			vars = append(vars, f.Attr("var"))
		}
	}
	if !slices.Equal(vars, []string{"FORM_TYPE", "nick", "country", "language", "interest"}) {
		t.Errorf("search form fields = %v", vars)
	}
	if r := h.iq(alice, `<iq type='get' id='v' to='directory.localhost'><query xmlns='jabber:iq:version'/></iq>`); condition(r) != "service-unavailable" {
		t.Errorf("unknown iq = %s", r)
	}
	if r := h.iq(alice, `<iq type='get' id='u' to='someone@directory.localhost'><query xmlns='jabber:iq:search'/></iq>`); condition(r) != "service-unavailable" {
		t.Errorf("iq to a JID at the directory = %s", r)
	}
	if r := h.iq(alice, `<message id='m' to='directory.localhost'><body>hi</body></message>`); condition(r) != "service-unavailable" {
		t.Errorf("message = %s", r)
	}
	// Presence and IQ results get no answer.
	for _, raw := range []string{`<presence to='directory.localhost'/>`, `<iq type='result' id='x' to='directory.localhost'/>`} {
		el, _ := stanza.Parse([]byte(raw))
		h.svc.HandleStanza(context.Background(), alice, el)
		if got := alice.Received(); len(got) != 0 {
			t.Errorf("%s answered with %v", raw, got[0])
		}
	}
}

func TestNewValidates(t *testing.T) {
	db, err := store.Open(t.Context(), "sqlite", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, cfg := range []Config{
		{Domain: "", ServerDomain: "localhost"},
		{Domain: "directory.localhost", ServerDomain: ""},
		{Domain: "user@directory.localhost", ServerDomain: "localhost"},
		{Domain: "directory.localhost", ServerDomain: "localhost", MaxResults: -1},
	} {
		if _, err := New(cfg, db); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := New(Config{Domain: "directory.localhost", ServerDomain: "localhost"}, nil); err == nil {
		t.Error("New with a nil store succeeded")
	}
}
