// Package storetest is the contract every store database must meet: one
// suite, run against SQLite and against MySQL/MariaDB, so that the two
// behave the same to the rest of poosms. Its part about what chat uses
// (RunChat) also runs against the in-memory store of chat's tests, so
// that those tests see what a database would do.
package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// Run runs the contract suite. open must return a new, empty, migrated
// database for each call and arrange for it to be closed when t ends.
// It includes the cases of RunChat.
func Run(t *testing.T, open func(t *testing.T) *store.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"Dialect", testDialect},
		{"CreateAndLoadAccount", testCreateAndLoadAccount},
		{"CreateTakenName", testCreateTakenName},
		{"MissingAccount", testMissingAccount},
		{"SetCredentials", testSetCredentials},
		{"UpgradeCredentials", testUpgradeCredentials},
		{"BinaryCredentials", testBinaryCredentials},
		{"UsernamesCompareExactly", testUsernamesCompareExactly},
		{"AccountsSorted", testAccountsSorted},
		{"DeleteAccount", testDeleteAccount},
		{"PurgeAccount", testPurgeAccount},
		{"PurgeKeepsBansAndBlocks", testPurgeKeepsBansAndBlocks},
		{"AccountJournal", testAccountJournal},
		{"AccountCanceledContext", testAccountCanceledContext},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
	runChat(t, chatCases, func(t *testing.T) ChatStore { return open(t) })
}

// ChatStore is the part of a store that the chat service uses (its
// Store: account lookup, rosters, offline messages), with the methods the
// suite sets up and looks with (CreateAccount, PushOffline, CountOffline,
// CountRosterItems). *store.DB implements it, and so does the in-memory
// store that chat's tests use (internal/testfake.Store).
type ChatStore interface {
	CreateAccount(ctx context.Context, username string, c store.Credentials) error
	AccountExists(ctx context.Context, username string) (bool, error)
	RosterItems(ctx context.Context, owner string) ([]store.RosterItem, error)
	RosterItem(ctx context.Context, owner, contact string) (store.RosterItem, error)
	PutRosterItem(ctx context.Context, owner string, it store.RosterItem) error
	PutRosterItemWithin(ctx context.Context, owner string, it store.RosterItem, limit int) error
	CountRosterItems(ctx context.Context, owner string) (int, error)
	DeleteRosterItem(ctx context.Context, owner, contact string) error
	PushOffline(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit int) error
	PushOfflineWithin(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit, perSender int) error
	OfflineMessages(ctx context.Context, owner string) ([]store.OfflineMessage, error)
	DeleteOffline(ctx context.Context, owner string, upToID int64) error
	CountOffline(ctx context.Context, owner string) (int, error)
}

var _ ChatStore = (*store.DB)(nil)

type chatCase struct {
	name string
	fn   func(t *testing.T, db ChatStore)
}

// chatCases are Run's cases that hold for every ChatStore.
var chatCases = []chatCase{
	{"AccountExists", testAccountExists},
	{"RosterPutAndGet", testRosterPutAndGet},
	{"RosterReplace", testRosterReplace},
	{"RosterOrderAndOwners", testRosterOrderAndOwners},
	{"RosterDelete", testRosterDelete},
	{"RosterUnknownOwner", testRosterUnknownOwner},
	{"RosterInvalidSubscription", testRosterInvalidSubscription},
	{"OfflineQueue", testOfflineQueue},
	{"OfflineStamps", testOfflineStamps},
	{"OfflineLimit", testOfflineLimit},
	{"OfflineOwners", testOfflineOwners},
	{"OfflineUnknownOwner", testOfflineUnknownOwner},
	{"OfflineLargeStanza", testOfflineLargeStanza},
	{"OfflineConcurrentLimit", testOfflineConcurrentLimit},
	{"CanceledContext", testCanceledContext},
}

// RunChat runs the part of the contract that every ChatStore meets, the
// in-memory ones included: the cases of Run and RunLimits about accounts,
// rosters and offline messages. open must return a new, empty store for
// each call.
func RunChat(t *testing.T, open func(t *testing.T) ChatStore) {
	runChat(t, chatCases, open)
	runChat(t, chatLimitCases, open)
}

func runChat(t *testing.T, cases []chatCase, open func(t *testing.T) ChatStore) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

// creds returns distinct, recognisable credentials for seed.
func creds(seed byte) store.Credentials {
	fill := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	return store.Credentials{
		Salt:            fill(16, seed),
		Iterations:      4096 + int(seed),
		StoredKeySHA1:   fill(20, seed+1),
		ServerKeySHA1:   fill(20, seed+2),
		StoredKeySHA256: fill(32, seed+3),
		ServerKeySHA256: fill(32, seed+4),
	}
}

