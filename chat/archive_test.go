package chat

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// mamPage runs a MAM query and returns the bodies of the results, the
// result ids and the fin element.
func mamPage(t *testing.T, h *harness, sess *fakeSession, form, set string) (bodies, ids []string, fin *stanza.Element) {
	t.Helper()
	raw := `<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='qq'>` + form + set + `</query></iq>`
	reply, extra := h.iq(sess, raw)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("MAM query answered %s", reply)
	}
	for _, m := range extra {
		res := m.Child(NSMAM, "result")
		if res == nil || res.Attr("queryid") != "qq" || m.From() != sess.JID().Bare().String() {
			t.Fatalf("unexpected stanza during the query: %s", m)
		}
		fwd := res.Child(NSForward, "forwarded")
		if fwd.Child(stanza.NSDelay, "delay").Attr("stamp") == "" {
			t.Errorf("result without a stamp: %s", m)
		}
		bodies = append(bodies, fwd.Child(stanza.NSClient, "message").ChildText("", "body"))
		ids = append(ids, res.Attr("id"))
	}
	return bodies, ids, reply.Child(NSMAM, "fin")
}

func form(fields ...string) string {
	s := `<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>`
	for i := 0; i+1 < len(fields); i += 2 {
		s += `<field var='` + fields[i] + `'><value>` + fields[i+1] + `</value></field>`
	}
	return s + `</x>`
}

func rsm(max int, extra string) string {
	return fmt.Sprintf(`<set xmlns='http://jabber.org/protocol/rsm'><max>%d</max>%s</set>`, max, extra)
}

func finSet(fin *stanza.Element) string {
	set := fin.Child(NSRSM, "set")
	return fmt.Sprintf("complete=%s first=%s last=%s count=%s", fin.Attr("complete"),
		set.ChildText(NSRSM, "first"), set.ChildText(NSRSM, "last"), set.ChildText(NSRSM, "count"))
}

func TestArchiveKeepsBothSidesWithStanzaIDs(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)
	a.take()

	h.send(a, `<message type='chat' to='bob@localhost' id='m1'><body>hi bob</body><origin-id xmlns='urn:xmpp:sid:0' id='o1'/>`+
		`<stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='bob@localhost'/></message>`)
	got := one(t, "bob", b)
	sids := []*stanza.Element{}
	for _, c := range got.Elements() {
		if c.Space == NSSID && c.Local == "stanza-id" {
			sids = append(sids, c)
		}
	}
	if len(sids) != 1 || sids[0].Attr("by") != "bob@localhost" || sids[0].Attr("id") == "forged" || sids[0].Attr("id") == "" {
		t.Fatalf("bob's copy should carry one stanza-id by bob@localhost, the forged one removed: %s", got)
	}
	if got.Child(NSSID, "origin-id") == nil {
		t.Errorf("origin-id lost: %s", got)
	}
	if len(a.takeAll()) != 0 {
		t.Error("the sender received something")
	}

	// Bob is offline: the message still reaches his archive, and the
	// offline copy carries its stanza-id.
	h.close(b)
	h.now = h.now.Add(time.Minute)
	h.send(a, `<message type='chat' to='bob@localhost' id='m2'><body>are you there?</body></message>`)
	// Chat states alone, and no-store hints, are not history.
	h.send(a, `<message type='chat' to='bob@localhost'><active xmlns='http://jabber.org/protocol/chatstates'/></message>`)
	h.send(a, `<message type='chat' to='bob@localhost'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>`)
	b = h.bind("bob@localhost/b")
	h.send(b, `<presence/>`)
	var offline *stanza.Element
	for _, el := range b.takeAll() {
		if el.Local == "message" && el.ChildText("", "body") == "are you there?" {
			offline = el
		}
	}
	if offline == nil || offline.Child(NSSID, "stanza-id") == nil {
		t.Fatalf("offline message without stanza-id: %v", offline)
	}

	bodies, ids, fin := mamPage(t, h, b, "", "")
	if !slices.Equal(bodies, []string{"hi bob", "are you there?"}) {
		t.Errorf("bob's archive: %q", bodies)
	}
	if len(ids) != 2 || ids[0] != sids[0].Attr("id") || ids[1] != offline.Child(NSSID, "stanza-id").Attr("id") {
		t.Errorf("bob's archive ids %q do not match the stanza-ids he received", ids)
	}
	if got := finSet(fin); got != fmt.Sprintf("complete=true first=%s last=%s count=2", ids[0], ids[1]) {
		t.Errorf("fin: %s", got)
	}
	a.take()
	bodies, _, _ = mamPage(t, h, a, "", "")
	if !slices.Equal(bodies, []string{"hi bob", "are you there?"}) {
		t.Errorf("alice's archive: %q", bodies)
	}
}

