package sfu

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/sfu/internal/bwe"
	"poosms.org/poosms/stanza"
)

// newTestService makes a Service for a test. Its publishers' packets
// read directly are delivered inline (Service.inline), as on a server
// with one CPU; newTestServiceQueued's go through the streams' queues.
func newTestService(t *testing.T, mod func(*Config)) *Service {
	t.Helper()
	s := newTestServiceQueued(t, mod)
	s.inline = true
	return s
}

func newTestServiceQueued(t *testing.T, mod func(*Config)) *Service {
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
	// 127.0.0.1:0 binds one socket; ":0" (as the default ":7882") binds
	// the port on every interface.
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run(addr, func(t *testing.T) { testTwoParticipants(t, addr) })
	}
}

func testTwoParticipants(t *testing.T, udpAddr string) {
	svc := newTestService(t, func(c *Config) { c.UDPAddr = udpAddr })
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
	am := alice.sendMedia(aa, av, 1)
	defer am.Stop()
	bm := bob.sendMedia(ba, bv, 1)
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
		streams = append(streams, c.sendMedia(a, v, 1))
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

	if r := carol.iq(stanza.New(NS, "leave")); r.IQType() != stanza.ResultIQ {
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
	if r := carol.iq(stanza.New(NS, "offer").SetText("v=0")); !r.IsError() || r.Child(stanza.NSClient, "error").Child(stanza.NSStanzas, "item-not-found") == nil {
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
		if r.IQType() != stanza.ResultIQ {
			t.Fatalf("layer %s: %s", rid, r)
		}
		bob.waitFor("layer "+rid, 10*time.Second, func() bool { return lastLayer() == rid })
	}
	bob.waitEvent("layer-changed", time.Second, func(e *stanza.Element) bool { return e.Attr("track") == track && e.Attr("rid") == "m" })

	bob.mu.Lock()
	r := bob.trackFrom(alice.id, "video/")
	seqs := append([]uint16(nil), r.seqs...)
	tss := append([]uint32(nil), r.timestamps...)
	ssrcs := len(bob.tracks)
	payloads := len(r.payloads)
	bob.mu.Unlock()
	if ssrcs != 1 {
		t.Fatalf("bob sees %d tracks, want alice's video as one stream across all switches", ssrcs)
	}
	for i := 1; i < len(tss); i++ {
		if d := int32(tss[i] - tss[i-1]); d < 0 || d > 90000 {
			t.Fatalf("timestamp jumps by %d at packet %d (%d → %d) across layer switches", d, i, tss[i-1], tss[i])
		}
	}
	for i := 1; i < len(seqs); i++ {
		if d := seqs[i] - seqs[i-1]; d != 1 {
			t.Fatalf("sequence numbers jump by %d at packet %d of %d (%d → %d) across layer switches", int16(d), i, payloads, seqs[i-1], seqs[i])
		}
	}

	if r := bob.iq(stanza.New(NS, "layer").SetAttr("track", track).SetAttr("rid", "x")); !r.IsError() {
		t.Fatalf("unknown layer accepted: %s", r)
	}
}

// mediaPair sets up alice publishing (keyframes every keyEvery packets)
// and bob receiving alice's video.
func mediaPair(t *testing.T, keyEvery int) (alice, bob *testClient, stop func()) {
	t.Helper()
	return mediaPairWith(t, keyEvery, clientOpts{})
}

// mediaPairWith is mediaPair with both clients made with o.
func mediaPairWith(t *testing.T, keyEvery int, o clientOpts) (alice, bob *testClient, stop func()) {
	t.Helper()
	return mediaPairOf(t, keyEvery, o, o)
}

// mediaPairOf is mediaPair with alice made with ao and bob with bo.
func mediaPairOf(t *testing.T, keyEvery int, ao, bo clientOpts) (alice, bob *testClient, stop func()) {
	t.Helper()
	alice, bob, a, b := joinedPair(t, ao, bo)
	am := alice.sendMedia(a[0], a[1], keyEvery)
	bm := bob.sendMedia(b[0], b[1], keyEvery)
	bob.waitFor("alice's video", 15*time.Second, func() bool {
		r := bob.trackFrom(alice.id, "video/")
		return r != nil && len(r.payloads) > 5
	})
	return alice, bob, func() { am.Stop(); bm.Stop() }
}

// joinedPair starts a service (delivering inline unless a client asks
// for the queued mode) and has alice (made with ao) and bob (with bo)
// join one conference, each offering an audio and a video track: a and b
// are theirs, audio first.
func joinedPair(t *testing.T, ao, bo clientOpts) (alice, bob *testClient, a, b [2]*webrtc.TrackLocalStaticRTP) {
	t.Helper()
	svc := newTestService(t, nil)
	if ao.queued || bo.queued {
		svc.inline = false
	}
	alice = newTestClient(t, svc, "alice", testRoom, ao)
	bob = newTestClient(t, svc, "bob", testRoom, bo)
	alice.join()
	a[0], a[1] = alice.addTracks()
	alice.offer()
	bob.join()
	b[0], b[1] = bob.addTracks()
	bob.offer()
	return alice, bob, a, b
}

func countPLI(c *testClient) int {
	n := 0
	for _, p := range c.rtcpIn {
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			n++
		}
	}
	return n
}

