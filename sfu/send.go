package sfu

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/sfu/internal/bwe"
	"poosms.org/poosms/sfu/internal/forward"
)

// sendPath is the SFU's write path for one PeerConnection's local streams
// (a subscriber's copies of published tracks) and the sender reports of
// those streams.
//
// Each forward.DownTrack added to the PeerConnection writes through a
// sendStream (BindWriter, the DownTrack's Out). Once the connection's
// directSender is ready, a packet never enters pion's local-stream chain:
// the sendStream sets its transport-wide sequence number from the
// estimator (which records the send), counts it for the sender reports
// and hands it to directSender.send, all under one lock. Before that,
// and on a connection that never goes direct, it counts the packet and
// writes it to pion's ctx.WriteStream(): there the bwe interceptor's
// twccWriter numbers it and the direct interceptor at the bottom of the
// chain sends it one way or the other. Either way a packet is numbered
// and recorded by the estimator once and counted once.
//
// sendPath is also the PeerConnection's interceptor for sender reports,
// in place of pion's report.SenderInterceptor: once a second it sends one
// for every local stream that has sent RTP (streams not bound through
// BindWriter are counted by a writer in their interceptor chain). Its
// goroutine starts with the first local stream, so a PeerConnection that
// only receives has none, and ends with Close, which pion
// calls when the PeerConnection closes.
type sendPath struct {
	interceptor.NoOp

	direct *directSender  // nil: pion's path only
	est    *bwe.Estimator // nil: no transport-wide sequence numbers, no estimate
	used   atomic.Bool    // the interceptor was handed to a PeerConnection

	mu      sync.Mutex
	streams map[uint32]*sendStream // by SSRC
	writer  interceptor.RTCPWriter // the PeerConnection's RTCP writer
	reports []rtcp.Packet          // the loop's, reused
	loop    tickLoop               // the sender reports
}

// srInterval is how often sender reports go, as pion sends them.
const srInterval = time.Second

// maxSRsPerPacket bounds the sender reports sent in one compound RTCP
// packet (28 bytes each).
const maxSRsPerPacket = 32

// newSendPath returns a PeerConnection's send path; with bwe it has its
// own bandwidth estimator.
func newSendPath(direct *directSender, withBWE bool) *sendPath {
	p := &sendPath{direct: direct, streams: map[uint32]*sendStream{}}
	if withBWE {
		p.est = bwe.New(initialEstimate, minEstimate, maxEstimate)
	}
	return p
}

// estimator is p's bandwidth estimator, nil for none.
func (p *sendPath) estimator() bandwidthEstimator {
	if p.est == nil {
		return nil
	}
	return p.est
}

// sendFactory hands p to the one PeerConnection built from its API.
type sendFactory struct{ p *sendPath }

var errSendPathUsed = errors.New("sfu: a send path serves one PeerConnection")

func (f sendFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	if f.p.used.Swap(true) {
		return nil, errSendPathUsed
	}
	return f.p, nil
}

// sendStream is one local stream's writer (see sendPath) and its sender
// report counts.
type sendStream struct {
	path   *sendPath
	ssrc   uint32
	clock  uint32
	twccID uint8          // the transport-wide sequence number's extension id; 0: none
	next   forward.Writer // pion's chain for the stream (ctx.WriteStream())

	mu      sync.Mutex // guards the rest; held while a packet is sent directly
	ext     [2]byte    // the transport-wide sequence number of the packet being sent
	packets uint32     // RTP packets sent, retransmissions included
	octets  uint32     // their payload octets
	lastSeq uint16     // the newest sequence number sent
	lastTS  uint32     // the RTP timestamp of the newest frame sent
	lastAt  int64      // when its first packet was sent (nanotime)
}

var _ forward.WriterBinder = (*sendPath)(nil)

// BindWriter implements forward.WriterBinder: the writer of one
// DownTrack bound to the PeerConnection.
func (p *sendPath) BindWriter(ctx webrtc.TrackLocalContext, c webrtc.RTPCodecParameters) forward.Writer {
	s := &sendStream{path: p, ssrc: uint32(ctx.SSRC()), clock: c.ClockRate, next: ctx.WriteStream()}
	if p.est != nil {
		for _, e := range ctx.HeaderExtensions() {
			if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
				s.twccID = uint8(e.ID)
			}
		}
	}
	p.add(s)
	return s
}

// WriteRTP sends one packet of the stream (see sendPath). Packets of one
// stream may be written from several goroutines.
func (s *sendStream) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	d := s.path.direct
	if d == nil || !d.ready.Load() {
		n, err := s.next.WriteRTP(h, payload)
		s.countTaken(h, len(payload), n, err)
		return n, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := nanotime()
	if s.twccID != 0 {
		if err := numberTWCC(h, len(payload), s.twccID, &s.ext, s.path.est, now); err != nil {
			return 0, err
		}
	}
	s.count(h, len(payload), now)
	n, _, err := d.send(h, payload)
	return n, err
}

