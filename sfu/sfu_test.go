package sfu

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

func newTestService(t *testing.T, mod func(*Config)) *Service {
	t.Helper()
	cfg := Config{
		Domain:          "conference.localhost",
		UDPAddr:         "127.0.0.1:0",
		TCPAddr:         "127.0.0.1:0",
		IncludeLoopback: true,
		ICEServers: func(jid.JID) []ICEServer {
			return []ICEServer{{URLs: []string{"stun:127.0.0.1:3478"}}, {URLs: []string{"turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"}, Username: "123:alice", Credential: "secret"}}
		},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

const testRoom = "standup@conference.localhost"

func TestTwoParticipantsExchangeMedia(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})

	j := alice.join()
	if servers := j.Child(NS, "ice-server"); servers == nil || servers.Attr("urls") != "stun:127.0.0.1:3478" {
		t.Fatalf("join result lacks the configured ICE servers: %s", j)
	}
	bob.join()
	alice.waitEvent("participant-joined", 5*time.Second, func(e *stanza.Element) bool { return e.Attr("id") == bob.id })

	aa, av := alice.addTracks()
	ba, bv := bob.addTracks()
	alice.offer()
	bob.offer()
	am := sendMedia("alice", aa, av, 1)
	defer am.Stop()
	bm := sendMedia("bob", ba, bv, 1)
	defer bm.Stop()

	for _, tc := range []struct {
		c    *testClient
		from *testClient
	}{{alice, bob}, {bob, alice}} {
		c, from := tc.c, tc.from
		c.waitFor("media from "+from.name, 15*time.Second, func() bool {
			v := c.trackFrom(from.id, "video/")
			a := c.trackFrom(from.id, "audio/")
			return v != nil && a != nil &&
				hasIntact(v, func(n int) []byte { return vp8Payload(from.name, n, true) }) &&
				hasIntact(a, func(n int) []byte { return opusPayload(from.name, n) })
		})
	}
}
