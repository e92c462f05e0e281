// Package forward holds the per-subscriber forwarding mechanics of the SFU:
// rewriting sequence numbers, timestamps and SSRC so a subscriber sees one
// continuous stream, choosing which simulcast layer reaches it, and fanning
// one publisher packet out to every subscriber without allocating.
package forward

// window is how many recent output sequence numbers a Munger remembers
// to drop duplicates (retransmissions a publisher sends as bandwidth
// probes arrive here as copies of packets already forwarded).
const window = 128

// Munger rewrites the sequence numbers and timestamps of the packets one
// subscriber receives for one track. Packets may come from different
// source streams (simulcast layers) over time; at every switch the output
// continues where it left off: the next sequence number, and a timestamp
// advanced by the wall time since the last packet sent. Packets already
// sent are dropped, and padding-only packets can be dropped without
// leaving a hole in the numbering.
//
// A Munger is not safe for concurrent use.
type Munger struct {
	started   bool
	ssrc      uint32 // source stream forwarded now
	seqOffset uint16
	tsOffset  uint32
	firstSeq  uint16 // first source sequence number after the last switch
	srcMax    uint16 // highest source sequence number since then
	lastSeq   uint16 // highest sequence number sent
	lastTS    uint32 // highest timestamp sent
	lastAt    int64  // when lastTS was sent, in nanoseconds
	sent      [2]uint64
}

// Rewrite maps a source packet (its stream, sequence number, timestamp) to
// the output numbering. now is a monotonic time in nanoseconds; clockRate
// is the codec's RTP clock. It reports false for a packet to drop: one
// already sent, one too old, or one from the old numbering that arrives
// after a switch.
func (m *Munger) Rewrite(ssrc uint32, seq uint16, ts uint32, now int64, clockRate uint32) (uint16, uint32, bool) {
	if !m.started || ssrc != m.ssrc {
		if m.started {
			gap := uint32(1)
			if clockRate > 0 && now > m.lastAt {
				if g := uint64(now-m.lastAt) * uint64(clockRate) / 1e9; g > 1 {
					gap = uint32(g)
				}
			}
			m.seqOffset = m.lastSeq + 1 - seq
			m.tsOffset = m.lastTS + gap - ts
		}
		first := !m.started
		m.started = true
		m.ssrc = ssrc
		m.firstSeq, m.srcMax = seq, seq
		out, ots := seq+m.seqOffset, ts+m.tsOffset
		if first {
			m.sent = [2]uint64{1, 0}
		} else {
			m.advance(out)
		}
		m.lastSeq, m.lastTS, m.lastAt = out, ots, now
		return out, ots, true
	}
	if int16(seq-m.srcMax) > 0 {
		m.srcMax = seq
	}
	// Shortly after a switch, a late packet from before the switch point
	// would collide with the previous stream's numbers.
	if int16(seq-m.firstSeq) < 0 && m.srcMax-m.firstSeq < 0x4000 {
		return 0, 0, false
	}
	out, ots := seq+m.seqOffset, ts+m.tsOffset
	if d := int16(out - m.lastSeq); d > 0 {
		m.advance(out)
		m.lastSeq = out
	} else {
		back := int(-d)
		if back >= window {
			return 0, 0, false
		}
		w, bit := back/64, uint64(1)<<(back%64)
		if m.sent[w]&bit != 0 {
			return 0, 0, false // a duplicate
		}
		m.sent[w] |= bit
	}
	if int32(ots-m.lastTS) > 0 {
		m.lastTS, m.lastAt = ots, now
	}
	return out, ots, true
}

// advance moves the sent window forward so out (newer than lastSeq) is
// its newest entry, and marks it sent.
func (m *Munger) advance(out uint16) {
	d := uint(out - m.lastSeq)
	switch {
	case d >= window:
		m.sent = [2]uint64{}
	case d >= 64:
		m.sent[1] = m.sent[0] << (d - 64)
		m.sent[0] = 0
	default:
		m.sent[1] = m.sent[1]<<d | m.sent[0]>>(64-d)
		m.sent[0] <<= d
	}
	m.sent[0] |= 1
}

// Skip drops source packet seq of the current stream without leaving a
// hole in the output: when it is the next one in order, later packets are
// numbered one lower. It is for packets that carry nothing (padding).
func (m *Munger) Skip(ssrc uint32, seq uint16) {
	if m.started && ssrc == m.ssrc && seq == m.srcMax+1 {
		m.srcMax = seq
		m.seqOffset--
	}
}

// Last returns the last sequence number and timestamp sent.
func (m *Munger) Last() (uint16, uint32) { return m.lastSeq, m.lastTS }
