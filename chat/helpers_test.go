package chat

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// The in-memory store of chat's tests meets chat's needs.
var _ Store = (*testfake.Store)(nil)

// fakeSession records what the service sends it.
type fakeSession struct{ *testfake.Session }

func newFakeSession(full string) *fakeSession { return &fakeSession{testfake.NewSession(full)} }

// take returns the summaries of what f received since the last take.
func (f *fakeSession) take() []string {
	var out []string
	for _, el := range f.Take() {
		out = append(out, summary(el))
	}
	return out
}

// summary renders a stanza in one line: name, type, from, to and the parts
// tests look at (body, delay, roster items, error condition).
func summary(el *stanza.Element) string {
	var b strings.Builder
	b.WriteString(el.Local)
	for _, a := range []string{"type", "from", "to"} {
		if v := el.Attr(a); v != "" {
			b.WriteString(" " + a + "=" + v)
		}
	}
	if p := el.ChildText("", "priority"); p != "" {
		b.WriteString(" prio=" + p)
	}
	if s := el.ChildText("", "status"); s != "" {
		b.WriteString(" status=" + s)
	}
	if body := el.Child("", "body"); body != nil {
		b.WriteString(" body=" + body.Text())
	}
	if d := el.Child(stanza.NSDelay, "delay"); d != nil {
		b.WriteString(" delay=" + d.Attr("from") + "@" + d.Attr("stamp"))
	}
	if q := el.Child(NSRoster, "query"); q != nil {
		for _, it := range q.Elements() {
			b.WriteString(" item=" + it.Attr("jid") + ":" + it.Attr("subscription"))
			if a := it.Attr("ask"); a != "" {
				b.WriteString(":" + a)
			}
			if n := it.Attr("name"); n != "" {
				b.WriteString(":name=" + n)
			}
			for _, g := range it.Elements() {
				b.WriteString(":group=" + g.Text())
			}
		}
	}
	if e := el.Child("", "error"); e != nil && el.Type() == "error" {
		for _, c := range e.Elements() {
			if c.Space == stanza.NSStanzas && c.Local != "text" {
				b.WriteString(" error=" + c.Local)
			}
		}
	}
	return b.String()
}

// harness is a chat service on domain localhost with an in-memory store (testfake.Store).
type harness struct {
	t   *testing.T
	svc *Service
	st  *testfake.Store // nil for a harness on a real database
	db  Store           // what the service uses
	now time.Time
}

func newHarness(t *testing.T, cfg Config, users ...string) *harness {
	t.Helper()
	h := &harness{t: t, st: testfake.NewStore(users...), now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	h.db = h.st
	cfg.Domain = "localhost"
	cfg.Now = func() time.Time { return h.now }
	svc, err := New(cfg, h.st)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	return h
}

// bind connects and binds a session with this full JID.
func (h *harness) bind(full string) *fakeSession {
	h.t.Helper()
	s := newFakeSession(full)
	h.svc.SessionBound(context.Background(), s)
	return s
}

// send has sess send raw XML; from is stamped as signaling does.
func (h *harness) send(sess *fakeSession, raw string) {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	el.SetAttr("from", sess.JID().String())
	h.svc.HandleStanza(context.Background(), sess, el)
}

// online binds a session, fetches the roster and sends initial presence,
// then forgets what it received.
func (h *harness) online(full string, prio int) *fakeSession {
	h.t.Helper()
	s := h.bind(full)
	h.send(s, `<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
	if prio != 0 {
		h.send(s, `<presence><priority>`+strconv.Itoa(prio)+`</priority></presence>`)
	} else {
		h.send(s, `<presence/>`)
	}
	s.take()
	return s
}

func (h *harness) close(s *fakeSession) {
	s.SetGone(ErrSessionGone)
	h.svc.SessionClosed(context.Background(), s)
}

// setItem stores a roster item directly.
func (h *harness) setItem(owner, contact, sub string) {
	h.t.Helper()
	_ = h.db.PutRosterItem(context.Background(), owner, store.RosterItem{Contact: contact, Subscription: sub, Listed: true})
}

// befriend makes a and b subscribed both ways.
func (h *harness) befriend(a, b string) {
	h.setItem(a, b+"@localhost", store.SubBoth)
	h.setItem(b, a+"@localhost", store.SubBoth)
}

// expect checks that sess received exactly want, in order.
func expect(t *testing.T, name string, sess *fakeSession, want ...string) {
	t.Helper()
	got := sess.take()
	if !slices.Equal(got, want) {
		t.Errorf("%s received:\n  %s\nwant:\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectSet checks that sess received exactly want, in any order.
func expectSet(t *testing.T, name string, sess *fakeSession, want ...string) {
	t.Helper()
	got := sess.take()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s received:\n  %s\nwant (any order):\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