func TestArchiveEncryptedAndUnknownRecipient(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.send(a, `<message type='chat' to='bob@localhost'><encrypted xmlns='eu.siacs.conversations.axolotl'><header sid='1'/></encrypted></message>`)
	h.send(a, `<message type='chat' to='nobody@localhost'><body>lost</body></message>`)
	if got := a.take(); len(got) != 1 || got[0] != "message type=error from=nobody@localhost to=alice@localhost/a body=lost error=service-unavailable" {
		t.Errorf("alice received %q", got)
	}
	reply, extra := h.iq(a, `<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	if reply.IQType() != stanza.ResultIQ || len(extra) != 1 || extra[0].Child(NSMAM, "result").Child(NSForward, "forwarded").
		Child(stanza.NSClient, "message").Child(nsOMEMOLegacy, "encrypted") == nil {
		t.Errorf("alice's archive should hold the OMEMO message only: %d results", len(extra))
	}
}

func TestMAMFiltersAndPaging(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob", "carol")
	a := h.online("alice@localhost/a", 0)
	start := h.now
	for i := range 6 {
		to := "bob@localhost"
		if i%3 == 2 {
			to = "carol@localhost"
		}
		h.send(a, fmt.Sprintf(`<message type='chat' to='%s'><body>%d</body></message>`, to, i))
		h.now = h.now.Add(time.Minute)
	}
	a.take()

	bodies, ids, fin := mamPage(t, h, a, "", rsm(2, ""))
	if !slices.Equal(bodies, []string{"0", "1"}) || finSet(fin) != "complete=false first="+ids[0]+" last="+ids[1]+" count=6" {
		t.Fatalf("first page %q %s", bodies, finSet(fin))
	}
	bodies, ids2, fin := mamPage(t, h, a, "", rsm(2, "<after>"+ids[1]+"</after>"))
	if !slices.Equal(bodies, []string{"2", "3"}) || fin.Attr("complete") != "false" {
		t.Errorf("second page %q %s", bodies, finSet(fin))
	}
	bodies, _, fin = mamPage(t, h, a, "", rsm(4, "<after>"+ids2[1]+"</after>"))
	if !slices.Equal(bodies, []string{"4", "5"}) || fin.Attr("complete") != "true" {
		t.Errorf("last page forward %q %s", bodies, finSet(fin))
	}
	bodies, lastIDs, fin := mamPage(t, h, a, "", rsm(2, "<before/>"))
	if !slices.Equal(bodies, []string{"4", "5"}) || fin.Attr("complete") != "false" {
		t.Errorf("last page %q %s", bodies, finSet(fin))
	}
	bodies, _, _ = mamPage(t, h, a, "", rsm(3, "<before>"+lastIDs[0]+"</before>"))
	if !slices.Equal(bodies, []string{"1", "2", "3"}) {
		t.Errorf("page before %q", bodies)
	}
	stamp := func(d time.Duration) string { return start.Add(d).Format(time.RFC3339) }
	for _, tc := range []struct {
		name, form string
		want       []string
	}{
		{"with", form("with", "carol@localhost"), []string{"2", "5"}},
		{"start", form("start", stamp(4*time.Minute)), []string{"4", "5"}},
		{"end", form("end", stamp(time.Minute)), []string{"0", "1"}},
		{"with and start", form("with", "bob@localhost", "start", stamp(2*time.Minute)), []string{"3", "4"}},
		{"after-id", form("after-id", ids2[1]), []string{"4", "5"}},
		{"before-id", form("before-id", ids[1]), []string{"0"}},
	} {
		if bodies, _, _ := mamPage(t, h, a, tc.form, ""); !slices.Equal(bodies, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, bodies, tc.want)
		}
	}

	for _, tc := range []struct {
		name, raw string
		cond      stanza.Condition
	}{
		{"unknown cursor", `<iq type='set' id='x'><query xmlns='urn:xmpp:mam:2'>` + rsm(2, "<after>nope</after>") + `</query></iq>`, "item-not-found"},
		{"bad date", `<iq type='set' id='x'><query xmlns='urn:xmpp:mam:2'>` + form("start", "yesterday") + `</query></iq>`, "bad-request"},
		{"unknown field", `<iq type='set' id='x'><query xmlns='urn:xmpp:mam:2'>` + form("fulltext", "hi") + `</query></iq>`, "feature-not-implemented"},
		{"another user's archive", `<iq type='set' id='x' to='bob@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>`, "service-unavailable"},
		{"the server's archive", `<iq type='set' id='x' to='localhost'><query xmlns='urn:xmpp:mam:2'/></iq>`, "service-unavailable"},
	} {
		reply, extra := h.iq(a, tc.raw)
		if got := errorCondition(reply); got != tc.cond || len(extra) != 0 {
			t.Errorf("%s: %s (%d results), want %s", tc.name, reply, len(extra), tc.cond)
		}
	}

	// The query form and the fixed preferences.
	reply, _ := h.iq(a, `<iq type='get' id='f' to='alice@localhost'><query xmlns='urn:xmpp:mam:2'/></iq>`)
	if reply.Child(NSMAM, "query").Child(NSDataForms, "x") == nil {
		t.Errorf("form: %s", reply)
	}
	reply, _ = h.iq(a, `<iq type='set' id='p'><prefs xmlns='urn:xmpp:mam:2' default='never'/></iq>`)
	if p := reply.Child(NSMAM, "prefs"); reply.IQType() != stanza.ResultIQ || p == nil || p.Attr("default") != "always" {
		t.Errorf("prefs: %s", reply)
	}
}

