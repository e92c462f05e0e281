package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"poosms.org/poosms/store"
)

// RunLimits runs the contract of the writes that keep one user's state
// within a limit: roster items, private XML bytes, PEP nodes and node
// bytes, paged PEP retrieval, the archive cap and the offline shares.
// open is as for Run. It includes RunChat's cases about limits.
func RunLimits(t *testing.T, open func(t *testing.T) *store.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"PrivateXMLWithin", testPrivateWithin},
		{"PEPNodesWithin", testPEPNodesWithin},
		{"PEPNodeBytes", testPEPNodeBytes},
		{"PEPItemsPage", testPEPItemsPage},
		{"ArchiveLimitMessages", testArchiveLimitMessages},
		{"ArchiveLimitBytes", testArchiveLimitBytes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
	runChat(t, chatLimitCases, func(t *testing.T) ChatStore { return open(t) })
}

// chatLimitCases are RunLimits' cases that hold for every ChatStore.
var chatLimitCases = []chatCase{
	{"RosterWithin", testRosterWithin},
	{"OfflineShares", testOfflineShares},
}

func testRosterWithin(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	put := func(owner, contact string, limit int) error {
		return db.PutRosterItemWithin(ctx, owner, store.RosterItem{Contact: contact, Listed: true}, limit)
	}
	for i := range 3 {
		if err := put("alice", fmt.Sprintf("c%d@example.org", i), 3); err != nil {
			t.Fatalf("item %d within the limit: %v", i, err)
		}
	}
	if err := put("alice", "c3@example.org", 3); !errors.Is(err, store.ErrLimit) {
		t.Errorf("a fourth contact with limit 3 = %v, want ErrLimit", err)
	}
	// A pending request kept unlisted counts too.
	if err := db.PutRosterItemWithin(ctx, "alice", store.RosterItem{Contact: "c4@example.org", PendingIn: true}, 3); !errors.Is(err, store.ErrLimit) {
		t.Errorf("a pending request past the limit = %v, want ErrLimit", err)
	}
	// Changing an item that is there is not adding one.
	if err := db.PutRosterItemWithin(ctx, "alice", store.RosterItem{Contact: "c1@example.org", Name: "Cee", Listed: true}, 3); err != nil {
		t.Errorf("updating an item at the limit: %v", err)
	}
	if n, err := db.CountRosterItems(ctx, "alice"); err != nil || n != 3 {
		t.Errorf("CountRosterItems = %d, %v; want 3", n, err)
	}
	if it, err := db.RosterItem(ctx, "alice", "c1@example.org"); err != nil || it.Name != "Cee" {
		t.Errorf("updated item = %+v, %v", it, err)
	}
	// Another owner's roster is its own; no limit is no limit.
	if err := put("bob", "c9@example.org", 1); err != nil {
		t.Errorf("bob's first item: %v", err)
	}
	if err := put("alice", "c5@example.org", 0); err != nil {
		t.Errorf("no limit: %v", err)
	}
	if err := put("nobody", "c1@example.org", 3); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown owner = %v, want ErrNotFound", err)
	}
	if n, err := db.CountRosterItems(ctx, "nobody"); err != nil || n != 0 {
		t.Errorf("CountRosterItems(nobody) = %d, %v", n, err)
	}
}

func testPrivateWithin(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	payload := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	if err := db.SetPrivateXMLWithin(ctx, "alice", "a", payload(60), 100); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPrivateXMLWithin(ctx, "alice", "b", payload(41), 100); !errors.Is(err, store.ErrLimit) {
		t.Errorf("101 bytes in all with a limit of 100 = %v, want ErrLimit", err)
	}
	if _, err := db.PrivateXML(ctx, "alice", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused payload was stored: %v", err)
	}
	if err := db.SetPrivateXMLWithin(ctx, "alice", "b", payload(40), 100); err != nil {
		t.Errorf("exactly 100 bytes: %v", err)
	}
	// Replacing a payload counts its new size, not both.
	if err := db.SetPrivateXMLWithin(ctx, "alice", "a", payload(50), 100); err != nil {
		t.Errorf("replacing with a smaller payload: %v", err)
	}
	if err := db.SetPrivateXMLWithin(ctx, "alice", "a", payload(61), 100); !errors.Is(err, store.ErrLimit) {
		t.Errorf("replacing past the limit = %v, want ErrLimit", err)
	}
	if got, _ := db.PrivateXML(ctx, "alice", "a"); len(got) != 50 {
		t.Errorf("payload a is %d bytes after a refused replace, want 50", len(got))
	}
	if err := db.SetPrivateXMLWithin(ctx, "bob", "a", payload(100), 100); err != nil {
		t.Errorf("bob's own bytes: %v", err)
	}
	if err := db.SetPrivateXMLWithin(ctx, "nobody", "a", payload(1), 100); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown owner = %v, want ErrNotFound", err)
	}
}

