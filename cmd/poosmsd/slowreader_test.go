package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// A client that stops reading is disconnected once what the server keeps
// for it passes its bounds, and loses nothing on the way: every message
// sent to it either reached its socket, went to the user's other
// resource, was stored offline, or came back to the sender as an error.
func TestNeverReadingClientLosesNothing(t *testing.T) {
	for _, tc := range []struct {
		name        string
		sm, other   bool
		total, size int
		offline     int // the offline queue's limit; 0: the default
	}{
		// Unacknowledged stanzas reach their bound before the socket's
		// buffers fill.
		{"stream management, no other resource", true, false, 60, 8 << 10, 0},
		// What the offline queue cannot take comes back as errors.
		{"stream management, a small offline queue", true, false, 60, 8 << 10, 20},
		// Without stream management, the kernel takes a few MiB into the
		// socket's buffers before the server's queue starts to fill.
		{"no stream management, another resource", false, true, 160, 32 << 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "")
			cfg.WriteQueue = 64
			cfg.WriteQueueBytes = 256 << 10
			cfg.UnackedBytes = 128 << 10
			if tc.offline > 0 {
				cfg.OfflineLimit = tc.offline
			}
			n := startTestNode(t, cfg)
			for _, u := range []string{"alice", "bob"} {
				addUser(t, cfg, u, u+"-password")
			}
			login := func(user, res string) *xmppclient.Client {
				t.Helper()
				x, err := xmppclient.Dial(context.Background(), xmppclient.Options{
					Addr: n.c2sAddr(), Domain: "localhost", Username: user, Password: user + "-password", Resource: res, Timeout: 10 * time.Second,
				})
				if err != nil {
					t.Fatalf("%s logs in: %v", user, err)
				}
				t.Cleanup(func() { x.Close() })
				return x
			}
			slow := login("bob", "slow")
			if err := slow.Send(stanza.New(stanza.NSClient, "presence")); err != nil {
				t.Fatal(err)
			}
			if tc.sm {
				if err := slow.SendRaw("<enable xmlns='urn:xmpp:sm:3' resume='true'/>"); err != nil {
					t.Fatal(err)
				}
				if _, err := slow.Expect(10*time.Second, func(e *stanza.Element) bool { return e.Local == "enabled" }); err != nil {
					t.Fatal(err)
				}
			}
			// From here bob/slow reads nothing.
			var other *peer
			if tc.other {
				other = newPeer(t, login("bob", "other"), "bob", nil)
				other.send(stanza.New(stanza.NSClient, "presence"))
			}
			alice := newPeer(t, login("alice", "desk"), "alice", nil)

			total := tc.total
			pad := strings.Repeat("p", tc.size)
			for i := range total {
				alice.chat("bob@localhost/slow", strconv.Itoa(i)+" "+pad)
				if i%10 == 9 {
					alice.ping("p" + strconv.Itoa(i))
				}
			}
			waitFor(t, func() bool { return n.c2s.Session(slow.JID) == nil })

			seen := map[string]string{} // message number → where it went
			mark := func(body, where string) {
				if num, _, ok := strings.Cut(body, " "); ok && seen[num] == "" {
					seen[num] = where
				}
			}
			// What reached bob/slow's socket before the server closed it.
			for {
				el, err := slow.RecvTimeout(5 * time.Second)
				if err != nil {
					break
				}
				if el.Local == "message" {
					mark(el.ChildText("", "body"), "socket")
				}
			}
			if other != nil {
				for len(seen) < total {
					el, err := other.next(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" })
					if err != nil {
						break
					}
					mark(el.ChildText("", "body"), "other resource")
				}
			}
			for len(seen) < total {
				el, err := alice.next(time.Second, func(e *stanza.Element) bool { return e.Local == "message" && e.IsError() })
				if err != nil {
					break
				}
				mark(el.ChildText("", "body"), "error to the sender")
			}
			// Offline: bob logs in again. A message the ended session
			// hands back after this login reaches him directly; either
			// way it carries a delay stamp, the time it was queued.
			back := newPeer(t, login("bob", "back"), "bob", nil)
			back.send(stanza.New(stanza.NSClient, "presence"))
			for len(seen) < total {
				el, err := back.next(5*time.Second, func(e *stanza.Element) bool { return e.Local == "message" && e.Child(stanza.NSDelay, "delay") != nil })
				if err != nil {
					break
				}
				mark(el.ChildText("", "body"), "offline")
			}
			where := map[string]int{}
			for _, w := range seen {
				where[w]++
			}
			t.Logf("%d messages: %v", total, where)
			for i := range total {
				if seen[strconv.Itoa(i)] == "" {
					t.Errorf("message %d was lost (the others: %v)", i, where)
				}
			}
			if where["socket"] == total {
				t.Fatalf("every message reached the socket: the client was never slowed down")
			}
		})
	}
}
