package sfu

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestHeldKeyframeRequestSentWhenWindowEnds: a keyframe request inside
// the throttle window is held and sent by a timer when the window ends,
// one for all those held, not left for the conference's next tick (up
// to tickInterval later). Fails when held requests wait for the tick
// again (no timer is armed).
func TestHeldKeyframeRequestSentWhenWindowEnds(t *testing.T) {
	var sent []uint32
	var timers []func()
	var delays []time.Duration
	u := &upTrack{kind: webrtc.RTPCodecTypeVideo, layers: []*layer{{rid: "h"}, {rid: "l"}}}
	u.layers[0].ssrc.Store(1111)
	u.layers[1].ssrc.Store(2222)
	u.writePLI = func(ssrc uint32) { sent = append(sent, ssrc) }
	u.after = func(d time.Duration, f func()) {
		delays = append(delays, d)
		timers = append(timers, f)
	}

	u.requestKeyframe(0) // sent at once
	u.requestKeyframe(0) // held: a timer for the window's end
	u.requestKeyframe(0) // held with it
	if len(sent) != 1 || sent[0] != 1111 {
		t.Fatalf("PLIs sent %v, want one for 1111", sent)
	}
	if len(timers) != 1 {
		t.Fatalf("%d timers armed for the held requests, want 1", len(timers))
	}
	if delays[0] <= 0 || delays[0] > keyframeInterval {
		t.Fatalf("held request due in %v, want within the window (%v)", delays[0], keyframeInterval)
	}
	u.requestKeyframe(1) // another layer has a window of its own
	if len(sent) != 2 || sent[1] != 2222 {
		t.Fatalf("PLIs sent %v, want 1111 then 2222", sent)
	}

	// The window ends (as if keyframeInterval had passed) and the timer
	// fires: the held requests go as one.
	u.layers[0].lastKey.Add(-int64(keyframeInterval))
	timers[0]()
	if len(sent) != 3 || sent[2] != 1111 {
		t.Fatalf("PLIs sent %v, want a third for 1111 when the window ended", sent)
	}
	if u.layers[0].keyPending.Load() {
		t.Fatal("request still pending after it was sent")
	}

	// A timer that fires while the window is still open (a request sent
	// meanwhile started a new one) holds the request on.
	u.requestKeyframe(0)
	if len(timers) != 2 {
		t.Fatalf("%d timers armed, want a second one", len(timers))
	}
	timers[1]()
	if len(sent) != 3 || len(timers) != 3 {
		t.Fatalf("early timer: %d PLIs sent and %d timers, want 3 and 3 (held on)", len(sent), len(timers))
	}
}
