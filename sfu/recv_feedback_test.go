package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"poosms.org/poosms/sfu/internal/rtpx"
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

// BenchmarkRecvFeedback measures what a publisher's packet costs its
// feedback as the stream's reader reads it (the header parsed, the
// arrival noted for TWCC feedback, NACKs and receiver reports, under one
// lock), with the feedback built every 5,000 packets (100 ms at 50,000
// packets a second): "sfu" is recvFeedback, "pion" the chain it
// replaced (pion's NACK generator and receiver reports below the SFU's
// TWCC feedback alone).
func BenchmarkRecvFeedback(b *testing.B) {
	b.Run("sfu", func(b *testing.B) { benchmarkRecvFeedback(b, false) })
	b.Run("pion", func(b *testing.B) { benchmarkRecvFeedback(b, true) })
}

func benchmarkRecvFeedback(b *testing.B, pion bool) {
	const id, ssrc = 5, 0x1234
	info := &interceptor.StreamInfo{
		SSRC: ssrc, ClockRate: 90000,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: id}},
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}},
	}
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: ssrc}, Payload: make([]byte, 1100)}
	if err := p.SetExtension(id, []byte{0, 0}); err != nil {
		b.Fatal(err)
	}
	pkt, err := p.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	var h rtpx.Header
	if err := rtpx.Parse(pkt, &h); err != nil {
		b.Fatal(err)
	}
	ext, _ := h.Extension(pkt, id)
	var seq uint16
	var r interceptor.RTPReader = interceptor.RTPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		ext[0], ext[1] = byte(seq>>8), byte(seq)
		return copy(buf, pkt), a, nil
	})
	w := interceptor.RTCPWriterFunc(func([]rtcp.Packet, interceptor.Attributes) (int, error) { return 0, nil })
	if pion {
		genF, _ := nack.NewGeneratorInterceptor()
		gen, _ := genF.NewInterceptor("")
		rrF, _ := report.NewReceiverInterceptor()
		rr, _ := rrF.NewInterceptor("")
		for _, i := range []interceptor.Interceptor{gen, rr} {
			i.BindRTCPWriter(w)
			r = i.BindRemoteStream(info, r)
			defer i.Close()
		}
	}
	fb := newRecvFeedback()
	fb.BindRemoteStream(info, r) // the loop does not start: no writer yet
	r = fb.BindRemoteStream(info, r)
	buf := make([]byte, 1500)
	attrs := interceptor.Attributes{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		clear(attrs)
		if _, _, err := r.Read(buf, attrs); err != nil {
			b.Fatal(err)
		}
		if i%5000 == 4999 {
			b.StopTimer()
			fb.collect(nanotime())
			b.StartTimer()
		}
	}
}
