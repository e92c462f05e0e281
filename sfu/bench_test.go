package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/sfu/internal/forward"
	"poosms.org/poosms/sfu/internal/rtpx"
)

// BenchmarkForwardPion measures one forwarded packet all the way to the
// socket: the rewrite, then the write path as the SFU configures it (the
// track's shared retransmission cache, TWCC sequence numbers, sender
// reports, SRTP; with and without the send-side bandwidth estimator;
// through the direct send path or pion's SRTP session) and a UDP write
// over loopback to a real subscriber.
func BenchmarkForwardPion(b *testing.B) {
	b.Run("bwe-direct", func(b *testing.B) { benchmarkForwardPion(b, benchPath{bwe: true, direct: true}) })
	b.Run("bwe", func(b *testing.B) { benchmarkForwardPion(b, benchPath{bwe: true}) })
	b.Run("no-bwe", func(b *testing.B) { benchmarkForwardPion(b, benchPath{}) })
}

func benchmarkForwardPion(b *testing.B, path benchPath) {
	svc, err := New(Config{Domain: "conference.localhost", UDPAddr: "127.0.0.1:0", TCPAddr: "", IncludeLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	bs := connectBenchSubscriber(b, svc, path)
	d := bs.d
	cache := &forward.PacketCache{}
	d.Caches = []*forward.PacketCache{cache}

	pkt, h := keyframePacket(b, 1100)
	// First packet: wait until it arrives so the path is warm.
	_ = d.Forward(0, &h, pkt, true, nanotime(), 90000)
	select {
	case <-bs.got:
	case <-time.After(10 * time.Second):
		b.Fatal("nothing received")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Seq = uint16(i + 1)
		h.Timestamp = uint32(i+1) * 3000
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		if err := d.Forward(0, &h, pkt, true, nanotime(), 90000); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
}

// keyframePacket returns a VP8 keyframe RTP packet (payload bytes of
// payload) and its parsed header.
func keyframePacket(tb testing.TB, payload int) ([]byte, rtpx.Header) {
	tb.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SSRC: 0xabc, Marker: true}, Payload: make([]byte, payload)}
	p.Payload[0] = 0x10
	pkt, _ := p.Marshal()
	var h rtpx.Header
	if err := rtpx.Parse(pkt, &h); err != nil {
		tb.Fatal(err)
	}
	return pkt, h
}

// connectBench reads (and drops) the RTCP that reaches sender, then
// negotiates spc (offering) with cpc without trickle and waits until they
// are connected. The reader ends when spc closes.
func connectBench(tb testing.TB, spc, cpc *webrtc.PeerConnection, sender *webrtc.RTPSender) {
	tb.Helper()
	connected := make(chan struct{})
	var once sync.Once
	spc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	exchange := func(from, to *webrtc.PeerConnection, offer bool) {
		var sd webrtc.SessionDescription
		var err error
		if offer {
			sd, err = from.CreateOffer(nil)
		} else {
			sd, err = from.CreateAnswer(nil)
		}
		if err != nil {
			tb.Fatal(err)
		}
		done := webrtc.GatheringCompletePromise(from)
		if err := from.SetLocalDescription(sd); err != nil {
			tb.Fatal(err)
		}
		<-done
		if err := to.SetRemoteDescription(*from.LocalDescription()); err != nil {
			tb.Fatal(err)
		}
	}
	exchange(spc, cpc, true)
	exchange(cpc, spc, false)
	select {
	case <-connected:
	case <-time.After(10 * time.Second):
		tb.Fatal("no connection")
	}
}
