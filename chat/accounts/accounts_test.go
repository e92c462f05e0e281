package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/store"
)

// node records what a watcher asked of one node's services, in order.
type node struct {
	mu    sync.Mutex
	calls []string
	db    *store.DB
}

func (n *node) add(s string) {
	n.mu.Lock()
	n.calls = append(n.calls, s)
	n.mu.Unlock()
}

func (n *node) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.calls
	n.calls = nil
	return out
}

func (n *node) EndUser(local string) { n.add("end " + local) }
func (n *node) AccountRemoved(_ context.Context, bare jid.JID) {
	n.add("rooms " + bare.String())
}
func (n *node) DeleteUser(local string) error { n.add("files " + local); return nil }
func (n *node) RevokeSlots(local string, _ time.Time) {
	n.add("revoke " + local)
}

type chatSvc struct{ n *node }

func (c chatSvc) AccountRemoved(_ context.Context, bare jid.JID, contacts []store.PurgedContact) {
	var owners []string
	for _, x := range contacts {
		owners = append(owners, x.Owner)
	}
	c.n.add(fmt.Sprintf("contacts %s %v", bare, owners))
}

func (n *node) services() Services {
	return Services{Sessions: n, Rooms: n, Chat: chatSvc{n}, Files: n, Exists: n.db.AccountExists}
}

// files is Remove's view of the shared files: it notes whether the account
// still existed when its files went.
type files struct {
	db      *store.DB
	deleted []string
}

func (f *files) DeleteUser(local string) error {
	ok, err := f.db.AccountExists(context.Background(), local)
	if err != nil {
		return err
	}
	f.deleted = append(f.deleted, fmt.Sprintf("%s existed=%v", local, ok))
	return nil
}

func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(t.Context(), "sqlite", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func watcher(t *testing.T, db *store.DB, interval time.Duration) *Watcher {
	t.Helper()
	w, err := NewWatcher(Config{Domain: "localhost", Journal: db, Interval: interval, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func waitCalls(t *testing.T, n *node, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for {
		got = append(got, n.take()...)
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("calls:\n  %q\nwant\n  %q", got, want)
	}
}

// TestRemoveAndWatch: Remove deletes the files while the account still
// exists, then the account; each node's watcher applies the deletion once,
// sessions first, whether it syncs at once (the deleting node) or polls
// (the others); deletions older than a watcher's start are not replayed.
func TestRemoveAndWatch(t *testing.T) {
	ctx := t.Context()
	db := openDB(t)
	for _, u := range []string{"alice", "bob", "old"} {
		if err := db.CreateAccount(ctx, u, store.Credentials{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutRosterItem(ctx, "bob", store.RosterItem{Contact: "alice@localhost", Subscription: store.SubBoth, Listed: true}); err != nil {
		t.Fatal(err)
	}
	f := &files{db: db}
	if _, err := Remove(ctx, db, f, "localhost", "old"); err != nil {
		t.Fatal(err)
	}

	here, there := &node{db: db}, &node{db: db}
	wHere := watcher(t, db, time.Hour) // only Sync and Poke move it
	wThere := watcher(t, db, 10*time.Millisecond)
	wHere.Run(here.services())
	wThere.Run(there.services())

	if _, err := Remove(ctx, db, f, "localhost", "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Remove(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := Remove(ctx, db, f, "localhost", "alice"); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.deleted, []string{"old existed=true", "alice existed=true"}) {
		t.Errorf("files deleted: %q; want each while its account still existed", f.deleted)
	}
	want := []string{"end alice", "rooms alice@localhost", "contacts alice@localhost [bob]", "files alice"}
	if err := wHere.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	waitCalls(t, here, want)
	waitCalls(t, there, want)
	for _, w := range []*Watcher{wHere, wThere} {
		if err := w.Sync(ctx); err != nil { // after any poll under way
			t.Fatal(err)
		}
	}
	if got := append(here.take(), there.take()...); len(got) != 0 {
		t.Errorf("a deletion applied twice: %q", got)
	}

	// The name is taken again before a node applies the deletion: the new
	// account keeps its files, the old one's upload URLs are refused.
	if _, err := Remove(ctx, db, nil, "localhost", "bob"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAccount(ctx, "bob", store.Credentials{}); err != nil {
		t.Fatal(err)
	}
	wHere.Poke()
	waitCalls(t, here, []string{"end bob", "rooms bob@localhost", "contacts bob@localhost []", "revoke bob"})
}

// TestWatcherPrunes: the journal keeps entries for Keep, and always the
// newest.
func TestWatcherPrunes(t *testing.T) {
	ctx := t.Context()
	db := openDB(t)
	for _, u := range []string{"u1", "u2", "u3"} {
		if err := db.CreateAccount(ctx, u, store.Credentials{}); err != nil {
			t.Fatal(err)
		}
		if _, err := Remove(ctx, db, nil, "localhost", u); err != nil {
			t.Fatal(err)
		}
	}
	w, err := NewWatcher(Config{Domain: "localhost", Journal: db, Keep: time.Nanosecond, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	w.Run(Services{})
	defer w.Close()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := db.AccountPurges(ctx, 0, 10)
	if err != nil || len(got) != 1 || got[0].Username != "u3" {
		t.Errorf("journal after pruning: %+v, %v; want u3's entry only", got, err)
	}
}
