package muc

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentTalkersSeeOneOrder has several occupants post at once and
// checks that everyone received every message, all in the same order.
func TestConcurrentTalkersSeeOneOrder(t *testing.T) {
	h := newHarness(t, nil)
	owner := h.session("owner@localhost/o")
	h.room(owner, "r", "Owner", nil)
	const (
		talkers = 5
		each    = 20
	)
	var sessions []*fakeSession
	for i := range talkers {
		s := h.session(fmt.Sprintf("u%d@localhost/x", i))
		h.join(s, fmt.Sprintf("r/U%d", i), "")
		sessions = append(sessions, s)
	}
	for _, s := range append(sessions, owner) {
		s.take()
	}
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Go(func() {
			for j := range each {
				h.send(s, fmt.Sprintf(`<message type='groupchat' to='r@conference.localhost'><body>%d-%d</body></message>`, i, j))
			}
		})
	}
	// Someone joins and leaves meanwhile.
	wg.Go(func() {
		for range 10 {
			s := h.session("visitor@localhost/v")
			h.join(s, "r/Visitor", "")
			h.svc.SessionClosed(t.Context(), s)
		}
	})
	wg.Wait()

	var first []string
	for n, s := range append(sessions, owner) {
		var bodies []string
		for _, el := range s.takeEls() {
			if el.Local == "message" {
				bodies = append(bodies, el.ChildText("", "body"))
			}
		}
		if len(bodies) != talkers*each {
			t.Fatalf("session %d got %d messages, want %d", n, len(bodies), talkers*each)
		}
		if first == nil {
			first = bodies
		} else if !slices.Equal(bodies, first) {
			t.Errorf("session %d saw another order than session 0", n)
		}
	}
	page, err := h.db.RoomMessages(t.Context(), storeQuery("r"))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 100 {
		t.Errorf("archived %d messages, want 100", len(page.Messages))
	}
}