func testPEPNodesWithin(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	node := func(name string) store.PEPNode {
		return store.PEPNode{Node: name, AccessModel: store.AccessPresence, MaxItems: 1, SendLast: true}
	}
	for i := range 2 {
		if err := db.CreatePEPNode(ctx, "alice", node(fmt.Sprint(i)), 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.CreatePEPNode(ctx, "alice", node("0"), 5); !errors.Is(err, store.ErrExists) {
		t.Errorf("creating a node that exists = %v, want ErrExists", err)
	}
	if err := db.CreatePEPNode(ctx, "alice", node("2"), 2); !errors.Is(err, store.ErrLimit) {
		t.Errorf("a third node with a limit of 2 = %v, want ErrLimit", err)
	}
	if _, err := db.PEPNode(ctx, "alice", "2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused node exists: %v", err)
	}
	if err := db.DeletePEPNode(ctx, "alice", "0"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreatePEPNode(ctx, "alice", node("2"), 2); err != nil {
		t.Errorf("a node after one was deleted: %v", err)
	}
	if got, err := db.PEPNode(ctx, "alice", "2"); err != nil || got != node("2") {
		t.Errorf("created node = %+v, %v", got, err)
	}
	if err := db.CreatePEPNode(ctx, "nobody", node("x"), 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown owner = %v, want ErrNotFound", err)
	}
}

func testPEPNodeBytes(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "n", AccessModel: store.AccessOpen, MaxItems: 3}); err != nil {
		t.Fatal(err)
	}
	publish := func(id string, size int) error {
		return db.PublishPEPItemWithin(ctx, "alice", "n", store.PEPItem{ID: id, Publisher: "alice@example.org/pc",
			Stamp: extT0, Payload: []byte(strings.Repeat("y", size))}, 100)
	}
	for _, id := range []string{"a", "b"} {
		if err := publish(id, 40); err != nil {
			t.Fatal(err)
		}
	}
	if err := publish("c", 21); !errors.Is(err, store.ErrLimit) {
		t.Errorf("101 bytes in the node = %v, want ErrLimit", err)
	}
	pepItemIDs(t, db, "alice", "n", []string{"b", "a"}, 0)
	// Replacing an item counts its new size only.
	if err := publish("a", 60); err != nil {
		t.Errorf("replacing a 40-byte item by 60 bytes (100 in all): %v", err)
	}
	// What max_items drops makes room: with one item kept, a new one of
	// the whole limit replaces it.
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "n", AccessModel: store.AccessOpen, MaxItems: 1}); err != nil {
		t.Fatal(err)
	}
	if err := publish("d", 100); err != nil {
		t.Errorf("100 bytes replacing the only item: %v", err)
	}
	pepItemIDs(t, db, "alice", "n", []string{"d"}, 0)
	if err := publish("e", 101); !errors.Is(err, store.ErrLimit) {
		t.Errorf("one item over the limit = %v, want ErrLimit", err)
	}
	pepItemIDs(t, db, "alice", "n", []string{"d"}, 0)
}

