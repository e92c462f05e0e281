package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/stanza"
)

// TestOfferOverCapsRefused: real Pion peers in one conference; an offer
// that publishes more tracks, or carries more media sections of its own,
// than the caps allow is refused with policy-violation, nothing of it is
// applied, and no other participant is renegotiated for it while media
// keeps flowing.
func TestOfferOverCapsRefused(t *testing.T) {
	svc := newTestService(t, func(c *Config) { c.MaxTracksPerParticipant = 2; c.MaxMediaSections = 3 })
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	carol := newTestClient(t, svc, "carol", testRoom, clientOpts{})
	alice.join()
	bob.join()
	aa, av := alice.addTracks()
	alice.offer()
	ba, bv := bob.addTracks()
	bob.offer()
	am := alice.sendMedia(aa, av, 1)
	defer am.Stop()
	bm := bob.sendMedia(ba, bv, 1)
	defer bm.Stop()
	// fromAlice counts c's tracks from alice (c.mu held).
	fromAlice := func(c *testClient) (tracks, videoPackets int) {
		for _, r := range c.tracks {
			if r.streamID == alice.id {
				tracks++
				if strings.HasPrefix(r.mime, "video/") {
					videoPackets = len(r.payloads)
				}
			}
		}
		return tracks, videoPackets
	}
	bob.waitFor("alice's two tracks", 15*time.Second, func() bool {
		n, v := fromAlice(bob)
		return n == 2 && v > 0
	})
	// The server offered alice bob's tracks: her offers now repeat those
	// sections, which do not count against her.
	alice.waitFor("bob's tracks at alice", 15*time.Second, func() bool {
		return alice.trackFrom(bob.id, "video/") != nil && alice.trackFrom(bob.id, "audio/") != nil &&
			alice.pc.SignalingState() == webrtc.SignalingStateStable
	})
	rest := func(c *testClient) int { c.mu.Lock(); defer c.mu.Unlock(); return c.offers }
	offersBefore := map[*testClient]int{alice: rest(alice), bob: rest(bob)}

	// A third track from alice is over the cap.
	extra, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "second-audio", alice.name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.pc.AddTransceiverFromTrack(extra, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	r := rawOffer(t, alice)
	if condition(r) != "policy-violation" || !strings.Contains(r.String(), "at most 2 tracks") {
		t.Errorf("an offer with a third track: %s, want policy-violation naming the cap", r)
	}
	// The refused track sends anyway.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			_ = extra.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: uint32(n * 960), SSRC: 9}, Payload: opusPayload("extra", n)})
		}
	}()
	defer func() { close(stop); <-done }()

	// Carol's first offer has four sections of her own: over the cap of
	// three, though only two send.
	carol.join()
	carol.addTracks()
	for range 2 {
		if _, err := carol.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	r = rawOffer(t, carol)
	if condition(r) != "policy-violation" || !strings.Contains(r.String(), "at most 3 media sections") {
		t.Errorf("an offer with four sections of its own: %s, want policy-violation naming the cap", r)
	}

	// Media keeps flowing: while bob receives fifty more of alice's video
	// packets, nobody is renegotiated and bob sees no third track.
	bob.mu.Lock()
	_, seen := fromAlice(bob)
	bob.mu.Unlock()
	bob.waitFor("fifty more video packets from alice", 15*time.Second, func() bool {
		_, v := fromAlice(bob)
		return v >= seen+50
	})
	for c, n := range offersBefore {
		if got := rest(c); got != n {
			t.Errorf("%s was renegotiated for a refused offer (%d offers, %d before)", c.name, got, n)
		}
	}
	bob.mu.Lock()
	tracks, _ := fromAlice(bob)
	bob.mu.Unlock()
	if tracks != 2 {
		t.Errorf("bob receives %d tracks from alice, want the 2 accepted", tracks)
	}
}

// rawOffer sends c's current session as an offer and returns the reply,
// whatever it is.
func rawOffer(t *testing.T, c *testClient) *stanza.Element {
	t.Helper()
	// Only the SDP goes to the server, which must refuse it before
	// applying anything; the local description is left alone, so a
	// server offer that arrives meanwhile (one per track) cannot make
	// this fail on the client's signaling state.
	off, err := c.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.iq(stanza.New(NS, "offer").SetText(off.SDP))
}

func TestOfferRefusal(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
	section := func(kind, mid, dir string, extra ...string) string {
		s := "m=" + kind + " 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:" + mid + "\r\n"
		if dir != "" {
			s += "a=" + dir + "\r\n"
		}
		for _, e := range extra {
			s += "a=" + e + "\r\n"
		}
		return s
	}
	served := map[string]bool{"s1": true, "s2": true, "s3": true}
	for _, tc := range []struct {
		name, sdp string
		want      string // part of the refusal, "" for none
	}{
		{"two tracks", head + section("audio", "0", "sendonly") + section("video", "1", "sendrecv"), ""},
		{"three tracks", head + section("audio", "0", "sendonly") + section("video", "1", "sendonly") + section("audio", "2", ""), "at most 2 tracks"},
		{"receiving sections are no tracks", head + section("audio", "0", "sendonly") + section("video", "1", "recvonly") + section("video", "2", "inactive"), ""},
		{"session-level direction", head + "a=recvonly\r\n" + section("audio", "0", "") + section("audio", "1", "") + section("audio", "2", ""), ""},
		{"rejected section sends nothing", head + section("audio", "0", "sendonly") + section("video", "1", "sendonly") +
			strings.Replace(section("audio", "2", "sendonly"), " 9 ", " 0 ", 1), ""},
		{"served sections do not count", head + section("audio", "0", "sendonly") + section("video", "1", "sendonly") +
			section("video", "s1", "recvonly") + section("audio", "s2", "sendrecv") + section("video", "s3", "inactive"), ""},
		{"four sections of its own", head + section("audio", "0", "sendonly") + section("video", "1", "recvonly") +
			section("video", "2", "recvonly") + section("application", "3", ""), "at most 3 media sections"},
		{"three layers", head + section("video", "0", "sendonly", "rid:h send", "rid:m send", "rid:l send", "simulcast:send h;m;l"), ""},
		{"four layers", head + section("video", "0", "sendonly", "rid:a send", "rid:b send", "rid:c send", "rid:d send"), "at most 3 simulcast layers"},
	} {
		sd, err := parseSDP(tc.sdp)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := offerRefusal(sd, served, 2, 3)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%s: refusal %q, want %q", tc.name, got, tc.want)
		}
	}
}
