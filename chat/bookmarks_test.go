package chat

import (
	"strings"
	"testing"
)

// legacyBookmarks reads alice's private storage:bookmarks as "jid:autojoin:nick" lines.
func legacyBookmarks(t *testing.T, h *harness, sess *fakeSession) []string {
	t.Helper()
	reply, _ := h.iq(sess, `<iq type='get' id='pg'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query></iq>`)
	st := reply.Child(NSPrivate, "query").Child(nsBookmarksLegacy, "storage")
	if st == nil {
		t.Fatalf("no storage in %s", reply)
	}
	var out []string
	for _, c := range st.Elements() {
		out = append(out, c.Attr("jid")+":"+c.Attr("autojoin")+":"+c.ChildText(nsBookmarksLegacy, "nick"))
	}
	return out
}

func TestBookmarksCompat(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice")
	a, _ := h.onlineWithCaps("alice@localhost/a", true, nodeBookmark+"+notify")
	legacy := h.online("alice@localhost/old", 0)
	a.take()

	reply, _ := h.iq(a, `<iq type='get' id='d'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	if !strings.Contains(reply.String(), FeatureBookmarksCompat) {
		t.Errorf("account disco lacks %s", FeatureBookmarksCompat)
	}

	// A XEP-0402 client publishes: the private XML follows.
	bmOpts := opt("pubsub#persist_items", "true") + opt("pubsub#max_items", "max") +
		opt("pubsub#send_last_published_item", "never") + opt("pubsub#access_model", "whitelist")
	h.iq(a, publish(nodeBookmark, "tea@conference.localhost", `<conference xmlns='urn:xmpp:bookmarks:1' name='Tea' autojoin='true'><nick>al</nick></conference>`, bmOpts))
	if got := legacyBookmarks(t, h, legacy); strings.Join(got, ",") != "tea@conference.localhost:true:al" {
		t.Errorf("private XML after a publish: %q", got)
	}

	// An older client stores two rooms: tea changes, chess is new.
	_, _ = h.iq(legacy, `<iq type='set' id='ps'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='tea@conference.localhost' name='Tea'><nick>alice</nick></conference>`+
		`<conference jid='chess@conference.localhost' autojoin='true' name='Chess'/></storage></query></iq>`)
	if got := events(a); strings.Join(got, ",") != "alice@localhost "+nodeBookmark+":item:tea@conference.localhost,alice@localhost "+nodeBookmark+":item:chess@conference.localhost" {
		t.Errorf("events after the private set %q", got)
	}
	reply, _ = h.iq(a, `<iq type='get' id='it'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='`+nodeBookmark+`'/></pubsub></iq>`)
	var got []string
	for _, it := range reply.Child(NSPubSub, "pubsub").Child(NSPubSub, "items").Elements() {
		c := it.Child(nsBookmarks, "conference")
		got = append(got, it.Attr("id")+":"+c.Attr("autojoin")+":"+c.ChildText(nsBookmarks, "nick"))
	}
	if strings.Join(got, ",") != "tea@conference.localhost::alice,chess@conference.localhost:true:" {
		t.Errorf("items after the private set %q", got)
	}

	// The older client drops tea: it is retracted.
	h.iq(legacy, `<iq type='set' id='ps'><query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>`+
		`<conference jid='chess@conference.localhost' autojoin='true' name='Chess'/></storage></query></iq>`)
	if got := events(a); strings.Join(got, ",") != "alice@localhost "+nodeBookmark+":retract:tea@conference.localhost" {
		t.Errorf("events after dropping tea %q", got)
	}

	// The new client retracts chess: the private XML is empty.
	h.iq(a, `<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+nodeBookmark+`' notify='true'><item id='chess@conference.localhost'/></retract></pubsub></iq>`)
	if got := legacyBookmarks(t, h, legacy); len(got) != 0 {
		t.Errorf("private XML after the last retract: %q", got)
	}
}