func TestSubscriberPLIReachesPublisherThrottled(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1000) // a keyframe only at the start
	defer stop()

	bob.mu.Lock()
	r := bob.trackFrom(alice.id, "video/")
	ssrc := r.ssrc
	bob.mu.Unlock()
	alice.mu.Lock()
	before := countPLI(alice)
	alice.mu.Unlock()

	pkts := make([]rtcp.Packet, 0, 10)
	for range 10 {
		pkts = append(pkts, &rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: ssrc})
	}
	for _, p := range pkts {
		if err := bob.pc.WriteRTCP([]rtcp.Packet{p}); err != nil {
			t.Fatal(err)
		}
	}
	alice.waitFor("a PLI from the SFU", 5*time.Second, func() bool { return countPLI(alice) > before })
	// Let 5 more video packets through to bob (100 ms): the burst of ten
	// must have been collapsed.
	bob.mu.Lock()
	n := len(r.payloads)
	bob.mu.Unlock()
	bob.waitFor("more video", 5*time.Second, func() bool { return len(r.payloads) >= n+5 })
	alice.mu.Lock()
	got := countPLI(alice) - before
	alice.mu.Unlock()
	if got < 1 || got > 2 {
		t.Fatalf("10 PLIs from the subscriber became %d at the publisher, want 1 or 2", got)
	}
}

func TestNACKAnsweredFromCache(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1)
	defer stop()

	bob.mu.Lock()
	r := bob.trackFrom(alice.id, "video/")
	ssrc := r.ssrc
	seq := r.seqs[len(r.seqs)-3]
	bob.mu.Unlock()

	nack := &rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{seq})}
	if err := bob.pc.WriteRTCP([]rtcp.Packet{nack}); err != nil {
		t.Fatal(err)
	}
	bob.waitFor("the retransmission of "+strconv.Itoa(int(seq)), 5*time.Second, func() bool {
		n := 0
		for _, s := range r.seqs {
			if s == seq {
				n++
			}
		}
		return n >= 2
	})
	alice.mu.Lock()
	defer alice.mu.Unlock()
	for _, p := range alice.rtcpIn {
		if _, ok := p.(*rtcp.TransportLayerNack); ok {
			t.Fatal("the NACK went on to the publisher instead of being answered by the SFU")
		}
	}
}

