package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/stanza"
)

// TestTrackPublishedBeforeFirstPacket: a track whose SSRC the client's
// SDP declares and whose codec its media section leaves no choice in
// (audio: Opus) is published once the connection is up, before its first
// packet, so the others are offered it while the publisher's media is on
// its way (issue 14, join → first packet). A track with several codecs
// negotiated (video here) is published at its first packet, with that
// packet's codec. Fails when tracks wait for their first packet again.
func TestTrackPublishedBeforeFirstPacket(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	alice.join()
	bob.join()
	bob.addTracks()
	bob.offer()
	aa, av := alice.addTracks()
	alice.offer() // and no packet yet

	audio := bob.waitEvent("track-published", 10*time.Second, func(e *stanza.Element) bool {
		return e.Attr("participant") == alice.id && e.Attr("kind") == "audio"
	})
	if c := audio.Attr("codec"); !strings.EqualFold(c, webrtc.MimeTypeOpus) {
		t.Fatalf("alice's audio published with codec %q, want %s", c, webrtc.MimeTypeOpus)
	}
	bob.waitFor("an offer carrying alice's audio before alice sends", 10*time.Second, func() bool {
		rd := bob.pc.RemoteDescription()
		return rd != nil && bob.pc.SignalingState() == webrtc.SignalingStateStable &&
			strings.Contains(rd.SDP, audio.Attr("id"))
	})

	m := alice.sendMedia(aa, av, 1)
	defer m.Stop()
	video := bob.waitEvent("track-published", 10*time.Second, func(e *stanza.Element) bool {
		return e.Attr("participant") == alice.id && e.Attr("kind") == "video"
	})
	if c := video.Attr("codec"); !strings.EqualFold(c, webrtc.MimeTypeVP8) {
		t.Fatalf("alice's video published with codec %q, want %s (its first packet's)", c, webrtc.MimeTypeVP8)
	}
	bob.waitFor("media from alice", 15*time.Second, func() bool {
		v, a := bob.trackFrom(alice.id, "video/"), bob.trackFrom(alice.id, "audio/")
		return v != nil && a != nil &&
			hasIntact(v, func(n int) []byte { return vp8Payload("alice", n, true) }) &&
			hasIntact(a, func(n int) []byte { return opusPayload("alice", n) })
	})
}

// TestNoOfferBeforeConnected: the server offers a participant others'
// tracks only once its connection is up, not right after answering its
// first offer while its ICE checks are starting (a Pion client applying
// an offer then was seen to lose its first checks and wait one 200 ms
// check interval). The probe's reply comes after anything the server
// sent while handling the offer, so counting the offers then needs no
// waiting. Fails when ready subscribes a participant that has not
// connected.
func TestNoOfferBeforeConnected(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{})
	carol := newTestClient(t, svc, "carol", testRoom, clientOpts{noICE: true})
	alice.join()
	bob.join()
	bob.addTracks()
	bob.offer()
	alice.addTracks()
	alice.offer()
	bob.waitEvent("track-published", 10*time.Second, func(e *stanza.Element) bool {
		return e.Attr("participant") == alice.id && e.Attr("kind") == "audio"
	})

	carol.join()
	carol.addTracks()
	carol.offer() // answered; carol's ICE cannot complete
	if r := carol.iq(stanza.New(NS, "layer").SetAttr("track", "none").SetAttr("rid", "h")); !r.IsError() {
		t.Fatalf("probe: want an error, got %s", r)
	}
	carol.mu.Lock()
	n := carol.offers
	carol.mu.Unlock()
	if n != 0 {
		t.Fatalf("carol was sent %d offers before her connection was up, want 0", n)
	}
}
