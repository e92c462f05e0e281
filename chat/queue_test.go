package chat

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// fullQueue is a session whose write queue has room for what its client
// has read (a token in room each): Send fails when there is none, as
// signaling's does for a client that stopped reading, and SendWait waits.
type fullQueue struct {
	*fakeSession
	room chan struct{}
}

func (q *fullQueue) Send(el *stanza.Element) error {
	select {
	case <-q.room:
		return q.fakeSession.Send(el)
	default:
		return ErrSessionGone
	}
}

func (q *fullQueue) SendWait(ctx context.Context, el *stanza.Element) error {
	select {
	case <-q.room:
		return q.fakeSession.Send(el)
	case <-ctx.Done():
		return ctx.Err()
	}
}

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
	bob := &fullQueue{fakeSession: &fakeSession{jid: jid.MustParse("bob@localhost/b")}, room: make(chan struct{}, 2)}
	h.svc.SessionBound(context.Background(), bob)
	q, _ := stanza.Parse([]byte(`<iq type='set' id='q1'><query xmlns='urn:xmpp:mam:2' queryid='qq'>` + rsm(100, "") + `</query></iq>`))
	q.SetAttr("from", bob.jid.String())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.svc.HandleStanza(context.Background(), bob, q)
	}()
	// The client reads slowly: a stanza every few milliseconds.
	tick := time.NewTicker(3 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for waiting := true; waiting; {
		select {
		case <-tick.C:
			select {
			case bob.room <- struct{}{}:
			default:
			}
		case <-done:
			waiting = false
		case <-deadline:
			t.Fatal("the archive query stalled")
		}
	}
	got := bob.take()
	if len(got) != n+1 {
		t.Fatalf("bob got %d stanzas, want %d results and the answer:\n%v", len(got), n, got)
	}
	if last := got[n]; !strings.HasPrefix(last, "iq type=result") {
		t.Fatalf("the page ended with %s, want the query's result", last)
	}
}
