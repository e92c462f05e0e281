package recvstat

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/pion/rtcp"
)

const ms = int64(1e6)

// missing lists the sequence numbers the pairs ask for.
func missing(pairs []rtcp.NackPair) []uint16 {
	var out []uint16
	for _, p := range pairs {
		out = append(out, p.PacketList()...)
	}
	return out
}

func TestNACKsAskForWhatIsMissing(t *testing.T) {
	for _, start := range []uint16{1000, 65530} { // and across the wrap
		s := New(90000, true)
		lost := []uint16{start + 4, start + 6, start + 23, start + 24}
		now := int64(0)
		for i := uint16(0); i < 30; i++ {
			if !slices.Contains(lost, start+i) {
				s.Received(start+i, 0, now, 10*ms)
			}
		}
		if got := s.NACKs(nil, now+9*ms, 100*ms, 3); len(got) != 0 {
			t.Fatalf("start %d: asked for %v before the delay", start, missing(got))
		}
		pairs := s.NACKs(nil, now+10*ms, 100*ms, 3)
		want := []rtcp.NackPair{{PacketID: start + 4, LostPackets: 0b10}, {PacketID: start + 23, LostPackets: 0b1}}
		if !slices.Equal(pairs, want) {
			t.Fatalf("start %d: pairs %v, want %v", start, pairs, want)
		}
		if got := s.NACKs(nil, now+50*ms, 100*ms, 3); len(got) != 0 {
			t.Fatalf("start %d: asked again for %v before the retry interval", start, missing(got))
		}
		// One arrives late: it is not asked for again.
		s.Received(start+6, 0, now+60*ms, 10*ms)
		got := missing(s.NACKs(nil, now+110*ms, 100*ms, 3))
		if !slices.Equal(got, []uint16{start + 4, start + 23, start + 24}) {
			t.Fatalf("start %d: second round %v", start, got)
		}
		if got := missing(s.NACKs(nil, now+210*ms, 100*ms, 3)); len(got) != 3 {
			t.Fatalf("start %d: third round %v", start, got)
		}
		if got := s.NACKs(nil, now+310*ms, 100*ms, 3); len(got) != 0 {
			t.Fatalf("start %d: asked a fourth time for %v", start, missing(got))
		}
		if s.base != s.end {
			t.Fatalf("start %d: log not settled: base %d, end %d", start, s.base, s.end)
		}
	}
}

func TestNACKsWithinTheWindow(t *testing.T) {
	s := New(90000, true)
	s.Received(0, 0, 0, 0)
	// A jump of 2000: only the newest Window-1 before it may be asked for.
	s.Received(2000, 0, 0, 0)
	got := missing(s.NACKs(make([]rtcp.NackPair, 0, Window/16+1), 1, 100*ms, 3))
	if len(got) != Window-1 || got[0] != 2000-(Window-1) || got[len(got)-1] != 1999 {
		t.Fatalf("asked for %d numbers, %d to %d; want %d, %d to 1999", len(got), got[0], got[len(got)-1], Window-1, 2000-(Window-1))
	}
	// Every other one missing: the pairs still fit Window/16+1.
	s = New(90000, true)
	for i := uint16(0); i < 3*Window; i += 2 {
		s.Received(i, 0, 0, 0)
	}
	pairs := s.NACKs(make([]rtcp.NackPair, 0, Window/16+1), 1, 100*ms, 3)
	if len(pairs) > Window/16+1 || len(missing(pairs)) != Window/2 {
		t.Fatalf("%d pairs for %d numbers", len(pairs), len(missing(pairs)))
	}
}

func TestNoNACKsWithoutTheLog(t *testing.T) {
	s := New(48000, false)
	s.Received(1, 0, 0, 0)
	s.Received(5, 0, 0, 0)
	if got := s.NACKs(nil, 1e9, 0, 5); len(got) != 0 {
		t.Fatalf("asked for %v", got)
	}
}

