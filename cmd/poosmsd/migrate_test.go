//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// The old passwords of the users the peers hold.
var peerUsers = map[string]string{"alice": "alice-old-pw", "bob": "bob-old-pw"}

// A server moves from Prosody to poosms: Prosody's own export (its
// default hashed storage: SCRAM-SHA-1 data, no passwords) imports, and the
// users log in with their old passwords over real streams and find their
// roster, vCard, private XML and PEP items.
func TestImportFromProsody(t *testing.T) {
	p := startProsody(t, peerUsers)
	populatePeer(t, p.c2s, "SCRAM-SHA-1")
	dir := p.export(t)
	n := importInto(t, dir)

	// Only SCRAM-SHA-1 data came over: SCRAM-SHA-1 and PLAIN work,
	// SCRAM-SHA-256 fails as for a wrong password until a PLAIN login
	// has derived its verifier.
	alice := loginAs(t, n, "alice", "SCRAM-SHA-1")
	checkImported(t, alice, true)
	alice.Close()
	if _, err := dialAs(n, "alice", "SCRAM-SHA-256"); !isNotAuthorized(err) {
		t.Fatalf("SCRAM-SHA-256 with only SCRAM-SHA-1 data: %v, want not-authorized", err)
	}
	loginAs(t, n, "alice", "PLAIN").Close()
	loginAs(t, n, "alice", "SCRAM-SHA-256").Close()
	loginAs(t, n, "bob", "SCRAM-SHA-1").Close()
}

// A server moves from ejabberd to poosms: "ejabberdctl export_piefxis"
// (a file including one per host; ejabberd's default plain password
// storage) imports, the users log in with their old passwords with
// SCRAM-SHA-256, and bob gets the message alice sent him while he was
// offline on ejabberd.
func TestImportFromEjabberd(t *testing.T) {
	e := startEjabberd(t, peerUsers)
	populatePeer(t, e.c2s, "SCRAM-SHA-1")
	dir := e.export(t)
	n := importInto(t, dir)

	alice := loginAs(t, n, "alice", "SCRAM-SHA-256")
	checkImported(t, alice, false)
	bob := loginAs(t, n, "bob", "SCRAM-SHA-256")
	// alice asked bob for his presence while he was away (delivered at
	// login before the offline messages).
	if _, err := bob.Expect(10*time.Second, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.PresenceType() == stanza.SubscribePresence && strings.HasPrefix(e.From(), "alice@localhost")
	}); err != nil {
		t.Errorf("bob did not get alice's pending subscription request: %v", err)
	}
	m := expectBody(t, bob, "alice@localhost/peer", "hello while you were away")
	if d := m.Child(stanza.NSDelay, "delay"); d == nil {
		t.Errorf("the offline message has no delay stamp: %s", m)
	} else if ts, err := time.Parse(time.RFC3339, d.Attr("stamp")); err != nil || time.Since(ts) > 10*time.Minute {
		t.Errorf("delay %s: want the time ejabberd stored it", d)
	} else if len(m.Elements()) != 2 {
		t.Errorf("want the body and one delay: %s", m)
	}
}

// importInto runs "poosmsd import DIR" into a new server and starts it.
func importInto(t *testing.T, dir string) *testNode {
	t.Helper()
	cfg := testConfig(t, "")
	code, _, errOut := runCLI(t, "", "import", dir, "--data-dir", cfg.DataDir)
	t.Logf("poosmsd import:\n%s", errOut)
	if code != exitOK || !strings.Contains(errOut, "imported 2 users") {
		t.Fatalf("poosmsd import %s: exit %d", dir, code)
	}
	return startTestNode(t, cfg)
}

func dialAs(n *testNode, name, mech string) (*xmppclient.Client, error) {
	return xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: n.c2sAddr(), Domain: "localhost", Username: name, Password: peerUsers[name],
		Resource: "poosms", Mechanism: mech, Timeout: 10 * time.Second,
	})
}

