package muc

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// fakeSession records what the service sends it.
type fakeSession struct{ *testfake.Session }

func newFakeSession(full string) *fakeSession { return &fakeSession{testfake.NewSession(full)} }

// takeEls returns what f received since the last take.
func (f *fakeSession) takeEls() []*stanza.Element { return f.Take() }

func (f *fakeSession) take() []string {
	var out []string
	for _, el := range f.takeEls() {
		out = append(out, summary(el))
	}
	return out
}

// summary renders a stanza in one line with the parts the tests check.
func summary(el *stanza.Element) string {
	var b strings.Builder
	b.WriteString(el.Local)
	if t := el.Type(); t != "" {
		b.WriteString(" type=" + t)
	}
	if f := el.From(); f != "" {
		b.WriteString(" from=" + strings.ReplaceAll(f, "@conference.localhost", ""))
	}
	if x := el.Child(NSUser, "x"); x != nil {
		for _, c := range x.Elements() {
			switch c.Local {
			case "item":
				b.WriteString(" [" + c.Attr("affiliation") + "/" + c.Attr("role"))
				if j := c.Attr("jid"); j != "" {
					b.WriteString(" jid=" + j)
				}
				if n := c.Attr("nick"); n != "" {
					b.WriteString(" nick=" + n)
				}
				if a := c.Child(NSUser, "actor"); a != nil {
					b.WriteString(" actor=" + a.Attr("nick"))
				}
				if r := c.ChildText(NSUser, "reason"); r != "" {
					b.WriteString(" reason=" + r)
				}
				b.WriteString("]")
			case "status":
				b.WriteString(" " + c.Attr("code"))
			case "destroy":
				b.WriteString(" destroy=" + c.Attr("jid") + ":" + c.ChildText(NSUser, "reason"))
			case "invite":
				b.WriteString(" invite-from=" + c.Attr("from") + ":" + c.ChildText(NSUser, "reason"))
			case "decline":
				b.WriteString(" decline-from=" + c.Attr("from"))
			case "password":
				b.WriteString(" password=" + c.Text())
			}
		}
	}
	if s := el.Child("", "status"); s != nil && el.Local == "presence" {
		b.WriteString(" status=" + s.Text())
	}
	if s := el.Child("", "subject"); s != nil {
		b.WriteString(" subject=" + s.Text())
	}
	if body := el.Child("", "body"); body != nil {
		b.WriteString(" body=" + body.Text())
	}
	if d := el.Child(stanza.NSDelay, "delay"); d != nil {
		b.WriteString(" delayed")
	}
	if e := el.Child("", "error"); e != nil && el.IsError() {
		for _, c := range e.Elements() {
			if c.Space == stanza.NSStanzas && c.Local != "text" {
				b.WriteString(" error=" + c.Local)
			}
		}
	}
	return b.String()
}

// harness is a room service on conference.localhost over SQLite.
type harness struct {
	t         *testing.T
	svc       *Service
	db        *store.DB
	now       time.Time
	mu        sync.Mutex
	delivered []*stanza.Element
	cfg       Config
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T, tweak func(*Config)) *harness {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite:"+t.TempDir()+"/muc.db", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newHarnessOn(t, db, tweak)
}

func newHarnessOn(t *testing.T, db *store.DB, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{t: t, db: db, now: t0}
	h.cfg = Config{
		Domain:       "conference.localhost",
		ServerDomain: "localhost",
		Now:          h.clock,
		Deliver: func(_ context.Context, el *stanza.Element) {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.delivered = append(h.delivered, el)
		},
	}
	if tweak != nil {
		tweak(&h.cfg)
	}
	h.restart()
	return h
}

// restart builds a new service on the same store, as after a restart.
func (h *harness) restart() {
	h.t.Helper()
	svc, err := New(h.cfg, h.db)
	if err != nil {
		h.t.Fatal(err)
	}
	h.svc = svc
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

func (h *harness) takeDelivered() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, el := range h.delivered {
		c, _ := stanza.Parse([]byte(el.String()))
		out = append(out, summary(c)+" to="+el.To())
	}
	h.delivered = nil
	return out
}

func (h *harness) session(full string) *fakeSession {
	return newFakeSession(full)
}

// send has sess send raw XML.
func (h *harness) send(sess *fakeSession, raw string) {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	el.SetAttr("from", sess.JID().String())
	h.svc.HandleStanza(context.Background(), sess, el)
}

// join has sess enter room/nick with optional extra elements in <x/>.
func (h *harness) join(sess *fakeSession, roomNick string, x string) {
	h.t.Helper()
	room, nick, _ := strings.Cut(roomNick, "/")
	h.send(sess, `<presence to='`+room+`@conference.localhost/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'>`+x+`</x></presence>`)
}

// room creates room as an instant room owned by owner's session, who
// stays in it as nick; then it applies the config fields given.
func (h *harness) room(owner *fakeSession, room, nick string, fields map[string]string) {
	h.t.Helper()
	h.send(owner, `<presence to='`+room+`@conference.localhost/`+nick+`'><x xmlns='http://jabber.org/protocol/muc'/></presence>`)
	h.configure(owner, room, fields)
	owner.take()
}

func (h *harness) configure(owner *fakeSession, room string, fields map[string]string) {
	h.t.Helper()
	var b strings.Builder
	for _, k := range sortedKeys(fields) {
		b.WriteString(`<field var='` + k + `'><value>` + fields[k] + `</value></field>`)
	}
	h.send(owner, `<iq type='set' id='cfg' to='`+room+`@conference.localhost'><query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>`+b.String()+`</x></query></iq>`)
	got := owner.take()
	ok := false
	for _, g := range got {
		if strings.HasPrefix(g, "iq type=result") {
			ok = true
		}
	}
	if !ok {
		h.t.Fatalf("configure %s: %v", room, got)
	}
}

// iq sends an IQ and returns the reply's summary and element.
func (h *harness) iq(sess *fakeSession, raw string) (string, *stanza.Element) {
	h.t.Helper()
	h.send(sess, raw)
	for _, el := range sess.takeEls() {
		if el.Local == "iq" {
			return summary(el), el
		}
	}
	h.t.Fatalf("no iq reply to %s", raw)
	return "", nil
}

// expect checks that sess received exactly want, in order.
func expect(t *testing.T, name string, sess *fakeSession, want ...string) {
	t.Helper()
	got := sess.take()
	if !slices.Equal(got, want) {
		t.Errorf("%s received:\n  %s\nwant:\n  %s", name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// expectHas checks that sess received every line of want, among others.
func expectHas(t *testing.T, name string, sess *fakeSession, want ...string) {
	t.Helper()
	got := sess.take()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("%s did not receive %q; got:\n  %s", name, w, strings.Join(got, "\n  "))
		}
	}
}

func storeQuery(room string) store.RoomQuery { return store.RoomQuery{Room: room} }