// countTaken counts a packet written through pion's chain, which
// returned n and err, once pion has taken it: until the sender's chain
// is set up (RTPSender.Send, just after Bind) pion drops a packet and
// reports 0 bytes without an error, and a report counting it would tell
// the subscriber of a packet it never gets.
func (s *sendStream) countTaken(h *rtp.Header, size, n int, err error) {
	if err != nil || n <= 0 {
		return
	}
	s.mu.Lock()
	s.count(h, size, nanotime())
	s.mu.Unlock()
}

// count notes a packet with size bytes of payload sent at now for the
// sender reports. s.mu is held.
//
// The RTP timestamp and the time it maps to are taken from the first
// packet sent of each newer frame (a retransmission or a reordered packet
// does not move them), so the time it takes to send a large frame does
// not skew the mapping.
func (s *sendStream) count(h *rtp.Header, size int, now int64) {
	if diff := h.SequenceNumber - s.lastSeq; s.packets == 0 || diff > 0 && diff < 1<<15 {
		s.lastSeq = h.SequenceNumber
		if s.packets == 0 || h.Timestamp != s.lastTS {
			s.lastTS, s.lastAt = h.Timestamp, now
		}
	}
	s.packets++
	s.octets += uint32(size)
}

// report returns the stream's sender report at now (wall clock, and the
// same instant as nanotime), or nil before its first packet (RFC 3550
// 6.4: a source that has sent nothing reports no sender information).
// The RTP time is the newest frame's timestamp advanced by the time
// since it was sent, at the stream's clock rate.
func (s *sendStream) report(wall time.Time, mono int64) *rtcp.SenderReport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.packets == 0 {
		return nil
	}
	el := max(mono-s.lastAt, 0)
	ticks := uint64(el/1e9)*uint64(s.clock) + uint64(el%1e9)*uint64(s.clock)/1e9
	return &rtcp.SenderReport{
		SSRC:        s.ssrc,
		NTPTime:     ntpTime(wall),
		RTPTime:     s.lastTS + uint32(ticks),
		PacketCount: s.packets,
		OctetCount:  s.octets,
	}
}

// ntpTime is t as a 64-bit NTP timestamp (RFC 5905: seconds since 1900
// and their fraction).
func ntpTime(t time.Time) uint64 {
	const unixToNTP = 2_208_988_800
	sec := uint64(t.Unix() + unixToNTP)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// add lists s for the sender reports and starts the report loop if it
// has not started.
func (p *sendPath) add(s *sendStream) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.streams[s.ssrc] = s
	p.startLocked()
}

// startLocked starts the report loop once there is a stream and the RTCP
// writer is known, unless p is closed. p.mu is held.
func (p *sendPath) startLocked() {
	if p.writer == nil || len(p.streams) == 0 {
		return
	}
	w := p.writer
	p.loop.start(srInterval, func() { p.sendReports(w) })
}

// BindRTCPWriter keeps the PeerConnection's RTCP writer for the sender
// reports.
func (p *sendPath) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writer = w
	p.startLocked()
	return w
}

// BindLocalStream lists a stream pion binds: one bound through BindWriter
// (its Bind comes first) is counted by its sendStream and its chain is
// left as it is; any other is counted here.
func (p *sendPath) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	p.mu.Lock()
	_, ours := p.streams[info.SSRC]
	p.mu.Unlock()
	if ours {
		return w
	}
	s := &sendStream{path: p, ssrc: info.SSRC, clock: info.ClockRate}
	p.add(s)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n, err := w.Write(h, payload, a)
		s.countTaken(h, len(payload), n, err)
		return n, err
	})
}

// UnbindLocalStream stops reporting on a stream.
func (p *sendPath) UnbindLocalStream(info *interceptor.StreamInfo) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.streams, info.SSRC)
}

// Close ends the report loop and waits for it.
func (p *sendPath) Close() error {
	p.loop.stop()
	return nil
}

// sendReports sends the sender reports, every srInterval.
func (p *sendPath) sendReports(w interceptor.RTCPWriter) {
	pkts := p.collect(time.Now())
	for len(pkts) > 0 {
		n := min(len(pkts), maxSRsPerPacket)
		// An error (the connection closing, or not yet up) loses this
		// second's reports, as a lost packet would.
		_, _ = w.Write(pkts[:n], nil)
		pkts = pkts[n:]
	}
}

// collect returns the sender reports of every stream that has sent RTP,
// at now. Only the loop calls it.
func (p *sendPath) collect(now time.Time) []rtcp.Packet {
	mono := int64(now.Sub(epoch))
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.reports)
	p.reports = p.reports[:0]
	for _, s := range p.streams {
		if sr := s.report(now, mono); sr != nil {
			p.reports = append(p.reports, sr)
		}
	}
	return p.reports
}
