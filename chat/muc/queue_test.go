package muc

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// History on joining is bounded in bytes as well as in messages: joining
// sends history and presence at once, and a session's queue is bounded in
// bytes, so a room's last twenty large messages must not end every
// newcomer's session. The newest messages that fit are sent.
func TestHistoryOnJoinBoundedInBytes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HistoryBytes = 100 << 10 })
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	big := strings.Repeat("x", 30<<10)
	for i := range 5 {
		h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>`+strconv.Itoa(i)+big+`</body></message>`)
	}
	bob := h.session("bob@localhost/b")
	h.join(bob, "r/Bob", "")
	var got []string
	for _, el := range bob.takeEls() {
		if b := el.ChildText("", "body"); b != "" {
			got = append(got, b[:1])
		}
	}
	if strings.Join(got, ",") != "2,3,4" {
		t.Fatalf("history on join: %v, want the newest three (90 KiB of 100)", got)
	}
}

// A room's archive page waits for room in the asker's queue rather than
// stopping when the queue is full: it is many stanzas asked for at once.
func TestArchivePageWaitsForRoom(t *testing.T) {
	h := newHarness(t, nil)
	alice := h.session("alice@localhost/a")
	h.room(alice, "r", "Alice", nil)
	const n = 30
	for i := range n {
		h.send(alice, `<message type='groupchat' to='r@conference.localhost'><body>`+strconv.Itoa(i)+`</body></message>`)
	}
	bob := testfake.NewSlowSession("bob@localhost/b")
	q, _ := stanza.Parse([]byte(`<iq type='set' id='q' to='r@conference.localhost'><query xmlns='urn:xmpp:mam:2' queryid='Q1'/></iq>`))
	q.SetAttr("from", bob.JID().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.HandleStanza(context.Background(), bob, q)
	}()
	bob.Queue.Read(t, done)
	got := bob.Take()
	if len(got) != n+1 || got[n].Local != "iq" || got[n].Type() != "result" {
		t.Fatalf("bob got %d stanzas, want %d results and the answer", len(got), n)
	}
}
