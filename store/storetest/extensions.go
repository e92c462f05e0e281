package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// RunExtensions runs the contract of the tables behind chat's extensions:
// the message archive, blocklists, PEP nodes and items, vCards and private
// XML storage. open is as for Run.
func RunExtensions(t *testing.T, open func(t *testing.T) *store.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"ArchiveOrderAndFilters", testArchiveFilters},
		{"ArchivePaging", testArchivePaging},
		{"ArchiveUnknown", testArchiveUnknown},
		{"ArchivePrune", testArchivePrune},
		{"ArchiveBothSidesAtOnce", testArchiveBoth},
		{"Blocklist", testBlocklist},
		{"PEPNodesAndItems", testPEP},
		{"PEPMaxItems", testPEPMaxItems},
		{"VCardAndPrivate", testVCardPrivate},
		{"DeleteAccountRemovesExtensions", testDeleteExtensions},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

var extT0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// archiveN stores n messages for owner, one a minute from extT0, ids m0…,
// alternating with bob@example.org/phone and carol@example.org/pc.
func archiveN(t *testing.T, db *store.DB, owner string, n int) {
	t.Helper()
	for i := range n {
		with := "bob@example.org/phone"
		if i%2 == 1 {
			with = "carol@example.org/pc"
		}
		m := store.ArchivedMessage{
			ID: fmt.Sprintf("m%d", i), With: with, Stamp: extT0.Add(time.Duration(i) * time.Minute),
			Stanza: fmt.Appendf(nil, "<message><body>%d</body></message>", i),
		}
		if err := db.ArchiveMessage(t.Context(), owner, m); err != nil {
			t.Fatalf("ArchiveMessage(%s, %s): %v", owner, m.ID, err)
		}
	}
}

func archiveIDs(p store.ArchivePage) []string {
	var out []string
	for _, m := range p.Messages {
		out = append(out, m.ID)
	}
	return out
}

func archiveQuery(t *testing.T, db *store.DB, owner string, q store.ArchiveQuery) store.ArchivePage {
	t.Helper()
	p, err := db.QueryArchive(t.Context(), owner, q)
	if err != nil {
		t.Fatalf("QueryArchive(%+v): %v", q, err)
	}
	return p
}

func testArchiveFilters(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "dave")
	archiveN(t, db, "alice", 6)
	archiveN(t, db, "dave", 2)
	p := archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 100})
	if got := archiveIDs(p); !slices.Equal(got, []string{"m0", "m1", "m2", "m3", "m4", "m5"}) || !p.Complete || p.Count != 6 {
		t.Errorf("all: %q complete=%v count=%d", got, p.Complete, p.Count)
	}
	m := p.Messages[3]
	if m.With != "carol@example.org/pc" || !m.Stamp.Equal(extT0.Add(3*time.Minute)) || string(m.Stanza) != "<message><body>3</body></message>" {
		t.Errorf("message m3 read back as %+v", m)
	}
	for _, tc := range []struct {
		name string
		q    store.ArchiveQuery
		want []string
	}{
		{"with bare", store.ArchiveQuery{With: "bob@example.org"}, []string{"m0", "m2", "m4"}},
		{"with full", store.ArchiveQuery{With: "carol@example.org/pc"}, []string{"m1", "m3", "m5"}},
		{"with other resource", store.ArchiveQuery{With: "carol@example.org/phone"}, nil},
		{"start inclusive", store.ArchiveQuery{Start: extT0.Add(4 * time.Minute)}, []string{"m4", "m5"}},
		{"end inclusive", store.ArchiveQuery{End: extT0.Add(time.Minute)}, []string{"m0", "m1"}},
		{"start and end", store.ArchiveQuery{Start: extT0.Add(2 * time.Minute), End: extT0.Add(3 * time.Minute)}, []string{"m2", "m3"}},
		{"after-id", store.ArchiveQuery{AfterID: "m3"}, []string{"m4", "m5"}},
		{"before-id", store.ArchiveQuery{BeforeID: "m2"}, []string{"m0", "m1"}},
		{"ids", store.ArchiveQuery{IDs: []string{"m5", "m1", "nope"}}, []string{"m1", "m5"}},
		{"with and after-id", store.ArchiveQuery{With: "bob@example.org", AfterID: "m0"}, []string{"m2", "m4"}},
	} {
		tc.q.Max = 100
		p := archiveQuery(t, db, "alice", tc.q)
		if got := archiveIDs(p); !slices.Equal(got, tc.want) || p.Count != len(tc.want) || !p.Complete {
			t.Errorf("%s: %q count=%d complete=%v, want %q", tc.name, got, p.Count, p.Complete, tc.want)
		}
	}
	if p := archiveQuery(t, db, "dave", store.ArchiveQuery{Max: 100}); p.Count != 2 {
		t.Errorf("dave sees %d messages, want his own 2", p.Count)
	}
	// Stanza ids are per owner: dave's m0 does not clash with alice's.
	err := db.ArchiveMessage(t.Context(), "alice", store.ArchivedMessage{ID: "m0", With: "x@y", Stamp: extT0})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("duplicate id = %v, want ErrExists", err)
	}
}

