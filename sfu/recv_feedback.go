package sfu

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"

	"poosms.org/poosms/sfu/internal/recvstat"
	"poosms.org/poosms/sfu/internal/rtpx"
)

// The feedback a publisher gets from the SFU about what it sends.
const (
	// twccInterval is how often: TWCC feedback and NACKs every tick,
	// receiver reports every reportTicks ticks.
	twccInterval = 100 * time.Millisecond
	reportTicks  = 10 // receiver reports once a second, as pion sent them

	// A missing packet is asked for once it has been missing nackDelay
	// (a packet reordered by less arrives before anyone asks), then every
	// tick (nackRetry) at most nackTries times in all, while it is among
	// the recvstat.Window newest.
	nackDelay = 10 * time.Millisecond
	nackRetry = twccInterval - 5*time.Millisecond
	nackTries = 5

	// maxFeedbackPacket bounds one compound RTCP packet of feedback, in
	// bytes: more goes as several.
	maxFeedbackPacket = 1200
)

// newRecvFeedback returns a PeerConnection's feedback to its publisher.
func newRecvFeedback() *recvFeedback {
	ssrc := rand.Uint32()
	return &recvFeedback{ssrc: ssrc, rec: twcc.NewRecorder(ssrc), streams: map[uint32]*recvFeedbackStream{}}
}

// recvFeedbackFactory hands f to the one PeerConnection built from its
// API.
type recvFeedbackFactory struct{ f *recvFeedback }

var errRecvFeedbackUsed = errors.New("sfu: a publisher's feedback serves one PeerConnection")

func (r recvFeedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	if r.f.used.Swap(true) {
		return nil, errRecvFeedbackUsed
	}
	return r.f, nil
}

// recvFeedback is the RTCP feedback the SFU sends a publisher about the
// streams it receives, in place of pion's receive-side interceptors:
//
//   - TWCC feedback: the arrival time of every packet that carries a
//     transport-wide sequence number (pion's twcc.Recorder builds the
//     packets), every twccInterval;
//   - generic NACKs (RFC 4585) for the packets missing from a stream that
//     negotiated them, on the same ticks (nackDelay, nackRetry,
//     nackTries);
//   - receiver reports (RFC 3550) for every stream, once a second: the
//     fraction and number lost, the highest sequence number, the jitter,
//     and the time of the publisher's last sender report (LSR, DLSR),
//     which reaches the SFU through senderReports.
//
// Each stream's reader notes a packet's arrival once, under one lock, at
// the top of the stream's chain where both the direct path and pion's
// read (recvstat.Stream: fixed-size state per stream, nothing allocated
// per packet); only the sending loop has a goroutine, which wakes on its
// ticker alone and sends everything due on one tick as one compound RTCP
// packet (receiver reports first). The loop starts with the first remote
// stream: most of the SFU's PeerConnections only send. (pion's own
// interceptors each had a goroutine and ticker, handed each packet of
// TWCC to its loop over a channel, and parsed each packet's header into
// an rtp.Header they allocated.)
type recvFeedback struct {
	interceptor.NoOp
	ssrc uint32      // the SFU's sender SSRC in the feedback
	used atomic.Bool // the interceptor was handed to a PeerConnection

	mu      sync.Mutex // guards the rest
	rec     *twcc.Recorder
	writer  interceptor.RTCPWriter
	streams map[uint32]*recvFeedbackStream // the remote streams bound, by SSRC
	ticks   int
	pkts    []rtcp.Packet // the loop's, reused
	loop    tickLoop
}

// recvFeedbackStream is one remote stream's state.
type recvFeedbackStream struct {
	ssrc  uint32
	st    *recvstat.Stream
	nack  rtcp.TransportLayerNack // reused by the loop
	pairs [recvstat.Window/16 + 1]rtcp.NackPair
}

// BindRTCPWriter keeps the writer for the loop.
func (f *recvFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	f.mu.Lock()
	f.writer = w
	f.mu.Unlock()
	return w
}

// BindRTCPReader notes the sender reports in the RTCP pion reads (from a
// publisher the SFU does not read directly).
func (f *recvFeedback) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			f.senderReports(b[:n], nanotime())
		}
		return n, a, err
	})
}

// senderReports notes the sender reports in a compound RTCP packet from
// the publisher, received at now, for the streams bound.
func (f *recvFeedback) senderReports(b []byte, now int64) {
	for rest := b; len(rest) > 0; {
		kind, pkt, next, ok := rtpx.NextRTCP(rest)
		if !ok {
			return
		}
		rest = next
		if kind == rtpx.RTCPSenderReport {
			f.senderReport(pkt, now)
		}
	}
}