func TestReportsAndTWCCFlow(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1)
	defer stop()
	// The publisher hears receiver reports from the SFU (its receiving
	// side, whose feedback starts with the first remote stream:
	// recvFeedback), and the SFU hears TWCC feedback and receiver reports from
	// the subscriber for what it forwards.
	alice.waitFor("a receiver report", 10*time.Second, func() bool {
		for _, p := range alice.rtcpIn {
			if rr, ok := p.(*rtcp.ReceiverReport); ok && len(rr.Reports) > 0 {
				return true
			}
		}
		return false
	})
	r := bob.svc.room(testRoom)
	part := r.byPeer(bob.peer)
	deadline := time.Now().Add(10 * time.Second)
	for part.twccIn.Load() == 0 || part.rrIn.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("from the subscriber: %d TWCC feedback, %d receiver reports", part.twccIn.Load(), part.rrIn.Load())
		}
		// Wait for ten more video packets (200 ms) and look again.
		bob.mu.Lock()
		n := len(bob.trackFrom(alice.id, "video/").payloads)
		bob.mu.Unlock()
		bob.waitFor("more video", 5*time.Second, func() bool { return len(bob.trackFrom(alice.id, "video/").payloads) >= n+10 })
	}
	// The feedback matched what the SFU sent: the packets carried its
	// transport-wide sequence numbers and the estimator counted them.
	e := part.bwe.Load()
	if e == nil || (*e).TargetBitrate() <= 0 {
		t.Fatal("no bandwidth estimate for the subscriber")
	}
	est, ok := (*e).(*bwe.Estimator)
	if !ok {
		t.Fatalf("estimator %T", *e)
	}
	for est.Acked() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the subscriber's TWCC feedback acknowledged none of the packets sent to it")
		}
		bob.mu.Lock()
		n := len(bob.trackFrom(alice.id, "video/").payloads)
		bob.mu.Unlock()
		bob.waitFor("more video", 5*time.Second, func() bool { return len(bob.trackFrom(alice.id, "video/").payloads) >= n+10 })
	}
}

func TestActiveSpeaker(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	var aliceLevel, bobLevel atomic.Uint32
	aliceLevel.Store(25) // -25 dBov: talking
	bobLevel.Store(127)  // silence
	for _, c := range []*testClient{alice, bob} {
		c.join()
		a, v := c.addTracks()
		c.offer()
		lv := &aliceLevel
		if c == bob {
			lv = &bobLevel
		}
		m := c.sendMediaLevel(a, v, 1, c.audioLevelID(), func() uint8 { return uint8(lv.Load()) })
		defer m.Stop()
	}
	if alice.audioLevelID() == 0 {
		t.Fatal("audio-level extension not negotiated")
	}
	for _, c := range []*testClient{alice, bob} {
		c.waitEvent("active-speaker", 10*time.Second, func(e *stanza.Element) bool { return e.Attr("participant") == alice.id })
	}
	aliceLevel.Store(127)
	bobLevel.Store(30)
	for _, c := range []*testClient{alice, bob} {
		c.waitEvent("active-speaker", 10*time.Second, func(e *stanza.Element) bool { return e.Attr("participant") == bob.id })
	}
}

// condition returns the error condition of an error reply, or "".
func condition(r *stanza.Element) string {
	if !r.IsError() {
		return ""
	}
	e := r.Child(stanza.NSClient, "error")
	if e == nil {
		return "?"
	}
	for _, c := range e.Elements() {
		if c.Space == stanza.NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return "?"
}

func TestLimits(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.MaxParticipants = 2; c.MaxConferences = 1 })
	a := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	b := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	c := newTestClient(t, svc, "carol", testRoom, clientOpts{})
	a.join()
	b.join()
	if got := condition(c.iq(stanza.New(NS, "join"))); got != "resource-constraint" {
		t.Fatalf("third join in a room of two: %q, want resource-constraint", got)
	}
	c.room = "other@conference.localhost"
	if got := condition(c.iq(stanza.New(NS, "join"))); got != "resource-constraint" {
		t.Fatalf("second conference on a node of one: %q, want resource-constraint", got)
	}
	// Once both leave, the conference closes and the other can open.
	for _, x := range []*testClient{a, b} {
		if r := x.iq(stanza.New(NS, "leave")); r.IQType() != stanza.ResultIQ {
			t.Fatalf("leave: %s", r)
		}
	}
	if r := c.iq(stanza.New(NS, "join")); r.IQType() != stanza.ResultIQ {
		t.Fatalf("join after the first conference closed: %s", r)
	}
}

