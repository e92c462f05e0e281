package rtpx

import (
	"testing"

	"github.com/pion/rtp"
)

func TestParseAndAudioLevel(t *testing.T) {
	p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, PayloadType: 111, SequenceNumber: 7, Timestamp: 960, SSRC: 99}, Payload: []byte("opus")}
	if err := p.SetExtension(3, []byte{0x80 | 42}); err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var h Header
	if err := Parse(b, &h); err != nil {
		t.Fatal(err)
	}
	if !h.Marker || h.PayloadType != 111 || h.Seq != 7 || h.Timestamp != 960 || h.SSRC != 99 {
		t.Fatalf("header %+v", h)
	}
	if got := string(b[h.Payload:h.PayloadEnd]); got != "opus" {
		t.Fatalf("payload %q", got)
	}
	if lvl, ok := h.AudioLevel(b, 3); !ok || lvl != 42 {
		t.Fatalf("audio level %d %v, want 42", lvl, ok)
	}
	if _, ok := h.AudioLevel(b, 4); ok {
		t.Fatal("found an extension that is not there")
	}
	for _, bad := range [][]byte{nil, b[:11], {0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if Parse(bad, &h) == nil {
			t.Fatalf("parsed garbage %x", bad)
		}
	}
}

func TestIsKeyframe(t *testing.T) {
	for i, tc := range []struct {
		c    Codec
		p    []byte
		want bool
	}{
		{CodecVP8, []byte{0x10, 0x00}, true},                    // S=1 PID=0, P=0
		{CodecVP8, []byte{0x10, 0x01}, false},                   // inter frame
		{CodecVP8, []byte{0x00, 0x00}, false},                   // not a partition start
		{CodecVP8, []byte{0x90, 0x80, 0x81, 0x02, 0x00}, true},  // X, I with 15-bit picture id
		{CodecVP8, []byte{0x90, 0x80, 0x81, 0x02, 0x01}, false}, // same, inter
		{CodecVP9, []byte{0x08}, true},                          // B=1, P=0
		{CodecVP9, []byte{0x48}, false},                         // P=1
		{CodecH264, []byte{0x65}, true},                         // IDR
		{CodecH264, []byte{0x41}, false},                        // non-IDR slice
		{CodecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42}, true}, // STAP-A with SPS
		{CodecH264, []byte{0x7c, 0x85}, true},                   // FU-A start of IDR
		{CodecH264, []byte{0x7c, 0x05}, false},                  // FU-A continuation
		{CodecAV1, []byte{0x08}, true},                          // N=1
		{CodecAV1, []byte{0x00}, false},
		{CodecOpus, []byte{0xfc}, true},
		{CodecVP8, nil, false},
	} {
		if got := IsKeyframe(tc.c, tc.p); got != tc.want {
			t.Errorf("%d: IsKeyframe(%d, %x) = %v, want %v", i, tc.c, tc.p, got, tc.want)
		}
	}
}