// senderReport notes one sender report (an RTCP packet of that kind)
// received at now, if it is about a stream bound; any other SSRC is
// ignored.
func (f *recvFeedback) senderReport(pkt []byte, now int64) {
	ssrc, ntp, ok := rtpx.SenderReportTime(pkt)
	if !ok {
		return
	}
	f.mu.Lock()
	if s := f.streams[ssrc]; s != nil {
		s.st.SenderReport(ntp, now)
	}
	f.mu.Unlock()
}

// BindRemoteStream notes the arrival of each of the stream's packets.
func (f *recvFeedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	id := transportCCID(info)
	nack := false
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			nack = true
		}
	}
	s := &recvFeedbackStream{ssrc: info.SSRC, st: recvstat.New(info.ClockRate, nack)}
	f.mu.Lock()
	f.streams[info.SSRC] = s
	w := f.writer
	f.mu.Unlock()
	if w != nil {
		f.loop.start(twccInterval, func() { f.send(w) })
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		var h rtpx.Header
		if rtpx.Parse(b[:n], &h) != nil {
			return n, a, err
		}
		now := nanotime()
		f.mu.Lock()
		if id != 0 {
			if ext, ok := h.Extension(b[:n], id); ok && len(ext) >= 2 {
				f.rec.Record(ssrc, uint16(ext[0])<<8|uint16(ext[1]), now/1e3)
			}
		}
		s.st.Received(h.Seq, h.Timestamp, now, int64(nackDelay))
		f.mu.Unlock()
		return n, a, err
	})
}

// recovered notes that packet seq of the stream ssrc arrived as a
// retransmission (on its RTX stream, which the reader of ssrc does not
// see), so that it is not asked for again.
func (f *recvFeedback) recovered(ssrc uint32, seq uint16) {
	f.mu.Lock()
	if s := f.streams[ssrc]; s != nil {
		s.st.Recovered(seq)
	}
	f.mu.Unlock()
}

// UnbindRemoteStream forgets the stream.
func (f *recvFeedback) UnbindRemoteStream(info *interceptor.StreamInfo) {
	f.mu.Lock()
	delete(f.streams, info.SSRC)
	f.mu.Unlock()
}

// send sends the feedback due now: every reportTicks ticks the receiver
// reports, then the TWCC feedback gathered since the last tick and the
// NACKs due, as few compound packets as fit maxFeedbackPacket.
func (f *recvFeedback) send(w interceptor.RTCPWriter) {
	pkts := f.collect(nanotime())
	for len(pkts) > 0 {
		n, size := 0, 0
		for n < len(pkts) {
			size += pkts[n].MarshalSize()
			if n > 0 && size > maxFeedbackPacket {
				break
			}
			n++
		}
		// A failed write loses one tick's feedback, as a lost datagram
		// would.
		_, _ = w.Write(pkts[:n], nil)
		pkts = pkts[n:]
	}
}

// collect returns the feedback due at now. Only the loop calls it.
func (f *recvFeedback) collect(now int64) []rtcp.Packet {
	f.mu.Lock()
	defer f.mu.Unlock()
	clear(f.pkts)
	pkts := f.pkts[:0]
	f.ticks++
	if f.ticks%reportTicks == 0 {
		var rr *rtcp.ReceiverReport
		for _, s := range f.streams {
			b, ok := s.st.Report(s.ssrc, now)
			if !ok {
				continue
			}
			if rr == nil || len(rr.Reports) == 31 {
				rr = &rtcp.ReceiverReport{SSRC: f.ssrc}
				pkts = append(pkts, rr)
			}
			rr.Reports = append(rr.Reports, b)
		}
	}
	pkts = append(pkts, f.rec.BuildFeedbackPacket()...)
	for _, s := range f.streams {
		pairs := s.st.NACKs(s.pairs[:0], now, int64(nackRetry), nackTries)
		if len(pairs) == 0 {
			continue
		}
		s.nack = rtcp.TransportLayerNack{SenderSSRC: f.ssrc, MediaSSRC: s.ssrc, Nacks: pairs}
		pkts = append(pkts, &s.nack)
	}
	f.pkts = pkts
	return pkts
}

// Close stops the loop.
func (f *recvFeedback) Close() error {
	f.loop.stop()
	return nil
}
