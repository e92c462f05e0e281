package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/confclient"
)

// TestTWCCFeedbackToPublisher: a publisher that numbers its packets with
// transport-wide sequence numbers, as browsers do, gets TWCC feedback
// from the SFU (the twcc sender interceptor newAPI registers) on the
// packets it sent, of every stream it sends: audio and video, or audio
// and each simulcast layer.
func TestTWCCFeedbackToPublisher(t *testing.T) {
	t.Run("audio and video", func(t *testing.T) { testTWCCFeedbackToPublisher(t, false) })
	t.Run("simulcast", func(t *testing.T) { testTWCCFeedbackToPublisher(t, true) })
}

func testTWCCFeedbackToPublisher(t *testing.T, simulcast bool) {
	svc := newTestService(t, nil)
	var readers sync.WaitGroup
	t.Cleanup(readers.Wait) // after alice's close, which ends them
	sent := &sentTransportSeqs{ssrcs: map[uint16]uint32{}}
	// sent before SendTransportCC: the number is set before sent sees the
	// packet (the last interceptor added runs first).
	alice := newTestClient(t, svc, "alice", testRoom, clientOpts{peer: []confclient.PeerOption{sent.option, confclient.SendTransportCC}})
	alice.join()
	var a, v *webrtc.TrackLocalStaticRTP
	var st *simulcastTrack
	if simulcast {
		a, st = alice.addAudio(), alice.addSimulcast()
		// The feedback names the SSRC of the last packet the SFU got
		// before sending it, often a lower layer's, whose RTCP Pion hands
		// only to ReadSimulcastRTCP (the client reads the first layer's).
		for _, rid := range simulcastRIDs[1:] {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for {
					pkts, _, err := st.tr.Sender().ReadSimulcastRTCP(rid)
					if err != nil {
						return
					}
					alice.gotRTCP(pkts)
				}
			}()
		}
	} else {
		a, v = alice.addTracks()
	}
	alice.offer()

	ssrcs := map[uint32]bool{} // what alice sends
	for _, s := range alice.pc.GetSenders() {
		p := s.GetParameters()
		negotiated := false
		for _, e := range p.HeaderExtensions {
			negotiated = negotiated || e.URI == sdp.TransportCCURI
		}
		if !negotiated {
			t.Fatalf("the SFU's answer left out transport-cc for the %s sender: %+v", s.Track().Kind(), p.HeaderExtensions)
		}
		for _, e := range p.Encodings {
			ssrcs[uint32(e.SSRC)] = true
		}
	}

	m := alice.sendMedia(a, v, 10)
	defer m.Stop()
	if simulcast {
		vm := st.send(alice.name, 10)
		defer vm.Stop()
	}

	// Some half a second of media (a packet of each stream every 20 ms),
	// four or five feedback packets (one every 100 ms).
	const want = 50
	var fb []*rtcp.TransportLayerCC
	var acked map[uint16]bool
	alice.waitFor("TWCC feedback acknowledging 50 packets", 10*time.Second, func() bool {
		fb = fb[:0]
		acked = map[uint16]bool{}
		for _, p := range alice.rtcpIn {
			if cc, ok := p.(*rtcp.TransportLayerCC); ok {
				fb = append(fb, cc)
				for _, s := range twccReceived(cc) {
					acked[s] = true
				}
			}
		}
		return len(acked) >= want
	})

	sent.mu.Lock()
	defer sent.mu.Unlock()
	if len(sent.ssrcs) == 0 {
		t.Fatal("the publisher sent no transport-wide sequence numbers")
	}
	t.Logf("%d feedback packets acknowledged %d of the %d packets sent", len(fb), len(acked), len(sent.ssrcs))
	for _, cc := range fb {
		if !ssrcs[cc.MediaSSRC] {
			t.Errorf("feedback for SSRC %d, the publisher sends %v", cc.MediaSSRC, ssrcs)
		}
		if n := twccStatuses(cc); len(n) != int(cc.PacketStatusCount) {
			t.Errorf("feedback %d: %d statuses in its chunks, packet status count %d", cc.FbPktCount, len(n), cc.PacketStatusCount)
		}
		if got := twccReceived(cc); len(got) != len(cc.RecvDeltas) {
			t.Errorf("feedback %d: %d packets received, %d receive deltas", cc.FbPktCount, len(got), len(cc.RecvDeltas))
		}
	}
	ackedSSRCs := map[uint32]int{}
	for s := range acked {
		ssrc, ok := sent.ssrcs[s]
		if !ok {
			t.Errorf("feedback acknowledges transport-wide sequence number %d, which the publisher never sent", s)
		}
		ackedSSRCs[ssrc]++
	}
	for ssrc := range ssrcs {
		if ackedSSRCs[ssrc] == 0 {
			t.Errorf("no packet of SSRC %d acknowledged (acknowledged per SSRC: %v)", ssrc, ackedSSRCs)
		}
	}
}

// sentTransportSeqs records the transport-wide sequence numbers on the
// packets a peer sends, with their SSRCs; option adds it to the peer's
// interceptors.
type sentTransportSeqs struct {
	interceptor.NoOp

	mu    sync.Mutex
	ssrcs map[uint16]uint32 // by transport-wide sequence number
}

func (s *sentTransportSeqs) option(_ *webrtc.MediaEngine, reg *interceptor.Registry) error {
	reg.Add(s)
	return nil
}

// NewInterceptor returns s itself: it serves one PeerConnection.
func (s *sentTransportSeqs) NewInterceptor(string) (interceptor.Interceptor, error) { return s, nil }

func (s *sentTransportSeqs) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			id = uint8(e.ID)
		}
	}
	if id == 0 {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		var tcc rtp.TransportCCExtension
		if ext := h.GetExtension(id); ext != nil && tcc.Unmarshal(ext) == nil {
			s.mu.Lock()
			s.ssrcs[tcc.TransportSequence] = h.SSRC
			s.mu.Unlock()
		}
		return w.Write(h, payload, a)
	})
}

// twccStatuses is the status of each packet a feedback packet reports
// on, from its base sequence number on.
func twccStatuses(cc *rtcp.TransportLayerCC) []uint16 {
	var out []uint16
	for _, c := range cc.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range c.RunLength {
				out = append(out, c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			out = append(out, c.SymbolList...)
		}
	}
	if len(out) > int(cc.PacketStatusCount) {
		// The last chunk may be padded past the count.
		out = out[:cc.PacketStatusCount]
	}
	return out
}

// twccReceived is the transport-wide sequence numbers a feedback packet
// reports received.
func twccReceived(cc *rtcp.TransportLayerCC) []uint16 {
	var out []uint16
	for i, s := range twccStatuses(cc) {
		if s != rtcp.TypeTCCPacketNotReceived {
			out = append(out, cc.BaseSequenceNumber+uint16(i))
		}
	}
	return out
}