func testArchivePaging(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	archiveN(t, db, "alice", 7)
	for _, tc := range []struct {
		name     string
		q        store.ArchiveQuery
		want     []string
		complete bool
	}{
		{"first page", store.ArchiveQuery{Max: 3}, []string{"m0", "m1", "m2"}, false},
		{"next page", store.ArchiveQuery{Max: 3, After: "m2"}, []string{"m3", "m4", "m5"}, false},
		{"final page", store.ArchiveQuery{Max: 3, After: "m5"}, []string{"m6"}, true},
		{"exact final page", store.ArchiveQuery{Max: 3, After: "m3"}, []string{"m4", "m5", "m6"}, true},
		{"last page", store.ArchiveQuery{Max: 3, Last: true}, []string{"m4", "m5", "m6"}, false},
		{"page before", store.ArchiveQuery{Max: 3, Before: "m4"}, []string{"m1", "m2", "m3"}, false},
		{"first from the end", store.ArchiveQuery{Max: 3, Before: "m1"}, []string{"m0"}, true},
		{"count only", store.ArchiveQuery{Max: 0}, nil, false},
		{"filtered paging", store.ArchiveQuery{With: "bob@example.org", Max: 2, After: "m2"}, []string{"m4", "m6"}, true},
	} {
		p := archiveQuery(t, db, "alice", tc.q)
		wantCount := 7
		if tc.q.With != "" {
			wantCount = 4
		}
		if got := archiveIDs(p); !slices.Equal(got, tc.want) || p.Complete != tc.complete || p.Count != wantCount {
			t.Errorf("%s: %q complete=%v count=%d, want %q complete=%v count=%d",
				tc.name, got, p.Complete, p.Count, tc.want, tc.complete, wantCount)
		}
	}
}

func testArchiveUnknown(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	archiveN(t, db, "bob", 2)
	err := db.ArchiveMessage(t.Context(), "nobody", store.ArchivedMessage{ID: "x", With: "a@b", Stamp: extT0})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("archive for an unknown owner = %v, want ErrNotFound", err)
	}
	// Bob's ids are not cursors in alice's archive.
	for _, q := range []store.ArchiveQuery{{After: "m0", Max: 5}, {Before: "m1", Max: 5}, {AfterID: "m0", Max: 5}, {BeforeID: "m0"}} {
		if _, err := db.QueryArchive(t.Context(), "alice", q); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("QueryArchive(%+v) with another user's id = %v, want ErrNotFound", q, err)
		}
	}
	if p := archiveQuery(t, db, "nobody", store.ArchiveQuery{Max: 5}); len(p.Messages) != 0 || p.Count != 0 {
		t.Errorf("unknown owner's archive: %+v", p)
	}
}

func testArchivePrune(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	archiveN(t, db, "alice", 5)
	archiveN(t, db, "bob", 3)
	n, err := db.PruneArchive(t.Context(), extT0.Add(2*time.Minute))
	if err != nil || n != 4 {
		t.Fatalf("PruneArchive = %d, %v; want 4 (two of each)", n, err)
	}
	if got := archiveIDs(archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 10})); !slices.Equal(got, []string{"m2", "m3", "m4"}) {
		t.Errorf("alice after prune: %q", got)
	}
	if got := archiveIDs(archiveQuery(t, db, "bob", store.ArchiveQuery{Max: 10})); !slices.Equal(got, []string{"m2"}) {
		t.Errorf("bob after prune: %q", got)
	}
}

