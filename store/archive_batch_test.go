package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// Many callers archiving at once share transactions, but each gets its
// own outcome: an entry for a missing account fails alone and the rest
// are all stored.
func testConcurrentArchive(t *testing.T, db *store.DB) {
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateAccount(ctx, u, store.Credentials{Salt: []byte("s"), Iterations: 4096}); err != nil {
			t.Fatal(err)
		}
	}
	const callers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, callers*each)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				owner := "alice"
				if i%5 == 4 {
					owner = "nobody" // no such account
				}
				id := fmt.Sprintf("c%d-%d", c, i)
				err := db.ArchiveMessages(ctx, []store.ArchiveEntry{
					{Owner: "bob", Message: store.ArchivedMessage{ID: id, With: "alice@localhost/r", Stamp: time.Now(), Stanza: []byte("<message/>")}},
					{Owner: owner, Message: store.ArchivedMessage{ID: id, With: "bob@localhost", Stamp: time.Now(), Stanza: []byte("<message/>")}},
				})
				if owner == "nobody" && !errors.Is(err, store.ErrNotFound) {
					errs <- fmt.Errorf("%s for a missing owner: %v, want ErrNotFound", id, err)
				} else if owner != "nobody" && err != nil {
					errs <- fmt.Errorf("%s: %v", id, err)
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	want := callers * each * 4 / 5
	for _, owner := range []string{"alice", "bob"} {
		page, err := db.QueryArchive(ctx, owner, store.ArchiveQuery{Max: 1000})
		if err != nil {
			t.Fatal(err)
		}
		// A failed call is all or none: bob's half is gone with it.
		if page.Count != want {
			t.Errorf("%s has %d archived messages, want %d", owner, page.Count, want)
		}
	}
}

func TestConcurrentArchiveSQLite(t *testing.T) {
	testConcurrentArchive(t, open(t, "sqlite", t.TempDir()))
}

func TestConcurrentArchiveMySQL(t *testing.T) {
	testConcurrentArchive(t, open(t, newMySQLDatabase(t, mysqlServer(t)), ""))
}

// A batch holding a message whose id its owner already has is written
// again caller by caller: that caller alone gets ErrExists.
func testArchiveDuplicateInBatch(t *testing.T, db *store.DB) {
	ctx := context.Background()
	for _, u := range []string{"alice", "bob"} {
		if err := db.CreateAccount(ctx, u, store.Credentials{Salt: []byte("s"), Iterations: 4096}); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(id string) []store.ArchiveEntry {
		m := store.ArchivedMessage{ID: id, With: "bob@localhost", Stamp: time.Now(), Stanza: []byte("<message/>")}
		return []store.ArchiveEntry{{Owner: "alice", Message: m}}
	}
	if err := db.ArchiveMessages(ctx, entry("taken")); err != nil {
		t.Fatal(err)
	}
	const callers = 40
	var wg sync.WaitGroup
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("m%d", i)
			if i%10 == 3 {
				id = "taken"
			}
			errs[i] = db.ArchiveMessages(ctx, entry(id))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%10 == 3 && !errors.Is(err, store.ErrExists) {
			t.Errorf("caller %d reusing an id: %v, want ErrExists", i, err)
		} else if i%10 != 3 && err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	page, err := db.QueryArchive(ctx, "alice", store.ArchiveQuery{Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + callers - callers/10; page.Count != want {
		t.Errorf("alice has %d archived messages, want %d", page.Count, want)
	}
}

func TestArchiveDuplicateInBatchSQLite(t *testing.T) {
	testArchiveDuplicateInBatch(t, open(t, "sqlite", t.TempDir()))
}

func TestArchiveDuplicateInBatchMySQL(t *testing.T) {
	testArchiveDuplicateInBatch(t, open(t, newMySQLDatabase(t, mysqlServer(t)), ""))
}
