package chat

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// An archive page is many stanzas the client asked for at once: it waits
// for room in the client's queue (bounded in bytes, so a page of large
// messages does not fit at once) instead of ending the page, or the
// session, as if the client had stopped reading.
func TestArchivePageWaitsForRoom(t *testing.T) {
	h, _ := newDBHarness(t, Config{}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	const n = 30
	for i := range n {
		h.send(a, `<message type='chat' to='bob@localhost' id='m`+strconv.Itoa(i)+`'><body>`+strconv.Itoa(i)+`</body></message>`)
	}
	bob := testfake.NewSlowSession("bob@localhost/b")
	h.svc.SessionBound(context.Background(), bob)
	q, _ := stanza.Parse([]byte(`<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='qq'>` + rsm(100, "") + `</query></iq>`))
	q.SetAttr("from", bob.JID().String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.HandleStanza(context.Background(), bob, q)
	}()
	bob.Queue.Read(t, done)
	var got []string
	for _, el := range bob.Take() {
		got = append(got, summary(el))
	}
	if len(got) != n+1 {
		t.Fatalf("bob got %d stanzas, want %d results and the answer:\n%v", len(got), n, got)
	}
	if last := got[n]; !strings.HasPrefix(last, "iq type=result") {
		t.Fatalf("the page ended with %s, want the query's result", last)
	}
}