func testBlocklist(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	if err := db.Block(ctx, "nobody", []string{"x@y"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Block for an unknown owner = %v, want ErrNotFound", err)
	}
	if err := db.Block(ctx, "alice", []string{"spam.example", "eve@example.org", "eve@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Block(ctx, "alice", []string{"mallory@example.org/bot", "eve@example.org"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Block(ctx, "bob", []string{"carol@example.org"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"eve@example.org", "mallory@example.org/bot", "spam.example"}
	if got, err := db.BlockList(ctx, "alice"); err != nil || !slices.Equal(got, want) {
		t.Errorf("BlockList = %q, %v; want %q", got, err, want)
	}
	if err := db.Unblock(ctx, "alice", []string{"eve@example.org", "never@blocked"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.BlockList(ctx, "alice"); !slices.Equal(got, want[1:]) {
		t.Errorf("after unblock: %q, want %q", got, want[1:])
	}
	if err := db.Unblock(ctx, "alice", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := db.BlockList(ctx, "alice"); len(got) != 0 {
		t.Errorf("after unblock all: %q", got)
	}
	if got, _ := db.BlockList(ctx, "bob"); !slices.Equal(got, []string{"carol@example.org"}) {
		t.Errorf("bob's list changed with alice's: %q", got)
	}
}

func pepPublish(t *testing.T, db *store.DB, owner, node, id, payload string) {
	t.Helper()
	it := store.PEPItem{ID: id, Publisher: owner + "@example.org/pc", Stamp: extT0, Payload: []byte(payload)}
	if err := db.PublishPEPItem(t.Context(), owner, node, it); err != nil {
		t.Fatalf("PublishPEPItem(%s, %s, %s): %v", owner, node, id, err)
	}
}

func pepItemIDs(t *testing.T, db *store.DB, owner, node string, want []string, max int, ask ...string) {
	t.Helper()
	items, err := db.PEPItems(t.Context(), owner, node, ask, max)
	if err != nil {
		t.Fatalf("PEPItems(%s, %s): %v", owner, node, err)
	}
	var got []string
	for _, it := range items {
		got = append(got, it.ID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("items of %s/%s = %q, want %q", owner, node, got, want)
	}
}

func testPEP(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	const devices = "eu.siacs.conversations.axolotl.devicelist"
	if err := db.PutPEPNode(ctx, "nobody", store.PEPNode{Node: devices, AccessModel: store.AccessOpen}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutPEPNode for an unknown owner = %v", err)
	}
	if err := db.PublishPEPItem(ctx, "alice", devices, store.PEPItem{ID: "current"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("publish to a missing node = %v, want ErrNotFound", err)
	}
	n := store.PEPNode{Node: devices, AccessModel: store.AccessOpen, MaxItems: 1, SendLast: true}
	if err := db.PutPEPNode(ctx, "alice", n); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "urn:xmpp:bookmarks:1", AccessModel: store.AccessWhitelist}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.PEPNode(ctx, "alice", devices); err != nil || got != n {
		t.Errorf("PEPNode = %+v, %v; want %+v", got, err, n)
	}
	if _, err := db.PEPNode(ctx, "bob", devices); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's node = %v, want ErrNotFound", err)
	}
	nodes, err := db.PEPNodes(ctx, "alice")
	if err != nil || len(nodes) != 2 || nodes[0].Node != devices || nodes[1].AccessModel != store.AccessWhitelist || nodes[1].SendLast {
		t.Errorf("PEPNodes = %+v, %v", nodes, err)
	}
	pepPublish(t, db, "alice", devices, "current", "<list><device id='1'/></list>")
	pepPublish(t, db, "alice", devices, "current", "<list><device id='1'/><device id='2'/></list>")
	items, err := db.PEPItems(ctx, "alice", devices, nil, 0)
	if err != nil || len(items) != 1 || string(items[0].Payload) != "<list><device id='1'/><device id='2'/></list>" ||
		items[0].Publisher != "alice@example.org/pc" || !items[0].Stamp.Equal(extT0) {
		t.Errorf("items after republish: %+v, %v", items, err)
	}
	const bm = "urn:xmpp:bookmarks:1"
	for _, id := range []string{"a@conference.example.org", "b@conference.example.org", "c@conference.example.org"} {
		pepPublish(t, db, "alice", bm, id, "<conference/>")
	}
	pepPublish(t, db, "alice", bm, "a@conference.example.org", "<conference autojoin='true'/>")
	pepItemIDs(t, db, "alice", bm, []string{"a@conference.example.org", "c@conference.example.org", "b@conference.example.org"}, 0)
	pepItemIDs(t, db, "alice", bm, []string{"a@conference.example.org"}, 1)
	pepItemIDs(t, db, "alice", bm, []string{"c@conference.example.org", "b@conference.example.org"}, 0, "b@conference.example.org", "c@conference.example.org")
	if err := db.RetractPEPItem(ctx, "alice", bm, "c@conference.example.org"); err != nil {
		t.Fatal(err)
	}
	if err := db.RetractPEPItem(ctx, "alice", bm, "c@conference.example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second retract = %v, want ErrNotFound", err)
	}
	pepItemIDs(t, db, "alice", bm, []string{"a@conference.example.org", "b@conference.example.org"}, 0)
	if err := db.DeletePEPNode(ctx, "alice", bm); err != nil {
		t.Fatal(err)
	}
	if _, err := db.PEPItems(ctx, "alice", bm, nil, 0); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("items of a deleted node = %v, want ErrNotFound", err)
	}
	// A node created again starts empty.
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: bm, AccessModel: store.AccessWhitelist}); err != nil {
		t.Fatal(err)
	}
	pepItemIDs(t, db, "alice", bm, nil, 0)
	if err := db.DeletePEPNode(ctx, "bob", bm); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting a missing node = %v, want ErrNotFound", err)
	}
}

func testPEPMaxItems(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "n", AccessModel: store.AccessPresence, MaxItems: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		pepPublish(t, db, "alice", "n", fmt.Sprint(i), "<x/>")
	}
	pepItemIDs(t, db, "alice", "n", []string{"4", "3", "2"}, 0)
	if err := db.PutPEPNode(ctx, "alice", store.PEPNode{Node: "n", AccessModel: store.AccessPresence, MaxItems: 1}); err != nil {
		t.Fatal(err)
	}
	pepItemIDs(t, db, "alice", "n", []string{"4"}, 0)
}

