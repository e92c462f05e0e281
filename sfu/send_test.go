package sfu

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/sfu/internal/bwe"
)

// TestSenderReports: a subscriber receives, for each stream the SFU
// forwards to it, sender reports (sendPath) whose packet and octet counts
// are those of the packets it received (within what is in flight while
// media flows; exactly once it stops) and whose RTP time maps the NTP
// time onto the stream's timestamps at the codec's clock rate (the
// publisher stamps its packets from the wall clock, as a camera and a
// microphone would). Every packet carried a transport-wide sequence
// number, one sequence across both streams without a gap or a repeat,
// as many as the estimator numbered, and the subscriber's TWCC feedback
// acknowledged each of them to the estimator. Once with the direct send
// path, once (the SFU as the DTLS client) through pion's.
func TestSenderReports(t *testing.T) {
	for _, c := range []struct {
		name    string
		passive bool
	}{{"direct", false}, {"pion", true}} {
		t.Run(c.name, func(t *testing.T) { testSenderReports(t, c.passive) })
	}
}

func testSenderReports(t *testing.T, passive bool) {
	rec := newRTPRecorder()
	alice, bob, a, b := joinedPair(t, clientOpts{passive: passive}, clientOpts{passive: passive, peer: []confclient.PeerOption{rec.option}})
	svc := alice.svc
	// Bob's media reaching alice shows his connection's SRTP is up at the
	// SFU: nothing sent to him is lost to a connection not ready yet.
	bm := bob.sendMedia(b[0], b[1], 1)
	defer bm.Stop()
	alice.waitFor("bob's video", 15*time.Second, func() bool {
		r := alice.trackFrom(bob.id, "video/")
		return r != nil && len(r.payloads) > 0
	})
	part := svc.room(testRoom).byPeer(bob.peer)
	select {
	case <-part.connected: // the direct path has started, or will not
	case <-time.After(10 * time.Second):
		t.Fatal("bob's connection not up")
	}
	if ready := part.direct.ready.Load(); ready == passive {
		t.Fatalf("direct send path on: %v", ready)
	}
	start := time.Now()
	am := confclient.Publisher{
		Audio: true, VideoLayers: 1, KeyEvery: 1,
		Payload: func(kind webrtc.RTPCodecType, _, n int, key bool) []byte {
			if kind == webrtc.RTPCodecTypeAudio {
				return opusPayload("alice", n)
			}
			return vp8Payload("alice", n, key)
		},
	}.Start(wallClockWriter{confclient.NewTrackWriter(a[0], nil, a[1]), start})
	defer am.Stop()
	bob.waitFor("alice's audio and video", 15*time.Second, func() bool {
		a, v := bob.trackFrom(alice.id, "audio/"), bob.trackFrom(alice.id, "video/")
		return a != nil && v != nil && len(a.payloads) > 0 && len(v.payloads) > 0
	})
	bob.mu.Lock()
	ssrcs := []uint32{bob.trackFrom(alice.id, "audio/").ssrc, bob.trackFrom(alice.id, "video/").ssrc}
	bob.mu.Unlock()
	// Sender reports reach a receiver's RTCP reader, which pion runs
	// only when the application reads it.
	var wg sync.WaitGroup
	for _, tr := range bob.pc.GetTransceivers() {
		if r := tr.Receiver(); r != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					if _, _, err := r.ReadRTCP(); err != nil {
						return
					}
				}
			}()
		}
	}
	t.Cleanup(func() { _ = bob.rtc.Close(); wg.Wait() }) // before bob's own cleanup

	// While media flows: four reports a stream, three seconds apart at
	// least from first to last.
	rec.wait(t, "4 sender reports per stream", 15*time.Second, func() bool {
		return len(rec.reports[ssrcs[0]]) >= 4 && len(rec.reports[ssrcs[1]]) >= 4
	})
	rec.mu.Lock()
	for _, ssrc := range ssrcs {
		reports := rec.reports[ssrc]
		clock := rec.streams[ssrc].clock
		for _, r := range reports {
			if d := int64(r.sr.PacketCount) - int64(r.packets); d < -25 || d > 25 {
				t.Errorf("ssrc %x: the report counts %d packets, %d received when it arrived", ssrc, r.sr.PacketCount, r.packets)
			}
			ntp := ntpToTime(r.sr.NTPTime)
			if d := r.at.Sub(ntp); d < -500*time.Millisecond || d > 500*time.Millisecond {
				t.Errorf("ssrc %x: the report's NTP time is %v from when it arrived", ssrc, d)
			}
			// The RTP time of that instant, from the newest packet then.
			want := r.lastTS + uint32(ntp.Sub(r.lastAt).Seconds()*float64(clock))
			if d := int32(r.sr.RTPTime - want); d < -int32(clock/10) || d > int32(clock/10) {
				t.Errorf("ssrc %x: the report's RTP time is %.3f s off the stream's timestamps", ssrc, float64(d)/float64(clock))
			}
		}
		first, last := reports[0].sr, reports[len(reports)-1].sr
		if d := rtpSeconds(first, last, clock) - ntpSeconds(first, last); d < -0.1 || d > 0.1 {
			t.Errorf("ssrc %x (clock %d Hz): RTP time advanced %.3f s more than NTP time over %.1f s",
				ssrc, clock, d, ntpSeconds(first, last))
		}
	}
	rec.mu.Unlock()

	// After the media stops: two reports in a row with the same count say
	// nothing is in flight any more; the last counts every packet the
	// subscriber received, and maps the time exactly as the one before.
	am.Stop()
	rec.wait(t, "two reports without new packets per stream", 15*time.Second, func() bool {
		for _, ssrc := range ssrcs {
			r := rec.reports[ssrc]
			if len(r) < 2 || r[len(r)-1].sr.PacketCount != r[len(r)-2].sr.PacketCount {
				return false
			}
		}
		return true
	})
	rec.mu.Lock()
	received := 0
	var seqs []uint16
	for _, ssrc := range ssrcs {
		reports, s := rec.reports[ssrc], rec.streams[ssrc]
		prev, last := reports[len(reports)-2].sr, reports[len(reports)-1].sr
		if last.PacketCount != s.packets || last.OctetCount != s.octets {
			t.Errorf("ssrc %x: the report counts %d packets and %d octets, the subscriber received %d and %d",
				ssrc, last.PacketCount, last.OctetCount, s.packets, s.octets)
		}
		if d := rtpSeconds(prev, last, s.clock) - ntpSeconds(prev, last); d < -0.002 || d > 0.002 {
			t.Errorf("ssrc %x (clock %d Hz): RTP time advanced %.4f s more than NTP time between two reports", ssrc, s.clock, d)
		}
		// Once a second, from one source: as many reports as seconds passed.
		if span := ntpSeconds(reports[0].sr, last); float64(len(reports)-1) > span+1 {
			t.Errorf("ssrc %x: %d reports in %.1f s", ssrc, len(reports), span)
		}
		received += int(s.packets)
		seqs = append(seqs, s.twcc...)
		t.Logf("ssrc %x (clock %d Hz): %d packets, %d octets, %d reports", ssrc, s.clock, s.packets, s.octets, len(reports))
	}
	rec.mu.Unlock()

	// One transport-wide sequence for both streams, each number once.
	est := (*part.bwe.Load()).(*bwe.Estimator)
	slices.Sort(seqs)
	distinct := slices.Compact(slices.Clone(seqs))
	if n := int(est.Numbered()); len(seqs) != received || n != received || len(distinct) != received ||
		distinct[0] != 0 || int(distinct[len(distinct)-1]) != received-1 {
		t.Fatalf("%d packets received, %d with a transport-wide number, %d numbered by the estimator, %d distinct numbers (%v)",
			received, len(seqs), n, len(distinct), distinct[:min(len(distinct), 3)])
	}
	// The subscriber's TWCC feedback acknowledges them to the estimator:
	// nearly all, since one that arrives after a later number (the two
	// streams are numbered by two publisher goroutines) may have been
	// reported lost already.
	deadline := time.Now().Add(10 * time.Second)
	for est.Acked() < uint64(received-received/50) {
		if time.Now().After(deadline) {
			t.Fatalf("the estimator heard of %d of %d packets from the subscriber's feedback", est.Acked(), received)
		}
		// Feedback goes every 100 ms; wait for one more report to pass.
		n := rec.count()
		rec.wait(t, "another sender report", 5*time.Second, func() bool { return rec.total > n })
	}
	t.Logf("numbered %d, acknowledged %d", est.Numbered(), est.Acked())
	// On the direct path, not one of them passed pion's local-stream chain.
	sent, chained := part.direct.sent.Load(), part.direct.chained.Load()
	if !passive && (sent != uint64(received) || chained != 0) || passive && sent != 0 {
		t.Errorf("%d of %d packets went the direct way, %d of them down pion's chain", sent, received, chained)
	}
}