func mustCreate(t *testing.T, db ChatStore, username string) {
	t.Helper()
	if err := db.CreateAccount(t.Context(), username, creds(1)); err != nil {
		t.Fatalf("CreateAccount(%q): %v", username, err)
	}
}

func checkCreds(t *testing.T, what string, got, want store.Credentials) {
	t.Helper()
	for _, f := range []struct {
		name      string
		got, want []byte
	}{
		{"Salt", got.Salt, want.Salt},
		{"StoredKeySHA1", got.StoredKeySHA1, want.StoredKeySHA1},
		{"ServerKeySHA1", got.ServerKeySHA1, want.ServerKeySHA1},
		{"StoredKeySHA256", got.StoredKeySHA256, want.StoredKeySHA256},
		{"ServerKeySHA256", got.ServerKeySHA256, want.ServerKeySHA256},
	} {
		if !bytes.Equal(f.got, f.want) {
			t.Errorf("%s: %s = %x, want %x", what, f.name, f.got, f.want)
		}
	}
	if got.Iterations != want.Iterations {
		t.Errorf("%s: Iterations = %d, want %d", what, got.Iterations, want.Iterations)
	}
}

func testDialect(t *testing.T, db *store.DB) {
	if d := db.Dialect(); d != store.DialectSQLite && d != store.DialectMySQL {
		t.Errorf("Dialect() = %q", d)
	}
	if err := db.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testCreateAndLoadAccount(t *testing.T, db *store.DB) {
	ctx := t.Context()
	before := time.Now().Truncate(time.Millisecond)
	want := creds(7)
	if err := db.CreateAccount(ctx, "alice", want); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	after := time.Now()
	a, err := db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	if a.Username != "alice" {
		t.Errorf("Username = %q, want alice", a.Username)
	}
	checkCreds(t, "alice", a.Credentials, want)
	if a.Created.Before(before) || a.Created.After(after) {
		t.Errorf("Created = %v, want between %v and %v", a.Created, before, after)
	}
	if a.Created.Location() != time.UTC {
		t.Errorf("Created is in %v, want UTC", a.Created.Location())
	}
	if ok, err := db.AccountExists(ctx, "alice"); err != nil || !ok {
		t.Errorf("AccountExists(alice) = %v, %v; want true", ok, err)
	}
	if ok, err := db.AccountExists(ctx, "bob"); err != nil || ok {
		t.Errorf("AccountExists(bob) = %v, %v; want false", ok, err)
	}
}

func testCreateTakenName(t *testing.T, db *store.DB) {
	ctx := t.Context()
	if err := db.CreateAccount(ctx, "alice", creds(1)); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	err := db.CreateAccount(ctx, "alice", creds(2))
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateAccount(alice) = %v, want ErrExists", err)
	}
	a, err := db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	checkCreds(t, "after refused create", a.Credentials, creds(1))
}

// testAccountExists: what chat asks of accounts, and a name is taken once.
func testAccountExists(t *testing.T, db ChatStore) {
	ctx := t.Context()
	if ok, err := db.AccountExists(ctx, "alice"); err != nil || ok {
		t.Errorf("AccountExists(alice) on an empty store = %v, %v; want false", ok, err)
	}
	mustCreate(t, db, "alice")
	if ok, err := db.AccountExists(ctx, "alice"); err != nil || !ok {
		t.Errorf("AccountExists(alice) = %v, %v; want true", ok, err)
	}
	if ok, err := db.AccountExists(ctx, "Alice"); err != nil || ok {
		t.Errorf("AccountExists(Alice) = %v, %v; want false", ok, err)
	}
	if err := db.CreateAccount(ctx, "alice", creds(2)); !errors.Is(err, store.ErrExists) {
		t.Errorf("second CreateAccount(alice) = %v, want ErrExists", err)
	}
}

