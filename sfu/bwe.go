package sfu

import (
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"poosms.org/poosms/sfu/internal/bwe"
)

// bandwidthEstimator is a subscriber's send-side bandwidth estimate
// (bwe.Estimator): what the SFU reads of it, and how the RTCP read
// directly reaches it (participant.directRTCP).
type bandwidthEstimator interface {
	TargetBitrate() int              // bits per second
	Feedback(rtcp []byte, now int64) // a compound RTCP packet from the subscriber
}

var _ bandwidthEstimator = (*bwe.Estimator)(nil)

// Bandwidth estimate bounds, bits per second.
const (
	initialEstimate = 2_500_000
	minEstimate     = 100_000
	maxEstimate     = 20_000_000
)

// bweFactory makes the bweInterceptor of a PeerConnection's send path:
// send-side bandwidth estimation toward the subscriber, transport-wide
// sequence numbers on every packet that goes through pion's local-stream
// chain (the header extension is registered by newAPI; sendPath numbers
// the packets it sends directly) and the estimator (package bwe) fed with
// their send times and with the subscriber's TWCC feedback. Packets are
// not paced: the estimate only steers which simulcast layer a subscriber
// gets.
type bweFactory struct {
	est *bwe.Estimator
}

func (f bweFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &bweInterceptor{est: f.est}, nil
}

// bweInterceptor numbers the packets of every local stream and hands the
// RTCP the subscriber sends to the estimator.
type bweInterceptor struct {
	interceptor.NoOp
	est *bwe.Estimator
}

// BindLocalStream numbers the stream's packets, if the subscriber
// negotiated transport-wide sequence numbers.
func (b *bweInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if id := transportCCID(info); id != 0 {
		return &twccWriter{id: id, est: b.est, next: w}
	}
	return w
}

// transportCCID is the header extension id the stream negotiated for
// transport-wide sequence numbers; 0: none.
func transportCCID(info *interceptor.StreamInfo) uint8 {
	for _, ext := range info.RTPHeaderExtensions {
		if ext.URI == sdp.TransportCCURI && ext.ID > 0 && ext.ID < 256 {
			return uint8(ext.ID)
		}
	}
	return 0
}

// BindRTCPReader lets the estimator read the subscriber's RTCP.
func (b *bweInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(buf, a)
		if err == nil {
			b.est.Feedback(buf[:n], nanotime())
		}
		return n, a, err
	})
}

// twccWriter writes one stream's packets with a transport-wide sequence
// number, recording each with the estimator (its size as RTP: header,
// extensions and payload). The number's two bytes are the writer's own,
// so the writer holds mu until the packet is written (pion marshals and
// encrypts it within Write).
type twccWriter struct {
	id   uint8
	est  *bwe.Estimator
	next interceptor.RTPWriter

	mu  sync.Mutex // held while a packet is written: ext is the packet's
	ext [2]byte
}

func (t *twccWriter) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	if h == nil {
		return t.next.Write(h, payload, a)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := numberTWCC(h, len(payload), t.id, &t.ext, t.est, nanotime()); err != nil {
		return 0, err
	}
	return t.next.Write(h, payload, a)
}

// numberTWCC gives the packet (h and size bytes of payload) the next
// transport-wide sequence number in extension id, recording it as sent
// at now with est (its size as RTP: header, extensions and payload). The
// number's two bytes are ext, which h refers to until the packet is
// written: the caller holds ext until then.
func numberTWCC(h *rtp.Header, size int, id uint8, ext *[2]byte, est *bwe.Estimator, now int64) error {
	var err error
	if id < 15 {
		err = h.SetExtension(id, ext[:])
	} else {
		err = h.SetExtensionWithProfile(id, ext[:], rtp.ExtensionProfileTwoByte)
	}
	if err != nil {
		return err
	}
	seq := est.Sent(h.MarshalSize()+size, now)
	ext[0], ext[1] = byte(seq>>8), byte(seq)
	return nil
}
