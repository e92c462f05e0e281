package forward

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/sfu/internal/rtpx"
)

func TestMungerContinuousAcrossSwitches(t *testing.T) {
	var m Munger
	type in struct {
		ssrc uint32
		seq  uint16
		ts   uint32
		now  int64
	}
	ms := int64(1e6)
	steps := []struct {
		in      in
		wantSeq uint16
		drop    bool
	}{
		{in{1, 100, 9000, 0}, 100, false},
		{in{1, 101, 12000, 33 * ms}, 101, false},
		{in{1, 65535, 0, 0}, 0, true},            // before the stream's first packet: dropped
		{in{2, 5000, 777, 66 * ms}, 102, false},  // switch: next number
		{in{2, 4999, 700, 66 * ms}, 0, true},     // older than the switch point
		{in{2, 5001, 3777, 99 * ms}, 103, false}, // continues
		{in{3, 65535, 1, 132 * ms}, 104, false},  // switch again, across wrap
		{in{3, 0, 3001, 165 * ms}, 105, false},
		{in{3, 0, 3001, 166 * ms}, 0, true},      // a duplicate
		{in{3, 2, 9001, 198 * ms}, 107, false},   // 1 is late
		{in{3, 1, 6001, 199 * ms}, 106, false},   // and fills the hole
		{in{3, 1, 6001, 200 * ms}, 0, true},      // but only once
		{in{3, 2, 9001, 200 * ms}, 0, true},      // the same for the newest
		{in{3, 200, 9001, 250 * ms}, 305, false}, // a jump
		{in{3, 3, 9001, 250 * ms}, 0, true},      // far too old now
	}
	var lastTS uint32
	for i, s := range steps {
		seq, ts, ok := m.Rewrite(s.in.ssrc, s.in.seq, s.in.ts, s.in.now, 90000)
		if ok == s.drop {
			t.Fatalf("step %d: kept=%v, want %v", i, ok, !s.drop)
		}
		if !ok {
			continue
		}
		if seq != s.wantSeq {
			t.Fatalf("step %d: seq %d, want %d", i, seq, s.wantSeq)
		}
		if i > 0 && int32(ts-lastTS) <= 0 && s.in.ssrc != steps[i-1].in.ssrc && steps[i-1].in.ssrc != 0 {
			t.Fatalf("step %d: timestamp %d does not advance past %d at a switch", i, ts, lastTS)
		}
		lastTS = ts
	}
}

// sink counts what a bound subscriber would send.
type sink struct{ n, bytes int }

func (s *sink) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	s.n++
	s.bytes += len(p)
	return len(p), nil
}
func (s *sink) Write(b []byte) (int, error) { return len(b), nil }

type fakeContext struct {
	ssrc webrtc.SSRC
	w    webrtc.TrackLocalWriter
}

func (f *fakeContext) CodecParameters() []webrtc.RTPCodecParameters {
	return []webrtc.RTPCodecParameters{
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, PayloadType: 111},
		{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, PayloadType: 96},
	}
}
func (f *fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (f *fakeContext) SSRC() webrtc.SSRC                                      { return f.ssrc }
func (f *fakeContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (f *fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (f *fakeContext) WriteStream() webrtc.TrackLocalWriter                   { return f.w }
func (f *fakeContext) ID() string                                             { return "ctx" }
func (f *fakeContext) RTCPReader() interceptor.RTCPReader                     { return nil }

func vp8Packet(seq uint16, key bool) []byte {
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 100, SequenceNumber: seq, Timestamp: uint32(seq) * 3000, SSRC: 0xabc, Marker: true}}
	p.Payload = make([]byte, 1100)
	p.Payload[0] = 0x10
	if !key {
		p.Payload[1] = 0x01
	}
	b, _ := p.Marshal()
	return b
}

func TestDownTrackWaitsForKeyframeAndRewrites(t *testing.T) {
	s := &sink{}
	d := NewDownTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "t", "s", 0)
	asked := 0
	d.NeedKeyframe = func(int) { asked++ }
	c, err := d.Bind(&fakeContext{ssrc: 4242, w: s})
	if err != nil || c.PayloadType != 96 {
		t.Fatalf("bind: %v %v", c, err)
	}
	if asked != 1 {
		t.Fatalf("binding a video track asked for %d keyframes, want 1", asked)
	}
	var h rtpx.Header
	for i, key := range []bool{false, false, true, false} {
		b := vp8Packet(uint16(10+i), key)
		if err := rtpx.Parse(b, &h); err != nil {
			t.Fatal(err)
		}
		if err := d.Forward(0, &h, b, rtpx.IsKeyframe(rtpx.CodecVP8, b[h.Payload:h.PayloadEnd]), int64(i), 90000); err != nil {
			t.Fatal(err)
		}
	}
	if s.n != 2 {
		t.Fatalf("forwarded %d packets, want 2 (from the keyframe on)", s.n)
	}
	if d.hdr.SSRC != 4242 || d.hdr.PayloadType != 96 {
		t.Fatalf("header not rewritten for the subscriber: ssrc %d pt %d", d.hdr.SSRC, d.hdr.PayloadType)
	}
}