func testMissingAccount(t *testing.T, db *store.DB) {
	ctx := t.Context()
	_, err := db.Account(ctx, "nobody")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Account(nobody) = %v, want ErrNotFound", err)
	}
	if errors.Is(err, sql.ErrNoRows) {
		t.Errorf("Account(nobody) leaks sql.ErrNoRows: %v", err)
	}
	if err := db.SetCredentials(ctx, "nobody", creds(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetCredentials(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := db.PurgeAccount(ctx, "nobody", "nobody@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PurgeAccount(nobody) = %v, want ErrNotFound", err)
	}
	names, err := db.Accounts(ctx)
	if err != nil || len(names) != 0 {
		t.Errorf("Accounts() on an empty store = %q, %v; want none", names, err)
	}
}

func testSetCredentials(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	if err := db.SetCredentials(ctx, "alice", creds(50)); err != nil {
		t.Fatalf("SetCredentials: %v", err)
	}
	a, err := db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	checkCreds(t, "alice after change", a.Credentials, creds(50))
	b, err := db.Account(ctx, "bob")
	if err != nil {
		t.Fatalf("Account(bob): %v", err)
	}
	checkCreds(t, "bob untouched", b.Credentials, creds(1))

	// Setting the same password again changes no column; that is still
	// a success, not "not found".
	if err := db.SetCredentials(ctx, "alice", creds(50)); err != nil {
		t.Errorf("SetCredentials with unchanged values: %v", err)
	}
}

// testUpgradeCredentials: an upgrade applies only over the credentials it
// was computed from, so it cannot undo a password change.
func testUpgradeCredentials(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.UpgradeCredentials(ctx, "alice", creds(1), creds(60)); err != nil {
		t.Fatalf("UpgradeCredentials over the stored credentials: %v", err)
	}
	a, err := db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	checkCreds(t, "alice after upgrade", a.Credentials, creds(60))
	// A stale upgrade (computed from creds(1)) after the change to creds(60).
	if err := db.UpgradeCredentials(ctx, "alice", creds(1), creds(70)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("stale UpgradeCredentials = %v, want ErrNotFound", err)
	}
	a, _ = db.Account(ctx, "alice")
	checkCreds(t, "alice after a stale upgrade", a.Credentials, creds(60))
	if err := db.UpgradeCredentials(ctx, "nobody", creds(1), creds(70)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpgradeCredentials(nobody) = %v, want ErrNotFound", err)
	}
}

func testBinaryCredentials(t *testing.T, db *store.DB) {
	ctx := t.Context()
	every := make([]byte, 256)
	for i := range every {
		every[i] = byte(i)
	}
	reversed := slices.Clone(every[:32])
	slices.Reverse(reversed)
	want := store.Credentials{
		Salt:            every,
		Iterations:      1 << 22,
		StoredKeySHA1:   []byte{0, 0, 0, 0xff, 0, 0x80, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		ServerKeySHA1:   bytes.Repeat([]byte{0xff}, 20),
		StoredKeySHA256: reversed,
		ServerKeySHA256: []byte("\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc\x00 not utf-8 \xfe\xff"),
	}
	if err := db.CreateAccount(ctx, "alice", want); err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	a, err := db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	checkCreds(t, "binary", a.Credentials, want)

	// An account may have only the SHA-256 verifiers.
	onlySHA256 := store.Credentials{Salt: []byte{1, 2, 3}, Iterations: 10000,
		StoredKeySHA256: every[:32], ServerKeySHA256: every[32:64]}
	if err := db.SetCredentials(ctx, "alice", onlySHA256); err != nil {
		t.Fatalf("SetCredentials: %v", err)
	}
	a, err = db.Account(ctx, "alice")
	if err != nil {
		t.Fatalf("Account: %v", err)
	}
	checkCreds(t, "SHA-256 only", a.Credentials, onlySHA256)
	if len(a.StoredKeySHA1) != 0 || len(a.ServerKeySHA1) != 0 {
		t.Errorf("SHA-1 keys = %x, %x; want empty", a.StoredKeySHA1, a.ServerKeySHA1)
	}
}

// Usernames arrive normalised; the store must not fold case, width or
// composition on its own, or two users could share one account.
func testUsernamesCompareExactly(t *testing.T, db *store.DB) {
	ctx := t.Context()
	names := []string{
		"alice", "Alice", "ALICE",
		"\u00e9lodie", "e\u0301lodie", // precomposed and decomposed é
		"stra\u00dfe", "strasse",
		"ｆｕｌｌ", "full",
		"jürgen", "日本語", "пётр", "😀smile",
	}
	for i, n := range names {
		if err := db.CreateAccount(ctx, n, creds(byte(10*i))); err != nil {
			t.Fatalf("CreateAccount(%q): %v", n, err)
		}
	}
	for i, n := range names {
		a, err := db.Account(ctx, n)
		if err != nil {
			t.Fatalf("Account(%q): %v", n, err)
		}
		if a.Username != n {
			t.Errorf("Account(%q).Username = %q", n, a.Username)
		}
		checkCreds(t, n, a.Credentials, creds(byte(10*i)))
	}
	if _, err := db.Account(ctx, "aLiCe"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Account(aLiCe) = %v, want ErrNotFound", err)
	}
	if err := db.CreateAccount(ctx, "日本語", creds(3)); !errors.Is(err, store.ErrExists) {
		t.Errorf("CreateAccount(日本語) again = %v, want ErrExists", err)
	}
	got, err := db.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	if len(got) != len(names) {
		t.Errorf("Accounts() has %d names, want %d: %q", len(got), len(names), got)
	}
}

func testAccountsSorted(t *testing.T, db *store.DB) {
	ctx := t.Context()
	names := []string{"zoë", "bob", "Bob", "alice", "ülrich", "日本", "😀", "a", "aa", "zoe"}
	for _, n := range names {
		mustCreate(t, db, n)
	}
	got, err := db.Accounts(ctx)
	if err != nil {
		t.Fatalf("Accounts: %v", err)
	}
	want := slices.Clone(names)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("Accounts() = %q\nwant         %q", got, want)
	}
}

func testDeleteAccount(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	put := func(owner, contact string) {
		t.Helper()
		it := store.RosterItem{Contact: contact, Subscription: store.SubBoth, Listed: true, Groups: []string{"Friends"}}
		if err := db.PutRosterItem(ctx, owner, it); err != nil {
			t.Fatalf("PutRosterItem(%s, %s): %v", owner, contact, err)
		}
	}
	put("alice", "bob@example.org")
	put("alice", "carol@elsewhere.example")
	put("bob", "alice@example.org")
	for i := range 3 {
		if err := db.PushOffline(ctx, "alice", "", time.Now(), fmt.Appendf(nil, "<message id='a%d'/>", i), 10); err != nil {
			t.Fatalf("PushOffline(alice): %v", err)
		}
	}
	if err := db.PushOffline(ctx, "bob", "", time.Now(), []byte("<message id='b'/>"), 10); err != nil {
		t.Fatalf("PushOffline(bob): %v", err)
	}

	if _, err := db.PurgeAccount(ctx, "alice", "alice@example.org"); err != nil {
		t.Fatalf("PurgeAccount: %v", err)
	}
	if _, err := db.Account(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Account(alice) after delete = %v, want ErrNotFound", err)
	}
	if ok, err := db.AccountExists(ctx, "alice"); err != nil || ok {
		t.Errorf("AccountExists(alice) after delete = %v, %v; want false", ok, err)
	}
	if _, err := db.PurgeAccount(ctx, "alice", "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second PurgeAccount = %v, want ErrNotFound", err)
	}
	if names, err := db.Accounts(ctx); err != nil || !slices.Equal(names, []string{"bob"}) {
		t.Errorf("Accounts() = %q, %v; want [bob]", names, err)
	}

	// Bob's roster item for alice goes; his own message stays.
	if _, err := db.RosterItem(ctx, "bob", "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's item for alice after deleting alice: %v, want ErrNotFound", err)
	}
	if n, err := db.CountOffline(ctx, "bob"); err != nil || n != 1 {
		t.Errorf("CountOffline(bob) = %d, %v; want 1", n, err)
	}

	// A new alice starts with nothing of the old one's.
	mustCreate(t, db, "alice")
	if items, err := db.RosterItems(ctx, "alice"); err != nil || len(items) != 0 {
		t.Errorf("new alice's roster = %+v, %v; want empty", items, err)
	}
	if msgs, err := db.OfflineMessages(ctx, "alice"); err != nil || len(msgs) != 0 {
		t.Errorf("new alice's offline messages = %d, %v; want none", len(msgs), err)
	}
}