func testVCardPrivate(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	if _, err := db.VCard(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("VCard before set = %v, want ErrNotFound", err)
	}
	if err := db.SetVCard(ctx, "nobody", []byte("<vCard/>")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetVCard for an unknown owner = %v", err)
	}
	for _, v := range []string{"<vCard><FN>Alice</FN></vCard>", "<vCard><FN>Alice A.</FN></vCard>"} {
		if err := db.SetVCard(ctx, "alice", []byte(v)); err != nil {
			t.Fatal(err)
		}
		if got, err := db.VCard(ctx, "alice"); err != nil || string(got) != v {
			t.Errorf("VCard = %q, %v; want %q", got, err, v)
		}
	}
	if _, err := db.VCard(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("bob's vCard = %v, want ErrNotFound", err)
	}

	if _, err := db.PrivateXML(ctx, "alice", "storage:bookmarks"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PrivateXML before set = %v", err)
	}
	if err := db.SetPrivateXML(ctx, "nobody", "a", []byte("<a/>")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetPrivateXML for an unknown owner = %v", err)
	}
	set := func(owner, ns, v string) {
		t.Helper()
		if err := db.SetPrivateXML(ctx, owner, ns, []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	set("alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'/>")
	set("alice", "urn:example:prefs", "<prefs xmlns='urn:example:prefs'>1</prefs>")
	set("alice", "urn:example:prefs", "<prefs xmlns='urn:example:prefs'>2</prefs>")
	set("bob", "urn:example:prefs", "<prefs xmlns='urn:example:prefs'>bob</prefs>")
	if got, _ := db.PrivateXML(ctx, "alice", "urn:example:prefs"); string(got) != "<prefs xmlns='urn:example:prefs'>2</prefs>" {
		t.Errorf("alice's prefs = %q", got)
	}
	if got, _ := db.PrivateXML(ctx, "alice", "storage:bookmarks"); string(got) != "<storage xmlns='storage:bookmarks'/>" {
		t.Errorf("alice's bookmarks = %q", got)
	}
	if got, _ := db.PrivateXML(ctx, "bob", "urn:example:prefs"); string(got) != "<prefs xmlns='urn:example:prefs'>bob</prefs>" {
		t.Errorf("bob's prefs = %q", got)
	}
}

func testDeleteExtensions(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	for _, u := range []string{"alice", "bob"} {
		archiveN(t, db, u, 2)
		if err := db.Block(ctx, u, []string{"eve@example.org"}); err != nil {
			t.Fatal(err)
		}
		if err := db.PutPEPNode(ctx, u, store.PEPNode{Node: "n", AccessModel: store.AccessOpen}); err != nil {
			t.Fatal(err)
		}
		pepPublish(t, db, u, "n", "1", "<x/>")
		if err := db.SetVCard(ctx, u, []byte("<vCard/>")); err != nil {
			t.Fatal(err)
		}
		if err := db.SetPrivateXML(ctx, u, "urn:x", []byte("<x xmlns='urn:x'/>")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.PurgeAccount(t.Context(), "alice", "alice@example.org"); err != nil {
		t.Fatalf("PurgeAccount: %v", err)
	}
	mustCreate(t, db, "alice")
	if p := archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 10}); p.Count != 0 {
		t.Errorf("new alice has %d archived messages", p.Count)
	}
	if l, _ := db.BlockList(ctx, "alice"); len(l) != 0 {
		t.Errorf("new alice's blocklist %q", l)
	}
	if n, _ := db.PEPNodes(ctx, "alice"); len(n) != 0 {
		t.Errorf("new alice's nodes %+v", n)
	}
	if _, err := db.VCard(ctx, "alice"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new alice's vCard: %v", err)
	}
	if _, err := db.PrivateXML(ctx, "alice", "urn:x"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("new alice's private XML: %v", err)
	}
	// Bob keeps everything.
	if p := archiveQuery(t, db, "bob", store.ArchiveQuery{Max: 10}); p.Count != 2 {
		t.Errorf("bob has %d archived messages, want 2", p.Count)
	}
	pepItemIDs(t, db, "bob", "n", []string{"1"}, 0)
	if _, err := db.VCard(ctx, "bob"); err != nil {
		t.Errorf("bob's vCard: %v", err)
	}
}

func testArchiveBoth(t *testing.T, db *store.DB) {
	mustCreate(t, db, "alice")
	mustCreate(t, db, "bob")
	msg := func(id, with string) store.ArchivedMessage {
		return store.ArchivedMessage{ID: id, With: with, Stamp: extT0, Stanza: []byte("<message/>")}
	}
	err := db.ArchiveMessages(t.Context(), []store.ArchiveEntry{
		{Owner: "alice", Message: msg("a1", "bob@example.org")},
		{Owner: "bob", Message: msg("b1", "alice@example.org/pc")},
	})
	if err != nil {
		t.Fatalf("ArchiveMessages: %v", err)
	}
	if p := archiveQuery(t, db, "bob", store.ArchiveQuery{With: "alice@example.org", Max: 5}); p.Count != 1 {
		t.Errorf("bob's archive: %+v", p)
	}
	// All or none: an unknown owner or a taken id stores nothing.
	for _, second := range []store.ArchiveEntry{
		{Owner: "nobody", Message: msg("n1", "alice@example.org")},
		{Owner: "bob", Message: msg("b1", "alice@example.org")},
	} {
		err := db.ArchiveMessages(t.Context(), []store.ArchiveEntry{{Owner: "alice", Message: msg("a2", "x@y")}, second})
		if err == nil {
			t.Errorf("ArchiveMessages with %+v succeeded", second)
		}
		if p := archiveQuery(t, db, "alice", store.ArchiveQuery{Max: 5}); p.Count != 1 {
			t.Errorf("a failed pair left %d messages in alice's archive, want 1", p.Count)
		}
	}
}