func TestConnectTimeoutFreesParticipant(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.ConnectTimeout = 300 * time.Millisecond })
	ignore := goleak.IgnoreCurrent()
	lost := newTestClient(t, svc, "lost", testRoom, clientOpts{noICE: true})
	lost.join()
	lost.addTracks()
	lost.offer()
	lost.waitEvent("participant-left", 5*time.Second, func(e *stanza.Element) bool {
		return e.Attr("id") == lost.id && e.Attr("reason") == "connect-timeout"
	})
	if n := svc.Rooms(); n != 0 {
		t.Fatalf("%d conferences still open after their only participant timed out", n)
	}
	if got := condition(lost.iq(stanza.New(NS, "offer").SetText("v=0"))); got != "item-not-found" {
		t.Fatalf("offer after removal: %q, want item-not-found", got)
	}
	lost.close()
	goleak.VerifyNone(t, ignore)
}

func TestBadInput(t *testing.T) {
	svc := newTestService(t, nil)
	c := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	c.join()
	send := func(el *stanza.Element) *stanza.Element {
		id := c.newID()
		ch := c.replies.Expect(id)
		c.deliver(el.SetAttr("id", id))
		select {
		case r := <-ch:
			return r
		case <-time.After(5 * time.Second):
			t.Fatalf("no reply to %s", el)
			return nil
		}
	}
	iq := func(typ, to string, payload *stanza.Element) *stanza.Element {
		e := stanza.New(stanza.NSClient, "iq").SetAttr("type", typ).SetAttr("to", to)
		if payload != nil {
			e.Append(payload)
		}
		return e
	}
	for _, tc := range []struct {
		name string
		el   *stanza.Element
		want string
	}{
		{"malformed SDP", iq("set", testRoom, stanza.New(NS, "offer").SetText("this is not SDP")), "bad-request"},
		{"SDP without media", iq("set", testRoom, stanza.New(NS, "offer").SetText("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")), "bad-request"},
		{"unknown element", iq("set", testRoom, stanza.New(NS, "dance")), "feature-not-implemented"},
		{"foreign namespace", iq("set", testRoom, stanza.New("urn:example", "join")), "feature-not-implemented"},
		{"empty iq", iq("set", testRoom, nil), "feature-not-implemented"},
		{"get", iq("get", testRoom, stanza.New(NS, "join")), "feature-not-implemented"},
		{"other domain", iq("set", "room@elsewhere.example", stanza.New(NS, "join")), "item-not-found"},
		{"service itself", iq("set", "conference.localhost", stanza.New(NS, "join")), "bad-request"},
		{"candidate bad mline", iq("set", testRoom, stanza.New(NS, "candidate").SetAttr("mline", "x").SetText("candidate:1 1 udp 1 127.0.0.1 9 typ host")), "bad-request"},
		{"empty candidate", iq("set", testRoom, stanza.New(NS, "candidate")), "bad-request"},
		{"layer of unknown track", iq("set", testRoom, stanza.New(NS, "layer").SetAttr("track", "nope").SetAttr("rid", "h")), "item-not-found"},
		{"not joined", iq("set", "other@conference.localhost", stanza.New(NS, "offer").SetText("v=0")), "item-not-found"},
		{"message", stanza.New(stanza.NSClient, "message").SetAttr("to", testRoom).Append(stanza.New("", "body").SetText("hi")), "service-unavailable"},
	} {
		if got := condition(send(tc.el)); got != tc.want {
			t.Errorf("%s: condition %q, want %q", tc.name, got, tc.want)
		}
	}
	// After all that, the participant still works.
	c.addTracks()
	c.offer()
}

func TestSimulcastFollowsBandwidthEstimate(t *testing.T) {
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
	track := pub.Attr("id")
	bob.waitFor("alice's video", 10*time.Second, func() bool {
		r := bob.trackFrom(alice.id, "video/")
		return r != nil && len(r.payloads) > 0
	})
	bob.mu.Lock()
	ssrc := bob.trackFrom(alice.id, "video/").ssrc
	bob.mu.Unlock()

	// Layers send about 420 (h), 140 (m) and 40 (l) kbit/s. An estimate of
	// 100 kbit/s fits only l; 10 Mbit/s fits h again.
	for _, tc := range []struct {
		bitrate float32
		want    string
	}{{100_000, "l"}, {10_000_000, "h"}} {
		if err := bob.pc.WriteRTCP([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{SenderSSRC: 1, Bitrate: tc.bitrate, SSRCs: []uint32{ssrc}}}); err != nil {
			t.Fatal(err)
		}
		bob.waitEvent("layer-changed", 10*time.Second, func(e *stanza.Element) bool {
			return e.Attr("track") == track && e.Attr("rid") == tc.want
		})
		bob.mu.Lock()
		bob.events = nil
		bob.mu.Unlock()
	}
}