func checkItem(t *testing.T, got, want store.RosterItem) {
	t.Helper()
	if got.Contact != want.Contact || got.Name != want.Name || got.Subscription != want.Subscription ||
		got.AskOut != want.AskOut || got.PendingIn != want.PendingIn || got.Listed != want.Listed ||
		!slices.Equal(got.Groups, want.Groups) {
		t.Errorf("roster item\n got %+v\nwant %+v", got, want)
	}
}

func testRosterPutAndGet(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	want := store.RosterItem{
		Contact:      "bob@example.org",
		Name:         "Bobby 🎸",
		Groups:       []string{"Work", "Friends", "Ärzte"},
		Subscription: store.SubTo,
		AskOut:       true,
		PendingIn:    true,
		Listed:       true,
	}
	if err := db.PutRosterItem(ctx, "alice", want); err != nil {
		t.Fatalf("PutRosterItem: %v", err)
	}
	got, err := db.RosterItem(ctx, "alice", "bob@example.org")
	if err != nil {
		t.Fatalf("RosterItem: %v", err)
	}
	checkItem(t, got, want)

	if _, err := db.RosterItem(ctx, "alice", "carol@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RosterItem(absent contact) = %v, want ErrNotFound", err)
	}
	if _, err := db.RosterItem(ctx, "nobody", "bob@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RosterItem(absent owner) = %v, want ErrNotFound", err)
	}

	// A pending inbound request that is not (yet) in the roster, with the
	// subscription left at its zero value.
	pending := store.RosterItem{Contact: "dave@example.org", PendingIn: true}
	if err := db.PutRosterItem(ctx, "alice", pending); err != nil {
		t.Fatalf("PutRosterItem(pending): %v", err)
	}
	got, err = db.RosterItem(ctx, "alice", "dave@example.org")
	if err != nil {
		t.Fatalf("RosterItem(pending): %v", err)
	}
	pending.Subscription = store.SubNone
	checkItem(t, got, pending)
}

