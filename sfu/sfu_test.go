package sfu

import (
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
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

func TestThirdJoinsAndLeaves(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	carol := newTestClient(t, svc, "carol", testRoom, clientOpts{})

	var streams []*media
	defer func() {
		for _, m := range streams {
			m.Stop()
		}
	}()
	start := func(c *testClient) {
		c.join()
		a, v := c.addTracks()
		c.offer()
		streams = append(streams, sendMedia(c.name, a, v, 1))
	}
	gotMedia := func(c, from *testClient) {
		t.Helper()
		c.waitFor("media from "+from.name, 15*time.Second, func() bool {
			v, a := c.trackFrom(from.id, "video/"), c.trackFrom(from.id, "audio/")
			return v != nil && a != nil &&
				hasIntact(v, func(n int) []byte { return vp8Payload(from.name, n, true) }) &&
				hasIntact(a, func(n int) []byte { return opusPayload(from.name, n) })
		})
	}
	start(alice)
	start(bob)
	gotMedia(alice, bob)
	gotMedia(bob, alice)

	start(carol)
	for _, pair := range [][2]*testClient{{alice, carol}, {bob, carol}, {carol, alice}, {carol, bob}} {
		gotMedia(pair[0], pair[1])
	}

	if r := carol.iq(stanza.New(NS, "leave")); r.Type() != "result" {
		t.Fatalf("leave: %s", r)
	}
	for _, c := range []*testClient{alice, bob} {
		c.waitEvent("participant-left", 5*time.Second, func(e *stanza.Element) bool { return e.Attr("id") == carol.id })
		for range 2 {
			c.waitEvent("track-removed", 5*time.Second, func(e *stanza.Element) bool { return e.Attr("participant") == carol.id })
		}
		// The server re-offers without carol's tracks; the client's
		// session no longer carries them.
		c.waitFor("an offer without carol's tracks", 5*time.Second, func() bool {
			rd := c.pc.RemoteDescription()
			return rd != nil && c.pc.SignalingState() == webrtc.SignalingStateStable &&
				!strings.Contains(rd.SDP, carol.id) && strings.Count(rd.SDP, "a=inactive") >= 2
		})
	}
	if r := carol.iq(stanza.New(NS, "offer").SetText("v=0")); r.Type() != "error" || r.Child(stanza.NSClient, "error").Child(stanza.NSStanzas, "item-not-found") == nil {
		t.Fatalf("offer after leave: want item-not-found, got %s", r)
	}

	for _, c := range []*testClient{alice, bob, carol} {
		c.close()
	}
	for _, m := range streams {
		m.Stop()
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := svc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := svc.Rooms(); n != 0 {
		t.Fatalf("%d conferences left after Close", n)
	}
	goleak.VerifyNone(t, ignore)
}

func TestSimulcastLayerRequests(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})

	alice.join()
	st := alice.addSimulcast()
	alice.offer()
	am := st.send("alice", 5)
	defer am.Stop()

	bob.join()
	bob.addTracks()
	bob.offer()

	pub := bob.waitEvent("track-published", 10*time.Second, func(e *stanza.Element) bool {
		return e.Attr("participant") == alice.id && e.Attr("kind") == "video"
	})
	if got := pub.Attr("layers"); got != "h m l" {
		t.Fatalf("track-published layers = %q, want \"h m l\"", got)
	}
	track := pub.Attr("id")

	// lastLayer is the rid of the newest packet bob received from alice's video.
	lastLayer := func() string {
		r := bob.trackFrom(alice.id, "video/")
		if r == nil || len(r.payloads) == 0 {
			return ""
		}
		p := string(r.payloads[len(r.payloads)-1])
		for _, rid := range simulcastRIDs {
			if strings.Contains(p, "alice-"+rid+":") {
				return rid
			}
		}
		return "?"
	}
	bob.waitFor("alice's video", 10*time.Second, func() bool { return lastLayer() != "" })

	for _, rid := range []string{"l", "m", "h", "l"} {
		r := bob.iq(stanza.New(NS, "layer").SetAttr("track", track).SetAttr("rid", rid))
		if r.Type() != "result" {
			t.Fatalf("layer %s: %s", rid, r)
		}
		bob.waitFor("layer "+rid, 10*time.Second, func() bool { return lastLayer() == rid })
	}
	bob.waitEvent("layer-changed", time.Second, func(e *stanza.Element) bool { return e.Attr("track") == track && e.Attr("rid") == "m" })

	bob.mu.Lock()
	r := bob.trackFrom(alice.id, "video/")
	seqs := append([]uint16(nil), r.seqs...)
	payloads := len(r.payloads)
	bob.mu.Unlock()
	for i := 1; i < len(seqs); i++ {
		if d := seqs[i] - seqs[i-1]; d != 1 {
			t.Fatalf("sequence numbers jump by %d at packet %d of %d (%d → %d) across layer switches", int16(d), i, payloads, seqs[i-1], seqs[i])
		}
	}

	if r := bob.iq(stanza.New(NS, "layer").SetAttr("track", track).SetAttr("rid", "x")); r.Type() != "error" {
		t.Fatalf("unknown layer accepted: %s", r)
	}
}