func TestGlare(t *testing.T) {
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
	gotMedia := func(c, from *testClient) {
		t.Helper()
		c.waitFor("media from "+from.name, 15*time.Second, func() bool {
			v, a := c.trackFrom(from.id, "video/"), c.trackFrom(from.id, "audio/")
			return v != nil && a != nil && len(v.payloads) > 0 && len(a.payloads) > 0
		})
	}
	alice.join()
	alice.addTracks()
	alice.offer()

	// The server's offer and alice's cross: alice sits on the server's
	// offer (bob's tracks) and sends one of her own.
	alice.mu.Lock()
	alice.holdOffers = true
	alice.mu.Unlock()
	bob.join()
	ba, bv := bob.addTracks()
	bob.offer()
	streams = append(streams, bob.sendMedia(ba, bv, 1))
	alice.waitFor("the server's offer", 10*time.Second, func() bool { return len(alice.held) > 0 })
	off, err := alice.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	r := alice.iq(stanza.New(NS, "offer").SetText(off.SDP))
	if got := condition(r); got != "unexpected-request" {
		t.Fatalf("client offer while the server's is outstanding: %q, want unexpected-request", got)
	}
	// Alice gives way: answers the server, then offers again.
	alice.mu.Lock()
	alice.holdOffers = false
	held := alice.held[0]
	alice.mu.Unlock()
	alice.handle(held)
	// Before offering again, alice waits until the server has nothing
	// more to offer her: both of bob's tracks subscribed (the second may
	// reach the server only after she answered the first offer, and its
	// offer would cross hers) and offered, with no offer outstanding or
	// due. A subscription and its offer are made under one hold of the
	// lock, so this sees either neither or both.
	part := alice.svc.room(testRoom).byPeer(alice.peer)
	checkFor(t, 5*time.Second, func() bool {
		part.mu.Lock()
		defer part.mu.Unlock()
		return len(part.subs) == 2 && part.pendingOffer == "" && !part.needNeg
	})
	alice.offer()
	gotMedia(alice, bob)

	// A client that refuses the server's offer cannot go on: it is
	// removed and told so, and the others see it leave.
	alice.mu.Lock()
	alice.refuseOffer = true
	alice.mu.Unlock()
	carol.join()
	ca, cv := carol.addTracks()
	carol.offer()
	streams = append(streams, carol.sendMedia(ca, cv, 1))
	gotMedia(bob, carol)
	alice.waitEvent("participant-left", 10*time.Second, func(e *stanza.Element) bool {
		return e.Attr("id") == alice.id && e.Attr("reason") == "negotiation-failed"
	})
	bob.waitEvent("participant-left", 10*time.Second, func(e *stanza.Element) bool { return e.Attr("id") == alice.id })
}

func TestSessionClosedRemovesParticipant(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1)
	defer stop()
	alice.svc.SessionClosed(context.Background(), bob.peer)
	alice.waitEvent("participant-left", 5*time.Second, func(e *stanza.Element) bool {
		return e.Attr("id") == bob.id && e.Attr("reason") == "stream-closed"
	})
	for range 2 {
		alice.waitEvent("track-removed", 5*time.Second, func(e *stanza.Element) bool { return e.Attr("participant") == bob.id })
	}
	if got := condition(bob.iq(stanza.New(NS, "layer").SetAttr("track", "x").SetAttr("rid", "h"))); got != "item-not-found" {
		t.Fatalf("request after the stream closed: %q, want item-not-found", got)
	}
}

// checkFor polls cond every 10 ms until it holds, failing after d.
func checkFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		<-tick.C
	}
}