func testRosterReplace(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	first := store.RosterItem{Contact: "bob@example.org", Name: "Bob", Groups: []string{"B", "A"},
		Subscription: store.SubNone, AskOut: true, Listed: true}
	if err := db.PutRosterItem(ctx, "alice", first); err != nil {
		t.Fatalf("PutRosterItem: %v", err)
	}
	second := store.RosterItem{Contact: "bob@example.org", Subscription: store.SubBoth, PendingIn: true}
	if err := db.PutRosterItem(ctx, "alice", second); err != nil {
		t.Fatalf("PutRosterItem (replace): %v", err)
	}
	got, err := db.RosterItem(ctx, "alice", "bob@example.org")
	if err != nil {
		t.Fatalf("RosterItem: %v", err)
	}
	checkItem(t, got, second)

	// Putting the same item twice is a success.
	if err := db.PutRosterItem(ctx, "alice", second); err != nil {
		t.Errorf("PutRosterItem (unchanged): %v", err)
	}
	items, err := db.RosterItems(ctx, "alice")
	if err != nil || len(items) != 1 {
		t.Fatalf("RosterItems = %+v, %v; want one item", items, err)
	}
}

func testRosterOrderAndOwners(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "日本")
	contacts := []string{
		"zed@example.org", "bob@example.org", "Bob@example.org", "example.org",
		"ülrich@münchen.example", "日本@例え.jp", "😀@emoji.example", "bob@a.example",
	}
	for i, c := range contacts {
		it := store.RosterItem{Contact: c, Name: fmt.Sprint(i), Subscription: store.SubFrom, Listed: true,
			Groups: []string{"グループ", fmt.Sprint("g", i)}}
		if err := db.PutRosterItem(ctx, "alice", it); err != nil {
			t.Fatalf("PutRosterItem(%q): %v", c, err)
		}
	}
	other := store.RosterItem{Contact: "alice@example.org", Subscription: store.SubBoth, Listed: true}
	if err := db.PutRosterItem(ctx, "日本", other); err != nil {
		t.Fatalf("PutRosterItem(日本): %v", err)
	}

	items, err := db.RosterItems(ctx, "alice")
	if err != nil {
		t.Fatalf("RosterItems: %v", err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Contact)
		i := slices.Index(contacts, it.Contact)
		if it.Name != fmt.Sprint(i) || !slices.Equal(it.Groups, []string{"グループ", fmt.Sprint("g", i)}) {
			t.Errorf("item %q came back as %+v", it.Contact, it)
		}
	}
	want := slices.Clone(contacts)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("RosterItems contacts = %q\nwant                  %q", got, want)
	}

	items, err = db.RosterItems(ctx, "日本")
	if err != nil || len(items) != 1 {
		t.Fatalf("RosterItems(日本) = %+v, %v; want one item", items, err)
	}
	checkItem(t, items[0], other)
	if _, err := db.RosterItem(ctx, "alice", "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("日本's item shows in alice's roster: %v", err)
	}
	if _, err := db.RosterItem(ctx, "alice", "BOB@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RosterItem matched a contact case-insensitively: %v", err)
	}
}

func testRosterDelete(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	for _, owner := range []string{"alice", "bob"} {
		for _, c := range []string{"carol@example.org", "dave@example.org"} {
			if err := db.PutRosterItem(ctx, owner, store.RosterItem{Contact: c, Listed: true}); err != nil {
				t.Fatalf("PutRosterItem: %v", err)
			}
		}
	}
	if err := db.DeleteRosterItem(ctx, "alice", "carol@example.org"); err != nil {
		t.Fatalf("DeleteRosterItem: %v", err)
	}
	if _, err := db.RosterItem(ctx, "alice", "carol@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted item still there: %v", err)
	}
	if err := db.DeleteRosterItem(ctx, "alice", "carol@example.org"); err != nil {
		t.Errorf("DeleteRosterItem of an absent item = %v, want nil", err)
	}
	if err := db.DeleteRosterItem(ctx, "nobody", "carol@example.org"); err != nil {
		t.Errorf("DeleteRosterItem for an absent owner = %v, want nil", err)
	}
	if items, err := db.RosterItems(ctx, "alice"); err != nil || len(items) != 1 || items[0].Contact != "dave@example.org" {
		t.Errorf("alice's roster = %+v, %v; want only dave", items, err)
	}
	if items, err := db.RosterItems(ctx, "bob"); err != nil || len(items) != 2 {
		t.Errorf("bob's roster = %+v, %v; want both items", items, err)
	}
}

