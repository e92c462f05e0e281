package chat

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// memStore is an in-memory Store with the contract of *store.DB.
type memStore struct {
	mu       sync.Mutex
	accounts map[string]bool
	roster   map[string]map[string]store.RosterItem
	offline  map[string][]store.OfflineMessage
	sender   map[int64]string // offline message ID → its sender
	nextID   int64
}

var _ Store = (*memStore)(nil)

func newMemStore(users ...string) *memStore {
	m := &memStore{
		accounts: map[string]bool{},
		roster:   map[string]map[string]store.RosterItem{},
		offline:  map[string][]store.OfflineMessage{},
		sender:   map[int64]string{},
	}
	for _, u := range users {
		m.accounts[u] = true
	}
	return m
}

func (m *memStore) AccountExists(_ context.Context, u string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.accounts[u], nil
}

func (m *memStore) RosterItems(_ context.Context, owner string) ([]store.RosterItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.RosterItem
	for _, it := range m.roster[owner] {
		it.Groups = slices.Clone(it.Groups)
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Contact < out[j].Contact })
	return out, nil
}

func (m *memStore) RosterItem(_ context.Context, owner, contact string) (store.RosterItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.roster[owner][contact]
	if !ok {
		return store.RosterItem{}, store.ErrNotFound
	}
	it.Groups = slices.Clone(it.Groups)
	return it, nil
}

func (m *memStore) PutRosterItem(_ context.Context, owner string, it store.RosterItem) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.roster[owner] == nil {
		m.roster[owner] = map[string]store.RosterItem{}
	}
	it.Groups = slices.Clone(it.Groups)
	m.roster[owner][it.Contact] = it
	return nil
}

func (m *memStore) PutRosterItemWithin(ctx context.Context, owner string, it store.RosterItem, limit int) error {
	m.mu.Lock()
	_, ok := m.roster[owner][it.Contact]
	n := len(m.roster[owner])
	m.mu.Unlock()
	if !ok && limit > 0 && n >= limit {
		return store.ErrLimit
	}
	return m.PutRosterItem(ctx, owner, it)
}

func (m *memStore) DeleteRosterItem(_ context.Context, owner, contact string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.roster[owner], contact)
	return nil
}

func (m *memStore) PushOffline(ctx context.Context, owner, sender string, stamp time.Time, b []byte, limit int) error {
	return m.PushOfflineWithin(ctx, owner, sender, stamp, b, limit, 0)
}

func (m *memStore) PushOfflineWithin(_ context.Context, owner, sender string, stamp time.Time, b []byte, limit, perSender int) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.offline[owner]) >= limit {
		return store.ErrQueueFull
	}
	mine := 0
	for _, o := range m.offline[owner] {
		if m.sender[o.ID] == sender {
			mine++
		}
	}
	if perSender > 0 && mine >= perSender {
		return store.ErrLimit
	}
	m.nextID++
	m.sender[m.nextID] = sender
	m.offline[owner] = append(m.offline[owner], store.OfflineMessage{ID: m.nextID, Stamp: stamp, Stanza: slices.Clone(b)})
	return nil
}

func (m *memStore) OfflineMessages(_ context.Context, owner string) ([]store.OfflineMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.offline[owner]), nil
}

func (m *memStore) DeleteOffline(_ context.Context, owner string, upTo int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.offline[owner] = slices.DeleteFunc(m.offline[owner], func(o store.OfflineMessage) bool { return o.ID <= upTo })
	return nil
}

func (m *memStore) queued(owner string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.offline[owner])
}

// item returns owner's stored item for contact, and whether there is one.
func (m *memStore) item(owner, contact string) (store.RosterItem, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	it, ok := m.roster[owner][contact]
	return it, ok
}

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
	if e := el.Child("", "error"); e != nil && el.IsError() {
		for _, c := range e.Elements() {
			if c.Space == stanza.NSStanzas && c.Local != "text" {
				b.WriteString(" error=" + c.Local)
			}
		}
	}
	return b.String()
}

// harness is a chat service on domain localhost with a memStore.
type harness struct {
	t   *testing.T
	svc *Service
	st  *memStore // nil for a harness on a real database
	db  Store     // what the service uses
	now time.Time
}

func newHarness(t *testing.T, cfg Config, users ...string) *harness {
	t.Helper()
	h := &harness{t: t, st: newMemStore(users...), now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
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
