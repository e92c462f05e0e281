package sfu

import (
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/confclient"
)

// lossyWriter is a publisher's writer that loses one video packet on
// request, as the network would, keeping it so the test can send it
// again; it notes the newest video sequence number written.
type lossyWriter struct {
	confclient.RTPWriter

	mu     sync.Mutex
	arm    bool        // lose the next video packet
	lost   *rtp.Packet // the packet lost
	newest uint16      // the newest video sequence number written
}

func (w *lossyWriter) WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error {
	w.mu.Lock()
	if kind == webrtc.RTPCodecTypeVideo {
		w.newest = p.SequenceNumber
		if w.arm {
			w.arm = false
			w.lost = p.Clone()
			w.mu.Unlock()
			return nil
		}
	}
	w.mu.Unlock()
	return w.RTPWriter.WriteRTP(kind, layer, p)
}

// loseOne loses the next video packet.
func (w *lossyWriter) loseOne() {
	w.mu.Lock()
	w.arm = true
	w.mu.Unlock()
}

// lostSeq is the sequence number of the packet lost, once it is.
func (w *lossyWriter) lostSeq() (uint16, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lost == nil {
		return 0, false
	}
	return w.lost.SequenceNumber, true
}

// resend sends the lost packet after all, as a retransmission on the
// stream's own SSRC.
func (w *lossyWriter) resend() error {
	w.mu.Lock()
	p := w.lost.Clone()
	w.mu.Unlock()
	return w.RTPWriter.WriteRTP(webrtc.RTPCodecTypeVideo, 0, p)
}

// lossyPair is mediaPair (alice and bob publish audio and video to each
// other) with alice's packets written through a lossyWriter.
func lossyPair(t *testing.T, o clientOpts) (alice, bob *testClient, w *lossyWriter) {
	t.Helper()
	alice, bob, a, b := joinedPair(t, o, o)
	w = &lossyWriter{RTPWriter: confclient.NewTrackWriter(a[0], nil, a[1])}
	am := confclient.Publisher{
		Audio: true, VideoLayers: 1, KeyEvery: 1, KeyRequests: alice.plis.Load,
		Payload: func(kind webrtc.RTPCodecType, _, n int, key bool) []byte {
			if kind == webrtc.RTPCodecTypeAudio {
				return opusPayload("alice", n)
			}
			return vp8Payload("alice", n, key)
		},
	}.Start(w)
	bm := bob.sendMedia(b[0], b[1], 1)
	t.Cleanup(func() { am.Stop(); bm.Stop() })
	bob.waitFor("alice's video", 15*time.Second, func() bool {
		r := bob.trackFrom(alice.id, "video/")
		return r != nil && len(r.payloads) > 5
	})
	return alice, bob, w
}

// videoSSRC is the SSRC c sends its video with.
func (c *testClient) videoSSRC() uint32 {
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Kind() == webrtc.RTPCodecTypeVideo && tr.Sender() != nil && tr.Sender().Track() != nil {
			if enc := tr.Sender().GetParameters().Encodings; len(enc) > 0 {
				return uint32(enc[0].SSRC)
			}
		}
	}
	return 0
}

// nacksFor lists the sequence numbers of every NACK for ssrc c received,
// one entry per NACK packet (c.mu held).
func (c *testClient) nacksFor(ssrc uint32) [][]uint16 {
	var out [][]uint16
	for _, p := range c.rtcpIn {
		if n, ok := p.(*rtcp.TransportLayerNack); ok && n.MediaSSRC == ssrc {
			var seqs []uint16
			for _, pair := range n.Nacks {
				seqs = append(seqs, pair.PacketList()...)
			}
			out = append(out, seqs)
		}
	}
	return out
}

// recoveredThenQuiet waits for alice's video packet seq to reach bob, and
// then for 25 more (half a second): it returns how many NACKs for ssrc
// alice had got when the packet arrived, and all she got by the end.
func recoveredThenQuiet(alice, bob *testClient, ssrc uint32, seq uint16) (asked int, all [][]uint16) {
	want := string(vp8Payload("alice", int(seq), true))
	bob.waitFor("the retransmission of "+strconv.Itoa(int(seq)), 5*time.Second, func() bool {
		for _, p := range bob.trackFrom(alice.id, "video/").payloads {
			if string(p) == want {
				return true
			}
		}
		return false
	})
	alice.mu.Lock()
	asked = len(alice.nacksFor(ssrc))
	alice.mu.Unlock()
	r := bob.trackFrom(alice.id, "video/")
	bob.mu.Lock()
	n := len(r.payloads)
	bob.mu.Unlock()
	bob.waitFor("more video", 5*time.Second, func() bool { return len(r.payloads) >= n+25 })
	alice.mu.Lock()
	defer alice.mu.Unlock()
	return asked, alice.nacksFor(ssrc)
}

var recvPaths = []struct {
	name string
	o    clientOpts
}{
	{"direct-inline", clientOpts{}},
	{"direct-queued", clientOpts{queued: true}},
	{"pion", clientOpts{passive: true}},
}

