package chat

import (
	"strconv"
	"sync"
	"testing"
)

// Messages sent while the recipient's sessions come and go are each either
// delivered to a session or queued offline, never lost; run with -race.
func TestConcurrentTrafficLosesNothing(t *testing.T) {
	h := newHarness(t, Config{OfflineLimit: 10000, Limits: Limits{OfflinePerSender: 10000}}, "alice", "bob")
	h.befriend("alice", "bob")
	a := h.online("alice@localhost/a", 0)
	const n = 200
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bobs []*fakeSession
	wg.Go(func() {
		for i := range n {
			h.send(a, `<message type='chat' to='bob@localhost'><body>`+strconv.Itoa(i)+`</body></message>`)
		}
	})
	wg.Go(func() {
		for i := range 20 {
			b := h.bind("bob@localhost/r" + strconv.Itoa(i))
			h.send(b, `<presence/>`)
			h.send(b, `<presence><show>away</show></presence>`)
			h.close(b)
			mu.Lock()
			bobs = append(bobs, b)
			mu.Unlock()
		}
	})
	wg.Wait()

	got := map[string]bool{}
	for _, b := range bobs {
		for _, el := range b.Received() {
			if el.Local == "message" {
				got[el.ChildText("", "body")] = true
			}
		}
	}
	msgs, _ := h.st.OfflineMessages(t.Context(), "bob")
	if len(got)+len(msgs) != n {
		t.Errorf("delivered %d + queued %d, want %d in all", len(got), len(msgs), n)
	}
	if e := a.take(); len(e) > 0 {
		for _, s := range e {
			if s[:8] != "presence" {
				t.Errorf("alice got %s", s)
			}
		}
	}
}
