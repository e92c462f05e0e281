package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// Namespaces the federation scenario uses.
const (
	nsRoster   = "jabber:iq:roster"
	nsCarbons  = "urn:xmpp:carbons:2"
	nsForward  = "urn:xmpp:forward:0"
	nsBlocking = "urn:xmpp:blocking"
)

// fedSide is one server of a federation test: its domain, and how its
// users log in.
type fedSide struct {
	domain string
	addr   string // c2s address (STARTTLS)
	// mechanism is the SASL mechanism its users log in with.
	mechanism string
}

// login logs user in at side with resource res, asks for the roster (so
// that roster pushes arrive) and sends initial presence.
func (side fedSide) login(t *testing.T, user, res string) *xmppclient.Client {
	t.Helper()
	c := side.dial(t, user, res)
	c.Send(stanza.New(stanza.NSClient, "presence"))
	return c
}

// dial is login without the initial presence.
func (side fedSide) dial(t *testing.T, user, res string) *xmppclient.Client {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: side.addr, Domain: side.domain, Username: user, Password: user + "-password",
		Resource: res, Mechanism: side.mechanism, Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("%s@%s logs in: %v", user, side.domain, err)
	}
	t.Cleanup(func() { c.Close() })
	c.Send(iq("get", "", "roster-"+res, stanza.New(nsRoster, "query")))
	want(t, c, "the roster", func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "roster-"+res })
	return c
}

func iq(typ, to, id string, payload *stanza.Element) *stanza.Element {
	return stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).SetAttr("to", to).SetAttr("id", id).Append(payload)
}

func chatMessage(to, body string) *stanza.Element {
	return stanza.New(stanza.NSClient, "message").SetAttr("to", to).SetAttr("type", "chat").SetAttr("id", strings.ReplaceAll(body, " ", "-")).
		Append(stanza.New(stanza.NSClient, "body").SetText(body))
}

func presenceTo(to, typ string) *stanza.Element {
	return stanza.New(stanza.NSClient, "presence").SetAttr("to", to).SetAttr("type", typ)
}

// fedWait bounds every wait of the scenario; real servers on a busy
// machine take their time.
const fedWait = 20 * time.Second

// want reads c until match holds, failing the test after fedWait.
func want(t *testing.T, c *xmppclient.Client, what string, match func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	el, err := c.Expect(fedWait, match)
	if err != nil {
		t.Fatalf("%s never received %s: %v", c.JID, what, err)
	}
	return el
}

// wantAll reads c until every matcher has matched one stanza, in any
// order.
func wantAll(t *testing.T, c *xmppclient.Client, what string, matchers ...func(*stanza.Element) bool) {
	t.Helper()
	left := append([]func(*stanza.Element) bool(nil), matchers...)
	deadline := time.Now().Add(fedWait)
	for len(left) > 0 {
		el, err := c.RecvTimeout(time.Until(deadline))
		if err != nil {
			t.Fatalf("%s: %d of %d never arrived at %s: %v", what, len(left), len(matchers), c.JID, err)
		}
		for i, m := range left {
			if m(el) {
				left = append(left[:i], left[i+1:]...)
				break
			}
		}
	}
}

func isPresence(from, typ string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		return e.Local == "presence" && e.Type() == typ && e.From() == from
	}
}

func isMessage(from, body string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		return e.Local == "message" && e.ChildText("", "body") == body && (from == "" || e.From() == from)
	}
}

// isRosterPush matches a push of contact's item with this subscription.
func isRosterPush(contact, sub string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		if e.Local != "iq" || e.IQType() != stanza.SetIQ {
			return false
		}
		q := e.Child(nsRoster, "query")
		if q == nil {
			return false
		}
		it := q.Child(nsRoster, "item")
		return it != nil && it.Attr("jid") == contact && it.Attr("subscription") == sub
	}
}

// isCarbon matches a carbon copy of kind (sent, received) of body.
func isCarbon(kind, body string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool {
		c := e.Child(nsCarbons, kind)
		if e.Local != "message" || c == nil {
			return false
		}
		f := c.Child(nsForward, "forwarded")
		return f != nil && f.Child("", "message") != nil && f.Child("", "message").ChildText("", "body") == body
	}
}

