package sfu

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"

	"poosms.org/poosms/sfu/internal/rtpx"
)

// twccInterval is how often a publisher gets TWCC feedback.
const twccInterval = 100 * time.Millisecond

// twccFeedbackFactory makes one twccFeedback per PeerConnection.
type twccFeedbackFactory struct{}

func (twccFeedbackFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &twccFeedback{rec: twcc.NewRecorder(rand.Uint32())}, nil
}

// twccFeedback is the TWCC feedback the SFU sends a publisher: the
// arrival time of every packet that carries a transport-wide sequence
// number, sent every twccInterval (pion's twcc.Recorder builds the
// packets). The stream's reader records each packet under a lock; only
// the sending loop has a goroutine, which wakes on its ticker alone.
// (pion's own interceptor hands each packet to its loop over a channel:
// a goroutine switch per packet received.) The loop starts with the
// first remote stream: most of the SFU's PeerConnections only send.
type twccFeedback struct {
	interceptor.NoOp

	mu     sync.Mutex // guards rec, writer
	rec    *twcc.Recorder
	writer interceptor.RTCPWriter
	loop   tickLoop
}

// BindRTCPWriter keeps the writer for the loop.
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	t.writer = w
	t.mu.Unlock()
	return w
}

// BindRemoteStream records the arrival of the stream's packets, if it
// carries transport-wide sequence numbers.
func (t *twccFeedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			id = uint8(e.ID)
		}
	}
	if id == 0 {
		return r
	}
	t.mu.Lock()
	w := t.writer
	t.mu.Unlock()
	if w != nil {
		t.loop.start(twccInterval, func() { t.send(w) })
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		var h rtpx.Header
		if rtpx.Parse(b[:n], &h) == nil {
			if ext, ok := h.Extension(b[:n], id); ok && len(ext) >= 2 {
				seq := uint16(ext[0])<<8 | uint16(ext[1])
				now := nanotime() / 1e3
				t.mu.Lock()
				t.rec.Record(ssrc, seq, now)
				t.mu.Unlock()
			}
		}
		return n, a, err
	})
}

// send sends the feedback gathered since the last time.
func (t *twccFeedback) send(w interceptor.RTCPWriter) {
	t.mu.Lock()
	pkts := t.rec.BuildFeedbackPacket()
	t.mu.Unlock()
	if len(pkts) > 0 {
		// A failed write loses one interval's feedback, as a lost
		// datagram would.
		_, _ = w.Write(pkts, nil)
	}
}

// Close stops the loop.
func (t *twccFeedback) Close() error {
	t.loop.stop()
	return nil
}
