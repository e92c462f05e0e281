package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// The contract of deleting an account for good (PurgeAccount): the account
// and all it owns go, so do the rows of others that name it, except the
// bans and blocks others set against it; a new account with the same name
// starts with nothing; every deletion is in the account journal.

const aliceJID = "alice@example.org"

// seedAlice gives alice something in every table that names her, and
// bob and carol things of their own.
func seedAlice(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := t.Context()
	for _, u := range []string{"alice", "bob", "carol", "dave"} {
		mustCreate(t, db, u)
	}
	put := func(owner string, it store.RosterItem) {
		t.Helper()
		if err := db.PutRosterItem(ctx, owner, it); err != nil {
			t.Fatalf("PutRosterItem(%s, %s): %v", owner, it.Contact, err)
		}
	}
	// alice's own roster, and the items others hold for her.
	put("alice", store.RosterItem{Contact: "bob@example.org", Subscription: store.SubBoth, Listed: true})
	put("bob", store.RosterItem{Contact: aliceJID, Name: "Al", Subscription: store.SubBoth, Listed: true, Groups: []string{"Friends"}})
	put("carol", store.RosterItem{Contact: aliceJID, Subscription: store.SubNone, PendingIn: true})
	put("dave", store.RosterItem{Contact: aliceJID, Subscription: store.SubFrom, AskOut: true, Listed: true})
	put("bob", store.RosterItem{Contact: "carol@example.org", Subscription: store.SubTo, Listed: true})

	// Offline messages: to alice, from alice to bob, from carol to bob.
	pushFrom := func(owner, sender, body string) {
		t.Helper()
		if err := db.PushOffline(ctx, owner, sender, time.Now(), []byte(body), 10); err != nil {
			t.Fatalf("PushOffline(%s from %s): %v", owner, sender, err)
		}
	}
	pushFrom("alice", "bob@example.org", "to-alice")
	pushFrom("bob", aliceJID, "from-alice")
	pushFrom("bob", "carol@example.org", "from-carol")

	// What alice owns besides.
	archiveN(t, db, "alice", 2)
	archiveN(t, db, "bob", 2)
	if err := db.Block(ctx, "alice", []string{"eve@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "urn:xmpp:avatar:metadata", AccessModel: store.AccessPresence}); err != nil {
		t.Fatal(err)
	}
	pepPublish(t, db, "alice", "urn:xmpp:avatar:metadata", "1", "<metadata/>")
	if err := db.SetVCard(ctx, "alice", []byte("<vCard><FN>Alice</FN></vCard>")); err != nil {
		t.Fatal(err)
	}
	if err := db.SetPrivateXML(ctx, "alice", "storage:bookmarks", []byte("<storage xmlns='storage:bookmarks'/>")); err != nil {
		t.Fatal(err)
	}
	mustList(t, db, store.DirectoryEntry{Username: "alice", Nick: "al", Interests: []string{"go"}})

	// Rooms: alice owns one, is a member of another, banned from a third.
	for room, aff := range map[string]string{"owned": store.AffOwner, "club": store.AffMember, "strict": store.AffOutcast, "staff": store.AffAdmin} {
		mustPutRoom(t, db, store.Room{Name: room, Config: []byte(`{}`)})
		if err := db.SetRoomAffiliation(ctx, room, store.RoomAffiliation{JID: aliceJID, Affiliation: aff, Reason: "r", Nick: "al"}); err != nil {
			t.Fatal(err)
		}
		if err := db.SetRoomAffiliation(ctx, room, store.RoomAffiliation{JID: "bob@example.org", Affiliation: store.AffOwner}); err != nil {
			t.Fatal(err)
		}
	}
}

func testPurgeAccount(t *testing.T, db *store.DB) {
	ctx := t.Context()
	seedAlice(t, db)
	before := time.Now().Add(-time.Second)
	p, err := db.PurgeAccount(ctx, "alice", aliceJID)
	if err != nil {
		t.Fatalf("PurgeAccount: %v", err)
	}

	// The journal entry says who held alice in their roster, and how.
	if p.Seq <= 0 || p.Username != "alice" || p.At.Before(before) || p.At.After(time.Now().Add(time.Second)) {
		t.Errorf("journal entry = %+v", p)
	}
	want := []store.PurgedContact{
		{Owner: "bob", Subscription: store.SubBoth, Listed: true},
		{Owner: "carol", Subscription: store.SubNone, PendingIn: true},
		{Owner: "dave", Subscription: store.SubFrom, AskOut: true, Listed: true},
	}
	if !slices.Equal(p.Contacts, want) {
		t.Errorf("Contacts = %+v\nwant       %+v", p.Contacts, want)
	}
	got, err := db.AccountPurges(ctx, 0, 10)
	if err != nil || len(got) != 1 || got[0].Seq != p.Seq || got[0].Username != "alice" ||
		!got[0].At.Equal(p.At) || !slices.Equal(got[0].Contacts, want) {
		t.Errorf("AccountPurges(0) = %+v, %v; want [%+v]", got, err, p)
	}

	// Nobody's roster names alice any more; bob keeps his other contact.
	for _, owner := range []string{"bob", "carol", "dave"} {
		if _, err := db.RosterItem(ctx, owner, aliceJID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s's roster item for alice after the purge: %v, want ErrNotFound", owner, err)
		}
	}
	if _, err := db.RosterItem(ctx, "bob", "carol@example.org"); err != nil {
		t.Errorf("bob's item for carol: %v", err)
	}
	// What alice left in bob's queue goes; what carol left stays.
	if msgs, err := db.OfflineMessages(ctx, "bob"); err != nil || !slices.Equal(stanzas(msgs), []string{"from-carol"}) {
		t.Errorf("bob's offline queue = %q, %v; want [from-carol]", stanzas(msgs), err)
	}
	// Owner, admin and member affiliations go; the ban stays; bob keeps his.
	for room, wantAff := range map[string]string{"owned": "", "club": "", "staff": "", "strict": store.AffOutcast} {
		affs, err := db.RoomAffiliations(ctx, room)
		if err != nil {
			t.Fatal(err)
		}
		gotAff, bobs := "", false
		for _, a := range affs {
			switch a.JID {
			case aliceJID:
				gotAff = a.Affiliation
			case "bob@example.org":
				bobs = a.Affiliation == store.AffOwner
			}
		}
		if gotAff != wantAff || !bobs {
			t.Errorf("room %s: alice's affiliation %q (want %q), bob still owner %v", room, gotAff, wantAff, bobs)
		}
	}
	// Others' archives stay.
	if p := archiveQuery(t, db, "bob", store.ArchiveQuery{Max: 10}); p.Count != 2 {
		t.Errorf("bob has %d archived messages, want 2", p.Count)
	}

	// A new alice inherits nothing.
	mustCreate(t, db, "alice")
	if items, err := db.RosterItems(ctx, "alice"); err != nil || len(items) != 0 {
		t.Errorf("new alice's roster = %+v, %v", items, err)
	}
	if msgs, err := db.OfflineMessages(ctx, "alice"); err != nil || len(msgs) != 0 {
		t.Errorf("new alice's offline queue = %q, %v", stanzas(msgs), err)
	}
	if p := archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 10}); p.Count != 0 {
		t.Errorf("new alice has %d archived messages", p.Count)
	}
	if l, err := db.BlockList(ctx, "alice"); err != nil || len(l) != 0 {
		t.Errorf("new alice's blocklist = %q, %v", l, err)
	}
	if n, err := db.PEPNodes(ctx, "alice"); err != nil || len(n) != 0 {
		t.Errorf("new alice's PEP nodes = %+v, %v", n, err)
	}
	if _, err := db.VCard(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new alice's vCard: %v, want ErrNotFound", err)
	}
	if _, err := db.PrivateXML(ctx, "alice", "storage:bookmarks"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new alice's bookmarks: %v, want ErrNotFound", err)
	}
	if _, err := db.DirectoryEntry(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new alice's directory listing: %v, want ErrNotFound", err)
	}
	for _, owner := range []string{"bob", "carol", "dave"} {
		if _, err := db.RosterItem(ctx, owner, aliceJID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s's roster names the new alice: %v", owner, err)
		}
	}

	// Deleting the new alice is a second journal entry, later in order.
	p2, err := db.PurgeAccount(ctx, "alice", aliceJID)
	if err != nil || p2.Seq <= p.Seq || len(p2.Contacts) != 0 {
		t.Errorf("second PurgeAccount = %+v, %v; want a later entry with no contacts", p2, err)
	}
	if _, err := db.PurgeAccount(ctx, "alice", aliceJID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PurgeAccount of a deleted account = %v, want ErrNotFound", err)
	}
}