// wallClockWriter stamps each packet with the time since start at the
// codec's clock rate (48 kHz audio, 90 kHz video), as a sender whose
// capture runs in real time does.
type wallClockWriter struct {
	confclient.RTPWriter
	start time.Time
}

func (w wallClockWriter) WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error {
	rate := int64(90000)
	if kind == webrtc.RTPCodecTypeAudio {
		rate = 48000
	}
	p.Timestamp = uint32(int64(time.Since(w.start)) * rate / 1e9)
	return w.RTPWriter.WriteRTP(kind, layer, p)
}

// rtpRecorder is an interceptor on a client's PeerConnection recording
// each remote stream's packets as read (count, payload octets, the
// transport-wide sequence numbers, the newest timestamp and when it came)
// and every sender report (once per SSRC and NTP time), with what had
// been received of its stream when it came.
type rtpRecorder struct {
	interceptor.NoOp

	mu      sync.Mutex
	cond    *sync.Cond
	streams map[uint32]*recordedStream
	reports map[uint32][]recordedReport
	total   int // reports recorded
}

type recordedStream struct {
	clock           uint32
	twccID          uint8
	packets, octets uint32
	twcc            []uint16
	lastTS          uint32
	lastAt          time.Time
}

type recordedReport struct {
	sr      rtcp.SenderReport
	at      time.Time // when it was read
	packets uint32    // packets of its stream received by then
	lastTS  uint32    // the newest timestamp by then, and when it came
	lastAt  time.Time
}

