package main

import (
	"crypto/sha1"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// Personal eventing across servers, as an end-to-end encrypting client
// (OMEMO: Conversations, Dino) uses it: device lists and avatars reach
// contacts on the other server through +notify in entity capabilities,
// and each side reads the other's key bundles.

const (
	nsPubSub      = "http://jabber.org/protocol/pubsub"
	nsPubSubEvent = "http://jabber.org/protocol/pubsub#event"
	nsCaps        = "http://jabber.org/protocol/caps"
	nsDiscoInfo   = "http://jabber.org/protocol/disco#info"
	nsOMEMO       = "eu.siacs.conversations.axolotl"
	nodeDevices   = nsOMEMO + ".devicelist"
	nodeAvatarMD  = "urn:xmpp:avatar:metadata"
)

// capsClient is a logged-in client that announces entity capabilities
// and answers the disco#info questions they bring while it waits; what
// a wait does not match is kept for the next.
type capsClient struct {
	*xmppclient.Client
	t    *testing.T
	info *stanza.Element
	ver  string
	kept []*stanza.Element
}

const capsNode = "https://poosms.org/test-client"

// loginWithCaps logs user in at side, with presence announcing features.
func loginWithCaps(t *testing.T, side fedSide, user, res string, features ...string) *capsClient {
	t.Helper()
	c := side.dial(t, user, res)
	info := stanza.New(nsDiscoInfo, "query").Append(
		stanza.New(nsDiscoInfo, "identity").SetAttr("category", "client").SetAttr("type", "pc").SetAttr("name", "poosms test"))
	slices.Sort(features)
	s := "client/pc//poosms test<"
	for _, f := range features {
		info.Append(stanza.New(nsDiscoInfo, "feature").SetAttr("var", f))
		s += f + "<"
	}
	sum := sha1.Sum([]byte(s))
	cc := &capsClient{Client: c, t: t, info: info, ver: base64.StdEncoding.EncodeToString(sum[:])}
	c.Send(stanza.New(stanza.NSClient, "presence").Append(
		stanza.New(nsCaps, "c").SetAttr("hash", "sha-1").SetAttr("node", capsNode).SetAttr("ver", cc.ver)))
	return cc
}

// want reads until match holds, answering disco#info questions.
func (c *capsClient) want(what string, match func(*stanza.Element) bool) *stanza.Element {
	c.t.Helper()
	for i, el := range c.kept {
		if match(el) {
			c.kept = slices.Delete(c.kept, i, i+1)
			return el
		}
	}
	deadline := time.Now().Add(fedWait)
	for {
		el, err := c.RecvTimeout(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("%s never received %s: %v", c.JID, what, err)
		}
		if el.Local == "iq" && el.IQType() == stanza.GetIQ && el.Child(nsDiscoInfo, "query") != nil {
			r := stanza.Result(el, c.info.Copy().SetAttr("node", el.Child(nsDiscoInfo, "query").Attr("node")))
			r.SetAttr("from", "")
			c.Send(r)
			continue
		}
		if match(el) {
			return el
		}
		c.kept = append(c.kept, el)
	}
}

// publishOpen publishes item id with payload on the user's node, open to
// anyone (as OMEMO clients publish).
func (c *capsClient) publishOpen(node, id string, payload *stanza.Element) {
	c.t.Helper()
	opts := stanza.New("jabber:x:data", "x").SetAttr("type", "submit").Append(
		field("FORM_TYPE", nsPubSub+"#publish-options"), field("pubsub#access_model", "open"))
	c.Send(iq("set", "", "pub-"+id, stanza.New(nsPubSub, "pubsub").Append(
		stanza.New(nsPubSub, "publish").SetAttr("node", node).Append(stanza.New(nsPubSub, "item").SetAttr("id", id).Append(payload)),
		stanza.New(nsPubSub, "publish-options").Append(opts))))
	if r := c.want("the publication of "+node, isIQ("pub-"+id)); r.IQType() != stanza.ResultIQ {
		c.t.Fatalf("%s publishing %s: %s", c.JID, node, r)
	}
}

// subscription is the subscription state of contact in the user's roster.
func (c *capsClient) subscription(contact string) string {
	c.t.Helper()
	c.Send(iq("get", "", "roster-check", stanza.New(nsRoster, "query")))
	r := c.want("the roster", isIQ("roster-check"))
	if q := r.Child(nsRoster, "query"); q != nil {
		for _, it := range q.Elements() {
			if it.Attr("jid") == contact {
				return it.Attr("subscription")
			}
		}
	}
	return "none"
}

// isEvent matches a PEP event from owner about node carrying item id.
func isEvent(owner, node, id string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		ev := e.Child(nsPubSubEvent, "event")
		if e.Local != "message" || ev == nil || !strings.HasPrefix(e.From(), owner) {
			return false
		}
		items := ev.Child(nsPubSubEvent, "items")
		return items != nil && items.Attr("node") == node && items.Child(nsPubSubEvent, "item") != nil &&
			items.Child(nsPubSubEvent, "item").Attr("id") == id
	}
}

