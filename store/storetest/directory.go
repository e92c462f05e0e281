package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// RunDirectory runs the contract of the people directory: listings are
// stored only for accounts, replaced whole, found by nickname, country,
// language and interest, and gone with their account. open is as for Run.
func RunDirectory(t *testing.T, open func(t *testing.T) *store.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"PutAndLoad", testDirectoryPutAndLoad},
		{"UnknownAccount", testDirectoryUnknownAccount},
		{"Replace", testDirectoryReplace},
		{"Search", testDirectorySearch},
		{"SearchWildcardsAreLiteral", testDirectoryWildcards},
		{"SearchLimit", testDirectoryLimit},
		{"Delete", testDirectoryDelete},
		{"DeleteAccountRemovesListing", testDirectoryDeleteAccount},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var dirT0 = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func mustList(t *testing.T, db *store.DB, e store.DirectoryEntry) {
	t.Helper()
	if e.Updated.IsZero() {
		e.Updated = dirT0
	}
	if err := db.PutDirectoryEntry(t.Context(), e); err != nil {
		t.Fatalf("PutDirectoryEntry(%s): %v", e.Username, err)
	}
}

func searchNames(t *testing.T, db *store.DB, q store.DirectoryQuery) []string {
	t.Helper()
	got, err := db.SearchDirectory(t.Context(), q)
	if err != nil {
		t.Fatalf("SearchDirectory(%+v): %v", q, err)
	}
	var out []string
	for _, e := range got {
		out = append(out, e.Username)
	}
	return out
}

func testDirectoryPutAndLoad(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	want := store.DirectoryEntry{
		Username: "alice", Nick: "Älice ☕", Country: "DE",
		Languages: []string{"de-AT", "en"}, Interests: []string{"Jazz", "rock climbing"},
		Updated: dirT0.Add(1500 * time.Microsecond),
	}
	mustList(t, db, want)
	got, err := db.DirectoryEntry(t.Context(), "alice")
	if err != nil {
		t.Fatalf("DirectoryEntry: %v", err)
	}
	if got.Username != want.Username || got.Nick != want.Nick || got.Country != want.Country ||
		!slices.Equal(got.Languages, want.Languages) || !slices.Equal(got.Interests, want.Interests) ||
		!got.Updated.Equal(want.Updated) {
		t.Errorf("DirectoryEntry = %+v, want %+v", got, want)
	}
	if _, err := db.DirectoryEntry(t.Context(), "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DirectoryEntry(bob, never listed) = %v, want ErrNotFound", err)
	}
	// An entry with nothing but a nickname reads back with empty lists.
	mustList(t, db, store.DirectoryEntry{Username: "bob", Nick: "b"})
	got, err = db.DirectoryEntry(t.Context(), "bob")
	if err != nil || got.Country != "" || len(got.Languages) != 0 || len(got.Interests) != 0 {
		t.Errorf("DirectoryEntry(bob) = %+v, %v", got, err)
	}
}

func testDirectoryUnknownAccount(t *testing.T, db *store.DB) {
	err := db.PutDirectoryEntry(t.Context(), store.DirectoryEntry{Username: "ghost", Nick: "boo", Updated: dirT0})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutDirectoryEntry(no account) = %v, want ErrNotFound", err)
	}
	if got := searchNames(t, db, store.DirectoryQuery{}); len(got) != 0 {
		t.Errorf("search after a refused listing = %v", got)
	}
}

func testDirectoryReplace(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "old", Country: "FR",
		Languages: []string{"fr"}, Interests: []string{"chess"}})
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "new", Country: "IT",
		Languages: []string{"it"}, Interests: []string{"go", "GO"}})
	for _, q := range []store.DirectoryQuery{
		{Nick: "old"}, {Country: "FR"}, {Language: "fr"}, {Interest: "chess"},
	} {
		if got := searchNames(t, db, q); len(got) != 0 {
			t.Errorf("search %+v after replacing = %v, want nothing", q, got)
		}
	}
	for _, q := range []store.DirectoryQuery{
		{Nick: "new"}, {Country: "IT"}, {Language: "it"}, {Interest: "go"},
	} {
		if got := searchNames(t, db, q); !slices.Equal(got, []string{"alice"}) {
			t.Errorf("search %+v = %v, want [alice]", q, got)
		}
	}
	got, err := db.DirectoryEntry(t.Context(), "alice")
	if err != nil || !slices.Equal(got.Interests, []string{"go", "GO"}) {
		t.Errorf("interests as given = %+v, %v", got.Interests, err)
	}
}