// testPurgeKeepsBansAndBlocks: deleting an account and registering the
// name again does not undo what others did against it.
func testPurgeKeepsBansAndBlocks(t *testing.T, db *store.DB) {
	ctx := t.Context()
	seedAlice(t, db)
	if err := db.Block(ctx, "bob", []string{aliceJID}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PurgeAccount(ctx, "alice", aliceJID); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, db, "alice")
	if l, err := db.BlockList(ctx, "bob"); err != nil || !slices.Contains(l, aliceJID) {
		t.Errorf("bob's blocklist = %q, %v; want it to still block alice", l, err)
	}
	affs, err := db.RoomAffiliations(ctx, "strict")
	if err != nil || !slices.ContainsFunc(affs, func(a store.RoomAffiliation) bool {
		return a.JID == aliceJID && a.Affiliation == store.AffOutcast
	}) {
		t.Errorf("strict's affiliations = %+v, %v; want alice still banned", affs, err)
	}
}

func testAccountJournal(t *testing.T, db *store.DB) {
	ctx := t.Context()
	if last, err := db.LastAccountPurge(ctx); err != nil || last != 0 {
		t.Errorf("LastAccountPurge on an empty journal = %d, %v", last, err)
	}
	var seqs []int64
	for _, u := range []string{"u1", "u2", "u3", "u4"} {
		mustCreate(t, db, u)
		p, err := db.PurgeAccount(ctx, u, u+"@example.org")
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && p.Seq <= seqs[len(seqs)-1] {
			t.Errorf("sequence went from %d to %d", seqs[len(seqs)-1], p.Seq)
		}
		seqs = append(seqs, p.Seq)
	}
	if last, err := db.LastAccountPurge(ctx); err != nil || last != seqs[3] {
		t.Errorf("LastAccountPurge = %d, %v; want %d", last, err, seqs[3])
	}
	got, err := db.AccountPurges(ctx, seqs[0], 2)
	if err != nil || len(got) != 2 || got[0].Username != "u2" || got[1].Username != "u3" {
		t.Errorf("AccountPurges(after %d, 2) = %+v, %v; want u2, u3", seqs[0], got, err)
	}
	if got, err := db.AccountPurges(ctx, seqs[3], 10); err != nil || len(got) != 0 {
		t.Errorf("AccountPurges after the last = %+v, %v", got, err)
	}
	// Pruning everything keeps the newest entry, so the sequence goes on.
	if err := db.PruneAccountPurges(ctx, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, err = db.AccountPurges(ctx, 0, 10)
	if err != nil || len(got) != 1 || got[0].Seq != seqs[3] {
		t.Errorf("after pruning: %+v, %v; want only entry %d", got, err, seqs[3])
	}
	mustCreate(t, db, "u5")
	if p, err := db.PurgeAccount(ctx, "u5", "u5@example.org"); err != nil || p.Seq <= seqs[3] {
		t.Errorf("purge after pruning = %+v, %v; want a sequence after %d", p, err, seqs[3])
	}
}
