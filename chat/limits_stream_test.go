package chat_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// Every per-user limit, tried over real streams by a user who keeps
// asking for more: each refusal carries the condition the limit is
// documented with, and what was kept before is still there.

var iqSeq int

// ask sends an IQ with a fresh id around payload and returns the answer.
func ask(t *testing.T, c *xmppclient.Client, typ, to, payload string) *stanza.Element {
	t.Helper()
	iqSeq++
	id := fmt.Sprintf("lim%d", iqSeq)
	if to != "" {
		to = " to='" + to + "'"
	}
	return call(t, c, `<iq type='`+typ+`' id='`+id+`'`+to+`>`+payload+`</iq>`, id, nil)
}

// condition returns the defined condition of a stanza error and, when
// given, the child of the error in namespace ns (e.g. pubsub#errors).
func condition(el *stanza.Element, ns string) (cond, specific string) {
	e := el.Child("", "error")
	if !el.IsError() || e == nil {
		return "", ""
	}
	for _, c := range e.Elements() {
		switch {
		case c.Space == stanza.NSStanzas && c.Local != "text":
			cond = c.Local
		case ns != "" && c.Space == ns:
			specific = c.Local
		}
	}
	return cond, specific
}

func expectError(t *testing.T, what string, el *stanza.Element, cond string) {
	t.Helper()
	if got, _ := condition(el, ""); got != cond {
		t.Errorf("%s: got %s, want error %s", what, el, cond)
	}
}

func expectResult(t *testing.T, what string, el *stanza.Element) {
	t.Helper()
	if el.IQType() != stanza.ResultIQ {
		t.Fatalf("%s: %s", what, el)
	}
}

const nsPubSubErrors = "http://jabber.org/protocol/pubsub#errors"