func testDirectorySearch(t *testing.T, db *store.DB) {
	for _, n := range []string{"alice", "bob", "carol", "dave", "erin"} {
		mustCreate(t, db, n)
	}
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "Alice Wonder", Country: "DE",
		Languages: []string{"de-AT", "en"}, Interests: []string{"Jazz music", "chess"}})
	mustList(t, db, store.DirectoryEntry{Username: "bob", Nick: "Bobby", Country: "FR",
		Languages: []string{"fr"}, Interests: []string{"jazz"}})
	mustList(t, db, store.DirectoryEntry{Username: "carol", Nick: "ÇAROL", Country: "DE",
		Languages: []string{"de"}, Interests: []string{"Straße"}})
	mustList(t, db, store.DirectoryEntry{Username: "dave", Nick: "dave", Country: "",
		Languages: []string{"deu"}})
	// erin has an account but never opted in.
	for _, tc := range []struct {
		q    store.DirectoryQuery
		want []string
	}{
		{store.DirectoryQuery{}, []string{"alice", "bob", "dave", "carol"}}, // by folded nick: alice, bobby, dave, çarol
		{store.DirectoryQuery{Nick: "WONDER"}, []string{"alice"}},
		{store.DirectoryQuery{Nick: "çar"}, []string{"carol"}},
		{store.DirectoryQuery{Nick: "b"}, []string{"bob"}},
		{store.DirectoryQuery{Nick: "erin"}, nil},
		{store.DirectoryQuery{Country: "DE"}, []string{"alice", "carol"}},
		{store.DirectoryQuery{Country: "US"}, nil},
		{store.DirectoryQuery{Language: "de"}, []string{"alice", "carol"}}, // not "deu"
		{store.DirectoryQuery{Language: "DE-at"}, []string{"alice"}},
		{store.DirectoryQuery{Language: "en"}, []string{"alice"}},
		{store.DirectoryQuery{Interest: "JAZZ"}, []string{"alice", "bob"}},
		{store.DirectoryQuery{Interest: "strasse"}, []string{"carol"}}, // full case folding
		{store.DirectoryQuery{Interest: "jazz", Country: "FR"}, []string{"bob"}},
		{store.DirectoryQuery{Interest: "jazz", Language: "de"}, []string{"alice"}},
		{store.DirectoryQuery{Interest: "chess", Nick: "bob"}, nil},
	} {
		if got := searchNames(t, db, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("search %+v = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func testDirectoryWildcards(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "100% real_name!", Interests: []string{"a_b"}})
	mustList(t, db, store.DirectoryEntry{Username: "bob", Nick: "100 percent", Interests: []string{"axb"}})
	for _, tc := range []struct {
		q    store.DirectoryQuery
		want []string
	}{
		{store.DirectoryQuery{Nick: "%"}, []string{"alice"}},
		{store.DirectoryQuery{Nick: "_"}, []string{"alice"}},
		{store.DirectoryQuery{Nick: "!"}, []string{"alice"}},
		{store.DirectoryQuery{Interest: "a_b"}, []string{"alice"}},
		{store.DirectoryQuery{Language: "%"}, nil},
	} {
		if got := searchNames(t, db, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("search %+v = %v, want %v", tc.q, got, tc.want)
		}
	}
}

func testDirectoryLimit(t *testing.T, db *store.DB) {
	for _, n := range []string{"a", "b", "c", "d"} {
		mustCreate(t, db, n)
		mustList(t, db, store.DirectoryEntry{Username: n, Nick: "same"})
	}
	if got := searchNames(t, db, store.DirectoryQuery{Nick: "same", Max: 3}); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("search with Max 3 = %v, want [a b c] (ties by username)", got)
	}
}

func testDirectoryDelete(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "al", Interests: []string{"go"}, Languages: []string{"en"}})
	if err := db.DeleteDirectoryEntry(t.Context(), "alice"); err != nil {
		t.Fatalf("DeleteDirectoryEntry: %v", err)
	}
	if _, err := db.DirectoryEntry(t.Context(), "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("DirectoryEntry after delete = %v, want ErrNotFound", err)
	}
	for _, q := range []store.DirectoryQuery{{}, {Interest: "go"}, {Language: "en"}} {
		if got := searchNames(t, db, q); len(got) != 0 {
			t.Errorf("search %+v after delete = %v", q, got)
		}
	}
	if err := db.DeleteDirectoryEntry(t.Context(), "alice"); err != nil {
		t.Errorf("deleting again: %v", err)
	}
	if err := db.DeleteDirectoryEntry(t.Context(), "nobody"); err != nil {
		t.Errorf("deleting for no account: %v", err)
	}
	// Listing again after opting out works.
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "back", Interests: []string{"go"}})
	if got := searchNames(t, db, store.DirectoryQuery{Interest: "go"}); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("search after listing again = %v", got)
	}
}

func testDirectoryDeleteAccount(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "al", Interests: []string{"go"}, Languages: []string{"en"}})
	if _, err := db.PurgeAccount(t.Context(), "alice", "alice@example.org"); err != nil {
		t.Fatalf("PurgeAccount: %v", err)
	}
	for _, q := range []store.DirectoryQuery{{}, {Interest: "go"}, {Language: "en"}} {
		if got := searchNames(t, db, q); len(got) != 0 {
			t.Errorf("search %+v after deleting the account = %v", q, got)
		}
	}
	// A new account with the same name is not listed.
	mustCreate(t, db, "alice")
	if _, err := db.DirectoryEntry(t.Context(), "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new account's listing = %v, want ErrNotFound", err)
	}
}