func TestReport(t *testing.T) {
	s := New(90000, true)
	if _, ok := s.Report(7, 0); ok {
		t.Fatal("a report before any packet")
	}
	// 65530 .. 65535, 0 .. 13 (20 numbers), 3 lost; one duplicate.
	lost := []uint16{65534, 2, 3}
	seq, now := uint16(65530), int64(0)
	for range 20 {
		if !slices.Contains(lost, seq) {
			s.Received(seq, uint32(now/1e9*90000+now%1e9*90000/1e9), now, 0)
		}
		seq++
		now += 20 * ms
	}
	s.SenderReport(0x0001_0002_0003_0004, 100*ms)
	r, ok := s.Report(7, 100*ms+1500*ms)
	if !ok {
		t.Fatal("no report")
	}
	want := rtcp.ReceptionReport{
		SSRC: 7, FractionLost: 3 * 256 / 20, TotalLost: 3, LastSequenceNumber: 1<<16 + 13,
		Jitter: 0, LastSenderReport: 0x0002_0003, Delay: 3 << 15, // 1.5 s in 1/65536 s
	}
	if r != want {
		t.Fatalf("report %+v, want %+v", r, want)
	}
	// The next interval: 10 more, 1 lost, one late arrival of an earlier
	// loss (fraction: 1 of 10, less the late one counted in this
	// interval).
	s.Received(2, 0, now, 0)
	for i := range 10 {
		if i != 4 {
			s.Received(seq, uint32(now/1e9*90000+now%1e9*90000/1e9), now, 0)
		}
		seq++
		now += 20 * ms
	}
	r, _ = s.Report(7, now)
	if r.TotalLost != 3 || r.FractionLost != 0 || r.LastSequenceNumber != 1<<16+23 {
		t.Fatalf("second report %+v: want 3 lost in all, fraction 0 (1 lost, 1 late), highest %d", r, 1<<16+23)
	}
	// Nothing new: fraction 0.
	r, _ = s.Report(7, now)
	if r.FractionLost != 0 {
		t.Fatalf("third report %+v", r)
	}
}

func TestJitter(t *testing.T) {
	s := New(90000, false)
	// Sent every 20 ms (1,800 ticks), arriving every 20 ms but every
	// other one 10 ms late: each transit difference is 900 ticks, and the
	// jitter converges on it (J += (|D| - J)/16).
	for i := range 400 {
		now := int64(i) * 20 * ms
		if i%2 == 1 {
			now += 10 * ms
		}
		s.Received(uint16(i), uint32(i*1800), now, 0)
	}
	r, _ := s.Report(1, 0)
	if r.Jitter < 890 || r.Jitter > 900 {
		t.Fatalf("jitter %d, want about 900", r.Jitter)
	}
}

func TestRestart(t *testing.T) {
	s := New(90000, true)
	for i := range uint16(10) {
		s.Received(100+i, 0, 0, 0)
	}
	// A jump of 30,000 once is ignored; twice in sequence is a restart.
	s.Received(30000, 0, 0, 0)
	if r, _ := s.Report(1, 0); r.LastSequenceNumber != 109 || r.TotalLost != 0 {
		t.Fatalf("after one jump: %+v", r)
	}
	s.Received(30001, 0, 0, 0)
	s.Received(30002, 0, 0, 0)
	if r, _ := s.Report(1, 0); r.LastSequenceNumber != 30002 || r.TotalLost != 0 {
		t.Fatalf("after a restart: %+v", r)
	}
	if got := s.NACKs(nil, 1e9, 0, 5); len(got) != 0 {
		t.Fatalf("asked for %v after a restart", missing(got))
	}
}