func testRosterUnknownOwner(t *testing.T, db ChatStore) {
	ctx := t.Context()
	err := db.PutRosterItem(ctx, "nobody", store.RosterItem{Contact: "bob@example.org", Listed: true})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutRosterItem for an absent owner = %v, want ErrNotFound", err)
	}
	items, err := db.RosterItems(ctx, "nobody")
	if err != nil || len(items) != 0 {
		t.Errorf("RosterItems(nobody) = %+v, %v; want empty", items, err)
	}
}

func testRosterInvalidSubscription(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	err := db.PutRosterItem(ctx, "alice", store.RosterItem{Contact: "bob@example.org", Subscription: "maybe"})
	if err == nil {
		t.Fatal("PutRosterItem with subscription \"maybe\" succeeded")
	}
	if _, err := db.RosterItem(ctx, "alice", "bob@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused item was stored: %v", err)
	}
}

func push(t *testing.T, db ChatStore, owner string, stamp time.Time, stanza string, limit int) {
	t.Helper()
	if err := db.PushOffline(t.Context(), owner, "", stamp, []byte(stanza), limit); err != nil {
		t.Fatalf("PushOffline(%s, %s): %v", owner, stanza, err)
	}
}

func stanzas(msgs []store.OfflineMessage) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, string(m.Stanza))
	}
	return s
}

func testOfflineQueue(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	// Pushed out of stamp order: arrival order is what counts.
	push(t, db, "alice", base.Add(2*time.Second), "<message id='1'/>", 10)
	push(t, db, "alice", base, "<message id='2'>héllo 😀</message>", 10)
	push(t, db, "alice", base.Add(time.Second), "<message id='3'/>", 10)

	msgs, err := db.OfflineMessages(ctx, "alice")
	if err != nil {
		t.Fatalf("OfflineMessages: %v", err)
	}
	want := []string{"<message id='1'/>", "<message id='2'>héllo 😀</message>", "<message id='3'/>"}
	if got := stanzas(msgs); !slices.Equal(got, want) {
		t.Fatalf("OfflineMessages = %q, want %q", got, want)
	}
	for i, m := range msgs {
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("IDs not increasing: %d after %d", m.ID, msgs[i-1].ID)
		}
	}
	wantStamps := []time.Time{base.Add(2 * time.Second), base, base.Add(time.Second)}
	for i, m := range msgs {
		if !m.Stamp.Equal(wantStamps[i]) {
			t.Errorf("message %d stamp = %v, want %v", i, m.Stamp, wantStamps[i])
		}
	}
	if n, err := db.CountOffline(ctx, "alice"); err != nil || n != 3 {
		t.Errorf("CountOffline = %d, %v; want 3", n, err)
	}

	if err := db.DeleteOffline(ctx, "alice", 0); err != nil {
		t.Fatalf("DeleteOffline(0): %v", err)
	}
	if n, _ := db.CountOffline(ctx, "alice"); n != 3 {
		t.Errorf("DeleteOffline(0) removed messages: %d left", n)
	}
	if err := db.DeleteOffline(ctx, "alice", msgs[1].ID); err != nil {
		t.Fatalf("DeleteOffline: %v", err)
	}
	left, err := db.OfflineMessages(ctx, "alice")
	if err != nil {
		t.Fatalf("OfflineMessages: %v", err)
	}
	if len(left) != 1 || left[0].ID != msgs[2].ID || string(left[0].Stanza) != want[2] {
		t.Errorf("after DeleteOffline(second ID): %+v, want only the third message", left)
	}

	// Emptying the queue does not make IDs go back: a late delete for an
	// old ID must never hit a newer message.
	if err := db.DeleteOffline(ctx, "alice", msgs[2].ID); err != nil {
		t.Fatalf("DeleteOffline: %v", err)
	}
	push(t, db, "alice", base, "<message id='4'/>", 10)
	again, err := db.OfflineMessages(ctx, "alice")
	if err != nil || len(again) != 1 {
		t.Fatalf("OfflineMessages = %+v, %v; want one message", again, err)
	}
	if again[0].ID <= msgs[2].ID {
		t.Errorf("new message got ID %d, not above the deleted %d", again[0].ID, msgs[2].ID)
	}
}

