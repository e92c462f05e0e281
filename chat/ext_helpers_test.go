package chat

import (
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// newDBHarness is a harness on a real in-memory SQLite database, so that
// every extension (archive, blocking, PEP, vCard, private XML) is on.
func newDBHarness(t *testing.T, cfg Config, users ...string) (*harness, *store.DB) {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite::memory:", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, u := range users {
		if err := db.CreateAccount(t.Context(), u, store.Credentials{Iterations: 4096}); err != nil {
			t.Fatal(err)
		}
	}
	h := &harness{t: t, db: db, now: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)}
	cfg.Domain = "localhost"
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return h.now }
	}
	svc, err := New(cfg, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	h.svc = svc
	return h, db
}

// takeAll returns the stanzas sess received since the last take.
func (f *fakeSession) takeAll() []*stanza.Element { return f.Take() }

// one returns the single stanza sess received, failing otherwise.
func one(t *testing.T, name string, sess *fakeSession) *stanza.Element {
	t.Helper()
	got := sess.takeAll()
	if len(got) != 1 {
		var s []string
		for _, el := range got {
			s = append(s, el.String())
		}
		t.Fatalf("%s received %d stanzas, want 1:\n  %s", name, len(got), strings.Join(s, "\n  "))
	}
	return got[0]
}

// iq sends raw from sess and returns the IQ answer among what came back
// (anything else received stays available through extra).
func (h *harness) iq(sess *fakeSession, raw string) (reply *stanza.Element, extra []*stanza.Element) {
	h.t.Helper()
	h.send(sess, raw)
	for _, el := range sess.takeAll() {
		if el.Local == "iq" && reply == nil && (el.IQType() == stanza.ResultIQ || el.IsError()) {
			reply = el
			continue
		}
		extra = append(extra, el)
	}
	if reply == nil {
		h.t.Fatalf("no IQ answer to %s", raw)
	}
	return reply, extra
}

// errorCondition returns the stanza error condition of el, or "".
func errorCondition(el *stanza.Element) stanza.Condition { return stanza.ErrorCondition(el) }

// putBack returns stanzas to what sess has received, after the rest.
func (f *fakeSession) putBack(els []*stanza.Element) { f.Add(els...) }