// TestHostile feeds random sequence numbers: nothing panics, the log
// stays within its window and a NACK round never needs more than its
// room.
func TestHostile(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	s := New(90000, true)
	buf := make([]rtcp.NackPair, 0, Window/16+1)
	for i := range 200_000 {
		seq := uint16(r.Uint32())
		if r.IntN(2) == 0 {
			seq = s.end + uint16(r.IntN(600)) - 50
		}
		s.Received(seq, r.Uint32(), int64(i)*ms, 0)
		if s.end-s.base >= Window {
			t.Fatalf("log spans %d", s.end-s.base)
		}
		if i%10 == 0 {
			if pairs := s.NACKs(buf[:0], int64(i)*ms, 0, 255); cap(pairs) != cap(buf) {
				t.Fatalf("a NACK round outgrew its room: %d pairs", len(pairs))
			}
		}
		s.Report(1, int64(i)*ms)
	}
}

func BenchmarkReceived(b *testing.B) {
	s := New(90000, true)
	b.ReportAllocs()
	for i := range b.N {
		seq := uint16(i)
		if seq%100 == 7 {
			continue // a loss now and then
		}
		s.Received(seq, uint32(i)*3000, int64(i)*ms, 10*ms)
	}
}

func TestRecovered(t *testing.T) {
	s := New(90000, true)
	for _, seq := range []uint16{1, 2, 4, 5} {
		s.Received(seq, 0, 0, 0)
	}
	s.Recovered(3)
	s.Recovered(6)     // newer than anything received: ignored
	s.Recovered(60000) // far outside the window: ignored
	if got := s.NACKs(nil, 1, 0, 5); len(got) != 0 {
		t.Fatalf("asked for %v after its recovery", missing(got))
	}
	s.Received(8, 0, 0, 0)
	if got := missing(s.NACKs(nil, 1, 0, 5)); !slices.Equal(got, []uint16{6, 7}) {
		t.Fatalf("asked for %v, want [6 7]", got)
	}
	if r, _ := s.Report(1, 0); r.TotalLost != 3 {
		t.Fatalf("%d lost, want 3: a recovery leaves the counts alone", r.TotalLost)
	}
}

// FuzzStream feeds a stream what a publisher chooses: each 5 bytes of
// the input a packet (sequence number, timestamp byte, milliseconds
// since the one before), a recovery, a sender report or a round of
// NACKs. Nothing panics; the log never spans more than its window; a
// round of NACKs fits its room and asks only for numbers inside the
// window that were not received since, each at most tries times.
func FuzzStream(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 1, 0, 5, 0, 0, 1, 3, 0, 0, 0, 0})
	f.Add([]byte{0, 0xff, 0xfe, 0, 0, 0, 0, 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0x80, 1, 0, 0, 3, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, in []byte) {
		const tries = 3
		s := New(90000, true)
		buf := make([]rtcp.NackPair, 0, Window/16+1)
		asked := map[uint16]int{}
		now := int64(0)
		for ; len(in) >= 5; in = in[5:] {
			seq := uint16(in[1])<<8 | uint16(in[2])
			now += int64(in[4]) * ms
			switch in[0] % 4 {
			case 0, 1:
				s.Received(seq, uint32(in[3])<<16, now, 10*ms)
				delete(asked, seq)
			case 2:
				s.Recovered(seq)
				if s.started && s.end-seq < Window {
					delete(asked, seq)
				}
				s.SenderReport(uint64(seq)<<24, now)
			case 3:
				pairs := s.NACKs(buf[:0], now, 50*ms, tries)
				if cap(pairs) != cap(buf) {
					t.Fatalf("a round of NACKs outgrew its room: %d pairs", len(pairs))
				}
				for _, q := range missing(pairs) {
					if s.end-q >= Window || s.has(q) {
						t.Fatalf("asked for %d: end %d, received %v", q, s.end, s.has(q))
					}
					if asked[q]++; asked[q] > tries {
						t.Fatalf("asked for %d %d times", q, asked[q])
					}
				}
				s.Report(1, now)
			}
			if s.started && s.end-s.base >= Window {
				t.Fatalf("the log spans %d..%d", s.base, s.end)
			}
			for q := range asked {
				if s.end-q >= Window {
					delete(asked, q) // out of the window: a new packet if it comes back
				}
			}
		}
	})
}
