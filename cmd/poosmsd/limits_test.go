package main

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"poosms.org/poosms/config"
	"poosms.org/poosms/stanza"
)

// TestPerUserLimitsFromSettings: the per-user limit settings reach the
// services they bound; each is tried once, over real streams, past a
// value of one.
func TestPerUserLimitsFromSettings(t *testing.T) {
	cfg, _, err := config.Load([]string{"--upload-max-files", "1", "--offline-limit-per-sender", "1",
		"--max-new-rooms-per-hour", "1", "--pep-max-nodes", "1", "--roster-max-items", "1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := testConfig(t, "")
	cfg.DataDir, cfg.C2SAddr, cfg.C2STLSAddr, cfg.HTTPAddr = base.DataDir, base.C2SAddr, base.C2STLSAddr, base.HTTPAddr
	cfg.MediaUDPAddr, cfg.MediaTCPAddr, cfg.TURNAddr = base.MediaUDPAddr, base.MediaTCPAddr, base.TURNAddr
	n := startTestNode(t, cfg)
	for _, u := range []string{"alice", "bob", "carol"} {
		addUser(t, cfg, u, u+"-password")
	}
	alice := dialUser(t, n, "alice", "alice-password", "desk")

	refused := func(what, id string, el *stanza.Element) {
		t.Helper()
		if err := alice.Send(el.SetAttr("id", id)); err != nil {
			t.Fatal(err)
		}
		r, err := alice.Expect(10*time.Second, func(e *stanza.Element) bool { return e.ID() == id })
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if e := r.Child("", "error"); !r.IsError() || e == nil || e.Child(stanza.NSStanzas, "resource-constraint") == nil {
			t.Errorf("%s: %s, want resource-constraint", what, r)
		}
	}
	ok := func(what, id string, el *stanza.Element) *stanza.Element {
		t.Helper()
		if err := alice.Send(el.SetAttr("id", id)); err != nil {
			t.Fatal(err)
		}
		r, err := alice.Expect(10*time.Second, func(e *stanza.Element) bool { return e.ID() == id })
		if err != nil || r.IsError() {
			t.Fatalf("%s: %v %s", what, err, r)
		}
		return r
	}
	iq := func(typ, to string, payload *stanza.Element) *stanza.Element {
		el := stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).Append(payload)
		if to != "" {
			el.SetAttr("to", to)
		}
		return el
	}

	// upload_max_files: one file, then no slot.
	slotReq := func(name string) *stanza.Element {
		return iq("get", "upload.localhost", stanza.New("urn:xmpp:http:upload:0", "request").SetAttr("filename", name).SetAttr("size", "0"))
	}
	slot := ok("first slot", "s1", slotReq("a.txt")).Child("", "slot")
	req, _ := http.NewRequest(http.MethodPut, slot.Child("", "put").Attr("url"), bytes.NewReader(nil))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	refused("second file past upload_max_files", "s2", slotReq("b.txt"))

	// pep_max_nodes: one node, then no more.
	create := func(node string) *stanza.Element {
		return iq("set", "", stanza.New("http://jabber.org/protocol/pubsub", "pubsub").Append(
			stanza.New("http://jabber.org/protocol/pubsub", "create").SetAttr("node", node)))
	}
	ok("first node", "n1", create("one"))
	refused("second node past pep_max_nodes", "n2", create("two"))

	// roster_max_items: one contact, then no more.
	item := func(j string) *stanza.Element {
		return iq("set", "", stanza.New("jabber:iq:roster", "query").Append(stanza.New("jabber:iq:roster", "item").SetAttr("jid", j)))
	}
	ok("first contact", "r1", item("bob@localhost"))
	refused("second contact past roster_max_items", "r2", item("carol@localhost"))

	// offline_limit_per_sender: one message waits for carol, the next is
	// refused.
	msg := func(body string) *stanza.Element {
		return stanza.New(stanza.NSClient, "message").SetAttr("to", "carol@localhost").SetAttr("type", "chat").
			Append(stanza.New(stanza.NSClient, "body").SetText(body))
	}
	if err := alice.Send(msg("one").SetAttr("id", "m1")); err != nil {
		t.Fatal(err)
	}
	refused("second offline message past offline_limit_per_sender", "m2", msg("two"))

	// max_new_rooms_per_hour: one room, then no more.
	enter := func(room string) *stanza.Element {
		return stanza.New(stanza.NSClient, "presence").SetAttr("to", room+"@conference.localhost/alice").
			Append(stanza.New("http://jabber.org/protocol/muc", "x"))
	}
	if err := alice.Send(enter("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Expect(10*time.Second, func(e *stanza.Element) bool {
		return e.Local == "presence" && e.From() == "first@conference.localhost/alice" && e.PresenceType() == stanza.AvailablePresence
	}); err != nil {
		t.Fatalf("first room: %v", err)
	}
	refused("second room past max_new_rooms_per_hour", "p2", enter("second"))
}