// pubItem publishes one item (with publish-options when opts is not "").
func pubItem(t *testing.T, c *xmppclient.Client, node, id, payload, opts string) *stanza.Element {
	t.Helper()
	if opts != "" {
		opts = `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` +
			opts + `</x></publish-options>`
	}
	return ask(t, c, "set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='`+node+`'><item id='`+id+`'>`+payload+`</item></publish>`+opts+`</pubsub>`)
}

func field(v, val string) string { return `<field var='` + v + `'><value>` + val + `</value></field>` }

// itemIDs lists the item ids of a pubsub items answer.
func itemIDs(r *stanza.Element) []string {
	var ids []string
	if ps := r.Child("http://jabber.org/protocol/pubsub", "pubsub"); ps != nil {
		if items := ps.Child("http://jabber.org/protocol/pubsub", "items"); items != nil {
			for _, it := range items.Elements() {
				ids = append(ids, it.Attr("id"))
			}
		}
	}
	return ids
}

// blob is an element of about n bytes of text.
func blob(n int) string { return "<b xmlns='urn:test'>" + strings.Repeat("z", n) + "</b>" }

func TestStreamsPEPLimits(t *testing.T) {
	st := newStackWith(t, "", chat.Config{Limits: chat.Limits{PEPNodes: 3, PEPItems: 5, PEPItemBytes: 1000, PEPNodeBytes: 2500}}, "alice")
	alice := st.login(t, "alice", "laptop")

	// Item size: one byte over is refused with XEP-0060's payload-too-big.
	r := pubItem(t, alice, "big", "1", blob(1000), "")
	if cond, sp := condition(r, nsPubSubErrors); cond != "not-acceptable" || sp != "payload-too-big" {
		t.Errorf("an item over pep_max_item_bytes: %s", r)
	}

	// Bytes per node: two items of about 1000 bytes fit in 2500, a third
	// does not, and the two stay.
	for i := range 2 {
		expectResult(t, "item within the node's bytes", pubItem(t, alice, "photos", fmt.Sprint(i), blob(950), field("pubsub#max_items", "max")))
	}
	r = pubItem(t, alice, "photos", "2", blob(950), "")
	if cond, sp := condition(r, nsPubSubErrors); cond != "not-acceptable" || sp != "payload-too-big" {
		t.Errorf("an item past pep_max_node_bytes: %s", r)
	}
	if ids := itemIDs(ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='photos'/></pubsub>`)); !slices.Equal(ids, []string{"0", "1"}) {
		t.Errorf("after the refused item the node holds %q, want 0 and 1", ids)
	}

	// Items per node: max_items above pep_max_items is refused; 'max'
	// means pep_max_items, and the oldest go past it.
	r = pubItem(t, alice, "notes", "a", "<n xmlns='urn:test'/>", field("pubsub#max_items", "6"))
	expectError(t, "max_items over pep_max_items as a precondition", r, "conflict")
	r = ask(t, alice, "set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='notes'/><configure><x xmlns='jabber:x:data' type='submit'>`+
		`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>`+field("pubsub#max_items", "6")+`</x></configure></pubsub>`)
	expectError(t, "max_items over pep_max_items on create", r, "not-acceptable")
	for i := range 7 {
		expectResult(t, "note", pubItem(t, alice, "notes", fmt.Sprint(i), "<n xmlns='urn:test'/>", field("pubsub#max_items", "max")))
	}
	if ids := itemIDs(ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='notes'/></pubsub>`)); !slices.Equal(ids, []string{"2", "3", "4", "5", "6"}) {
		t.Errorf("a max node keeps %q, want the newest 5", ids)
	}

	// Nodes per user: photos and notes make two; a third may be created,
	// a fourth neither by create nor by publishing to it.
	expectResult(t, "third node", ask(t, alice, "set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='third'/></pubsub>`))
	r = ask(t, alice, "set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='fourth'/></pubsub>`)
	if cond, sp := condition(r, nsPubSubErrors); cond != "resource-constraint" || sp != "max-nodes-exceeded" {
		t.Errorf("a node past pep_max_nodes: %s", r)
	}
	r = pubItem(t, alice, "fourth", "1", "<n xmlns='urn:test'/>", "")
	if cond, sp := condition(r, nsPubSubErrors); cond != "resource-constraint" || sp != "max-nodes-exceeded" {
		t.Errorf("auto-creating a node past pep_max_nodes: %s", r)
	}
	// Deleting one makes room.
	expectResult(t, "delete", ask(t, alice, "set", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='third'/></pubsub>`))
	expectResult(t, "node after a delete", pubItem(t, alice, "fourth", "1", "<n xmlns='urn:test'/>", ""))
}

// TestStreamsPEPItemsPaged: a node's items come in pages of bounded size,
// with XEP-0059 sets to walk them, never as one huge answer.
func TestStreamsPEPItemsPaged(t *testing.T) {
	st := newStack(t, "", "alice")
	alice := st.login(t, "alice", "laptop")
	const n, size = 5, 100 << 10
	for i := range n {
		expectResult(t, "publish", pubItem(t, alice, "album", fmt.Sprintf("p%d", i), blob(size), field("pubsub#max_items", "max")))
	}
	var got []string
	before := ""
	for pages := 0; ; pages++ {
		set := ""
		if pages > 0 {
			set = `<set xmlns='http://jabber.org/protocol/rsm'><before>` + before + `</before></set>`
		}
		r := ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='album'/>`+set+`</pubsub>`)
		expectResult(t, "items", r)
		if len(r.String()) > 300<<10 {
			t.Fatalf("one answer of %d bytes", len(r.String()))
		}
		ids := itemIDs(r)
		rsm := r.Child("http://jabber.org/protocol/pubsub", "pubsub").Child(chat.NSRSM, "set")
		if rsm == nil {
			t.Fatalf("page %d of a node bigger than a page has no RSM set: %d items", pages, len(ids))
		}
		if c := rsm.ChildText(chat.NSRSM, "count"); c != fmt.Sprint(n) {
			t.Errorf("count %s, want %d", c, n)
		}
		first := rsm.Child(chat.NSRSM, "first")
		if len(ids) == 0 || first.Text() != ids[0] || rsm.ChildText(chat.NSRSM, "last") != ids[len(ids)-1] {
			t.Fatalf("page %d: items %q with set %s", pages, ids, rsm)
		}
		if want := fmt.Sprint(n - len(got) - len(ids)); first.Attr("index") != want {
			t.Errorf("page %d starts at index %s, want %s", pages, first.Attr("index"), want)
		}
		got = append(ids, got...)
		if first.Attr("index") == "0" {
			break
		}
		before = ids[0]
		if pages > n {
			t.Fatal("paging does not end")
		}
	}
	if want := []string{"p0", "p1", "p2", "p3", "p4"}; !slices.Equal(got, want) {
		t.Errorf("paged backwards: %q, want %q", got, want)
	}
	// max_items still gives the newest, in order.
	if ids := itemIDs(ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='album' max_items='1'/></pubsub>`)); !slices.Equal(ids, []string{"p4"}) {
		t.Errorf("max_items=1: %q", ids)
	}
	// <max>0</max> asks for the count alone.
	r0 := ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='album'/><set xmlns='http://jabber.org/protocol/rsm'><max>0</max></set></pubsub>`)
	if ids := itemIDs(r0); len(ids) != 0 || r0.Child("http://jabber.org/protocol/pubsub", "pubsub").Child(chat.NSRSM, "set").ChildText(chat.NSRSM, "count") != fmt.Sprint(n) {
		t.Errorf("max 0: %.300s", r0)
	}
	// A cursor naming no item is item-not-found.
	r := ask(t, alice, "get", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='album'/><set xmlns='http://jabber.org/protocol/rsm'><after>nope</after></set></pubsub>`)
	expectError(t, "unknown cursor", r, "item-not-found")
}

// roster returns the JIDs in c's roster.
func roster(t *testing.T, c *xmppclient.Client) []string {
	t.Helper()
	r := ask(t, c, "get", "", `<query xmlns='jabber:iq:roster'/>`)
	var out []string
	for _, it := range r.Child(chat.NSRoster, "query").Elements() {
		out = append(out, it.Attr("jid"))
	}
	return out
}

func TestStreamsRosterLimit(t *testing.T) {
	st := newStackWith(t, "", chat.Config{Limits: chat.Limits{RosterItems: 2}}, "alice", "bob", "carol", "mallory")
	alice := st.login(t, "alice", "laptop")
	mallory := st.login(t, "mallory", "bot")
	for _, c := range []string{"bob@localhost", "carol@localhost"} {
		expectResult(t, "roster set", ask(t, alice, "set", "", `<query xmlns='jabber:iq:roster'><item jid='`+c+`'/></query>`))
	}
	r := ask(t, alice, "set", "", `<query xmlns='jabber:iq:roster'><item jid='dave@localhost'/></query>`)
	expectError(t, "a third contact with roster_max_items 2", r, "resource-constraint")
	// Changing a contact that is there still works.
	expectResult(t, "rename", ask(t, alice, "set", "", `<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob'/></query>`))

	// A subscription request to alice would add mallory to her full
	// roster: it is refused, and mallory's request does not stay pending.
	if err := mallory.SendRaw(`<presence type='subscribe' to='alice@localhost' id='s1'/>`); err != nil {
		t.Fatal(err)
	}
	errp, err := mallory.Expect(5*time.Second, func(el *stanza.Element) bool { return el.Local == "presence" && el.IsError() })
	if err != nil {
		t.Fatalf("mallory: no error for a request to a full roster: %v", err)
	}
	expectError(t, "subscribe to a full roster", errp, "resource-constraint")
	if got := roster(t, alice); !slices.Equal(got, []string{"bob@localhost", "carol@localhost"}) {
		t.Errorf("alice's roster after mallory's request: %q", got)
	}
	for _, it := range ask(t, mallory, "get", "", `<query xmlns='jabber:iq:roster'/>`).Child(chat.NSRoster, "query").Elements() {
		if it.Attr("ask") != "" {
			t.Errorf("mallory's request stays pending: %s", it)
		}
	}
	// Alice's own request past her limit is refused before it leaves.
	if err := alice.SendRaw(`<presence type='subscribe' to='mallory@localhost'/>`); err != nil {
		t.Fatal(err)
	}
	errp, err = alice.Expect(5*time.Second, func(el *stanza.Element) bool { return el.Local == "presence" && el.IsError() })
	if err != nil {
		t.Fatalf("alice: no error for a request past her limit: %v", err)
	}
	expectError(t, "subscribe from a full roster", errp, "resource-constraint")
}

func TestStreamsDirectedPresenceLimit(t *testing.T) {
	st := newStackWith(t, "", chat.Config{Limits: chat.Limits{DirectedPresences: 2}}, "alice", "bob")
	alice := st.login(t, "alice", "laptop")
	bob := st.login(t, "bob", "phone")
	for _, res := range []string{"a", "b"} {
		if err := alice.SendRaw(`<presence to='bob@localhost/` + res + `'/>`); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.SendRaw(`<presence to='bob@localhost/c'/>`); err != nil {
		t.Fatal(err)
	}
	errp, err := alice.Expect(5*time.Second, func(el *stanza.Element) bool { return el.Local == "presence" && el.IsError() })
	if err != nil {
		t.Fatalf("no error for a third directed presence: %v", err)
	}
	expectError(t, "directed presence past max_directed_presences", errp, "resource-constraint")
	if errp.From() != "bob@localhost/c" {
		t.Errorf("error from %s", errp.From())
	}
	// Ending one makes room; an address already remembered is no more.
	for _, raw := range []string{`<presence to='bob@localhost/b'/>`, `<presence type='unavailable' to='bob@localhost/a'/>`, `<presence to='bob@localhost'/>`} {
		if err := alice.SendRaw(raw); err != nil {
			t.Fatal(err)
		}
	}
	// bob's bare JID reaches his session: he sees it, and no error came.
	if _, err := bob.Expect(5*time.Second, func(el *stanza.Element) bool {
		return el.Local == "presence" && el.From() == alice.JID.String() && el.To() == "bob@localhost" && el.PresenceType() == stanza.AvailablePresence
	}); err != nil {
		t.Errorf("bob: directed presence after making room: %v", err)
	}
	r := ask(t, alice, "get", "", `<ping xmlns='urn:xmpp:ping'/>`)
	expectResult(t, "ping", r)
}

func TestStreamsPrivateAndVCardLimits(t *testing.T) {
	st := newStackWith(t, "", chat.Config{Limits: chat.Limits{PrivateBytes: 1000, VCardBytes: 500}}, "alice")
	alice := st.login(t, "alice", "laptop")
	priv := func(ns string, n int) *stanza.Element {
		return ask(t, alice, "set", "", `<query xmlns='jabber:iq:private'><x xmlns='`+ns+`'>`+strings.Repeat("p", n)+`</x></query>`)
	}
	expectResult(t, "private within the limit", priv("urn:a", 500))
	expectError(t, "private past private_max_bytes", priv("urn:b", 500), "resource-constraint")
	r := ask(t, alice, "get", "", `<query xmlns='jabber:iq:private'><x xmlns='urn:a'/></query>`)
	if x := r.Child(chat.NSPrivate, "query").Child("urn:a", "x"); x == nil || len(x.Text()) != 500 {
		t.Errorf("stored private XML lost: %s", r)
	}
	expectResult(t, "a smaller second namespace", priv("urn:b", 300))

	expectResult(t, "small vCard", ask(t, alice, "set", "", `<vCard xmlns='vcard-temp'><FN>Alice</FN></vCard>`))
	r = ask(t, alice, "set", "", `<vCard xmlns='vcard-temp'><FN>`+strings.Repeat("A", 500)+`</FN></vCard>`)
	expectError(t, "vCard past vcard_max_bytes", r, "not-acceptable")
	r = ask(t, alice, "get", "", `<vCard xmlns='vcard-temp'/>`)
	if r.Child(chat.NSVCard, "vCard").ChildText(chat.NSVCard, "FN") != "Alice" {
		t.Errorf("the vCard kept is not the last accepted one: %s", r)
	}
}

func TestStreamsArchiveCap(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { streamsArchiveCap(t, "") })
	t.Run("MySQL", func(t *testing.T) { streamsArchiveCap(t, testenv.MySQLDSN(t)) })
}

func streamsArchiveCap(t *testing.T, dsn string) {
	st := newStackWith(t, dsn, chat.Config{Limits: chat.Limits{ArchiveMessages: 16}}, "alice", "bob")
	alice := st.login(t, "alice", "laptop")
	bob := st.login(t, "bob", "phone")
	const sent = 40
	for i := range sent {
		body := fmt.Sprintf("m%d", i)
		if err := alice.SendRaw(`<message type='chat' to='bob@localhost'><body>` + body + `</body></message>`); err != nil {
			t.Fatal(err)
		}
		message(bob, t, func(el *stanza.Element) bool { return el.ChildText("", "body") == body })
	}
	for _, c := range []*xmppclient.Client{alice, bob} {
		var side []*stanza.Element
		iqSeq++
		id := fmt.Sprintf("mam%d", iqSeq)
		r := call(t, c, `<iq type='set' id='`+id+`'><query xmlns='urn:xmpp:mam:2' queryid='q'><set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set></query></iq>`, id, &side)
		expectResult(t, "mam", r)
		var bodies []string
		for _, el := range side {
			if res := el.Child(chat.NSMAM, "result"); res != nil {
				bodies = append(bodies, res.Child(chat.NSForward, "forwarded").Child(stanza.NSClient, "message").ChildText("", "body"))
			}
		}
		if len(bodies) > 16 || len(bodies) < 14 {
			t.Errorf("%s's archive holds %d messages under a cap of 16: %q", c.JID.Bare(), len(bodies), bodies)
			continue
		}
		// The newest are kept, in order.
		for i, b := range bodies {
			if want := fmt.Sprintf("m%d", sent-len(bodies)+i); b != want {
				t.Errorf("%s's archive: %q, want the newest %d", c.JID.Bare(), bodies, len(bodies))
				break
			}
		}
	}
}

// TestStreamsOfflineShares: mallory tries to fill bob's offline queue;
// only her share is kept, she is told why the rest is refused, and
// alice's message to bob still arrives when he comes online.
func TestStreamsOfflineShares(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) { streamsOfflineShares(t, "") })
	t.Run("MySQL", func(t *testing.T) { streamsOfflineShares(t, testenv.MySQLDSN(t)) })
}