// BenchmarkForward measures the rewrite and fan-out of one publisher
// packet to ten subscribers (parse, keyframe check, one copy into the
// track's retransmission cache, per-subscriber sequence/timestamp/SSRC
// rewrite and history entry, hand-off to the subscriber's writer).
func BenchmarkForward(b *testing.B) {
	const subs = 10
	var f Fanout
	s := &sink{}
	cache := &PacketCache{}
	for i := range subs {
		d := NewDownTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "t", "s", 0)
		d.Caches = []*PacketCache{cache}
		if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(1000 + i), w: s}); err != nil {
			b.Fatal(err)
		}
		f.Add(d)
	}
	pkts := [][]byte{vp8Packet(1, true), vp8Packet(2, false)}
	var h rtpx.Header
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pkt := pkts[i&1]
		if err := rtpx.Parse(pkt, &h); err != nil {
			b.Fatal(err)
		}
		h.Seq = uint16(i)
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		key := rtpx.IsKeyframe(rtpx.CodecVP8, pkt[h.Payload:h.PayloadEnd])
		for _, d := range f.Snapshot() {
			_ = d.Forward(0, &h, pkt, key, int64(i)*1000, 90000)
		}
	}
	b.StopTimer()
	if s.n < b.N*subs-subs {
		b.Fatalf("sent %d of %d", s.n, b.N*subs)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "in-pkts/s")
	b.ReportMetric(float64(s.n)/b.Elapsed().Seconds(), "out-pkts/s")
}

func TestForwardAllocatesNothing(t *testing.T) {
	var f Fanout
	s := &sink{}
	cache := &PacketCache{}
	for i := range 4 {
		d := NewDownTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "t", "s", 0)
		d.Caches = []*PacketCache{cache}
		if _, err := d.Bind(&fakeContext{ssrc: webrtc.SSRC(100 + i), w: s}); err != nil {
			t.Fatal(err)
		}
		f.Add(d)
	}
	pkt := vp8Packet(1, true)
	var h rtpx.Header
	seq := uint16(0)
	// Once every slot of the cache holds a buffer, nothing allocates.
	_ = rtpx.Parse(pkt, &h)
	for i := range cacheSize {
		cache.Put(uint16(i), h.Marker, pkt[h.Payload:h.PayloadEnd])
	}
	allocs := testing.AllocsPerRun(2000, func() {
		_ = rtpx.Parse(pkt, &h)
		seq++
		h.Seq = seq
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		key := rtpx.IsKeyframe(rtpx.CodecVP8, pkt[h.Payload:h.PayloadEnd])
		for _, d := range f.Snapshot() {
			_ = d.Forward(0, &h, pkt, key, int64(seq)*1000, 90000)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per forwarded packet, want 0", allocs)
	}
	if s.n == 0 {
		t.Fatal("nothing forwarded")
	}
}

func TestMungerSkipsPaddingWithoutHoles(t *testing.T) {
	var m Munger
	var got []uint16
	for seq := uint16(10); seq < 20; seq++ {
		if seq%3 == 0 { // 12, 15, 18 are padding
			m.Skip(7, seq)
			continue
		}
		out, _, ok := m.Rewrite(7, seq, uint32(seq)*90, int64(seq), 90000)
		if !ok {
			t.Fatalf("seq %d dropped", seq)
		}
		got = append(got, out)
	}
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("output %v has a hole", got)
		}
	}
}

