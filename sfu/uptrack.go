package sfu

import (
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/udpbatch"
	"poosms.org/poosms/sfu/internal/forward"
	"poosms.org/poosms/sfu/internal/rtpx"
)

// keyframeInterval throttles keyframe requests to a publisher, per layer.
const keyframeInterval = 300 * time.Millisecond

var epoch = time.Now()

// nanotime is a monotonic clock in nanoseconds.
func nanotime() int64 { return int64(time.Since(epoch)) }

// upTrack is one track a participant publishes, with its simulcast layers
// (one layer when it does not simulcast).
type upTrack struct {
	id     string
	owner  *participant
	kind   webrtc.RTPCodecType
	codec  webrtc.RTPCodecParameters
	rcodec rtpx.Codec
	clock  uint32
	layers []*layer               // best quality first
	caches []*forward.PacketCache // per layer, for retransmissions; nil for audio
	fan    forward.Fanout
	batch  *udpbatch.Group // the media sockets' write batching; nil in some tests

	// unpublished is set by room.removeTrack before it unsubscribes
	// anyone; subscribe refuses the track from then on.
	unpublished atomic.Bool

	audioLevelID uint8
	levelSum     atomic.Uint64 // sum of audio levels since the last tick
	levelN       atomic.Uint64

	wg      sync.WaitGroup // read loops
	running atomic.Int32
	started map[*webrtc.TrackRemote]bool // streams with a read loop; owner.mu

	// writePLI sends the publisher a keyframe request for the stream
	// ssrc; after runs f once d has passed (time.AfterFunc). Tests
	// replace them.
	writePLI func(ssrc uint32)
	after    func(d time.Duration, f func())
}

type layer struct {
	rid     string
	cache   *forward.PacketCache // nil for audio
	ssrc    atomic.Uint32
	bytes   atomic.Uint64
	rate    atomic.Int64 // bits per second over the last tick
	lastKey atomic.Int64 // nanotime of the last keyframe request
	// keyPending is a request that came inside the throttle window;
	// keyTimer is set while a timer will send it when the window ends.
	keyPending atomic.Bool
	keyTimer   atomic.Bool
}

func newUpTrack(p *participant, id string, tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver, c webrtc.RTPCodecParameters) *upTrack {
	u := &upTrack{
		id: id, owner: p, kind: tr.Kind(), codec: c,
		rcodec: rtpx.CodecFromMime(c.MimeType), clock: c.ClockRate,
		started: map[*webrtc.TrackRemote]bool{},
		writePLI: func(ssrc uint32) {
			_ = p.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ssrc}})
		},
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) },
	}
	if p.room != nil && p.room.s != nil {
		u.batch = p.room.s.batch
	}
	var rids []string
	for _, t := range recv.Tracks() {
		if r := t.RID(); r != "" && !slices.Contains(rids, r) {
			rids = append(rids, r)
		}
	}
	if len(rids) == 0 {
		rids = []string{tr.RID()}
	}
	slices.SortStableFunc(rids, func(a, b string) int { return ridRank(a) - ridRank(b) })
	for _, r := range rids {
		l := &layer{rid: r}
		if u.kind == webrtc.RTPCodecTypeVideo {
			l.cache = &forward.PacketCache{}
			u.caches = append(u.caches, l.cache)
		}
		u.layers = append(u.layers, l)
	}
	for _, ext := range recv.GetParameters().HeaderExtensions {
		if ext.URI == sdp.AudioLevelURI {
			u.audioLevelID = uint8(ext.ID)
		}
	}
	return u
}

func (u *upTrack) rid(i int) string {
	if i < 0 || i >= len(u.layers) {
		return ""
	}
	return u.layers[i].rid
}

func (u *upTrack) layerIndex(rid string) int {
	for i, l := range u.layers {
		if strings.EqualFold(l.rid, rid) {
			return i
		}
	}
	return -1
}

// start runs the read loop of layer li.
func (u *upTrack) start(tr *webrtc.TrackRemote, li int) {
	u.running.Add(1)
	u.wg.Add(1)
	go u.readLoop(tr, li)
}

// wait returns once every read loop has ended.
func (u *upTrack) wait() { u.wg.Wait() }