// TestPublisherLossIsNACKed: a publisher that loses a video packet gets
// NACKs from the SFU for exactly that packet, on each of the ways a
// publisher's packets come in; its retransmission reaches the subscriber
// and the NACKs stop. It fails without the SFU's NACKs (recvFeedback).
func TestPublisherLossIsNACKed(t *testing.T) {
	for _, c := range recvPaths {
		t.Run(c.name, func(t *testing.T) {
			alice, bob, w := lossyPair(t, c.o)
			ssrc := alice.videoSSRC()
			w.loseOne()
			var seq uint16
			alice.waitFor("a NACK", 5*time.Second, func() bool {
				var ok bool
				seq, ok = w.lostSeq()
				return ok && len(alice.nacksFor(ssrc)) > 0
			})
			alice.mu.Lock()
			for _, n := range alice.nacksFor(ssrc) {
				if len(n) != 1 || n[0] != seq {
					t.Errorf("NACK for %v, want exactly %d", n, seq)
				}
			}
			alice.mu.Unlock()
			if err := w.resend(); err != nil {
				t.Fatal(err)
			}
			asked, got := recoveredThenQuiet(alice, bob, ssrc, seq)
			if len(got) != asked {
				t.Fatalf("NACKs went on after the retransmission arrived: %v", got)
			}
			if asked > 2 {
				t.Fatalf("%d NACKs before the retransmission, sent at once", asked)
			}
		})
	}
}

// TestPublisherLossNACKedAtMostTries: a packet that never comes is asked
// for nackTries times, and then no more.
func TestPublisherLossNACKedAtMostTries(t *testing.T) {
	alice, bob, w := lossyPair(t, clientOpts{})
	ssrc := alice.videoSSRC()
	w.loseOne()
	alice.waitFor(strconv.Itoa(nackTries)+" NACKs", 10*time.Second, func() bool { return len(alice.nacksFor(ssrc)) >= nackTries })
	// Then 300 ms more (15 video packets): no more.
	r := bob.trackFrom(alice.id, "video/")
	bob.mu.Lock()
	n := len(r.payloads)
	bob.mu.Unlock()
	bob.waitFor("more video", 10*time.Second, func() bool { return len(r.payloads) >= n+15 })
	seq, _ := w.lostSeq()
	alice.mu.Lock()
	defer alice.mu.Unlock()
	got := alice.nacksFor(ssrc)
	if len(got) != nackTries {
		t.Fatalf("%d NACKs (%v), want %d", len(got), got, nackTries)
	}
	for _, s := range got {
		if len(s) != 1 || s[0] != seq {
			t.Fatalf("NACK for %v, want %d", s, seq)
		}
	}
}

// ntpMiddle is the middle 32 bits of t as an NTP timestamp (the unit of
// LSR and DLSR: 1/65536 s).
func ntpMiddle(t time.Time) uint32 { return uint32(ntpTime(t) >> 16) }

// TestReceiverReportsToPublisher: the SFU's receiver reports about a
// publisher's video count what it sent: the highest sequence number is
// the newest it wrote (within what is in flight: 10 packets, 200 ms), a
// packet it lost is counted lost, each report's fraction lost is exactly
// the losses over the packets expected since the one before, and LSR and
// DLSR point at its latest sender report (the round trip they give on
// loopback is within 100 ms of none). On each way a publisher's packets
// and RTCP come in.
func TestReceiverReportsToPublisher(t *testing.T) {
	for _, c := range recvPaths {
		t.Run(c.name, func(t *testing.T) {
			alice, _, w := lossyPair(t, c.o)
			ssrc := alice.videoSSRC()
			type seen struct {
				rep    rtcp.ReceptionReport
				at     time.Time
				newest uint16
			}
			var mu sync.Mutex
			var reports []seen
			alice.mu.Lock()
			from := len(alice.rtcpIn)
			alice.mu.Unlock()
			collect := func() {
				alice.mu.Lock()
				defer alice.mu.Unlock()
				for _, p := range alice.rtcpIn[from:] {
					if rr, ok := p.(*rtcp.ReceiverReport); ok {
						for _, b := range rr.Reports {
							mu.Lock()
							// The compound packet reaches each of alice's
							// senders it reports on: keep one of each.
							if b.SSRC == ssrc && (len(reports) == 0 || reports[len(reports)-1].rep != b) {
								reports = append(reports, seen{rep: b})
							}
							mu.Unlock()
						}
					}
				}
				from = len(alice.rtcpIn)
			}
			// Note the time and the newest sequence number written as each
			// report arrives.
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					case <-time.After(2 * time.Millisecond):
					}
					mu.Lock()
					n := len(reports)
					mu.Unlock()
					collect()
					mu.Lock()
					w.mu.Lock()
					for i := n; i < len(reports); i++ {
						reports[i].at, reports[i].newest = time.Now(), w.newest
					}
					w.mu.Unlock()
					mu.Unlock()
				}
			}()
			w.loseOne()
			deadline := time.Now().Add(10 * time.Second)
			for {
				mu.Lock()
				k := len(reports)
				lostSeen := k > 0 && reports[k-1].rep.TotalLost > 0
				mu.Unlock()
				if lostSeen && k >= 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d reports, the last %+v", k, reports)
				}
				time.Sleep(50 * time.Millisecond)
			}
			close(stop)
			<-done
			for i, s := range reports {
				r := s.rep
				if d := s.newest - uint16(r.LastSequenceNumber); d > 10 {
					t.Errorf("report %d: highest sequence number %d, the publisher had written %d", i, uint16(r.LastSequenceNumber), s.newest)
				}
				if r.TotalLost > 1 {
					t.Errorf("report %d: %d lost, the publisher lost 1", i, r.TotalLost)
				}
				if i > 0 {
					p := reports[i-1].rep
					expected := r.LastSequenceNumber - p.LastSequenceNumber
					lost := r.TotalLost - p.TotalLost
					if want := uint8(lost * 256 / max(expected, 1)); r.FractionLost != want {
						t.Errorf("report %d: fraction lost %d, want %d (%d of %d)", i, r.FractionLost, want, lost, expected)
					}
				}
				if r.LastSenderReport == 0 {
					if i > 0 {
						t.Errorf("report %d: no LSR", i)
					}
					continue
				}
				if rtt := int64(ntpMiddle(s.at)) - int64(r.LastSenderReport) - int64(r.Delay); rtt < -6554 || rtt > 6554 {
					t.Errorf("report %d: the round trip from LSR %x and DLSR %d is %d/65536 s", i, r.LastSenderReport, r.Delay, rtt)
				}
				if r.Delay > 2<<16 {
					t.Errorf("report %d: DLSR %d, more than the time between sender reports", i, r.Delay)
				}
			}
			if last := reports[len(reports)-1].rep; last.TotalLost != 1 {
				t.Errorf("the last report counts %d lost, want 1", last.TotalLost)
			}
		})
	}
}