func TestVideoCodecs(t *testing.T) {
	for _, mime := range []string{webrtc.MimeTypeVP9, webrtc.MimeTypeH264, webrtc.MimeTypeAV1} {
		t.Run(mime, func(t *testing.T) {
			svc := newTestService(t, nil)
			alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
			bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
			alice.video = mime
			alice.join()
			aa, av := alice.addTracks()
			alice.offer()
			m := alice.sendMedia(aa, av, 1)
			defer m.Stop()
			bob.join()
			bob.addTracks()
			bob.offer()
			bob.waitFor(mime+" from alice", 15*time.Second, func() bool {
				r := bob.trackFrom(alice.id, "video/")
				if r == nil || !strings.EqualFold(r.mime, mime) {
					return false
				}
				for _, p := range r.payloads {
					i := bytes.LastIndexByte(p, ':')
					n, err := strconv.Atoi(string(p[i+1:]))
					if err == nil && bytes.Equal(p, videoPayload(mime, "alice", n, true)) {
						return true
					}
				}
				return false
			})
		})
	}
}

func TestICETCPFallback(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{tcp: true})
	for _, c := range []*testClient{alice, bob} {
		c.join()
		a, v := c.addTracks()
		c.offer()
		m := c.sendMedia(a, v, 1)
		defer m.Stop()
	}
	for _, pair := range [][2]*testClient{{alice, bob}, {bob, alice}} {
		c, from := pair[0], pair[1]
		c.waitFor("media from "+from.name, 15*time.Second, func() bool {
			v := c.trackFrom(from.id, "video/")
			return v != nil && hasIntact(v, func(n int) []byte { return vp8Payload(from.name, n, true) })
		})
	}
	pair, err := bob.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil || pair.Remote.Protocol != webrtc.ICEProtocolTCP || int(pair.Remote.Port) != svc.TCPAddr().(*net.TCPAddr).Port {
		t.Fatalf("bob's selected pair %v (%v), want TCP to the SFU's port %v", pair, err, svc.TCPAddr())
	}
	// Over TCP the media goes through pion's session, not the direct
	// send path (UDP only); alice's over UDP goes direct.
	for _, p := range svc.room(testRoom).participants() {
		ready, sent := p.direct.ready.Load(), p.direct.sent.Load()
		if tcp := p.jid.Localpart() == "bob"; tcp == (ready || sent > 0) {
			t.Errorf("%s: direct send path on %v, %d sent", p.jid, ready, sent)
		}
	}
}

// TestThreeSimulcastPublishers is the conference the SFU exists for:
// three people, each sending audio and three-layer video once, each
// receiving the other two over the one UDP port.
func TestThreeSimulcastPublishers(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.TCPAddr = "" })
	var clients []*testClient
	for _, name := range []string{"alice", "bob", "carol"} {
		c := newTestClient(t, svc, name, testRoom, clientOpts{})
		c.join()
		a := c.addAudio()
		st := c.addSimulcast()
		c.offer()
		am := c.sendMedia(a, nil, 1)
		defer am.Stop()
		vm := st.send(name, 5)
		defer vm.Stop()
		clients = append(clients, c)
	}
	for _, c := range clients {
		for _, from := range clients {
			if c == from {
				continue
			}
			c.waitFor("audio and video from "+from.name, 15*time.Second, func() bool {
				v, a := c.trackFrom(from.id, "video/"), c.trackFrom(from.id, "audio/")
				return v != nil && a != nil && len(v.payloads) > 0 &&
					hasIntact(a, func(n int) []byte { return opusPayload(from.name, n) }) &&
					strings.Contains(string(v.payloads[len(v.payloads)-1]), "vp8:"+from.name+"-")
			})
		}
		pair, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
		if err != nil || pair == nil || int(pair.Remote.Port) != svc.UDPAddr().(*net.UDPAddr).Port {
			t.Fatalf("%s: selected pair %v, want the SFU's UDP port %v", c.name, pair, svc.UDPAddr())
		}
	}
}