// readLoop forwards the packets of one layer to every subscriber. When the
// last layer's stream ends the track is unpublished.
func (u *upTrack) readLoop(tr *webrtc.TrackRemote, li int) {
	defer u.wg.Done()
	defer func() {
		if u.running.Add(-1) == 0 {
			u.owner.room.removeTrack(u)
		}
	}()
	l := u.layers[li]
	l.ssrc.Store(uint32(tr.SSRC()))
	u.requestKeyframe(li)
	ssrc := uint32(tr.SSRC())
	if d := u.owner.direct; d != nil {
		// Once the stream is delivered inline, the loop below waits in
		// Read for the stream to end. pion hands out the stream's
		// retransmissions (RTX) only through that Read, so they are
		// delivered inline too, unwrapped (rtxSink), once pion knows
		// the RTX stream: at once when the offer named it, else (a
		// simulcast layer's) when its first packet came; the sink looks
		// for it every 16 packets until then.
		var ih rtpx.Header
		sink := func(p []byte) { u.forward(li, p, &ih) }
		pt := uint8(u.codec.PayloadType) // tr knows it only after its first packet
		rtx := uint32(tr.RtxSSRC())
		if rtx != 0 {
			d.setSink(rtx, u.rtxSink(ssrc, pt, sink))
		}
		var n uint32
		d.setSink(ssrc, func(p []byte) {
			if n++; rtx == 0 && n%16 == 0 {
				if rtx = uint32(tr.RtxSSRC()); rtx != 0 {
					// Not under the filter's lock (setSink's locks
					// come before it).
					go d.setSink(rtx, u.rtxSink(ssrc, pt, sink))
				}
			}
			sink(p)
		})
	}
	buf := make([]byte, 1500)
	var h rtpx.Header
	for {
		n, attrs, err := tr.Read(buf)
		if err != nil {
			return
		}
		if attrs != nil && attrs.Get(webrtc.AttributeRtxSequenceNumber) != nil {
			// A retransmission pion unwrapped: not asked for again.
			if rtpx.Parse(buf[:n], &h) == nil {
				u.recovered(ssrc, h.Seq)
			}
		}
		u.forward(li, buf[:n], &h)
	}
}

// rtxSink is the sink of the RTX stream of one of the track's streams
// (ssrc, its payload type pt, its sink): it unwraps each retransmission
// as pion would (RFC 4588: the original sequence number leads the
// payload; the packet takes the stream's SSRC and payload type back),
// notes the packet recovered and hands it to sink. A retransmission
// without an original payload (a padding probe) is dropped. Like every
// sink, it runs on the sockets' filter goroutine.
func (u *upTrack) rtxSink(ssrc uint32, pt uint8, sink func(p []byte)) func(p []byte) {
	var h rtpx.Header
	return func(p []byte) {
		if rtpx.Parse(p, &h) != nil || h.PayloadEnd-h.Payload < 2 {
			return
		}
		osn := binary.BigEndian.Uint16(p[h.Payload:])
		p[1] = p[1]&0x80 | pt&0x7f
		binary.BigEndian.PutUint16(p[2:4], osn)
		binary.BigEndian.PutUint32(p[8:12], ssrc)
		n := copy(p[h.Payload:], p[h.Payload+2:])
		u.recovered(ssrc, osn)
		sink(p[:h.Payload+n])
	}
}

// recovered notes that packet seq of the stream ssrc arrived as a
// retransmission, so that it is not asked for again.
func (u *upTrack) recovered(ssrc uint32, seq uint16) {
	if in := u.owner.in.Load(); in != nil {
		in.recovered(ssrc, seq)
	}
}

// readRTCP reads the RTCP pion holds for one of the track's streams (a
// layer's, rid; "" when the track does not simulcast), until the stream
// ends. Nothing else reads it: the reading passes it through the
// PeerConnection's interceptors, where the publisher's sender reports
// reach its feedback (recvFeedback, for the LSR and DLSR of the receiver
// reports). It is needed only while the participant's RTCP goes pion's
// way: the direct path hands the sender reports over itself
// (participant.directRTCP).
func (u *upTrack) readRTCP(recv *webrtc.RTPReceiver, rid string) {
	defer u.wg.Done()
	buf := make([]byte, 1500)
	for {
		var err error
		if rid == "" {
			_, _, err = recv.Read(buf)
		} else {
			_, _, err = recv.ReadSimulcast(buf, rid)
		}
		if err != nil {
			return
		}
	}
}

