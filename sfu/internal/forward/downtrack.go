package forward

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/sfu/internal/rtpx"
)

// Writer is where a rewritten packet goes; the TrackLocalWriter pion hands
// to a bound track satisfies it.
type Writer interface {
	WriteRTP(h *rtp.Header, payload []byte) (int, error)
}

// WriterBinder makes the Writer a DownTrack writes through once bound to
// a subscriber's PeerConnection, from pion's context for the stream and
// the codec Bind chose. The SFU's (sfu.sendPath) numbers, counts and
// sends a packet itself where it can and hands it to ctx.WriteStream()
// otherwise.
type WriterBinder interface {
	BindWriter(ctx webrtc.TrackLocalContext, codec webrtc.RTPCodecParameters) Writer
}

// ErrNoCodec is returned by Bind when the subscriber's PeerConnection
// cannot receive the publisher's codec.
var ErrNoCodec = errors.New("forward: codec not negotiated by the subscriber")

type binding struct {
	ssrc uint32
	pt   uint8
	w    Writer
}

// histSize is how many sent packets a DownTrack remembers for
// retransmission (a power of two, as PacketCache's size).
const histSize = cacheSize

// minResend is the shortest time between two retransmissions of one
// packet, in ns: repeated NACKs for it within a round trip are ignored.
const minResend = int64(50e6)

// sentPacket is what a subscriber's sequence number carried: the source
// packet (layer and source sequence number) and the timestamp it was
// given.
type sentPacket struct {
	out, src uint16
	ts       uint32
	layer    int8
	ok       bool
	resentAt int64
}

// NoLayer is the layer value for "nothing chosen".
const NoLayer = -1

// DownTrack is one subscriber's copy of one published track. It is the
// webrtc.TrackLocal added to the subscriber's PeerConnection; the
// publisher's read loops call Forward with every packet.
type DownTrack struct {
	id, streamID string
	codec        webrtc.RTPCodecCapability
	kind         webrtc.RTPCodecType
	rcodec       rtpx.Codec

	bound atomic.Pointer[binding]

	current atomic.Int32 // layer being forwarded, NoLayer before the first keyframe
	target  atomic.Int32 // layer wanted
	auto    atomic.Bool  // target follows the bandwidth estimate

	mu  sync.Mutex // guards m, hdr and the retransmission state, held while writing
	m   Munger
	hdr rtp.Header

	// Caches are the publisher's packet caches, one per layer (nil: no
	// retransmissions, as for audio). Set them before the track is used.
	Caches []*PacketCache
	hist   [histSize]sentPacket
	rtxHdr rtp.Header
	rtxBuf [maxCached]byte
	resent atomic.Uint64

	// NeedKeyframe is called (from a read loop) when the target layer
	// needs a keyframe to start; OnSwitch when the forwarded layer changed.
	// Both must not block. Set them before the track is used.
	NeedKeyframe func(layer int)
	OnSwitch     func(layer int)

	// Out, if set, makes the writer each Bind writes through; nil writes
	// through pion's ctx.WriteStream(), its local stream's interceptor
	// chain. Set it before the track is added to a PeerConnection.
	Out WriterBinder

	packets atomic.Uint64
	dropped atomic.Uint64
}

// NewDownTrack returns a track with the publisher's codec, the track id
// and stream id the subscriber will see in its SDP, forwarding layer
// target once it starts.
func NewDownTrack(codec webrtc.RTPCodecCapability, id, streamID string, target int) *DownTrack {
	d := &DownTrack{id: id, streamID: streamID, codec: codec, rcodec: rtpx.CodecFromMime(codec.MimeType)}
	if strings.HasPrefix(strings.ToLower(codec.MimeType), "audio/") {
		d.kind = webrtc.RTPCodecTypeAudio
	} else {
		d.kind = webrtc.RTPCodecTypeVideo
	}
	d.current.Store(NoLayer)
	d.target.Store(int32(target))
	d.auto.Store(true)
	d.hdr.Version = 2
	return d
}

var _ webrtc.TrackLocal = (*DownTrack)(nil)

// Bind implements webrtc.TrackLocal: it picks the subscriber's payload
// type for the publisher's codec and the writer (Out's, or pion's).
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	c, ok := MatchCodec(d.codec, ctx.CodecParameters())
	if !ok {
		return webrtc.RTPCodecParameters{}, ErrNoCodec
	}
	var w Writer = ctx.WriteStream()
	if d.Out != nil {
		w = d.Out.BindWriter(ctx, c)
	}
	d.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), w: w})
	if fn := d.NeedKeyframe; fn != nil && d.kind == webrtc.RTPCodecTypeVideo {
		fn(int(d.target.Load()))
	}
	return c, nil
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(nil)
	return nil
}

// ID, RID, StreamID and Kind implement webrtc.TrackLocal.
func (d *DownTrack) ID() string                { return d.id }
func (d *DownTrack) RID() string               { return "" }
func (d *DownTrack) StreamID() string          { return d.streamID }
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.kind }

// Codec is the publisher's codec.
func (d *DownTrack) Codec() webrtc.RTPCodecCapability { return d.codec }

// SSRC is the SSRC the subscriber receives, 0 before Bind.
func (d *DownTrack) SSRC() uint32 {
	if b := d.bound.Load(); b != nil {
		return b.ssrc
	}
	return 0
}

// Current is the layer forwarded now (NoLayer before the first keyframe).
func (d *DownTrack) Current() int { return int(d.current.Load()) }

// Target is the layer the track switches to at the next keyframe.
func (d *DownTrack) Target() int { return int(d.target.Load()) }

// Auto reports whether the target follows the bandwidth estimate.
func (d *DownTrack) Auto() bool { return d.auto.Load() }

