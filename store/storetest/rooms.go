package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"poosms.org/poosms/store"
)

// RunRooms runs the group-room part of the contract. open must return a
// new, empty, migrated database for each call.
func RunRooms(t *testing.T, open func(t *testing.T) *store.DB) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, db *store.DB)
	}{
		{"PutAndLoad", testRoomPutAndLoad},
		{"Replace", testRoomReplace},
		{"Affiliations", testRoomAffiliations},
		{"AffiliationUnknownRoom", testRoomAffiliationUnknownRoom},
		{"Delete", testRoomDelete},
		{"ArchivePaging", testRoomArchivePaging},
		{"ArchiveFilters", testRoomArchiveFilters},
		{"ArchiveUnknownID", testRoomArchiveUnknownID},
		{"ArchiveDuplicateID", testRoomArchiveDuplicateID},
		{"Prune", testRoomPrune},
		{"Closed", testRoomClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func mustPutRoom(t *testing.T, db *store.DB, r store.Room) {
	t.Helper()
	if err := db.PutRoom(t.Context(), r); err != nil {
		t.Fatalf("PutRoom(%q): %v", r.Name, err)
	}
}

func testRoomPutAndLoad(t *testing.T, db *store.DB) {
	ctx := t.Context()
	created := time.Date(2026, 11, 25, 10, 0, 0, 123_000, time.UTC)
	mustPutRoom(t, db, store.Room{Name: "zeta", Config: []byte(`{"a":1}`), Subject: "Zé 😀", SubjectNick: "ann", Created: created})
	mustPutRoom(t, db, store.Room{Name: "alpha"})
	rooms, err := db.Rooms(ctx)
	if err != nil {
		t.Fatalf("Rooms: %v", err)
	}
	if len(rooms) != 2 || rooms[0].Name != "alpha" || rooms[1].Name != "zeta" {
		t.Fatalf("Rooms = %+v, want alpha then zeta", rooms)
	}
	z := rooms[1]
	if string(z.Config) != `{"a":1}` || z.Subject != "Zé 😀" || z.SubjectNick != "ann" || !z.Created.Equal(created) {
		t.Errorf("zeta = %+v", z)
	}
	if string(rooms[0].Config) != "{}" || rooms[0].Created.IsZero() {
		t.Errorf("alpha with defaults = %+v, want config {} and a creation time", rooms[0])
	}
	if r, err := db.Room(ctx, "zeta"); err != nil || r.Subject != "Zé 😀" {
		t.Errorf("Room(zeta) = %+v, %v", r, err)
	}
	if _, err := db.Room(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Room(nope) = %v, want ErrNotFound", err)
	}
	if err := db.PutRoom(ctx, store.Room{}); err == nil {
		t.Error("PutRoom with no name succeeded")
	}
}

func testRoomReplace(t *testing.T, db *store.DB) {
	ctx := t.Context()
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	mustPutRoom(t, db, store.Room{Name: "r", Config: []byte(`{"v":1}`), Created: created})
	if err := db.SetRoomAffiliation(ctx, "r", store.RoomAffiliation{JID: "a@x", Affiliation: store.AffOwner}); err != nil {
		t.Fatal(err)
	}
	mustPutRoom(t, db, store.Room{Name: "r", Config: []byte(`{"v":2}`), Subject: "new", Created: created.Add(time.Hour)})
	r, err := db.Room(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Config) != `{"v":2}` || r.Subject != "new" {
		t.Errorf("after replace = %+v", r)
	}
	if !r.Created.Equal(created) {
		t.Errorf("replace changed the creation time to %v", r.Created)
	}
	affs, err := db.RoomAffiliations(ctx, "r")
	if err != nil || len(affs) != 1 {
		t.Errorf("affiliations after replace = %+v, %v; want the owner kept", affs, err)
	}
}

func testRoomAffiliations(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustPutRoom(t, db, store.Room{Name: "r"})
	mustPutRoom(t, db, store.Room{Name: "other"})
	set := func(room, j, aff, reason string) {
		t.Helper()
		if err := db.SetRoomAffiliation(ctx, room, store.RoomAffiliation{JID: j, Affiliation: aff, Reason: reason}); err != nil {
			t.Fatalf("SetRoomAffiliation(%s, %s, %s): %v", room, j, aff, err)
		}
	}
	set("r", "carol@x", store.AffMember, "")
	set("r", "alice@x", store.AffOwner, "")
	set("r", "bob@x", store.AffOutcast, "spam")
	set("other", "alice@x", store.AffMember, "")
	set("r", "carol@x", store.AffAdmin, "promoted")
	set("r", "dave@x", store.AffNone, "") // nothing to remove
	affs, err := db.RoomAffiliations(ctx, "r")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.RoomAffiliation{
		{JID: "alice@x", Affiliation: store.AffOwner},
		{JID: "bob@x", Affiliation: store.AffOutcast, Reason: "spam"},
		{JID: "carol@x", Affiliation: store.AffAdmin, Reason: "promoted"},
	}
	if !slices.Equal(affs, want) {
		t.Errorf("RoomAffiliations = %+v, want %+v", affs, want)
	}
	set("r", "bob@x", store.AffNone, "")
	affs, _ = db.RoomAffiliations(ctx, "r")
	if len(affs) != 2 {
		t.Errorf("after removing bob: %+v", affs)
	}
	if err := db.SetRoomAffiliation(ctx, "r", store.RoomAffiliation{JID: "e@x", Affiliation: "king"}); err == nil {
		t.Error("an invalid affiliation was stored")
	}
	if affs, err := db.RoomAffiliations(ctx, "nope"); err != nil || len(affs) != 0 {
		t.Errorf("RoomAffiliations(nope) = %+v, %v", affs, err)
	}
}

func testRoomAffiliationUnknownRoom(t *testing.T, db *store.DB) {
	err := db.SetRoomAffiliation(t.Context(), "nope", store.RoomAffiliation{JID: "a@x", Affiliation: store.AffMember})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("SetRoomAffiliation on a room not stored = %v, want ErrNotFound", err)
	}
}

func appendMsg(t *testing.T, db *store.DB, room, id, nick string, stamp time.Time) {
	t.Helper()
	err := db.AppendRoomMessage(t.Context(), store.RoomMessage{
		Room: room, StanzaID: id, Stamp: stamp, Nick: nick, Sender: nick + "@x",
		Stanza: []byte("<message id='" + id + "'/>"),
	})
	if err != nil {
		t.Fatalf("AppendRoomMessage(%s): %v", id, err)
	}
}

func ids(p store.RoomPage) []string {
	var out []string
	for _, m := range p.Messages {
		out = append(out, m.StanzaID)
	}
	return out
}

func testRoomDelete(t *testing.T, db *store.DB) {
	ctx := t.Context()
	mustPutRoom(t, db, store.Room{Name: "r"})
	mustPutRoom(t, db, store.Room{Name: "keep"})
	if err := db.SetRoomAffiliation(ctx, "r", store.RoomAffiliation{JID: "a@x", Affiliation: store.AffOwner}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	appendMsg(t, db, "r", "1", "ann", now)
	appendMsg(t, db, "keep", "2", "ann", now)
	appendMsg(t, db, "temp", "3", "ann", now)
	if err := db.DeleteRoom(ctx, "r"); err != nil {
		t.Fatalf("DeleteRoom: %v", err)
	}
	if _, err := db.Room(ctx, "r"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Room after delete = %v", err)
	}
	if affs, _ := db.RoomAffiliations(ctx, "r"); len(affs) != 0 {
		t.Errorf("affiliations outlived the room: %+v", affs)
	}
	// A room recreated under the same name starts with no affiliations.
	mustPutRoom(t, db, store.Room{Name: "r"})
	if affs, _ := db.RoomAffiliations(ctx, "r"); len(affs) != 0 {
		t.Errorf("a recreated room inherited affiliations: %+v", affs)
	}
	// The archive is deleted on its own.
	if p, _ := db.RoomMessages(ctx, store.RoomQuery{Room: "r"}); len(p.Messages) != 1 {
		t.Errorf("DeleteRoom took the archive: %v", ids(p))
	}
	if err := db.DeleteRoom(ctx, "nope"); err != nil {
		t.Errorf("DeleteRoom of a room not stored = %v", err)
	}
	for _, name := range []string{"r", "temp"} {
		if err := db.DeleteRoomArchive(ctx, name); err != nil {
			t.Fatalf("DeleteRoomArchive(%s): %v", name, err)
		}
		if p, _ := db.RoomMessages(ctx, store.RoomQuery{Room: name}); len(p.Messages) != 0 {
			t.Errorf("%s's archive kept: %v", name, ids(p))
		}
	}
	if p, _ := db.RoomMessages(ctx, store.RoomQuery{Room: "keep"}); len(p.Messages) != 1 {
		t.Errorf("another room's archive went: %v", ids(p))
	}
}

func testRoomArchivePaging(t *testing.T, db *store.DB) {
	ctx := t.Context()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range 7 {
		appendMsg(t, db, "r", fmt.Sprint("m", i), "ann", base.Add(time.Duration(i)*time.Second))
		appendMsg(t, db, "other", fmt.Sprint("o", i), "ann", base)
	}
	q := func(rq store.RoomQuery) store.RoomPage {
		t.Helper()
		rq.Room = "r"
		p, err := db.RoomMessages(ctx, rq)
		if err != nil {
			t.Fatalf("RoomMessages(%+v): %v", rq, err)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		q        store.RoomQuery
		want     []string
		complete bool
	}{
		{"first page", store.RoomQuery{Max: 3}, []string{"m0", "m1", "m2"}, false},
		{"next page", store.RoomQuery{Max: 3, After: "m2"}, []string{"m3", "m4", "m5"}, false},
		{"last forward page", store.RoomQuery{Max: 3, After: "m5"}, []string{"m6"}, true},
		{"exactly the rest", store.RoomQuery{Max: 4, After: "m2"}, []string{"m3", "m4", "m5", "m6"}, true},
		{"last page", store.RoomQuery{Max: 3, Last: true}, []string{"m4", "m5", "m6"}, false},
		{"page before", store.RoomQuery{Max: 3, Before: "m4"}, []string{"m1", "m2", "m3"}, false},
		{"first backward page", store.RoomQuery{Max: 3, Before: "m1"}, []string{"m0"}, true},
		{"between", store.RoomQuery{After: "m1", Before: "m4"}, []string{"m2", "m3"}, true},
		{"default max", store.RoomQuery{}, []string{"m0", "m1", "m2", "m3", "m4", "m5", "m6"}, true},
	} {
		p := q(tc.q)
		if got := ids(p); !slices.Equal(got, tc.want) || p.Complete != tc.complete {
			t.Errorf("%s: %v complete=%v, want %v complete=%v", tc.name, got, p.Complete, tc.want, tc.complete)
		}
	}
	p := q(store.RoomQuery{Max: 1})
	m := p.Messages[0]
	if m.Room != "r" || m.Nick != "ann" || m.Sender != "ann@x" || string(m.Stanza) != "<message id='m0'/>" || !m.Stamp.Equal(base) {
		t.Errorf("message read back = %+v", m)
	}
}

func testRoomArchiveFilters(t *testing.T, db *store.DB) {
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i, nick := range []string{"ann", "bob", "ann", "bob", "ann"} {
		appendMsg(t, db, "r", fmt.Sprint("m", i), nick, base.Add(time.Duration(i)*time.Minute))
	}
	for _, tc := range []struct {
		name string
		q    store.RoomQuery
		want []string
	}{
		{"start", store.RoomQuery{Start: base.Add(2 * time.Minute)}, []string{"m2", "m3", "m4"}},
		{"end", store.RoomQuery{End: base.Add(time.Minute)}, []string{"m0", "m1"}},
		{"window", store.RoomQuery{Start: base.Add(time.Minute), End: base.Add(3 * time.Minute)}, []string{"m1", "m2", "m3"}},
		{"nick", store.RoomQuery{Nick: "bob"}, []string{"m1", "m3"}},
		{"nick and start", store.RoomQuery{Nick: "ann", Start: base.Add(time.Minute)}, []string{"m2", "m4"}},
		{"last with end", store.RoomQuery{End: base.Add(3 * time.Minute), Last: true, Max: 2}, []string{"m2", "m3"}},
		{"nothing", store.RoomQuery{Start: base.Add(time.Hour)}, nil},
	} {
		tc.q.Room = "r"
		p, err := db.RoomMessages(t.Context(), tc.q)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := ids(p); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func testRoomArchiveUnknownID(t *testing.T, db *store.DB) {
	appendMsg(t, db, "r", "m0", "ann", time.Now())
	appendMsg(t, db, "other", "x", "ann", time.Now())
	for _, q := range []store.RoomQuery{{Room: "r", After: "nope"}, {Room: "r", Before: "nope"}, {Room: "r", After: "x"}} {
		if _, err := db.RoomMessages(t.Context(), q); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("RoomMessages(%+v) = %v, want ErrNotFound", q, err)
		}
	}
}

func testRoomArchiveDuplicateID(t *testing.T, db *store.DB) {
	appendMsg(t, db, "r", "m0", "ann", time.Now())
	appendMsg(t, db, "other", "m0", "ann", time.Now()) // ids are per room
	err := db.AppendRoomMessage(t.Context(), store.RoomMessage{Room: "r", StanzaID: "m0", Stamp: time.Now()})
	if !errors.Is(err, store.ErrExists) {
		t.Errorf("a second m0 in one room = %v, want ErrExists", err)
	}
}

func testRoomPrune(t *testing.T, db *store.DB) {
	ctx := t.Context()
	base := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	for i := range 4 {
		appendMsg(t, db, "r", fmt.Sprint("m", i), "ann", base.Add(time.Duration(i)*time.Hour))
		appendMsg(t, db, "s", fmt.Sprint("m", i), "ann", base.Add(time.Duration(i)*time.Hour))
	}
	n, err := db.PruneRoomMessages(ctx, base.Add(2*time.Hour))
	if err != nil || n != 4 {
		t.Fatalf("PruneRoomMessages = %d, %v; want 4 gone", n, err)
	}
	for _, room := range []string{"r", "s"} {
		p, err := db.RoomMessages(ctx, store.RoomQuery{Room: room})
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(p); !slices.Equal(got, []string{"m2", "m3"}) {
			t.Errorf("%s after prune: %v, want [m2 m3]", room, got)
		}
	}
}

func testRoomClosed(t *testing.T, db *store.DB) {
	mustPutRoom(t, db, store.Room{Name: "r"})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	check := func(method string, err error) {
		t.Helper()
		if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrExists) {
			t.Errorf("%s on a closed database = %v, want a real error", method, err)
		}
	}
	check("PutRoom", db.PutRoom(ctx, store.Room{Name: "r"}))
	_, err := db.Room(ctx, "r")
	check("Room", err)
	_, err = db.Rooms(ctx)
	check("Rooms", err)
	check("DeleteRoom", db.DeleteRoom(ctx, "r"))
	check("DeleteRoomArchive", db.DeleteRoomArchive(ctx, "r"))
	_, err = db.RoomAffiliations(ctx, "r")
	check("RoomAffiliations", err)
	check("SetRoomAffiliation", db.SetRoomAffiliation(ctx, "r", store.RoomAffiliation{JID: "a@x", Affiliation: store.AffMember}))
	check("AppendRoomMessage", db.AppendRoomMessage(ctx, store.RoomMessage{Room: "r", StanzaID: "1"}))
	_, err = db.RoomMessages(ctx, store.RoomQuery{Room: "r"})
	check("RoomMessages", err)
	_, err = db.PruneRoomMessages(ctx, time.Now())
	check("PruneRoomMessages", err)
}