func TestPublisherRemovesTrack(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1)
	defer stop()
	// Alice has taken in the server's offer with bob's tracks, and the
	// server has nothing outstanding, so her new offer does not cross one.
	alice.waitFor("bob's video", 10*time.Second, func() bool {
		r := alice.trackFrom(bob.id, "video/")
		return r != nil && len(r.payloads) > 0
	})
	// Before offering again, alice waits until the server has nothing
	// more to offer her: both of bob's tracks subscribed (the second may
	// reach the server only after she answered the first offer, and its
	// offer would cross hers) and offered, with no offer outstanding or
	// due. A subscription and its offer are made under one hold of the
	// lock, so this sees either neither or both.
	part := alice.svc.room(testRoom).byPeer(alice.peer)
	checkFor(t, 5*time.Second, func() bool {
		part.mu.Lock()
		defer part.mu.Unlock()
		return len(part.subs) == 2 && part.pendingOffer == "" && !part.needNeg
	})
	var video *webrtc.RTPSender
	for _, tr := range alice.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo && tr.Sender() != nil && tr.Sender().Track() != nil {
			video = tr.Sender()
		}
	}
	if err := alice.pc.RemoveTrack(video); err != nil {
		t.Fatal(err)
	}
	alice.offer()
	bob.waitEvent("track-removed", 10*time.Second, func(e *stanza.Element) bool { return e.Attr("participant") == alice.id })
	bob.waitFor("an offer without alice's video", 5*time.Second, func() bool {
		rd := bob.pc.RemoteDescription()
		return rd != nil && bob.pc.SignalingState() == webrtc.SignalingStateStable &&
			strings.Count(rd.SDP, "a=msid:"+alice.id+" ") == 1
	})
}

func TestNewValidates(t *testing.T) {
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no domain", Config{UDPAddr: "127.0.0.1:0"}},
		{"domain with a localpart", Config{Domain: "room@conference.localhost", UDPAddr: "127.0.0.1:0"}},
		{"bad public ip", Config{Domain: "conference.localhost", UDPAddr: "127.0.0.1:0", PublicIP: "example.org"}},
		{"udp port in use", Config{Domain: "conference.localhost", UDPAddr: busy.LocalAddr().String()}},
		{"bad tcp address", Config{Domain: "conference.localhost", UDPAddr: "127.0.0.1:0", TCPAddr: "127.0.0.1:99999"}},
	} {
		if s, err := New(tc.cfg); err == nil {
			_ = s.Close()
			t.Errorf("%s: New accepted %+v", tc.name, tc.cfg)
		}
	}
}

func TestPublicIPAdvertised(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.PublicIP = "203.0.113.7" })
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	alice.join()
	alice.addTracks()
	alice.offer()
	port := strconv.Itoa(svc.UDPAddr().(*net.UDPAddr).Port)
	alice.waitFor("a candidate with the public address", 5*time.Second, func() bool {
		return len(alice.seenCandidates("203.0.113.7 "+port+" typ host")) > 0
	})
}

func TestMovedRemovesEveryone(t *testing.T) {
	alice, bob, stop := mediaPair(t, 1)
	defer stop()
	alice.svc.Moved(context.Background(), jid.MustParse(testRoom))
	for _, c := range []*testClient{alice, bob} {
		c.waitEvent("participant-left", 5*time.Second, func(e *stanza.Element) bool {
			return e.Attr("id") == c.id && e.Attr("reason") == "moved"
		})
	}
	checkFor(t, 5*time.Second, func() bool { return alice.svc.Rooms() == 0 })
}

// TestConferencesPerUser: a user opens at most MaxConferencesPerUser
// conferences that run at once; joining someone else's is not limited,
// and a conference that ends no longer counts.
func TestConferencesPerUser(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.MaxConferencesPerUser = 1 })
	a1 := newTestClient(t, svc, "alice", "one@conference.localhost", clientOpts{})
	a2 := newTestClient(t, svc, "alice", "two@conference.localhost", clientOpts{})
	a2.peer.j = jid.MustParse("alice@localhost/other")
	b := newTestClient(t, svc, "bob", "two@conference.localhost", clientOpts{})
	a1.join()
	if got := condition(a2.iq(stanza.New(NS, "join"))); got != "resource-constraint" {
		t.Fatalf("alice's second conference: %q, want resource-constraint", got)
	}
	if n := svc.Rooms(); n != 1 {
		t.Fatalf("%d conferences after a refused one, want 1", n)
	}
	b.join()
	a2.join() // bob's, running already
	if r := a1.iq(stanza.New(NS, "leave")); r.IQType() != stanza.ResultIQ {
		t.Fatalf("leave: %s", r)
	}
	a1.room = "three@conference.localhost"
	a1.join()
}