// ackPushes answers roster pushes as a client must (RFC 6121 §2.1.6).
func isIQ(id string) func(*stanza.Element) bool {
	return func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id }
}

// subscribeBothWays makes alice (ours) and bob (far) subscribed to each
// other's presence, through requests and approvals that cross the
// federation, and checks each step as the users see it.
func subscribeBothWays(t *testing.T, ours, far fedSide, alice, bob *xmppclient.Client) {
	t.Helper()
	aliceBare, bobBare := "alice@"+ours.domain, "bob@"+far.domain
	alice.Send(presenceTo(bobBare, "subscribe"))
	want(t, alice, "the roster push of her request", func(e *stanza.Element) bool {
		return isRosterPush(bobBare, "none")(e) && e.Child(nsRoster, "query").Child(nsRoster, "item").Attr("ask") == "subscribe"
	})
	want(t, bob, "alice's subscription request", isPresence(aliceBare, "subscribe"))
	bob.Send(presenceTo(aliceBare, "subscribed"))
	wantAll(t, alice, "bob's approval",
		isRosterPush(bobBare, "to"),
		isPresence(bobBare, "subscribed"),
		func(e *stanza.Element) bool {
			return e.Local == "presence" && e.PresenceType() == stanza.AvailablePresence && e.From() == bobBare+"/phone"
		})

	bob.Send(presenceTo(aliceBare, "subscribe"))
	want(t, alice, "bob's subscription request", isPresence(bobBare, "subscribe"))
	alice.Send(presenceTo(bobBare, "subscribed"))
	wantAll(t, alice, "her approval pushed", isRosterPush(bobBare, "both"))
	want(t, bob, "alice's presence once approved", func(e *stanza.Element) bool {
		return e.Local == "presence" && e.PresenceType() == stanza.AvailablePresence && e.From() == aliceBare+"/desk"
	})
}