// forward is the hot path: parse, note the audio level, fan out.
func (u *upTrack) forward(li int, pkt []byte, h *rtpx.Header) {
	if rtpx.Parse(pkt, h) != nil {
		return
	}
	l := u.layers[li]
	l.bytes.Add(uint64(len(pkt)))
	if l.cache != nil && h.PayloadEnd > h.Payload {
		l.cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
	}
	if u.audioLevelID != 0 {
		if lvl, ok := h.AudioLevel(pkt, u.audioLevelID); ok {
			u.levelSum.Add(uint64(lvl))
			u.levelN.Add(1)
		}
	}
	key := rtpx.IsKeyframe(u.rcodec, pkt[h.Payload:h.PayloadEnd])
	u.fanOut(li, h, pkt, key, nanotime())
}

// fanOut writes the packet to every subscriber. pion encrypts and writes
// each copy in this goroutine; inside Begin and End the media socket
// queues the datagrams and the End sends them all with one sendmmsg
// (write errors then go to the Service's log, not to Forward, whose
// error the loop ignores in any case).
func (u *upTrack) fanOut(li int, h *rtpx.Header, pkt []byte, key bool, now int64) {
	u.batch.Begin()
	defer u.batch.End()
	for _, d := range u.fan.Snapshot() {
		_ = d.Forward(li, h, pkt, key, now, u.clock)
	}
}

// requestKeyframe sends a PLI for layer li to the publisher, at most once
// per keyframeInterval. A request inside that window is sent when the
// window ends (one for all those held), by a timer: a subscriber that
// starts just after another one's request waits for its keyframe no
// longer than the window (before, held requests waited for the
// conference's next tick, up to tickInterval more).
func (u *upTrack) requestKeyframe(li int) {
	if u.kind != webrtc.RTPCodecTypeVideo || li < 0 || li >= len(u.layers) {
		return
	}
	l := u.layers[li]
	ssrc := l.ssrc.Load()
	if ssrc == 0 {
		return
	}
	now := nanotime()
	last := l.lastKey.Load()
	if last != 0 && now-last < int64(keyframeInterval) {
		// Inside the window: one request is sent when it ends.
		u.hold(li, time.Duration(last+int64(keyframeInterval)-now))
		return
	}
	if !l.lastKey.CompareAndSwap(last, now) {
		u.hold(li, keyframeInterval) // another request went just now
		return
	}
	l.keyPending.Store(false)
	u.writePLI(ssrc)
}

// hold notes a keyframe request for layer li that the throttle holds
// back, and makes sure a timer sends it in d, when the window ends.
func (u *upTrack) hold(li int, d time.Duration) {
	l := u.layers[li]
	l.keyPending.Store(true)
	if !l.keyTimer.CompareAndSwap(false, true) {
		return // armed already
	}
	u.after(d, func() {
		l.keyTimer.Store(false)
		if l.keyPending.Load() {
			u.requestKeyframe(li)
		}
	})
}

// measure updates each layer's bitrate over the last interval.
func (u *upTrack) measure(d time.Duration) {
	for _, l := range u.layers {
		b := l.bytes.Swap(0)
		l.rate.Store(int64(float64(b*8) / d.Seconds()))
	}
}

// takeLevel returns the mean audio level since the last call.
func (u *upTrack) takeLevel() (int, bool) {
	n := u.levelN.Swap(0)
	s := u.levelSum.Swap(0)
	if n == 0 {
		return 0, false
	}
	return int(s / n), true
}

// bestLayer is the best layer whose bitrate fits in budget bits/s, or the
// lowest one.
func (u *upTrack) bestLayer(budget int) int {
	for i, l := range u.layers {
		r := l.rate.Load()
		if r > 0 && r <= int64(budget) {
			return i
		}
	}
	return len(u.layers) - 1
}
