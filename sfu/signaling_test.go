package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/stanza"
)

// sections maps each media section's mid to its attributes.
func sections(t *testing.T, text string) map[string]map[string][]string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(text); err != nil {
		t.Fatalf("unparsable SDP: %v\n%s", err, text)
	}
	out := map[string]map[string][]string{}
	for _, md := range sd.MediaDescriptions {
		attrs := map[string][]string{}
		for _, a := range md.Attributes {
			attrs[a.Key] = append(attrs[a.Key], a.Value)
		}
		mid := ""
		if v := attrs["mid"]; len(v) > 0 {
			mid = v[0]
		}
		out[mid] = attrs
	}
	return out
}

func direction(attrs map[string][]string) string {
	for _, d := range []string{"sendrecv", "sendonly", "recvonly", "inactive"} {
		if _, ok := attrs[d]; ok {
			return d
		}
	}
	return "sendrecv"
}

// TestListenOnlyWithoutTrickle follows docs/protocol.md for a client that
// only listens and trickles nothing: its offer's SDP carries its
// candidates, the server's SDP carries the server's with
// a=end-of-candidates, the listen-only placeholder stays a section
// without a track, every track arrives in a section of its own with msid,
// announced once by track-published, and <end-of-candidates/> comes once.
func TestListenOnlyWithoutTrickle(t *testing.T) {
	svc := newTestService(t, nil)
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{})
	bob := newTestClient(t, svc, "bob", testRoom, clientOpts{noTrickle: true})
	alice.join()
	aa, av := alice.addTracks()
	alice.offer()
	m := alice.sendMedia(aa, av, 1)
	defer m.Stop()
	// Tracks are published once media flows: alice hears of both.
	alice.waitFor("alice's tracks published", 10*time.Second, func() bool {
		n := 0
		for _, ev := range alice.events {
			if ev.Local == "track-published" && ev.Attr("participant") == alice.id {
				n++
			}
		}
		return n == 2
	})

	bob.join()
	if _, err := bob.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	off, err := bob.pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(bob.pc)
	if err := bob.pc.SetLocalDescription(off); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(10 * time.Second):
		t.Fatal("bob: gathering did not complete")
	}
	offer := bob.pc.LocalDescription().SDP
	if !strings.Contains(offer, "a=candidate:") {
		t.Fatalf("bob's offer carries no candidates:\n%s", offer)
	}
	r := bob.iq(stanza.New(NS, "offer").SetText(offer))
	a := r.Child(NS, "answer")
	if r.IQType() != stanza.ResultIQ || a == nil {
		t.Fatalf("bob: offer: %s", r)
	}
	if !strings.Contains(a.Text(), "a=candidate:") || !strings.Contains(a.Text(), "a=end-of-candidates") {
		t.Errorf("the server's answer should carry its candidates and a=end-of-candidates:\n%s", a.Text())
	}
	for _, codec := range []string{"PCMU", "PCMA", "G722"} {
		if strings.Contains(a.Text(), codec+"/") {
			t.Errorf("the server's answer negotiates %s; audio is Opus only", codec)
		}
	}
	placeholder := ""
	for mid, attrs := range sections(t, a.Text()) {
		placeholder = mid
		if len(attrs["msid"]) != 0 || len(attrs["ssrc"]) != 0 {
			t.Errorf("the placeholder's answer has msid %q", attrs["msid"])
		}
	}

	bob.waitFor("alice's audio and video", 15*time.Second, func() bool {
		ra, rv := bob.trackFrom(alice.id, "audio/"), bob.trackFrom(alice.id, "video/")
		return ra != nil && len(ra.payloads) > 0 && rv != nil && len(rv.payloads) > 0
	})

	bob.mu.Lock()
	offers := append([]string(nil), bob.offerSDPs...)
	eoc := bob.eoc
	var published []string
	for _, ev := range bob.events {
		if ev.Local == "track-published" {
			published = append(published, ev.Attr("id"))
		}
	}
	bob.mu.Unlock()
	if len(offers) == 0 || len(offers) > 2 {
		t.Errorf("bob got %d server offers for alice's two tracks, want one or two", len(offers))
	}
	if eoc != 1 {
		t.Errorf("bob got %d <end-of-candidates/>, want exactly one", eoc)
	}
	if len(published) != 0 {
		// alice published before bob joined: her tracks are in the join
		// result, not announced again.
		t.Errorf("bob got track-published %v for tracks the join result listed", published)
	}
	last := sections(t, offers[len(offers)-1])
	for mid, attrs := range last {
		if mid == placeholder {
			if len(attrs["msid"]) != 0 || len(attrs["ssrc"]) != 0 {
				t.Errorf("the placeholder section became a track: %v", attrs)
			}
			continue
		}
		if len(attrs["msid"]) != 1 || !strings.HasPrefix(attrs["msid"][0], alice.id+" "+alice.id+"-") || direction(attrs) != "sendonly" {
			t.Errorf("section %s: msid %q direction %s, want alice's track, sendonly", mid, attrs["msid"], direction(attrs))
		}
	}
	if len(last) != 3 {
		t.Errorf("the server's last offer has %d sections, want the placeholder and alice's two tracks", len(last))
	}
	if !strings.Contains(offers[len(offers)-1], "a=end-of-candidates") {
		t.Errorf("the server's offer lacks a=end-of-candidates")
	}
}