// chatScenario runs what must work across two domains, alice being a
// user of ours and bob of far: subscriptions both ways, messages both
// ways, probes at login, carbons, unavailable on logout, offline delivery
// with the original time, the archive, what a remote user may not ask,
// blocking and unsubscribing. It leaves alice (a new session, "desk")
// subscribed to bob's presence and seeing him online, and returns her.
func chatScenario(t *testing.T, ours, far fedSide) (alice, bob *xmppclient.Client) {
	aliceBare, bobBare := "alice@"+ours.domain, "bob@"+far.domain
	alice = ours.login(t, "alice", "desk")
	bob = far.login(t, "bob", "phone")
	subscribeBothWays(t, ours, far, alice, bob)

	alice.Send(chatMessage(bobBare, "hello bob"))
	want(t, bob, "alice's message", isMessage(aliceBare+"/desk", "hello bob"))
	bob.Send(chatMessage(aliceBare, "hello alice"))
	want(t, alice, "bob's message", isMessage(bobBare+"/phone", "hello alice"))

	// A second session of alice's: probes at login bring bob's presence;
	// carbons copy both directions to it.
	laptop := ours.login(t, "alice", "laptop")
	want(t, laptop, "bob's presence, probed at login", isPresence(bobBare+"/phone", ""))
	for _, c := range []*xmppclient.Client{alice, laptop} {
		c.Send(iq("set", "", "carbons", stanza.New(nsCarbons, "enable")))
		want(t, c, "carbons on", isIQ("carbons"))
	}
	bob.Send(chatMessage(aliceBare+"/desk", "for the desk"))
	want(t, alice, "the message for the desk", isMessage(bobBare+"/phone", "for the desk"))
	want(t, laptop, "a received carbon", isCarbon("received", "for the desk"))
	alice.Send(chatMessage(bobBare, "sent from the desk"))
	want(t, laptop, "a sent carbon", isCarbon("sent", "sent from the desk"))
	want(t, bob, "the message from the desk", isMessage(aliceBare+"/desk", "sent from the desk"))

	// Unavailable on logout, for each session.
	laptop.Close()
	want(t, bob, "the laptop going away", isPresence(aliceBare+"/laptop", "unavailable"))
	alice.Close()
	want(t, bob, "the desk going away", isPresence(aliceBare+"/desk", "unavailable"))

	// Offline: kept, then delivered with the time it arrived.
	before := time.Now().UTC().Add(-time.Second)
	bob.Send(chatMessage(aliceBare, "while you were away"))
	// Let it arrive and be stored before alice is back.
	bob.Send(iq("get", aliceBare, "sync-offline", stanza.New("http://jabber.org/protocol/disco#info", "query")))
	want(t, bob, "an answer from alice's account", isIQ("sync-offline"))
	time.Sleep(1100 * time.Millisecond) // the stamp has a resolution of a second
	alice = ours.login(t, "alice", "desk")
	off := want(t, alice, "the offline message", isMessage(bobBare+"/phone", "while you were away"))
	d := off.Child(stanza.NSDelay, "delay")
	if d == nil {
		t.Fatalf("the offline message has no delay: %s", off)
	}
	stamp, err := time.Parse(time.RFC3339, d.Attr("stamp"))
	if err != nil || stamp.Before(before.Truncate(time.Second)) || !stamp.Before(time.Now().Add(-time.Second)) {
		t.Fatalf("delay stamp %q is not the time the message arrived (after %s, before login)", d.Attr("stamp"), before)
	}

	// The archive kept both directions.
	alice.Send(iq("set", "", "mam", stanza.New(nsMAM, "query").SetAttr("queryid", "q1")))
	bodies := map[string]bool{}
	for {
		el := want(t, alice, "archive results", func(e *stanza.Element) bool {
			return e.Local == "message" && e.Child(nsMAM, "result") != nil || isIQ("mam")(e)
		})
		if el.Local == "iq" {
			break
		}
		m := el.Child(nsMAM, "result").Child(nsForward, "forwarded").Child("", "message")
		bodies[m.ChildText("", "body")] = true
	}
	for _, b := range []string{"hello bob", "hello alice", "for the desk", "sent from the desk", "while you were away"} {
		if !bodies[b] {
			t.Errorf("alice's archive lacks %q (has %v)", b, bodies)
		}
	}

	// What a user of another server may not ask of alice's account.
	for _, tc := range []struct {
		id      string
		payload *stanza.Element
		cond    stanza.Condition
	}{
		{"roster-of-alice", stanza.New(nsRoster, "query"), "forbidden"},
		{"archive-of-alice", stanza.New(nsMAM, "query"), "service-unavailable"},
		{"blocklist-of-alice", stanza.New(nsBlocking, "blocklist"), "service-unavailable"},
	} {
		typ := "get"
		if tc.payload.Space == nsMAM {
			typ = "set"
		}
		bob.Send(iq(typ, aliceBare, tc.id, tc.payload))
		r := want(t, bob, "the answer to "+tc.id, isIQ(tc.id))
		if !r.IsError() || stanza.ErrorCondition(r) != tc.cond {
			t.Errorf("%s: bob got %s, want error %s", tc.id, r, tc.cond)
		}
	}

	// Blocking: bob's messages are refused while alice blocks him.
	alice.Send(iq("set", "", "block", stanza.New(nsBlocking, "block").Append(stanza.New(nsBlocking, "item").SetAttr("jid", bobBare))))
	want(t, alice, "the block", isIQ("block"))
	want(t, bob, "alice going offline for him", isPresence(aliceBare+"/desk", "unavailable"))
	bob.Send(chatMessage(aliceBare, "can you hear me"))
	r := want(t, bob, "the refusal", func(e *stanza.Element) bool { return e.Local == "message" && e.IsError() })
	if stanza.ErrorCondition(r) != "service-unavailable" {
		t.Errorf("bob's message to someone who blocked him came back %s", r)
	}
	alice.Send(iq("set", "", "unblock", stanza.New(nsBlocking, "unblock").Append(stanza.New(nsBlocking, "item").SetAttr("jid", bobBare))))
	want(t, alice, "the unblock", isIQ("unblock"))
	want(t, bob, "alice's presence again", isPresence(aliceBare+"/desk", ""))
	bob.Send(chatMessage(aliceBare, "and now"))
	want(t, alice, "bob's message after the unblock", isMessage(bobBare+"/phone", "and now"))

	// bob unsubscribes from alice's presence: her roster says so, and she
	// still sees him.
	bob.Send(presenceTo(aliceBare, "unsubscribe"))
	wantAll(t, alice, "bob's unsubscription", isPresence(bobBare, "unsubscribe"), isRosterPush(bobBare, "to"))
	return alice, bob
}