func newRTPRecorder() *rtpRecorder {
	r := &rtpRecorder{streams: map[uint32]*recordedStream{}, reports: map[uint32][]recordedReport{}}
	r.cond = sync.NewCond(&r.mu)
	return r
}

// option adds r to a confclient.Peer's interceptors.
func (r *rtpRecorder) option(_ *webrtc.MediaEngine, reg *interceptor.Registry) error {
	reg.Add(rtpRecorderFactory{r})
	return nil
}

type rtpRecorderFactory struct{ r *rtpRecorder }

func (f rtpRecorderFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.r, nil }

func (r *rtpRecorder) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	s := &recordedStream{clock: info.ClockRate}
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			s.twccID = uint8(e.ID)
		}
	}
	r.mu.Lock()
	r.streams[info.SSRC] = s
	r.mu.Unlock()
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := reader.Read(b, a)
		if err != nil {
			return n, a, err
		}
		var h rtp.Header
		hl, perr := h.Unmarshal(b[:n])
		if perr != nil {
			return n, a, err
		}
		payload := n - hl
		if h.Padding {
			payload -= int(b[n-1])
		}
		r.mu.Lock()
		s.packets++
		s.octets += uint32(payload)
		if ext := h.GetExtension(s.twccID); s.twccID != 0 && len(ext) == 2 {
			s.twcc = append(s.twcc, uint16(ext[0])<<8|uint16(ext[1]))
		}
		if s.packets == 1 || int32(h.Timestamp-s.lastTS) > 0 {
			s.lastTS, s.lastAt = h.Timestamp, time.Now()
		}
		r.mu.Unlock()
		return n, a, err
	})
}

func (r *rtpRecorder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := reader.Read(b, a)
		if err != nil {
			return n, a, err
		}
		pkts, perr := rtcp.Unmarshal(b[:n])
		if perr != nil {
			return n, a, err
		}
		now := time.Now()
		r.mu.Lock()
		for _, p := range pkts {
			sr, ok := p.(*rtcp.SenderReport)
			if !ok || slices.ContainsFunc(r.reports[sr.SSRC], func(x recordedReport) bool { return x.sr.NTPTime == sr.NTPTime }) {
				continue
			}
			rr := recordedReport{sr: *sr, at: now}
			if s := r.streams[sr.SSRC]; s != nil {
				rr.packets, rr.lastTS, rr.lastAt = s.packets, s.lastTS, s.lastAt
			}
			r.reports[sr.SSRC] = append(r.reports[sr.SSRC], rr)
			r.total++
		}
		r.cond.Broadcast()
		r.mu.Unlock()
		return n, a, err
	})
}

// count is how many reports r has recorded.
func (r *rtpRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total
}