func loginAs(t *testing.T, n *testNode, name, mech string) *xmppclient.Client {
	t.Helper()
	c, err := dialAs(n, name, mech)
	if err != nil {
		t.Fatalf("%s logs in to poosms with the old password (%s): %v", name, mech, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Send(stanza.New(stanza.NSClient, "presence")); err != nil {
		t.Fatal(err)
	}
	return c
}

func isNotAuthorized(err error) bool {
	var ae *xmppclient.AuthError
	return errors.As(err, &ae) && ae.Condition == "not-authorized"
}

// populatePeer logs alice in to the peer and gives her what a user has:
// a contact (with a pending subscription request to bob), a vCard, private
// XML, a PEP item; and a message for bob, who is offline.
func populatePeer(t *testing.T, addr, mech string) {
	t.Helper()
	c, err := xmppclient.Dial(context.Background(), xmppclient.Options{
		Addr: addr, Domain: "localhost", Username: "alice", Password: peerUsers["alice"],
		Resource: "peer", Mechanism: mech, Timeout: 15 * time.Second,
	})
	if err != nil {
		t.Fatalf("alice logs in to the peer: %v", err)
	}
	defer c.Close()
	for i, payload := range []string{
		`<query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bobby'><group>Friends</group></item></query>`,
		`<vCard xmlns='vcard-temp'><FN>Alice Liddell</FN><NICKNAME>ali</NICKNAME></vCard>`,
		`<query xmlns='jabber:iq:private'><storage xmlns='storage:rosternotes'><note jid='bob@localhost'>tall</note></storage></query>`,
		`<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='http://jabber.org/protocol/nick'><item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Ali</nick></item></publish></pubsub>`,
	} {
		iqRoundTrip(t, c, "set", fmt.Sprintf("peer%d", i), "", payload)
	}
	if err := c.SendRaw(`<presence to='bob@localhost' type='subscribe'/>` +
		`<message to='bob@localhost' type='chat' id='m1'><body>hello while you were away</body></message>`); err != nil {
		t.Fatal(err)
	}
	iqRoundTrip(t, c, "get", "ping", "localhost", `<ping xmlns='urn:xmpp:ping'/>`)
}

// iqRoundTrip sends an IQ and waits for its result.
func iqRoundTrip(t *testing.T, c *xmppclient.Client, typ, id, to, payload string) *stanza.Element {
	t.Helper()
	toAttr := ""
	if to != "" {
		toAttr = " to='" + to + "'"
	}
	if err := c.SendRaw("<iq type='" + typ + "' id='" + id + "'" + toAttr + ">" + payload + "</iq>"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Expect(15*time.Second, func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == id })
	if err != nil || r.IQType() != stanza.ResultIQ {
		t.Fatalf("iq %s %s: %v %v", id, payload, r, err)
	}
	return r
}

// checkImported asks poosms for what alice kept on the peer.
func checkImported(t *testing.T, alice *xmppclient.Client, pep bool) {
	t.Helper()
	r := iqRoundTrip(t, alice, "get", "r1", "", `<query xmlns='jabber:iq:roster'/>`)
	if s := r.String(); !strings.Contains(s, "jid='bob@localhost'") || !strings.Contains(s, "name='Bobby'") || !strings.Contains(s, "<group>Friends</group>") {
		t.Errorf("roster after import: %s", s)
	}
	r = iqRoundTrip(t, alice, "get", "v1", "", `<vCard xmlns='vcard-temp'/>`)
	if s := r.String(); !strings.Contains(s, "Alice Liddell") {
		t.Errorf("vCard after import: %s", s)
	}
	r = iqRoundTrip(t, alice, "get", "p1", "", `<query xmlns='jabber:iq:private'><storage xmlns='storage:rosternotes'/></query>`)
	if s := r.String(); !strings.Contains(s, ">tall</note>") {
		t.Errorf("private XML after import: %s", s)
	}
	if !pep {
		return
	}
	r = iqRoundTrip(t, alice, "get", "n1", "", `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/nick'/></pubsub>`)
	if s := r.String(); !strings.Contains(s, ">Ali</nick>") {
		t.Errorf("PEP nick after import: %s", s)
	}
}
