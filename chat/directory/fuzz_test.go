package directory

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// checkedStore fails the test when the directory hands it a search or a
// listing that its form parsing should have refused or normalised.
type checkedStore struct {
	t       *testing.T
	entries map[string]store.DirectoryEntry
}

func (s *checkedStore) DirectoryEntry(_ context.Context, u string) (store.DirectoryEntry, error) {
	e, ok := s.entries[u]
	if !ok {
		return e, store.ErrNotFound
	}
	return e, nil
}

func (s *checkedStore) PutDirectoryEntry(_ context.Context, e store.DirectoryEntry) error {
	s.clean("nickname", e.Nick, MaxNickRunes)
	s.country(e.Country)
	if e.Nick == "" || len(e.Languages) > MaxLanguages || len(e.Interests) > MaxInterests {
		s.t.Fatalf("stored listing %+v", e)
	}
	for _, in := range e.Interests {
		s.clean("interest", in, MaxInterestRunes)
	}
	for _, l := range e.Languages {
		if l == "" || strings.ContainsFunc(l, unicode.IsSpace) {
			s.t.Fatalf("stored language %q", l)
		}
	}
	s.entries[e.Username] = e
	return nil
}

func (s *checkedStore) DeleteDirectoryEntry(_ context.Context, u string) error {
	delete(s.entries, u)
	return nil
}

func (s *checkedStore) SearchDirectory(_ context.Context, q store.DirectoryQuery) ([]store.DirectoryEntry, error) {
	s.clean("nickname", q.Nick, MaxNickRunes)
	s.clean("interest", q.Interest, MaxInterestRunes)
	s.country(q.Country)
	if q.Max <= 0 {
		s.t.Fatalf("search without a bound: %+v", q)
	}
	return []store.DirectoryEntry{{Username: "bob", Nick: "Bob <&>", Country: "DE", Languages: []string{"de"}}}, nil
}

func (s *checkedStore) clean(what, v string, maxRunes int) {
	if utf8.RuneCountInString(v) > maxRunes || strings.TrimSpace(v) != v || strings.Contains(v, "  ") ||
		strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
		s.t.Fatalf("%s %q reached the store", what, v)
	}
}

func (s *checkedStore) country(c string) {
	if c != "" && (len(c) != 2 || strings.ToUpper(c) != c) {
		s.t.Fatalf("country %q reached the store", c)
	}
}

// FuzzDirectoryForm submits search and listing forms (XEP-0055 with
// XEP-0004 data forms, and the legacy fields) to the directory: every
// request gets exactly one reply, and only clean, bounded values reach
// the store.
func FuzzDirectoryForm(f *testing.F) {
	for _, s := range []string{
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>jabber:iq:search</value></field><field var='nick'><value> Bob </value></field><field var='country'><value>bra</value></field><field var='language'><value>pt-br</value></field></x>`,
		`<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>jabber:iq:register</value></field><field var='nick'><value>Alice</value></field><field var='languages'><value>en, de fr</value></field><field var='interests'><value>climbing
chess</value></field><field var='country'><value>076</value></field></x>`,
		`<x xmlns='jabber:x:data' type='form'/>`,
		`<x xmlns='jabber:x:data' type='cancel'/>`,
		`<nick>Bob</nick>`,
		`<first>Bob</first>`,
		`<remove/>`,
		`<x xmlns='jabber:x:data' type='submit'><field var='nick'><value>` + strings.Repeat("x", 65) + `</value></field></x>`,
		`<x xmlns='jabber:x:data' type='submit'><field var='nick'><value>a` + "\u0007" + `</value></field><field var='country'><value>XX</value></field></x>`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, payload string, register bool) {
		ns := NSSearch
		if register {
			ns = NSRegister
		}
		el, err := stanza.Limits{}.Parse([]byte(`<iq xmlns='jabber:client' type='set' id='q' to='directory.localhost'><query xmlns='` + ns + `'>` + payload + `</query></iq>`))
		if err != nil {
			return
		}
		st := &checkedStore{t: t, entries: map[string]store.DirectoryEntry{}}
		svc, err := New(Config{Domain: "directory.localhost", ServerDomain: "localhost", MaxResults: 3, Logger: slog.New(slog.DiscardHandler)}, st)
		if err != nil {
			t.Fatal(err)
		}
		sess := testfake.NewSession("alice@localhost/r")
		svc.HandleStanza(context.Background(), sess, el)
		if got := sess.Received(); len(got) != 1 || got[0].ID() != "q" || (got[0].IQType() != stanza.ResultIQ && !got[0].IsError()) {
			t.Fatalf("%q: replies %v", payload, got)
		}
	})
}