func streamsOfflineShares(t *testing.T, dsn string) {
	st := newStackWith(t, dsn, chat.Config{OfflineLimit: 5, Limits: chat.Limits{OfflinePerSender: 3}}, "alice", "bob", "mallory")
	mallory := st.login(t, "mallory", "bot")
	alice := st.login(t, "alice", "laptop")
	refused := 0
	for i := range 5 {
		if err := mallory.SendRaw(fmt.Sprintf(`<message type='chat' to='bob@localhost' id='m%d'><body>spam %d</body></message>`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	// Each of mallory's messages past her share comes back as an error; a
	// ping after them shows nothing more is on its way.
	if err := mallory.SendRaw(`<iq type='get' id='after-spam'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
		t.Fatal(err)
	}
	if _, err := mallory.Expect(5*time.Second, func(el *stanza.Element) bool {
		if el.Local == "message" && el.IsError() {
			refused++
			expectError(t, "mallory past her share", el, "resource-constraint")
		}
		return el.Local == "iq" && el.ID() == "after-spam"
	}); err != nil {
		t.Fatal(err)
	}
	if refused != 2 {
		t.Errorf("mallory had %d of 5 messages refused, want 2 (a share of 3)", refused)
	}
	if err := alice.SendRaw(`<message type='chat' to='bob@localhost' id='a1'><body>dinner at eight?</body></message>`); err != nil {
		t.Fatal(err)
	}
	if err := alice.SendRaw(`<iq type='get' id='after-alice'><ping xmlns='urn:xmpp:ping'/></iq>`); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Expect(5*time.Second, func(el *stanza.Element) bool {
		if el.Local == "message" && el.IsError() {
			t.Errorf("alice's offline message refused: %s", el)
		}
		return el.Local == "iq" && el.ID() == "after-alice"
	}); err != nil {
		t.Fatal(err)
	}
	bob := st.login(t, "bob", "phone")
	m := message(bob, t, func(el *stanza.Element) bool { return el.From() == alice.JID.String() })
	if m.ChildText("", "body") != "dinner at eight?" || m.Child(stanza.NSDelay, "delay") == nil {
		t.Errorf("alice's message reached bob as %s", m)
	}
}