func TestArchiveRetentionPrunes(t *testing.T) {
	var now atomic.Int64
	now.Store(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC).UnixMicro())
	clock := func() time.Time { return time.UnixMicro(now.Load()).UTC() }
	h, db := newDBHarness(t, Config{Now: clock, ArchiveRetention: 24 * time.Hour, ArchivePruneInterval: time.Millisecond}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.send(a, `<message type='chat' to='bob@localhost'><body>old</body></message>`)
	now.Add((25 * time.Hour).Microseconds())
	h.send(a, `<message type='chat' to='bob@localhost'><body>new</body></message>`)

	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := db.QueryArchive(context.Background(), "alice", store.ArchiveQuery{Max: 10})
		if err != nil {
			t.Fatal(err)
		}
		if p.Count == 1 {
			el, _ := stanza.Parse(p.Messages[0].Stanza)
			if el.ChildText("", "body") != "new" {
				t.Fatalf("kept %s", el)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archive still holds %d messages", p.Count)
		}
		time.Sleep(5 * time.Millisecond) // polling the store for the pruner's work
	}
	h.svc.Close()
	h.svc.Close() // twice is fine
}

// TestArchiveKeepsWhatChangesHistory: receipts, reactions, retractions and
// messages with a <store/> hint (call invitations) are history even without
// a body, so a client that reloads shows delivery, reactions, removed
// messages and missed calls; chat states and no-store hints still are not.
func TestArchiveKeepsWhatChangesHistory(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)
	a.take()
	for _, m := range []string{
		`<message type='chat' to='alice@localhost' id='r1'><received xmlns='urn:xmpp:receipts' id='m1'/></message>`,
		`<message type='chat' to='alice@localhost' id='x1'><reactions xmlns='urn:xmpp:reactions:0' id='m1'><reaction>👍</reaction></reactions></message>`,
		`<message type='chat' to='alice@localhost' id='x2'><retract xmlns='urn:xmpp:message-retract:1' id='m0'/></message>`,
		`<message type='chat' to='alice@localhost' id='x3'><propose xmlns='urn:xmpp:jingle-message:0' id='c1'/><store xmlns='urn:xmpp:hints'/></message>`,
		`<message type='chat' to='alice@localhost' id='x4'><propose xmlns='urn:xmpp:jingle-message:0' id='c2'/></message>`,
		`<message type='chat' to='alice@localhost' id='x5'><received xmlns='urn:xmpp:receipts' id='m2'/><no-store xmlns='urn:xmpp:hints'/></message>`,
		`<message type='chat' to='alice@localhost' id='x6'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>`,
		`<message type='headline' to='alice@localhost' id='x7'><attention xmlns='urn:xmpp:attention:0'/><store xmlns='urn:xmpp:hints'/></message>`,
	} {
		h.send(b, m)
	}
	a.takeAll()
	reply, extra := h.iq(a, `<iq type='set' id='q2'><query xmlns='urn:xmpp:mam:2' queryid='q2'/></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("query: %s", reply)
	}
	var got []string
	for _, m := range extra {
		got = append(got, m.Child(NSMAM, "result").Child(NSForward, "forwarded").Child(stanza.NSClient, "message").Attr("id"))
	}
	if want := []string{"r1", "x1", "x2", "x3"}; !slices.Equal(got, want) {
		t.Errorf("alice's archive holds %q, want %q", got, want)
	}
}