// wait waits until cond (called with r.mu held) holds, failing t after d.
func (r *rtpRecorder) wait(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	stop := time.AfterFunc(d, func() {
		r.mu.Lock()
		r.cond.Broadcast()
		r.mu.Unlock()
	})
	defer stop.Stop()
	r.mu.Lock()
	defer r.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, r.dumpLocked())
		}
		r.cond.Wait()
	}
}

func (r *rtpRecorder) dumpLocked() string {
	s := ""
	for ssrc, st := range r.streams {
		s += fmt.Sprintf("\n  ssrc %x: %d packets, %d reports", ssrc, st.packets, len(r.reports[ssrc]))
	}
	return s
}

// ntpToTime is the time of a 64-bit NTP timestamp.
func ntpToTime(ntp uint64) time.Time {
	const unixToNTP = 2_208_988_800
	sec := int64(ntp>>32) - unixToNTP
	ns := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return time.Unix(sec, ns)
}

// ntpSeconds is the NTP time from report a to report b, in seconds.
func ntpSeconds(a, b rtcp.SenderReport) float64 {
	return ntpToTime(b.NTPTime).Sub(ntpToTime(a.NTPTime)).Seconds()
}

// rtpSeconds is the RTP time from report a to report b, in seconds at
// the clock rate.
func rtpSeconds(a, b rtcp.SenderReport, clock uint32) float64 {
	return float64(int32(b.RTPTime-a.RTPTime)) / float64(clock)
}

// TestSenderReportsForOtherTracks: a local track that does not write
// through a sendStream (here pion's TrackLocalStaticRTP) is counted by
// sendPath's writer in its interceptor chain and reported on too.
func TestSenderReportsForOtherTracks(t *testing.T) {
	svc, err := New(Config{Domain: "conference.localhost", UDPAddr: "127.0.0.1:0", TCPAddr: "", IncludeLoopback: true})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	api, err := svc.newAPI(newRecvFeedback(), newSendPath(nil, false))
	if err != nil {
		t.Fatal(err)
	}
	spc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	rec := newRTPRecorder()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	reg := &interceptor.Registry{}
	if err := rec.option(m, reg); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	cpc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg),
		webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer func() { _ = cpc.Close(); _ = spc.Close() }()
	cpc.OnTrack(func(tr *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := r.ReadRTCP(); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 1500)
		for {
			if _, _, err := tr.Read(buf); err != nil {
				return
			}
		}
	})
	track, err := webrtc.NewTrackLocalStaticRTP(confclient.Opus, "a", "s")
	if err != nil {
		t.Fatal(err)
	}
	tr, err := spc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		t.Fatal(err)
	}
	connectBench(t, spc, cpc, tr.Sender())
	const packets, size = 50, 40
	for i := range packets {
		if err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 960)},
			Payload: make([]byte, size)}); err != nil {
			t.Fatal(err)
		}
	}
	rec.wait(t, "a sender report of every packet", 10*time.Second, func() bool {
		for _, rs := range rec.reports {
			if sr := rs[len(rs)-1].sr; sr.PacketCount == packets && sr.OctetCount == packets*size {
				return true
			}
		}
		return false
	})
}

// droppingWriter is pion's writer for a stream whose chain is not set up
// yet: it takes nothing and reports neither bytes nor an error.
type droppingWriter struct{ drop bool }

func (w *droppingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	if w.drop {
		return 0, nil
	}
	return h.MarshalSize() + len(payload), nil
}

// TestSenderReportCountsOnlyWhatPionTook: a packet written in the moment
// between a subscription's Bind and pion setting up its sender (pion
// drops it without an error) is not in the sender report's counts, so
// the report matches what the subscriber can have received.
func TestSenderReportCountsOnlyWhatPionTook(t *testing.T) {
	w := &droppingWriter{drop: true}
	s := &sendStream{path: newSendPath(nil, false), ssrc: 1, clock: 90000, next: w}
	h := &rtp.Header{Version: 2, SSRC: 1, SequenceNumber: 7, Timestamp: 900}
	if _, err := s.WriteRTP(h, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if sr := s.report(time.Now(), nanotime()); sr != nil {
		t.Fatalf("a packet pion dropped is reported: %d packets, %d octets", sr.PacketCount, sr.OctetCount)
	}
	w.drop = false
	h.SequenceNumber++
	if _, err := s.WriteRTP(h, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if sr := s.report(time.Now(), nanotime()); sr == nil || sr.PacketCount != 1 || sr.OctetCount != 100 {
		t.Fatalf("after one packet sent: %+v, want 1 packet of 100 octets", sr)
	}
}