func testPEPItemsPage(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "n", AccessModel: store.AccessOpen}); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		pepPublish(t, db, "alice", "n", fmt.Sprintf("i%d", i), fmt.Sprintf("<p n='%d'/>", i))
	}
	// A big one in the middle, for the byte bound: i7 is 100 bytes.
	pepPublish(t, db, "alice", "n", "i7", strings.Repeat("z", 100))
	pepPublish(t, db, "alice", "n", "i8", "<p n='8'/>")
	for _, tc := range []struct {
		name     string
		q        store.PEPItemQuery
		want     []string
		first    int
		complete bool
	}{
		{"first page", store.PEPItemQuery{Max: 3}, []string{"i0", "i1", "i2"}, 0, false},
		{"next page", store.PEPItemQuery{Max: 3, After: "i2"}, []string{"i3", "i4", "i5"}, 3, false},
		{"last page", store.PEPItemQuery{Max: 3, Last: true}, []string{"i6", "i7", "i8"}, 6, false},
		{"page before", store.PEPItemQuery{Max: 3, Before: "i6"}, []string{"i3", "i4", "i5"}, 3, false},
		{"first from the end", store.PEPItemQuery{Max: 3, Before: "i2"}, []string{"i0", "i1"}, 0, true},
		{"to the end", store.PEPItemQuery{Max: 10, After: "i5"}, []string{"i6", "i7", "i8"}, 6, true},
		{"zero max is one", store.PEPItemQuery{After: "i0"}, []string{"i1"}, 1, false},
		{"bytes stop a forward page", store.PEPItemQuery{Max: 10, After: "i4", MaxBytes: 50}, []string{"i5", "i6"}, 5, false},
		{"bytes stop a backward page", store.PEPItemQuery{Max: 10, Last: true, MaxBytes: 50}, []string{"i8"}, 8, false},
		{"one item over the bytes still comes", store.PEPItemQuery{Max: 10, After: "i6", MaxBytes: 50}, []string{"i7"}, 7, false},
	} {
		p, err := db.PEPItemsPage(ctx, "alice", "n", tc.q)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var got []string
		for _, it := range p.Items {
			got = append(got, it.ID)
		}
		if !slices.Equal(got, tc.want) || p.First != tc.first || p.Complete != tc.complete || p.Count != 9 {
			t.Errorf("%s: %q first=%d complete=%v count=%d; want %q first=%d complete=%v count=9",
				tc.name, got, p.First, p.Complete, p.Count, tc.want, tc.first, tc.complete)
		}
	}
	p, err := db.PEPItemsPage(ctx, "alice", "n", store.PEPItemQuery{Max: 1, Last: true})
	if err != nil || len(p.Items) != 1 || string(p.Items[0].Payload) != "<p n='8'/>" || p.Items[0].Publisher != "alice@example.org/pc" || !p.Items[0].Stamp.Equal(extT0) {
		t.Errorf("newest item read back as %+v, %v", p.Items, err)
	}
	for _, q := range []store.PEPItemQuery{{After: "nope", Max: 2}, {Before: "nope", Max: 2}} {
		if _, err := db.PEPItemsPage(ctx, "alice", "n", q); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("cursor naming no item (%+v) = %v, want ErrNotFound", q, err)
		}
	}
	if _, err := db.PEPItemsPage(ctx, "alice", "missing", store.PEPItemQuery{Max: 2}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing node = %v, want ErrNotFound", err)
	}
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "empty", AccessModel: store.AccessOpen}); err != nil {
		t.Fatal(err)
	}
	if p, err := db.PEPItemsPage(ctx, "alice", "empty", store.PEPItemQuery{Max: 2, Last: true}); err != nil || len(p.Items) != 0 || !p.Complete || p.Count != 0 {
		t.Errorf("empty node: %+v, %v", p, err)
	}
}

// archiveLimited archives n messages of size bytes for owner under lim,
// ids <prefix>0….
func archiveLimited(t *testing.T, db *store.DB, owner, prefix string, n, size int, lim store.ArchiveLimit) {
	t.Helper()
	for i := range n {
		e := store.ArchiveEntry{Owner: owner, Limit: lim, Message: store.ArchivedMessage{
			ID: fmt.Sprintf("%s%d", prefix, i), With: "bob@example.org/phone", Stamp: extT0,
			Stanza: []byte(strings.Repeat("m", size)),
		}}
		if err := db.ArchiveMessages(t.Context(), []store.ArchiveEntry{e}); err != nil {
			t.Fatalf("ArchiveMessages(%s): %v", e.Message.ID, err)
		}
	}
}

func archiveAll(t *testing.T, db *store.DB, owner string) []string {
	t.Helper()
	return archiveIDs(archiveQuery(t, db, owner, store.ArchiveQuery{Max: 1000}))
}