// readItem reads item id of owner's node, and returns the answer.
func (c *capsClient) readItem(owner, node, id string) *stanza.Element {
	c.t.Helper()
	qid := "read-" + node
	c.Send(iq("get", owner, qid, stanza.New(nsPubSub, "pubsub").Append(
		stanza.New(nsPubSub, "items").SetAttr("node", node).Append(stanza.New(nsPubSub, "item").SetAttr("id", id)))))
	return c.want("the items of "+owner+" "+node, isIQ(qid))
}

func omemoList(id string) *stanza.Element {
	return stanza.New(nsOMEMO, "list").Append(stanza.New(nsOMEMO, "device").SetAttr("id", id))
}

// pepScenario: alice (ours) and bob (far), subscribed to each other,
// publish their OMEMO device lists and bundles and alice her avatar; each
// hears of the other's device list through +notify, and reads the
// other's bundle.
func pepScenario(t *testing.T, ours, far fedSide) {
	t.Helper()
	notify := []string{nodeDevices + "+notify", nodeAvatarMD + "+notify", nsDiscoInfo, nsCaps}
	alice := loginWithCaps(t, ours, "alice", "omemo", notify...)
	bob := loginWithCaps(t, far, "bob", "omemo", notify...)
	aliceBare, bobBare := "alice@"+ours.domain, "bob@"+far.domain
	// Both ways subscribed, whatever came before.
	for _, p := range []struct {
		from, to         *capsClient
		fromBare, toBare string
	}{{alice, bob, aliceBare, bobBare}, {bob, alice, bobBare, aliceBare}} {
		if sub := p.from.subscription(p.toBare); sub == "to" || sub == "both" {
			continue
		}
		p.from.Send(presenceTo(p.toBare, "subscribe"))
		p.to.want("a subscription request", isPresence(p.fromBare, "subscribe"))
		p.to.Send(presenceTo(p.fromBare, "subscribed"))
		p.from.want("the approval", isPresence(p.toBare, "subscribed"))
	}

	alice.publishOpen(nodeDevices, "current", omemoList("1001"))
	alice.publishOpen(nsOMEMO+".bundles:1001", "current", stanza.New(nsOMEMO, "bundle").Append(stanza.New(nsOMEMO, "identityKey").SetText("YWxpY2U=")))
	alice.publishOpen(nodeAvatarMD, "av1", stanza.New(nodeAvatarMD, "metadata"))
	bob.publishOpen(nodeDevices, "current", omemoList("2002"))
	bob.publishOpen(nsOMEMO+".bundles:2002", "current", stanza.New(nsOMEMO, "bundle").Append(stanza.New(nsOMEMO, "identityKey").SetText("Ym9i")))

	wantEvents := func(c *capsClient, what string, matchers ...func(*stanza.Element) bool) {
		t.Helper()
		left := slices.Clone(matchers)
		c.want(what, func(e *stanza.Element) bool {
			for i, m := range left {
				if m(e) {
					left = slices.Delete(left, i, i+1)
					break
				}
			}
			return len(left) == 0
		})
	}
	wantEvents(bob, "alice's device list and avatar", isEvent(aliceBare, nodeDevices, "current"), isEvent(aliceBare, nodeAvatarMD, "av1"))
	wantEvents(alice, "bob's device list", isEvent(bobBare, nodeDevices, "current"))

	for _, r := range []struct {
		c          *capsClient
		owner, dev string
	}{{bob, aliceBare, "1001"}, {alice, bobBare, "2002"}} {
		a := r.c.readItem(r.owner, nsOMEMO+".bundles:"+r.dev, "current")
		items := a.Child(nsPubSub, "pubsub")
		if a.IQType() != stanza.ResultIQ || items == nil || items.Child(nsPubSub, "items") == nil || items.Child(nsPubSub, "items").Child(nsPubSub, "item") == nil {
			t.Errorf("%s reading %s's bundle: %s", r.c.JID, r.owner, a)
		}
	}

	// A new device of alice's reaches bob's client as it is published.
	alice.publishOpen(nodeDevices, "current", omemoList("1002"))
	bob.want("alice's new device list", func(e *stanza.Element) bool {
		return isEvent(aliceBare, nodeDevices, "current")(e) && strings.Contains(e.String(), "1002")
	})
}

