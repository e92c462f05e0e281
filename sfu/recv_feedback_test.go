package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestTWCCFeedbackRecordsWhatIsRead checks the SFU's TWCC feedback: no
// loop for a PeerConnection that only sends, and for one that receives,
// feedback acknowledging the packets its streams read, by their
// transport-wide numbers.
func TestTWCCFeedbackRecordsWhatIsRead(t *testing.T) {
	fb := newRecvFeedback()
	if _, err := (recvFeedbackFactory{fb}).NewInterceptor(""); err != nil {
		t.Fatal(err)
	}
	if _, err := (recvFeedbackFactory{fb}).NewInterceptor(""); err == nil {
		t.Fatal("one feedback handed to two PeerConnections")
	}
	got := make(chan []rtcp.Packet, 16)
	fb.BindRTCPWriter(interceptor.RTCPWriterFunc(func(p []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		got <- p
		return 0, nil
	}))
	fb.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, nil)
	if fb.loop.running() {
		t.Fatal("the feedback loop started without a remote stream")
	}

	const id, ssrc = 5, 0x1234
	var seq uint16 = 65533 // the numbers wrap inside the test
	next := interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, SSRC: ssrc}, Payload: []byte{1, 2, 3}}
		if err := p.SetExtension(id, []byte{byte(seq >> 8), byte(seq)}); err != nil {
			return 0, a, err
		}
		seq++
		n, err := p.MarshalTo(b)
		return n, a, err
	})
	r := fb.BindRemoteStream(&interceptor.StreamInfo{SSRC: ssrc, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: id}}}, next)
	buf := make([]byte, 1500)
	for range 5 {
		if _, _, err := r.Read(buf, nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(5 * time.Second)
	acked := 0
	for acked < 5 {
		select {
		case pkts := <-got:
			for _, p := range pkts {
				cc, ok := p.(*rtcp.TransportLayerCC)
				if !ok {
					continue // a receiver report
				}
				if cc.MediaSSRC != ssrc {
					t.Fatalf("feedback for SSRC %x, want %x", cc.MediaSSRC, ssrc)
				}
				if acked == 0 && cc.BaseSequenceNumber != 65533 {
					t.Fatalf("feedback starts at %d, want 65533", cc.BaseSequenceNumber)
				}
				acked += len(cc.RecvDeltas)
			}
		case <-deadline:
			t.Fatalf("%d of 5 packets acknowledged", acked)
		}
	}
	if acked != 5 {
		t.Fatalf("%d packets acknowledged, want 5", acked)
	}
	if err := fb.Close(); err != nil {
		t.Fatal(err)
	}
}