func testOfflineStamps(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	zone := time.FixedZone("UTC+5:30", 5*3600+1800)
	stamps := []time.Time{
		time.Date(2026, 11, 25, 10, 0, 0, 123_000_000, time.UTC),
		time.Date(2026, 11, 25, 15, 30, 0, 456_789_123, zone),
		time.Date(1999, 12, 31, 23, 59, 59, 999_000_000, time.UTC),
		time.Date(2100, 1, 1, 0, 0, 0, 1_000_000, time.UTC),
	}
	for i, s := range stamps {
		push(t, db, "alice", s, fmt.Sprint(i), 10)
	}
	msgs, err := db.OfflineMessages(ctx, "alice")
	if err != nil || len(msgs) != len(stamps) {
		t.Fatalf("OfflineMessages = %d, %v", len(msgs), err)
	}
	for i, m := range msgs {
		if m.Stamp.Location() != time.UTC {
			t.Errorf("stamp %d is in %v, want UTC", i, m.Stamp.Location())
		}
		if d := m.Stamp.Sub(stamps[i]).Abs(); d >= time.Millisecond {
			t.Errorf("stamp %d = %v, want %v (off by %v)", i, m.Stamp, stamps[i], d)
		}
		if want := stamps[i].Truncate(time.Millisecond); !m.Stamp.Truncate(time.Millisecond).Equal(want) {
			t.Errorf("stamp %d to the millisecond = %v, want %v", i, m.Stamp, want)
		}
	}
}

func testOfflineLimit(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	now := time.Now()
	for i := range 3 {
		push(t, db, "alice", now, fmt.Sprint(i), 3)
	}
	if err := db.PushOffline(ctx, "alice", "", now, []byte("3"), 3); !errors.Is(err, store.ErrQueueFull) {
		t.Fatalf("fourth PushOffline with limit 3 = %v, want ErrQueueFull", err)
	}
	msgs, err := db.OfflineMessages(ctx, "alice")
	if err != nil {
		t.Fatalf("OfflineMessages: %v", err)
	}
	if got := stanzas(msgs); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Fatalf("queue after refusal = %q, want the first three", got)
	}
	// A larger limit admits more; delivering frees room.
	push(t, db, "alice", now, "3", 4)
	if err := db.PushOffline(ctx, "alice", "", now, []byte("4"), 4); !errors.Is(err, store.ErrQueueFull) {
		t.Errorf("PushOffline past limit 4 = %v, want ErrQueueFull", err)
	}
	if err := db.DeleteOffline(ctx, "alice", msgs[0].ID); err != nil {
		t.Fatalf("DeleteOffline: %v", err)
	}
	push(t, db, "alice", now, "4", 4)
	if n, err := db.CountOffline(ctx, "alice"); err != nil || n != 4 {
		t.Errorf("CountOffline = %d, %v; want 4", n, err)
	}
	// A limit of zero refuses everything.
	mustCreate(t, db, "bob")
	if err := db.PushOffline(ctx, "bob", "", now, []byte("x"), 0); !errors.Is(err, store.ErrQueueFull) {
		t.Errorf("PushOffline with limit 0 = %v, want ErrQueueFull", err)
	}
}

func testOfflineOwners(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	now := time.Now()
	push(t, db, "bob", now, "b0", 2)
	push(t, db, "alice", now, "a0", 2)
	push(t, db, "alice", now, "a1", 2)
	// Alice's full queue does not limit bob.
	push(t, db, "bob", now, "b1", 2)

	if err := db.DeleteOffline(ctx, "alice", 1<<62); err != nil {
		t.Fatalf("DeleteOffline: %v", err)
	}
	if n, err := db.CountOffline(ctx, "alice"); err != nil || n != 0 {
		t.Errorf("CountOffline(alice) = %d, %v; want 0", n, err)
	}
	msgs, err := db.OfflineMessages(ctx, "bob")
	if err != nil {
		t.Fatalf("OfflineMessages(bob): %v", err)
	}
	if got := stanzas(msgs); !slices.Equal(got, []string{"b0", "b1"}) {
		t.Errorf("bob's queue = %q, want [b0 b1]", got)
	}
}

func testOfflineUnknownOwner(t *testing.T, db ChatStore) {
	ctx := t.Context()
	if err := db.PushOffline(ctx, "nobody", "", time.Now(), []byte("x"), 10); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PushOffline(nobody) = %v, want ErrNotFound", err)
	}
	if msgs, err := db.OfflineMessages(ctx, "nobody"); err != nil || len(msgs) != 0 {
		t.Errorf("OfflineMessages(nobody) = %d, %v; want none", len(msgs), err)
	}
	if n, err := db.CountOffline(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("CountOffline(nobody) = %d, %v; want 0", n, err)
	}
	if err := db.DeleteOffline(ctx, "nobody", 100); err != nil {
		t.Errorf("DeleteOffline(nobody) = %v, want nil", err)
	}
}