// TestFederationPEP: between two poosmsd servers, OMEMO device lists and
// avatars reach contacts on the other server, and bundles are read
// across; vCards and service discovery work both ways.
func TestFederationPEP(t *testing.T) {
	alphaS2S, betaS2S := testenv.FreeAddr(t), testenv.FreeAddr(t)
	alpha := fedNode(t, "alpha.test", alphaS2S, map[string]string{"beta.test": betaS2S}, nil)
	beta := fedNode(t, "beta.test", betaS2S, map[string]string{"alpha.test": alphaS2S}, nil)
	pepScenario(t, alpha.side(), beta.side())
	discoVCardScenario(t, alpha.side(), beta.side())
}

const (
	nsVCard      = "vcard-temp"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
)

// discoVCardScenario: each side reads the other user's vCard and asks
// the other server and its room service what they are and offer; a user
// of the other server may ask our upload service what it is, never for a
// slot.
func discoVCardScenario(t *testing.T, ours, far fedSide) {
	t.Helper()
	alice := ours.login(t, "alice", "cards")
	bob := far.login(t, "bob", "cards")
	for _, u := range []struct {
		c    *xmppclient.Client
		name string
	}{{alice, "Alice Liddell"}, {bob, "Bob Builder"}} {
		u.c.Send(iq("set", "", "vc-set", stanza.New(nsVCard, "vCard").Append(stanza.New(nsVCard, "FN").SetText(u.name))))
		if r := want(t, u.c, "the vCard saved", isIQ("vc-set")); r.IQType() != stanza.ResultIQ {
			t.Fatalf("%s saving a vCard: %s", u.c.JID, r)
		}
	}
	ask := func(c *xmppclient.Client, to, id string, q *stanza.Element) *stanza.Element {
		t.Helper()
		c.Send(iq("get", to, id, q))
		r := want(t, c, "the answer to "+id, isIQ(id))
		if r.IQType() != stanza.ResultIQ {
			t.Fatalf("%s asking %s (%s): %s", c.JID, to, id, r)
		}
		return r
	}
	if r := ask(bob, "alice@"+ours.domain, "vc-alice", stanza.New(nsVCard, "vCard")); !strings.Contains(r.String(), "Alice Liddell") {
		t.Errorf("bob read alice's vCard as %s", r)
	}
	if r := ask(alice, "bob@"+far.domain, "vc-bob", stanza.New(nsVCard, "vCard")); !strings.Contains(r.String(), "Bob Builder") {
		t.Errorf("alice read bob's vCard as %s", r)
	}

	identity := func(r *stanza.Element, category string) bool {
		q := r.Child(nsDiscoInfo, "query")
		if q == nil {
			return false
		}
		for _, id := range q.Elements() {
			if id.Local == "identity" && id.Attr("category") == category {
				return true
			}
		}
		return false
	}
	items := func(r *stanza.Element) []string {
		var out []string
		if q := r.Child(nsDiscoItems, "query"); q != nil {
			for _, it := range q.Elements() {
				out = append(out, it.Attr("jid"))
			}
		}
		return out
	}
	for _, side := range []struct {
		c      *xmppclient.Client
		domain string
	}{{alice, far.domain}, {bob, ours.domain}} {
		if r := ask(side.c, side.domain, "info-"+side.domain, stanza.New(nsDiscoInfo, "query")); !identity(r, "server") {
			t.Errorf("%s: %s's disco#info has no server identity: %s", side.c.JID, side.domain, r)
		}
		if r := ask(side.c, side.domain, "items-"+side.domain, stanza.New(nsDiscoItems, "query")); !slices.Contains(items(r), "conference."+side.domain) {
			t.Errorf("%s: %s's disco#items lack its room service: %s", side.c.JID, side.domain, r)
		}
		if r := ask(side.c, "conference."+side.domain, "info-conf-"+side.domain, stanza.New(nsDiscoInfo, "query")); !identity(r, "conference") {
			t.Errorf("%s: conference.%s's disco#info: %s", side.c.JID, side.domain, r)
		}
	}
	if r := ask(bob, "alice@"+ours.domain, "info-alice", stanza.New(nsDiscoInfo, "query")); !identity(r, "account") {
		t.Errorf("bob asking alice's account: %s", r)
	}
	if r := ask(bob, "upload."+ours.domain, "info-upload", stanza.New(nsDiscoInfo, "query")); !identity(r, "store") {
		t.Errorf("bob asking our upload service: %s", r)
	}
	bob.Send(iq("get", "upload."+ours.domain, "slot", stanza.New("urn:xmpp:http:upload:0", "request").
		SetAttr("filename", "a.txt").SetAttr("size", "10")))
	if r := want(t, bob, "the answer to a slot request", isIQ("slot")); !r.IsError() || stanza.ErrorCondition(r) != "forbidden" {
		t.Errorf("a user of another server asked our upload service for a slot: %s", r)
	}
}
