package chat

import (
	"crypto/sha1"
	"strings"
	"testing"

	"poosms.org/poosms/stanza"
)

const (
	nodeDevices  = "eu.siacs.conversations.axolotl.devicelist"
	nodeAvatar   = "urn:xmpp:avatar:metadata"
	nodeBookmark = "urn:xmpp:bookmarks:1"
)

// clientInfo is the disco#info a test client announces.
func clientInfo(features ...string) *stanza.Element {
	q := stanza.New(NSDiscoInfo, "query").Append(
		stanza.New(NSDiscoInfo, "identity").SetAttr("category", "client").SetAttr("type", "pc").SetAttr("name", "test"))
	for _, f := range features {
		q.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	return q
}

// onlineWithCaps binds full, fetches the roster and sends initial presence
// with caps for features. If the server asks what they mean, it answers
// (unless answer is false) and returns how many queries it saw. Everything
// else received stays in the session.
func (h *harness) onlineWithCaps(full string, answer bool, features ...string) (*fakeSession, int) {
	h.t.Helper()
	s := h.bind(full)
	h.send(s, `<iq type='get' id='r0'><query xmlns='jabber:iq:roster'/></iq>`)
	s.takeAll()
	info := clientInfo(features...)
	ver := capsVerOf(info, sha1.New())
	h.send(s, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='https://client.example' ver='`+ver+`'/></presence>`)
	asked := 0
	var keep []*stanza.Element
	for _, el := range s.takeAll() {
		if el.Local == "iq" && el.IQType() == stanza.GetIQ && el.Child(NSDiscoInfo, "query") != nil {
			asked++
			if got := el.Child(NSDiscoInfo, "query").Attr("node"); got != "https://client.example#"+ver || el.From() != "localhost" {
				h.t.Errorf("caps query %s", el)
			}
			if answer {
				r := stanza.Result(el, info.Copy().SetAttr("node", "https://client.example#"+ver))
				r.SetAttr("from", "")
				h.svc.HandleStanza(h.t.Context(), s, r)
				keep = append(keep, s.takeAll()...)
			}
			continue
		}
		keep = append(keep, el)
	}
	s.PutBack(keep)
	return s, asked
}

// events returns "node:kind:id" for each PEP event sess received, and
// drops everything else.
func events(sess *fakeSession) []string {
	var out []string
	for _, el := range sess.takeAll() {
		ev := el.Child(NSPubSubEvent, "event")
		if ev == nil {
			continue
		}
		for _, c := range ev.Elements() {
			if c.Local == "delete" {
				out = append(out, c.Attr("node")+":delete")
			}
			for _, it := range c.Elements() {
				e := el.From() + " " + c.Attr("node") + ":" + it.Local + ":" + it.Attr("id")
				if el.Child(stanza.NSDelay, "delay") != nil {
					e += ":delayed"
				}
				out = append(out, e)
			}
		}
	}
	return out
}

func publish(node, id, payload, options string) string {
	po := ""
	if options != "" {
		po = `<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>` + options + `</x></publish-options>`
	}
	return `<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='` + node + `'><item id='` + id + `'>` + payload + `</item></publish>` + po + `</pubsub></iq>`
}

func opt(v, val string) string {
	return `<field var='` + v + `'><value>` + val + `</value></field>`
}

func itemsOf(t *testing.T, h *harness, sess *fakeSession, owner, node string) (ids []string, cond stanza.Condition, specific string) {
	t.Helper()
	reply, _ := h.iq(sess, `<iq type='get' id='it' to='`+owner+`'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='`+node+`'/></pubsub></iq>`)
	if reply.IsError() {
		for _, c := range reply.Child("", "error").Elements() {
			if c.Space == NSPubSubErrors {
				specific = c.Local
			}
		}
		return nil, errorCondition(reply), specific
	}
	for _, it := range reply.Child(NSPubSub, "pubsub").Child(NSPubSub, "items").Elements() {
		ids = append(ids, it.Attr("id"))
	}
	return ids, "", ""
}

func TestPEPPublishNotifyAndAccess(t *testing.T) {
	h, db := newDBHarness(t, Config{}, "alice", "bob", "carol")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0) // no caps: hears all of its own nodes
	b, asked := h.onlineWithCaps("bob@localhost/b", true, nodeDevices+"+notify", nodeAvatar+"+notify", nodeBookmark+"+notify")
	if asked != 1 {
		t.Fatalf("server asked bob's caps %d times, want 1", asked)
	}
	c, _ := h.onlineWithCaps("carol@localhost/c", true, nodeDevices+"+notify", nodeAvatar+"+notify")
	a.take()
	b.take()

	// OMEMO device list, open.
	reply, extra := h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'><device id='42'/></list>`,
		opt("pubsub#access_model", "open")))
	a.putBack(extra)
	if reply.IQType() != stanza.ResultIQ || reply.Child(NSPubSub, "pubsub").Child(NSPubSub, "publish").Child(NSPubSub, "item").Attr("id") != "current" {
		t.Fatalf("publish: %s", reply)
	}
	if got := events(b); strings.Join(got, ",") != "alice@localhost "+nodeDevices+":item:current" {
		t.Errorf("bob's events %q", got)
	}
	if got := events(a); len(got) != 1 {
		t.Errorf("alice's events %q", got)
	}
	if got := events(c); len(got) != 0 {
		t.Errorf("carol is no contact but got %q", got)
	}
	if ids, cond, _ := itemsOf(t, h, c, "alice@localhost", nodeDevices); cond != "" || len(ids) != 1 {
		t.Errorf("carol reading an open node: %q %s", ids, cond)
	}

	// Avatar metadata, presence access by default.
	h.iq(a, publish(nodeAvatar, "sha1hash", `<metadata xmlns='urn:xmpp:avatar:metadata'><info id='sha1hash' bytes='10' type='image/png'/></metadata>`, ""))
	if got := events(b); len(got) != 1 {
		t.Errorf("bob's avatar events %q", got)
	}
	if _, cond, specific := itemsOf(t, h, c, "alice@localhost", nodeAvatar); cond != "not-authorized" || specific != "presence-subscription-required" {
		t.Errorf("carol reading a presence node: %s %s", cond, specific)
	}
	if ids, cond, _ := itemsOf(t, h, b, "alice@localhost", nodeAvatar); cond != "" || len(ids) != 1 {
		t.Errorf("bob reading a presence node: %q %s", ids, cond)
	}

	// Bookmarks: whitelist, many items, never sent on presence.
	bmOpts := opt("pubsub#persist_items", "true") + opt("pubsub#max_items", "max") +
		opt("pubsub#send_last_published_item", "never") + opt("pubsub#access_model", "whitelist")
	for _, room := range []string{"one@conference.localhost", "two@conference.localhost"} {
		reply, extra := h.iq(a, publish(nodeBookmark, room, `<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'/>`, bmOpts))
		a.putBack(extra)
		if reply.IQType() != stanza.ResultIQ {
			t.Fatalf("bookmark publish: %s", reply)
		}
	}
	if got := events(b); len(got) != 0 {
		t.Errorf("bob heard alice's bookmarks: %q", got)
	}
	if got := events(a); len(got) != 2 {
		t.Errorf("alice's bookmark events %q", got)
	}
	if _, cond, specific := itemsOf(t, h, b, "alice@localhost", nodeBookmark); cond != "not-allowed" || specific != "closed-node" {
		t.Errorf("bob reading a whitelist node: %s %s", cond, specific)
	}
	if ids, _, _ := itemsOf(t, h, a, "alice@localhost", nodeBookmark); strings.Join(ids, ",") != "one@conference.localhost,two@conference.localhost" {
		t.Errorf("alice's bookmarks %q", ids)
	}

	// Options that contradict the node are a failed precondition.
	reply, _ = h.iq(a, publish(nodeBookmark, "three@conference.localhost", `<conference xmlns='urn:xmpp:bookmarks:1'/>`, opt("pubsub#access_model", "open")))
	if errorCondition(reply) != "conflict" || reply.Child("", "error").Child(NSPubSubErrors, "precondition-not-met") == nil {
		t.Errorf("mismatched options: %s", reply)
	}
	// The owner reconfigures, then the same publish works.
	reply, _ = h.iq(a, `<iq type='get' id='cf'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+nodeBookmark+`'/></pubsub></iq>`)
	if !strings.Contains(reply.String(), "whitelist") {
		t.Errorf("configure form %s", reply)
	}
	reply, _ = h.iq(a, `<iq type='set' id='cs'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='`+nodeBookmark+`'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>`+opt("pubsub#access_model", "open")+`</x></configure></pubsub></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Errorf("configure: %s", reply)
	}
	reply, _ = h.iq(a, publish(nodeBookmark, "three@conference.localhost", `<conference xmlns='urn:xmpp:bookmarks:1'/>`, opt("pubsub#access_model", "open")))
	if reply.IQType() != stanza.ResultIQ {
		t.Errorf("publish after configure: %s", reply)
	}
	events(a)
	events(b)

	// Retract with notify.
	reply, _ = h.iq(a, `<iq type='set' id='rt'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='`+nodeAvatar+`' notify='true'><item id='sha1hash'/></retract></pubsub></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("retract: %s", reply)
	}
	if got := events(b); strings.Join(got, ",") != "alice@localhost "+nodeAvatar+":retract:sha1hash" {
		t.Errorf("bob's retract events %q", got)
	}

	// Only the owner publishes; unknown nodes and users.
	for _, tc := range []struct {
		raw  string
		cond stanza.Condition
	}{
		{strings.Replace(publish(nodeAvatar, "x", "<x xmlns='urn:x'/>", ""), "id='pub'", "id='pub' to='alice@localhost'", 1), "forbidden"},
		{`<iq type='get' id='n' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:nothing'/></pubsub></iq>`, "item-not-found"},
		{`<iq type='get' id='n' to='nobody@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:nothing'/></pubsub></iq>`, "service-unavailable"},
		{publish(nodeAvatar, "x", "", ""), "bad-request"},
		{`<iq type='set' id='s'><pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='x' jid='bob@localhost'/></pubsub></iq>`, "feature-not-implemented"},
	} {
		if reply, _ := h.iq(b, tc.raw); errorCondition(reply) != tc.cond {
			t.Errorf("%s: %s, want %s", tc.raw, reply, tc.cond)
		}
	}

	// Nodes and items outlive the service.
	svc2, err := New(Config{Domain: "localhost"}, db)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc2
	b2 := h.online("bob@localhost/b2", 0)
	if ids, cond, _ := itemsOf(t, h, b2, "alice@localhost", nodeDevices); cond != "" || strings.Join(ids, ",") != "current" {
		t.Errorf("after a restart: %q %s", ids, cond)
	}
}

func TestPEPLastItemsOnPresence(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.iq(a, publish(nodeDevices, "current", `<list xmlns='eu.siacs.conversations.axolotl'/>`, ""))
	h.iq(a, publish(nodeAvatar, "h1", `<metadata xmlns='urn:xmpp:avatar:metadata'/>`, ""))
	h.iq(a, publish(nodeBookmark, "r@conference.localhost", `<conference xmlns='urn:xmpp:bookmarks:1'/>`,
		opt("pubsub#access_model", "whitelist")+opt("pubsub#send_last_published_item", "never")))

	// Bob's client asks for device lists only: after its caps answer it
	// gets alice's last device list, delayed.
	b, asked := h.onlineWithCaps("bob@localhost/b", true, nodeDevices+"+notify")
	if asked != 1 {
		t.Fatalf("asked %d", asked)
	}
	if got := events(b); strings.Join(got, ",") != "alice@localhost "+nodeDevices+":item:current:delayed" {
		t.Errorf("bob's last items %q", got)
	}
	// The same client software again: known from the cache, no query.
	b2, asked := h.onlineWithCaps("bob@localhost/b2", false, nodeDevices+"+notify")
	if asked != 0 {
		t.Errorf("a verified hash was asked again")
	}
	if got := events(b2); len(got) != 1 {
		t.Errorf("b2's last items %q", got)
	}
	// Alice's own new client that wants avatars and bookmarks gets the avatar
	// (bookmarks say never).
	a2, _ := h.onlineWithCaps("alice@localhost/a2", true, nodeAvatar+"+notify", nodeBookmark+"+notify")
	if got := events(a2); strings.Join(got, ",") != "alice@localhost "+nodeAvatar+":item:h1:delayed" {
		t.Errorf("a2's last items %q", got)
	}
	// A client that does not answer: no items, and nothing breaks.
	b3, asked := h.onlineWithCaps("bob@localhost/b3", false, nodeAvatar+"+notify")
	if asked != 1 || len(events(b3)) != 0 {
		t.Errorf("silent client: asked %d", asked)
	}
}

func TestCapsHashVerification(t *testing.T) {
	// XEP-0115 §5.2's example.
	info := clientInfo("http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
		"http://jabber.org/protocol/disco#items", "http://jabber.org/protocol/muc")
	info.Child(NSDiscoInfo, "identity").SetAttr("name", "Exodus 0.9.1")
	if got := capsVerOf(info, sha1.New()); got != "QgayPKawpkPSDYmwT/WM94uAlu0=" {
		t.Errorf("ver = %s", got)
	}

	// A client whose answer does not match its hash is believed for
	// itself only.
	h, _ := newDBHarness(t, Config{}, "bob")
	s := h.bind("bob@localhost/liar")
	h.send(s, `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='n' ver='bogus='/></presence>`)
	var q *stanza.Element
	for _, el := range s.takeAll() {
		if el.Local == "iq" {
			q = el
		}
	}
	r := stanza.Result(q, clientInfo("urn:x+notify"))
	r.SetAttr("from", "")
	h.svc.HandleStanza(t.Context(), s, r)
	if f := h.svc.sessionFeatures(s); !f["urn:x+notify"] {
		t.Errorf("the liar's own features were not kept: %v", f)
	}
	if _, ok := h.svc.caps.lookup("sha-1", "bogus="); ok {
		t.Error("an unverified hash was cached")
	}
}

func TestExtensionDisco(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b := h.online("bob@localhost/b", 0)
	a.take()
	reply, _ := h.iq(a, `<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	var got []string
	for _, f := range reply.Child(NSDiscoInfo, "query").Elements() {
		if f.Local == "feature" {
			got = append(got, f.Attr("var"))
		}
	}
	want := []string{
		"http://jabber.org/protocol/disco#info", "http://jabber.org/protocol/disco#items",
		"urn:xmpp:ping", "jabber:iq:version", "msgoffline",
		"urn:xmpp:carbons:2", "urn:xmpp:blocking", "vcard-temp", "jabber:iq:private",
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("server features\n %q\nwant\n %q", got, want)
	}

	// The caps node answers the same, with the node echoed.
	caps := h.svc.Caps()
	reply, _ = h.iq(a, `<iq type='get' id='c' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info' node='`+CapsNode+`#`+caps.Attr("ver")+`'/></iq>`)
	if reply.IQType() != stanza.ResultIQ || capsVerOf(reply.Child(NSDiscoInfo, "query"), sha1.New()) != caps.Attr("ver") {
		t.Errorf("caps node: %s", reply)
	}

	// The account: identities account/registered and pubsub/pep; MAM and PEP features.
	reply, _ = h.iq(b, `<iq type='get' id='d' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	s := reply.String()
	for _, w := range []string{"category='pubsub' type='pep'", "var='urn:xmpp:mam:2'", "var='urn:xmpp:sid:0'",
		"var='http://jabber.org/protocol/pubsub#publish-options'", "var='http://jabber.org/protocol/pubsub#access-whitelist'"} {
		if !strings.Contains(s, w) {
			t.Errorf("account disco lacks %s: %s", w, s)
		}
	}
}

func TestPEPLimits(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice")
	a := h.online("alice@localhost/a", 0)
	long := strings.Repeat("n", pepMaxName+1)
	for _, tc := range []struct {
		raw  string
		cond stanza.Condition
	}{
		{publish(long, "1", "<x xmlns='urn:x'/>", ""), "not-acceptable"},
		{publish("urn:x", long, "<x xmlns='urn:x'/>", ""), "not-acceptable"},
		{publish("urn:x", "1", "<x xmlns='urn:x'>"+strings.Repeat("y", DefaultPEPItemBytes)+"</x>", ""), "not-acceptable"},
		{publish("urn:x", "1", "<x xmlns='urn:x'/>", opt("pubsub#max_items", "100000")), "conflict"},
		{publish("urn:x", "1", "<x xmlns='urn:x'/><y xmlns='urn:x'/>", ""), "bad-request"},
		{`<iq type='set' id='p'><query xmlns='jabber:iq:private'><x xmlns='urn:` + long + `'/></query></iq>`, "not-acceptable"},
	} {
		if reply, _ := h.iq(a, tc.raw); errorCondition(reply) != tc.cond {
			t.Errorf("%.80s: %.200s, want %s", tc.raw, reply, tc.cond)
		}
	}
}

func TestPEPLastItemsOnApproval(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	a := h.online("alice@localhost/a", 0)
	h.iq(a, publish(nodeAvatar, "h1", `<metadata xmlns='urn:xmpp:avatar:metadata'/>`, ""))
	b, _ := h.onlineWithCaps("bob@localhost/b", true, nodeAvatar+"+notify")
	if got := events(b); len(got) != 0 {
		t.Fatalf("bob sees alice's avatar before subscribing: %q", got)
	}
	h.send(b, `<presence type='subscribe' to='alice@localhost'/>`)
	a.take()
	h.send(a, `<presence type='subscribed' to='bob@localhost'/>`)
	if got := events(b); strings.Join(got, ",") != "alice@localhost "+nodeAvatar+":item:h1:delayed" {
		t.Errorf("bob's events after approval %q", got)
	}
}

func TestPEPCreateDeleteAndBlocking(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	b, _ := h.onlineWithCaps("bob@localhost/b", true, "urn:example:status+notify")
	a.take()
	b.take()
	const create = `<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='urn:example:status'/>` +
		`<configure><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>` +
		`<field var='pubsub#max_items'><value>2</value></field></x></configure></pubsub></iq>`
	if reply, _ := h.iq(a, create); reply.IQType() != stanza.ResultIQ {
		t.Fatalf("create: %s", reply)
	}
	if reply, _ := h.iq(a, create); errorCondition(reply) != "conflict" {
		t.Errorf("second create: %s", reply)
	}
	for _, id := range []string{"1", "2", "3"} {
		_, extra := h.iq(a, publish("urn:example:status", id, "<status xmlns='urn:example:status'/>", ""))
		a.putBack(extra)
	}
	if got := events(b); len(got) != 3 {
		t.Errorf("bob's events %q", got)
	}
	if ids, _, _ := itemsOf(t, h, b, "alice@localhost", "urn:example:status"); strings.Join(ids, ",") != "2,3" {
		t.Errorf("items kept with max_items 2: %q", ids)
	}
	events(a)

	// Bob blocked by alice: no more events, no more reading.
	h.iq(a, `<iq type='set' id='bk'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>`)
	b.take()
	h.iq(a, publish("urn:example:status", "4", "<status xmlns='urn:example:status'/>", ""))
	if got := events(b); len(got) != 0 {
		t.Errorf("a blocked contact heard %q", got)
	}
	if _, cond, _ := itemsOf(t, h, b, "alice@localhost", "urn:example:status"); cond != "service-unavailable" {
		t.Errorf("a blocked contact reading: %s", cond)
	}
	h.iq(a, `<iq type='set' id='ub'><unblock xmlns='urn:xmpp:blocking'/></iq>`)
	b.take()

	// Delete: bob hears it, the node is gone.
	reply, _ := h.iq(a, `<iq type='set' id='d'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='urn:example:status'/></pubsub></iq>`)
	if reply.IQType() != stanza.ResultIQ {
		t.Fatalf("delete: %s", reply)
	}
	if got := events(b); strings.Join(got, ",") != "urn:example:status:delete" {
		t.Errorf("bob's delete events %q", got)
	}
	if _, cond, _ := itemsOf(t, h, b, "alice@localhost", "urn:example:status"); cond != "item-not-found" {
		t.Errorf("items of a deleted node: %s", cond)
	}
	if reply, _ := h.iq(b, `<iq type='set' id='d' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='x'/></pubsub></iq>`); errorCondition(reply) != "forbidden" {
		t.Errorf("bob deleting alice's node: %s", reply)
	}
}

func TestCapsQueriesForgottenWithTheSession(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "bob")
	s, asked := h.onlineWithCaps("bob@localhost/b", false, "urn:x+notify")
	if asked != 1 {
		t.Fatalf("asked %d", asked)
	}
	h.close(s)
	h.svc.caps.mu.Lock()
	n := len(h.svc.caps.pending)
	h.svc.caps.mu.Unlock()
	if n != 0 {
		t.Errorf("%d caps queries still wait for a closed session", n)
	}
}
