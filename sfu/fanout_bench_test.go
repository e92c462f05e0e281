package sfu

import (
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/sfu/internal/forward"
)

// BenchmarkFanoutPion measures one publisher packet fanned out to ten
// real Pion subscribers through upTrack.fanOut and pion's write path as
// the SFU configures it (without the bandwidth estimator), all on the
// service's one media socket over loopback. "direct" is the SFU as it
// runs: each copy encrypted by the SFU's direct send path (directSender)
// and the datagrams of one fan-out leaving with one sendmmsg; "batched"
// the same through pion's SRTP session, ICE connection and UDP mux; "sendto"
// leaves out the fan-out's Begin and End, so each goes with its own
// sendto, as before batching. syscalls/pkt counts the media socket's
// sending system calls per forwarded copy (ICE and RTCP writes during
// the run included); allocs/op are per publisher packet.
func BenchmarkFanoutPion(b *testing.B) {
	b.Run("direct", func(b *testing.B) { benchmarkFanoutPion(b, 10, true, true) })
	b.Run("batched", func(b *testing.B) { benchmarkFanoutPion(b, 10, true, false) })
	b.Run("sendto", func(b *testing.B) { benchmarkFanoutPion(b, 10, false, false) })
}

func benchmarkFanoutPion(b *testing.B, subs int, batched, direct bool) {
	svc, err := New(Config{Domain: "conference.localhost", UDPAddr: "127.0.0.1:0", TCPAddr: "", IncludeLoopback: true})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	u := &upTrack{clock: 90000}
	if batched {
		u.batch = svc.batch
	}
	cache := &forward.PacketCache{}
	var received []*benchSubscriber
	for range subs {
		bs := connectBenchSubscriber(b, svc, benchPath{direct: direct})
		bs.d.Caches = []*forward.PacketCache{cache}
		u.fan.Add(bs.d)
		received = append(received, bs)
	}

	pkt, h := keyframePacket(b, 1100)
	// First packet: wait until every subscriber has it, so the path is warm.
	u.fanOut(0, &h, pkt, true, nanotime())
	for _, bs := range received {
		select {
		case <-bs.got:
		case <-time.After(10 * time.Second):
			b.Fatal("nothing received")
		}
	}
	before := svc.batch.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Seq = uint16(i + 1)
		h.Timestamp = uint32(i+1) * 3000
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		u.fanOut(0, &h, pkt, true, nanotime())
	}
	b.StopTimer()
	after := svc.batch.Stats()
	b.ReportMetric(float64(after.Calls-before.Calls)/float64(b.N*subs), "syscalls/pkt")
	b.ReportMetric(float64(b.N*subs)/b.Elapsed().Seconds(), "pkts/s")
}

// benchSubscriber is a Pion subscriber of one DownTrack.
type benchSubscriber struct {
	d      *forward.DownTrack
	direct *directSender // nil: pion's path
	got    chan struct{} // has a value after a packet was read
	read   atomic.Int64  // packets read
}

// benchPath says how a bench subscriber's server side sends: with the
// send-side bandwidth estimator or not, through the direct send path
// (directSender) or pion's SRTP session.
type benchPath struct{ bwe, direct bool }

// connectBenchSubscriber connects a Pion subscriber without interceptors
// (so -benchmem counts the server's side) to a server peer connection
// made as newParticipant makes one (its own API from svc.newAPI), sending
// one VP8 DownTrack. With path.direct it fails unless the direct send
// path is on once connected.
func connectBenchSubscriber(b testing.TB, svc *Service, path benchPath) *benchSubscriber {
	b.Helper()
	bs := &benchSubscriber{got: make(chan struct{}, 1)}
	if path.direct {
		bs.direct = newDirectSender(svc.socketFor, &svc.recv)
	}
	out := newSendPath(bs.direct, path.bwe)
	api, err := svc.newAPI(newRecvFeedback(), out)
	if err != nil {
		b.Fatal(err)
	}
	spc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = spc.Close() })
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		b.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	quiet := logging.NewDefaultLoggerFactory()
	quiet.DefaultLogLevel = logging.LogLevelDisabled
	se.LoggerFactory = quiet // a flooded subscriber drops packets; that is expected
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	cpc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(&interceptor.Registry{}),
		webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cpc.Close() })
	cpc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
			bs.read.Add(1)
			select {
			case bs.got <- struct{}{}:
			default:
			}
		}
	})
	d := forward.NewDownTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "t", "s", 0)
	d.Out = out
	tr, err := spc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		b.Fatal(err)
	}
	connectBench(b, spc, cpc, tr.Sender())
	if bs.direct != nil {
		if why := bs.direct.start(spc); why != "" {
			b.Fatalf("direct send path off: %s", why)
		}
	}
	bs.d = d
	return bs
}
