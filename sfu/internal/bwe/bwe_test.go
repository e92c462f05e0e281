package bwe

import (
	"math"
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

const (
	testMin     = 100_000
	testMax     = 20_000_000
	testInitial = 2_500_000
	pktSize     = 1200
)

// link simulates the path to one subscriber: the estimator's sends, a
// bottleneck of capacity bits/s with a FIFO queue (0: no bottleneck),
// a fixed propagation delay, every lossEvery-th packet lost (0: none),
// and the subscriber's TWCC feedback every 100 ms, built by pion's
// recorder (the one pion receivers send).
type link struct {
	t         *testing.T
	e         *Estimator
	rec       *twcc.Recorder
	now       int64 // server clock, ns
	clockSkew int64 // subscriber clock − server clock, ns
	delay     int64 // propagation, ns
	capacity  float64
	lossEvery int
	queueFree int64 // when the bottleneck is free again, ns
	sent      int
	nextFB    int64
	nextSend  float64
}

func newLink(t *testing.T) *link {
	return &link{
		t: t, e: New(testInitial, testMin, testMax), rec: twcc.NewRecorder(1),
		now: 1e9, clockSkew: 12_345e9, delay: 20e6, nextFB: 1e9 + 100e6,
	}
}

// run sends at rate bits/s for d ns, giving feedback every 100 ms, and
// calls check (if not nil) after each feedback.
func (l *link) run(rate float64, d int64, check func()) {
	end := l.now + d
	gap := pktSize * 8 / rate * 1e9
	if l.nextSend < float64(l.now) {
		l.nextSend = float64(l.now)
	}
	for l.now < end {
		for l.nextSend <= float64(l.now) {
			seq := l.e.Sent(pktSize, l.now)
			l.sent++
			if l.lossEvery == 0 || l.sent%l.lossEvery != 0 {
				arr := l.now + l.delay
				if l.capacity > 0 {
					start := max(l.now, l.queueFree)
					l.queueFree = start + int64(pktSize*8/l.capacity*1e9)
					arr = l.queueFree + l.delay
				}
				l.rec.Record(1, seq, (arr+l.clockSkew)/1000)
			}
			l.nextSend += gap
		}
		if l.now >= l.nextFB {
			l.nextFB += 100e6
			for _, p := range l.rec.BuildFeedbackPacket() {
				b, err := p.Marshal()
				if err != nil {
					l.t.Fatal(err)
				}
				l.e.Feedback(b, l.now+l.delay)
			}
			if check != nil {
				check()
			}
		}
		l.now += 1e6
	}
}

func (l *link) inBounds() {
	l.t.Helper()
	if b := l.e.TargetBitrate(); b < testMin || b > testMax {
		l.t.Fatalf("estimate %d outside [%d, %d]", b, testMin, testMax)
	}
}

func TestCleanLinkGrowsToMax(t *testing.T) {
	l := newLink(t)
	last := l.e.TargetBitrate()
	l.run(1e6, 2e9, func() {
		if b := l.e.TargetBitrate(); b < last {
			t.Fatalf("the estimate fell on a clean link: %d after %d", b, last)
		}
		last = l.e.TargetBitrate()
	})
	// About 8 % a second.
	if b, lo, hi := l.e.TargetBitrate(), testInitial*1.12, testInitial*1.18; float64(b) < lo || float64(b) > hi {
		t.Fatalf("after 2 s clean: %d, want %.0f–%.0f", b, lo, hi)
	}
	l.run(1e6, 40e9, func() { l.inBounds() })
	if b := l.e.TargetBitrate(); b != testMax {
		t.Fatalf("after 42 s clean: %d, want the maximum %d", b, testMax)
	}
}

func TestLossDecreases(t *testing.T) {
	l := newLink(t)
	l.lossEvery = 5 // 20 %
	l.run(2e6, 3e9, func() { l.inBounds() })
	// 0.85 × the 1.6 Mbit/s that arrives.
	if b := float64(l.e.TargetBitrate()); b > 0.85*1.6e6*1.05 || b < 0.85*1.6e6*0.9 {
		t.Fatalf("after 3 s at 20 %% loss: %.0f, want about %.0f", b, 0.85*1.6e6)
	}
}

func TestModerateLossHolds(t *testing.T) {
	l := newLink(t)
	l.lossEvery = 20 // 5 %
	l.run(2e6, 5e9, nil)
	if b := l.e.TargetBitrate(); b != testInitial {
		t.Fatalf("after 5 s at 5 %% loss: %d, want it held at %d", b, testInitial)
	}
}

func TestDelayGrowthDecreases(t *testing.T) {
	l := newLink(t)
	l.capacity = 1e6 // half of what is sent: the queue grows, nothing is lost
	l.run(2e6, 3e9, func() { l.inBounds() })
	if b := float64(l.e.TargetBitrate()); b > 0.85*1e6*1.1 {
		t.Fatalf("after 3 s of a growing queue: %.0f, want about %.0f", b, 0.85*1e6)
	}
}

func TestSteadyQueueDoesNotDecrease(t *testing.T) {
	// A bottleneck above the sending rate: delay is constant (20 ms plus
	// the serialisation), so the estimate only grows.
	l := newLink(t)
	l.capacity = 3e6
	l.run(2e6, 5e9, nil)
	if b := float64(l.e.TargetBitrate()); b < testInitial*1.3 {
		t.Fatalf("after 5 s under capacity: %.0f, want it grown from %d", b, testInitial)
	}
}

func TestRecovery(t *testing.T) {
	l := newLink(t)
	l.lossEvery = 5
	l.run(2e6, 3e9, nil)
	low := float64(l.e.TargetBitrate())
	if low >= testInitial {
		t.Fatalf("no decrease at 20 %% loss: %.0f", low)
	}
	l.lossEvery = 0
	l.run(2e6, 5e9, func() { l.inBounds() })
	got, want := float64(l.e.TargetBitrate()), low*math.Pow(increase, 5)
	if got < want*0.95 || got > want*1.05 {
		t.Fatalf("5 s after the loss ended: %.0f, want about %.0f (8 %% a second from %.0f)", got, want, low)
	}
}

func TestNoFeedbackKeepsInitial(t *testing.T) {
	e := New(testInitial, testMin, testMax)
	for i := range 1000 {
		e.Sent(pktSize, int64(i)*1e6)
	}
	if b := e.TargetBitrate(); b != testInitial {
		t.Fatalf("estimate %d without feedback, want %d", b, testInitial)
	}
}

func TestFeedbackMatchesWhatWasSent(t *testing.T) {
	// pion's recorder builds the feedback; the parser must read back
	// exactly what it was told.
	rec := twcc.NewRecorder(1)
	type status struct {
		seq uint16
		at  int64
	}
	var want []status
	at := int64(1_000_000)
	for i := range 300 {
		seq := uint16(65500 + i) // across the wrap
		at += int64(i%7) * 1000
		if i%11 == 3 || (i > 100 && i < 140) {
			continue // lost, alone and in a run
		}
		if i == 200 {
			at -= 3000 // reordered: a negative delta
		}
		rec.Record(1, seq, at)
		want = append(want, status{seq, at})
	}
	var got []status
	var lost int
	for _, p := range rec.BuildFeedbackPacket() {
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		f, ok := parseFeedback(b)
		if !ok {
			t.Fatalf("pion's feedback %v did not parse", p)
		}
		ref := int64(p.(*rtcp.TransportLayerCC).ReferenceTime) * 64_000
		f.walk(func(seq uint16, received bool, a int64) {
			if received {
				got = append(got, status{seq, ref + a})
			} else {
				lost++
			}
		})
	}
	if len(got) != len(want) {
		t.Fatalf("%d received statuses, want %d", len(got), len(want))
	}
	for i := range want {
		// pion rounds arrival times to 250 µs.
		if got[i].seq != want[i].seq || got[i].at-want[i].at > 250 || want[i].at-got[i].at > 250 {
			t.Fatalf("status %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if lost != 300-len(want) {
		t.Fatalf("%d lost, want %d", lost, 300-len(want))
	}
}

func TestEachPacketCountsOnce(t *testing.T) {
	e := New(testInitial, testMin, testMax)
	rec := twcc.NewRecorder(1)
	for i := range 50 {
		seq := e.Sent(pktSize, 1e9+int64(i)*1e6)
		if i%2 == 0 {
			rec.Record(1, seq, int64(i)*1000)
		}
	}
	b, err := rtcp.Marshal(rec.BuildFeedbackPacket())
	if err != nil {
		t.Fatal(err)
	}
	e.Feedback(b, 1.1e9)
	recv, lost := e.ivRecv, e.ivLost
	if recv != 25 || lost != 24 { // the last one sent is not reported: nothing came after it
		t.Fatalf("%d received and %d lost, want 25 and 24", recv, lost)
	}
	e.Feedback(b, 1.1e9)
	e.Feedback(append(b, b...), 1.1e9)
	if e.ivRecv != recv || e.ivLost != lost {
		t.Fatalf("feedback repeated: %d received and %d lost, want %d and %d", e.ivRecv, e.ivLost, recv, lost)
	}
}

func TestAllocatesNothing(t *testing.T) {
	e := New(testInitial, testMin, testMax)
	rec := twcc.NewRecorder(1)
	now := int64(1e9)
	var fb []byte
	for i := range 100 {
		now += 1e6
		rec.Record(1, e.Sent(pktSize, now), now/1000)
		if i == 98 {
			var err error
			if fb, err = rtcp.Marshal(rec.BuildFeedbackPacket()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := testing.AllocsPerRun(1000, func() {
		now += 1e6
		e.Sent(pktSize, now)
	}); n != 0 {
		t.Errorf("Sent: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { e.Feedback(fb, now) }); n != 0 {
		t.Errorf("Feedback: %v allocations", n)
	}
}

// BenchmarkSentAndFeedback is the estimator's whole work for one packet:
// Sent, and a 64th of a feedback packet of 64 statuses (one in eight
// lost) read and matched. The feedback packets are built beforehand, by
// pion's recorder, for a whole cycle of sequence numbers.
func BenchmarkSentAndFeedback(b *testing.B) {
	const per = 64
	fbs := make([][]byte, 65536/per)
	for i := range fbs {
		rec := twcc.NewRecorder(1)
		for j := range per + 1 {
			seq := uint16(i*per + j)
			if j%8 != 3 {
				rec.Record(1, seq, int64(i*per+j)*1000)
			}
		}
		var err error
		if fbs[i], err = rtcp.Marshal(rec.BuildFeedbackPacket()); err != nil {
			b.Fatal(err)
		}
	}
	e := New(testInitial, testMin, testMax)
	now := int64(1e9)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		now += 1e6
		e.Sent(pktSize, now)
		if i%per == per-1 {
			e.Feedback(fbs[i/per%len(fbs)], now)
		}
	}
	b.StopTimer()
	if e.Acked() == 0 && b.N > 2*per {
		b.Fatal("no packet acknowledged")
	}
}