// lossyNet is a client's network that loses one outgoing RTP packet on
// request: the next one of an SSRC (the fixed header is in the clear in
// SRTP), below everything pion does, so the client's NACK responder
// still has it and retransmits it (over RTX) when asked.
type lossyNet struct {
	transport.Net

	mu   sync.Mutex
	ssrc uint32 // lose the next packet of this SSRC; 0: none
	seq  int    // the sequence number lost; -1: none yet
}

func newLossyNet(t *testing.T) *lossyNet {
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	return &lossyNet{Net: n, seq: -1}
}

func (n *lossyNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{UDPConn: c, n: n}, nil
}

// loseNext loses the next packet of ssrc.
func (n *lossyNet) loseNext(ssrc uint32) {
	n.mu.Lock()
	n.ssrc = ssrc
	n.mu.Unlock()
}

// lost is the sequence number of the packet lost, once it is.
func (n *lossyNet) lost() (uint16, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return uint16(n.seq), n.seq >= 0
}

func (n *lossyNet) drop(p []byte) bool {
	// RTP (not RTCP: payload types 192-223 with the marker bit).
	if len(p) < 12 || p[0]>>6 != 2 || p[1] >= 192 && p[1] <= 223 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ssrc == 0 || binary.BigEndian.Uint32(p[8:12]) != n.ssrc {
		return false
	}
	n.ssrc = 0
	n.seq = int(binary.BigEndian.Uint16(p[2:4]))
	return true
}

type lossyConn struct {
	transport.UDPConn
	n *lossyNet
}

func (c *lossyConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.n.drop(p) {
		return len(p), nil
	}
	return c.UDPConn.WriteTo(p, addr)
}

func (c *lossyConn) WriteToUDP(p []byte, addr *net.UDPAddr) (int, error) {
	if c.n.drop(p) {
		return len(p), nil
	}
	return c.UDPConn.WriteToUDP(p, addr)
}

// TestPublisherRTXReachesSubscriber: a video packet the network loses
// on its way from a publisher is NACKed by the SFU, retransmitted by the
// publisher's stack over RTX, and reaches the subscriber, on each of the
// ways a publisher's packets come in; the SFU then asks for it no more.
// (Delivered inline, the retransmission was lost before rtxSink: pion
// hands RTX out only through the stream's Read, where the inline
// stream's reader waits.)
func TestPublisherRTXReachesSubscriber(t *testing.T) {
	for _, c := range recvPaths {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			lossy := newLossyNet(t)
			ao := o
			ao.net = lossy
			alice, bob, stop := mediaPairOf(t, 1, ao, o)
			defer stop()
			ssrc := alice.videoSSRC()
			lossy.loseNext(ssrc)
			var seq uint16
			alice.waitFor("a NACK", 5*time.Second, func() bool {
				var ok bool
				seq, ok = lossy.lost()
				return ok && len(alice.nacksFor(ssrc)) > 0
			})
			// The SFU saw it recovered: no more NACKs.
			asked, got := recoveredThenQuiet(alice, bob, ssrc, seq)
			if len(got) != asked || asked > 2 {
				t.Fatalf("NACKs %v: %d before the retransmission came, %d in all", got, asked, len(got))
			}
		})
	}
}