// recorder keeps the packets written to it.
type recorder struct {
	seqs     []uint16
	payloads [][]byte
}

func (r *recorder) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	r.seqs = append(r.seqs, h.SequenceNumber)
	r.payloads = append(r.payloads, append([]byte(nil), p...))
	return len(p), nil
}
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }

// TestRetransmitFromSharedCache: two subscribers of one track, numbered
// differently, each get the payload they lost under their own sequence
// number, from the one cache; a repeated NACK within a round trip and a
// packet the cache no longer has send nothing.
func TestRetransmitFromSharedCache(t *testing.T) {
	cache := &PacketCache{}
	var recs [2]*recorder
	var downs [2]*DownTrack
	for i := range downs {
		recs[i] = &recorder{}
		downs[i] = NewDownTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "t", "s", 0)
		downs[i].Caches = []*PacketCache{cache}
		if _, err := downs[i].Bind(&fakeContext{ssrc: webrtc.SSRC(10 + i), w: recs[i]}); err != nil {
			t.Fatal(err)
		}
	}
	var h rtpx.Header
	for seq := uint16(100); seq < 110; seq++ {
		pkt := vp8Packet(seq, true)
		pkt[len(pkt)-1] = byte(seq) // tell the payloads apart
		if err := rtpx.Parse(pkt, &h); err != nil {
			t.Fatal(err)
		}
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		for i, d := range downs {
			if i == 1 && seq < 105 {
				continue // the second subscriber starts later, numbered from its own start
			}
			if err := d.Forward(0, &h, pkt, true, int64(seq)*1e6, 90000); err != nil {
				t.Fatal(err)
			}
		}
	}
	out0 := recs[0].seqs[3] // what the first subscriber got for source 103
	out1 := recs[1].seqs[2] // what the second got for source 107
	if n := downs[0].Retransmit([]rtcp.NackPair{{PacketID: out0}}, 200e6); n != 1 {
		t.Fatalf("first subscriber: %d retransmissions, want 1", n)
	}
	if n := downs[1].Retransmit([]rtcp.NackPair{{PacketID: out1}}, 200e6); n != 1 {
		t.Fatalf("second subscriber: %d retransmissions, want 1", n)
	}
	for i, want := range []byte{103, 107} {
		r := recs[i]
		last := len(r.seqs) - 1
		if r.seqs[last] != []uint16{out0, out1}[i] || r.payloads[last][len(r.payloads[last])-1] != want {
			t.Errorf("subscriber %d: resent seq %d payload ending %d, want seq %d payload of source %d",
				i, r.seqs[last], r.payloads[last][len(r.payloads[last])-1], []uint16{out0, out1}[i], want)
		}
	}
	if n := downs[0].Retransmit([]rtcp.NackPair{{PacketID: out0}}, 210e6); n != 0 {
		t.Errorf("a repeated NACK 10 ms later was answered %d times, want 0", n)
	}
	if n := downs[0].Retransmit([]rtcp.NackPair{{PacketID: out0 - 50}}, 300e6); n != 0 {
		t.Errorf("a packet never sent was answered %d times, want 0", n)
	}
	for seq := uint16(110); seq < 110+cacheSize; seq++ {
		cache.Put(seq, false, []byte{1})
	}
	if n := downs[0].Retransmit([]rtcp.NackPair{{PacketID: recs[0].seqs[5]}}, 400e6); n != 0 {
		t.Errorf("a packet gone from the cache was answered %d times, want 0", n)
	}
}