func testArchiveLimitMessages(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	// Messages from before any limit are counted at the first message
	// under one.
	archiveN(t, db, "alice", 40)
	lim := store.ArchiveLimit{Messages: 32}
	for i := range 40 {
		archiveLimited(t, db, "alice", fmt.Sprintf("x%d-", i), 1, 10, lim)
		if got := archiveAll(t, db, "alice"); len(got) > 32 {
			t.Fatalf("after %d messages under a cap of 32 the archive holds %d", i+1, len(got))
		}
	}
	got := archiveAll(t, db, "alice")
	// The newest are kept, the oldest went.
	if len(got) < 30 || got[len(got)-1] != "x39-0" || slices.Contains(got, "m39") {
		t.Errorf("archive under the cap: %d messages %q", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		var a, b int
		fmt.Sscanf(got[i-1], "x%d-", &a)
		fmt.Sscanf(got[i], "x%d-", &b)
		if b != a+1 {
			t.Errorf("kept messages are not the newest run: %q", got)
			break
		}
	}
	// Bob's archive is his own.
	archiveN(t, db, "bob", 3)
	if got := archiveAll(t, db, "bob"); len(got) != 3 {
		t.Errorf("bob's archive: %q", got)
	}
	// A message from a plain ArchiveMessage is counted towards the next
	// trim too.
	archiveN(t, db, "alice", 1)
	archiveLimited(t, db, "alice", "y", 1, 10, lim)
	if got := archiveAll(t, db, "alice"); len(got) > 32 || got[len(got)-1] != "y0" {
		t.Errorf("after mixing: %d messages, last %q", len(got), got[len(got)-1])
	}
}

func testArchiveLimitBytes(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	lim := store.ArchiveLimit{Bytes: 1600}
	for i := range 50 {
		archiveLimited(t, db, "alice", fmt.Sprintf("b%d-", i), 1, 100, lim)
		p := archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 1000})
		total := 0
		for _, m := range p.Messages {
			total += len(m.Stanza)
		}
		if total > 1600 {
			t.Fatalf("after %d messages of 100 bytes under a cap of 1600 bytes the archive holds %d bytes", i+1, total)
		}
	}
	got := archiveAll(t, db, "alice")
	if len(got) < 14 || got[len(got)-1] != "b49-0" {
		t.Errorf("archive under the byte cap: %q", got)
	}
	// One message over the whole cap is kept alone.
	archiveLimited(t, db, "alice", "huge", 1, 5000, lim)
	archiveLimited(t, db, "alice", "huge-again", 1, 5000, lim)
	if got := archiveAll(t, db, "alice"); !slices.Equal(got, []string{"huge-again0"}) {
		t.Errorf("after messages over the cap: %q", got)
	}
}

func testOfflineShares(t *testing.T, db ChatStore) {
	ctx := t.Context()
	mustCreate(t, db, "bob")
	mustCreate(t, db, "carol")
	push := func(owner, sender string) error {
		return db.PushOfflineWithin(ctx, owner, sender, extT0, []byte("<message/>"), 5, 2)
	}
	for range 2 {
		if err := push("bob", "mallory@example.org"); err != nil {
			t.Fatal(err)
		}
	}
	if err := push("bob", "mallory@example.org"); !errors.Is(err, store.ErrLimit) {
		t.Errorf("a third message from one sender with a share of 2 = %v, want ErrLimit", err)
	}
	// Others still get through, each with its own share, until the queue
	// as a whole is full.
	for _, s := range []string{"alice@example.org", "alice@example.org", "dave@example.org"} {
		if err := push("bob", s); err != nil {
			t.Errorf("%s's message: %v", s, err)
		}
	}
	if err := push("bob", "erin@example.org"); !errors.Is(err, store.ErrQueueFull) {
		t.Errorf("a sixth message in a queue of 5 = %v, want ErrQueueFull", err)
	}
	if n, err := db.CountOffline(ctx, "bob"); err != nil || n != 5 {
		t.Errorf("bob's queue holds %d, %v; want 5", n, err)
	}
	// Shares are per recipient; and once read, a sender's share is free.
	if err := push("carol", "mallory@example.org"); err != nil {
		t.Errorf("mallory to carol: %v", err)
	}
	msgs, err := db.OfflineMessages(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteOffline(ctx, "bob", msgs[len(msgs)-1].ID); err != nil {
		t.Fatal(err)
	}
	if err := push("bob", "mallory@example.org"); err != nil {
		t.Errorf("mallory after bob read his queue: %v", err)
	}
	// No share is no share.
	for range 3 {
		if err := db.PushOfflineWithin(ctx, "carol", "mallory@example.org", extT0, []byte("<message/>"), 10, 0); err != nil {
			t.Errorf("no share: %v", err)
		}
	}
}
