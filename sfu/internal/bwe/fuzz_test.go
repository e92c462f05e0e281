package bwe

import (
	"testing"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
)

// twccPacket builds a TWCC feedback packet by hand: the header, base,
// count and reference time, then body (chunks and deltas) padded to 32
// bits, with the length field right.
func twccPacket(base, count uint16, ref uint32, body ...byte) []byte {
	p := []byte{0x80 | 15, 205, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2,
		byte(base >> 8), byte(base), byte(count >> 8), byte(count),
		byte(ref >> 16), byte(ref >> 8), byte(ref), 0}
	p = append(p, body...)
	for len(p)%4 != 0 {
		p = append(p, 0)
	}
	n := len(p)/4 - 1
	p[2], p[3] = byte(n>>8), byte(n)
	return p
}

// hostileSeeds are feedback packets a hostile subscriber could send.
func hostileSeeds(t testing.TB) map[string][]byte {
	rec := twcc.NewRecorder(1)
	for i := range 40 {
		if i%3 != 0 {
			rec.Record(1, uint16(i), int64(i)*2000)
		}
	}
	valid, err := rtcp.Marshal(rec.BuildFeedbackPacket())
	if err != nil {
		t.Fatal(err)
	}
	withRR, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	withRR = append(withRR, valid...)
	padded := twccPacket(0, 2, 1, 0x20, 0x02, 4, 4) // run of 2 small deltas
	padded = append(padded, 0, 0, 0, 4)
	padded[0] |= 0x20
	padded[3]++
	badPad := twccPacket(0, 1, 1, 0x20, 1, 4)
	badPad[0] |= 0x20
	badPad[len(badPad)-1] = 0xff
	return map[string][]byte{
		"pion":              valid,
		"with RR":           withRR,
		"padded":            padded,
		"empty":             {},
		"header only":       valid[:4],
		"short":             valid[:19],
		"truncated deltas":  valid[:len(valid)-4],
		"length too long":   append([]byte{0x8f, 205, 0xff, 0xff}, valid[4:]...),
		"version 1":         append([]byte{0x4f}, valid[1:]...),
		"count 0":           twccPacket(0, 0, 1, 0x20, 0x01, 4),
		"count huge":        twccPacket(0, 0xffff, 1, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff, 0x3f, 0xff),
		"count at ring":     twccPacket(0, ringSize, 1, 0x1f, 0xff, 0x00, 0x01),
		"run past deltas":   twccPacket(0, 100, 1, 0x20, 100, 4),
		"large deltas":      twccPacket(0, 3, 1, 0x40, 3, 0x7f, 0xff, 0x80, 0x00, 0x7f, 0xff),
		"reserved symbol":   twccPacket(0, 7, 1, 0xff, 0xff),
		"two-bit vector":    twccPacket(5, 7, 1, 0xd9, 0x40, 1, 0x80, 0, 2),
		"one-bit vector":    twccPacket(10, 14, 1, 0xbf, 0xff, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1),
		"chunks missing":    twccPacket(0, 30, 1, 0x20, 0x05),
		"out of range seq":  twccPacket(40000, 5, 1, 0x20, 5, 1, 1, 1, 1, 1),
		"ref jump":          twccPacket(0, 5, 0x7fffff, 0x20, 5, 1, 1, 1, 1, 1),
		"ref max":           twccPacket(0, 5, 0xffffff, 0x20, 5, 0xff, 0xff, 0xff, 0xff, 0xff),
		"padding too large": badPad,
		"zero runs":         twccPacket(0, 1, 1, 0, 0, 0, 0, 0, 0, 0x20, 1, 4),
	}
}

// sentEstimator has sent 60 packets, 1 ms apart from 1 s on.
func sentEstimator() (*Estimator, int64) {
	e := New(testInitial, testMin, testMax)
	now := int64(1e9)
	for range 60 {
		e.Sent(pktSize, now)
		now += 1e6
	}
	return e, now
}

func reported(e *Estimator) int {
	n := 0
	for i := range e.ring {
		if e.ring[i].Load()&reportedBit != 0 {
			n++
		}
	}
	return n
}

func TestHostileFeedback(t *testing.T) {
	// How many of the 60 packets sent each seed reports (received or
	// lost); the others report none.
	want := map[string]int{
		"pion": 38, "with RR": 38, "padded": 2, "two-bit vector": 7, "one-bit vector": 14,
		"count at ring": 60, "zero runs": 1, "large deltas": 3, "run past deltas": 2, "ref jump": 5,
		"ref max": 5,
	}
	for name, b := range hostileSeeds(t) {
		e, now := sentEstimator()
		e.Feedback(b, now)
		if got := reported(e); got != want[name] {
			t.Errorf("%s: %d packets reported, want %d", name, got, want[name])
		}
		// Many times, over several seconds, so that decisions are made.
		for i := range 50 {
			e.Feedback(b, now+int64(i)*100e6)
			if r := e.TargetBitrate(); r < testMin || r > testMax {
				t.Fatalf("%s: estimate %d outside [%d, %d]", name, r, testMin, testMax)
			}
		}
		if r := reported(e); r > 60 {
			t.Fatalf("%s: %d packets reported of 60 sent", name, r)
		}
	}
}

// FuzzFeedback: whatever a subscriber sends as RTCP, the estimator does
// not panic, counts each packet it sent at most once and never one it
// did not send, and keeps the estimate within [min, max]; the parser
// reports no more statuses than the packet claims, in sequence.
func FuzzFeedback(f *testing.F) {
	for _, b := range hostileSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, now := sentEstimator()
		e.Feedback(b, now)
		first := reported(e)
		if first > 60 {
			t.Fatalf("%d packets reported of 60 sent", first)
		}
		for i := 1; i < 20; i++ {
			e.Feedback(b, now+int64(i)*300e6)
			if r := e.TargetBitrate(); r < testMin || r > testMax {
				t.Fatalf("estimate %d outside [%d, %d]", r, testMin, testMax)
			}
		}
		if r := reported(e); r != first {
			t.Fatalf("the same feedback again reported %d packets more", r-first)
		}
		// Every packet within b, as the estimator splits them.
		for len(b) >= 4 {
			n := (int(b[2])<<8 | int(b[3]) + 1) * 4
			if n > len(b) {
				break
			}
			fb, ok := parseFeedback(b[:n])
			b = b[n:]
			if !ok {
				continue
			}
			walked := 0
			next := fb.base
			fb.walk(func(seq uint16, _ bool, _ int64) {
				if seq != next {
					t.Fatalf("status for %d, want %d", seq, next)
				}
				next++
				walked++
			})
			if walked > fb.count || fb.count > ringSize {
				t.Fatalf("%d statuses walked, %d claimed", walked, fb.count)
			}
		}
	})
}