func testOfflineLargeStanza(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>8)
	}
	if err := db.PushOffline(ctx, "alice", "", time.Now(), big, 10); err != nil {
		t.Fatalf("PushOffline(512 KiB): %v", err)
	}
	msgs, err := db.OfflineMessages(ctx, "alice")
	if err != nil || len(msgs) != 1 {
		t.Fatalf("OfflineMessages = %d, %v", len(msgs), err)
	}
	if !bytes.Equal(msgs[0].Stanza, big) {
		t.Errorf("512 KiB stanza came back as %d different bytes", len(msgs[0].Stanza))
	}
}

func testOfflineConcurrentLimit(t *testing.T, db ChatStore) {
	ctx := t.Context()
	const (
		owners  = 3
		workers = 8
		each    = 4
		limit   = 10
	)
	for o := range owners {
		mustCreate(t, db, fmt.Sprint("user", o))
	}
	var (
		mu     sync.Mutex
		stored = map[string]int{}
		full   int
		other  []error
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				for o := range owners {
					owner := fmt.Sprint("user", o)
					err := db.PushOffline(ctx, owner, "", time.Now(), fmt.Appendf(nil, "w%d-%d", w, i), limit)
					mu.Lock()
					switch {
					case err == nil:
						stored[owner]++
					case errors.Is(err, store.ErrQueueFull):
						full++
					default:
						other = append(other, err)
					}
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	for _, err := range other {
		t.Errorf("concurrent PushOffline: %v", err)
	}
	for o := range owners {
		owner := fmt.Sprint("user", o)
		n, err := db.CountOffline(ctx, owner)
		if err != nil {
			t.Fatalf("CountOffline: %v", err)
		}
		if n != limit || stored[owner] != limit {
			t.Errorf("%s: %d stored (%d pushes succeeded), want exactly %d", owner, n, stored[owner], limit)
		}
	}
	if want := owners*workers*each - owners*limit; len(other) == 0 && full != want {
		t.Errorf("%d pushes refused as full, want %d", full, want)
	}
}

func testCanceledContext(t *testing.T, db ChatStore) {
	mustCreate(t, db, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := db.PushOffline(ctx, "alice", "", time.Now(), []byte("x"), 10); !errors.Is(err, context.Canceled) {
		t.Errorf("PushOffline with a canceled context = %v, want context.Canceled", err)
	}
	if n, err := db.CountOffline(t.Context(), "alice"); err != nil || n != 0 {
		t.Errorf("CountOffline after a canceled push = %d, %v; want 0", n, err)
	}
}

func testAccountCanceledContext(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := db.Account(ctx, "alice"); !errors.Is(err, context.Canceled) {
		t.Errorf("Account with a canceled context = %v, want context.Canceled", err)
	}
}

// testClosed checks that a database that has gone away gives errors that
// say so, and never a panic or a false "not found".
func testClosed(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	CheckUnavailable(t, db)
}

// CheckUnavailable calls every method of db, which must no longer be able
// to reach its database, and checks that each fails with an error that is
// neither ErrNotFound nor ErrExists.
func CheckUnavailable(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := t.Context()
	check := func(method string, err error) {
		t.Helper()
		switch {
		case err == nil:
			t.Errorf("%s on an unavailable database succeeded", method)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists), errors.Is(err, store.ErrQueueFull):
			t.Errorf("%s on an unavailable database = %v, a misleading answer", method, err)
		default:
			t.Logf("%s: %v", method, err)
		}
	}
	_, err := db.Account(ctx, "alice")
	check("Account", err)
	check("CreateAccount", db.CreateAccount(ctx, "bob", creds(1)))
	check("SetCredentials", db.SetCredentials(ctx, "alice", creds(2)))
	_, err = db.PurgeAccount(ctx, "alice", "alice@example.org")
	check("PurgeAccount", err)
	_, err = db.AccountPurges(ctx, 0, 10)
	check("AccountPurges", err)
	_, err = db.LastAccountPurge(ctx)
	check("LastAccountPurge", err)
	_, err = db.Accounts(ctx)
	check("Accounts", err)
	_, err = db.AccountExists(ctx, "alice")
	check("AccountExists", err)
	_, err = db.RosterItems(ctx, "alice")
	check("RosterItems", err)
	_, err = db.RosterItem(ctx, "alice", "bob@example.org")
	check("RosterItem", err)
	check("PutRosterItem", db.PutRosterItem(ctx, "alice", store.RosterItem{Contact: "bob@example.org"}))
	check("DeleteRosterItem", db.DeleteRosterItem(ctx, "alice", "bob@example.org"))
	check("PushOffline", db.PushOffline(ctx, "alice", "", time.Now(), []byte("x"), 10))
	_, err = db.OfflineMessages(ctx, "alice")
	check("OfflineMessages", err)
	check("DeleteOffline", db.DeleteOffline(ctx, "alice", 1))
	_, err = db.CountOffline(ctx, "alice")
	check("CountOffline", err)
	check("Ping", db.Ping(ctx))
}