// SetTarget chooses the layer to forward; auto says whether later bandwidth
// estimates may change it. When the layer changes, a keyframe is asked for.
func (d *DownTrack) SetTarget(layer int, auto bool) {
	d.auto.Store(auto)
	old := d.target.Swap(int32(layer))
	if int(old) != layer || int(d.current.Load()) != layer {
		if fn := d.NeedKeyframe; fn != nil && layer != NoLayer && d.kind == webrtc.RTPCodecTypeVideo {
			fn(layer)
		}
	}
}

// Counts returns the packets forwarded and those dropped while waiting for
// a keyframe or after a switch.
func (d *DownTrack) Counts() (sent, dropped uint64) { return d.packets.Load(), d.dropped.Load() }

// Forward sends packet pkt (parsed into h) of the given layer to the
// subscriber if that layer is the one it should see now. key reports
// whether the packet starts a keyframe; now is a monotonic time in ns.
// It allocates nothing itself.
func (d *DownTrack) Forward(layer int, h *rtpx.Header, pkt []byte, key bool, now int64, clockRate uint32) error {
	cur := int(d.current.Load())
	if layer != cur {
		if layer != int(d.target.Load()) || !key {
			return nil
		}
		// Start, or switch, on this keyframe.
		if !d.current.CompareAndSwap(int32(cur), int32(layer)) {
			return nil
		}
		if fn := d.OnSwitch; fn != nil {
			fn(layer)
		}
	}
	b := d.bound.Load()
	if b == nil {
		return nil
	}
	d.mu.Lock()
	if h.PayloadEnd == h.Payload {
		// Padding only (bandwidth probing toward the SFU): nothing for
		// the subscriber.
		d.m.Skip(h.SSRC, h.Seq)
		d.mu.Unlock()
		return nil
	}
	seq, ts, ok := d.m.Rewrite(h.SSRC, h.Seq, h.Timestamp, now, clockRate)
	if !ok {
		d.mu.Unlock()
		d.dropped.Add(1)
		return nil
	}
	if d.Caches != nil {
		d.hist[seq%histSize] = sentPacket{out: seq, src: h.Seq, ts: ts, layer: int8(layer), ok: true}
	}
	d.hdr.Marker = h.Marker
	d.hdr.PayloadType = b.pt
	d.hdr.SequenceNumber = seq
	d.hdr.Timestamp = ts
	d.hdr.SSRC = b.ssrc
	d.hdr.Extension = false
	d.hdr.Extensions = d.hdr.Extensions[:0]
	d.hdr.Padding = false
	d.hdr.PaddingSize = 0
	_, err := b.w.WriteRTP(&d.hdr, pkt[h.Payload:h.PayloadEnd])
	d.mu.Unlock()
	d.packets.Add(1)
	return err
}

// Retransmit answers a subscriber's NACK: each lost packet it still
// knows is sent again from the publisher's packet cache, with the header
// it had (on the media SSRC, RFC 4585; not in the RTX format). now is a
// monotonic time in ns. It returns how many packets were sent.
func (d *DownTrack) Retransmit(nacks []rtcp.NackPair, now int64) int {
	b := d.bound.Load()
	if b == nil || d.Caches == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	sent := 0
	for _, p := range nacks {
		for i := 0; i <= 16; i++ {
			seq := p.PacketID
			if i > 0 {
				if p.LostPackets&(1<<(i-1)) == 0 {
					continue
				}
				seq += uint16(i)
			}
			if d.resend(b, seq, now) {
				sent++
			}
		}
	}
	d.resent.Add(uint64(sent))
	return sent
}

// resend sends packet seq again. d.mu is held.
func (d *DownTrack) resend(b *binding, seq uint16, now int64) bool {
	e := &d.hist[seq%histSize]
	if !e.ok || e.out != seq || int(e.layer) >= len(d.Caches) || d.Caches[e.layer] == nil {
		return false
	}
	if e.resentAt != 0 && now-e.resentAt < minResend {
		return false
	}
	n, marker, ok := d.Caches[e.layer].Get(e.src, d.rtxBuf[:])
	if !ok {
		return false
	}
	e.resentAt = now
	h := &d.rtxHdr
	h.Version = 2
	h.Marker = marker
	h.Timestamp = e.ts
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	h.SSRC, h.PayloadType, h.SequenceNumber = b.ssrc, b.pt, seq
	_, err := b.w.WriteRTP(h, d.rtxBuf[:n])
	return err == nil
}

// Resent is how many packets Retransmit sent.
func (d *DownTrack) Resent() uint64 { return d.resent.Load() }

// MatchCodec finds the subscriber's parameters for codec c: the same MIME
// type, preferring identical format parameters; for H.264 the
// packetization mode must agree.
func MatchCodec(c webrtc.RTPCodecCapability, offered []webrtc.RTPCodecParameters) (webrtc.RTPCodecParameters, bool) {
	var fallback *webrtc.RTPCodecParameters
	for i := range offered {
		o := &offered[i]
		if !strings.EqualFold(o.MimeType, c.MimeType) {
			continue
		}
		if o.SDPFmtpLine == c.SDPFmtpLine {
			return *o, true
		}
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeH264) &&
			fmtpValue(o.SDPFmtpLine, "packetization-mode") != fmtpValue(c.SDPFmtpLine, "packetization-mode") {
			continue
		}
		if fallback == nil {
			fallback = o
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return webrtc.RTPCodecParameters{}, false
}

func fmtpValue(line, key string) string {
	for _, kv := range strings.Split(line, ";") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	if key == "packetization-mode" {
		return "0"
	}
	return ""
}
