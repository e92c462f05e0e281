// Package recvstat keeps what a receiver of one RTP stream must know to
// give its sender feedback: which recent packets are missing, for
// generic NACKs (RFC 4585), and the counts, jitter and sender report
// times of a reception report block (RFC 3550 6.4.1, appendix A).
//
// A Stream is fixed-size (no allocation after New, none per packet,
// whatever the sender sends) and not safe for concurrent use: its owner
// holds a lock. It never writes anything itself.
package recvstat

import (
	"github.com/pion/rtcp"
)

// Window is how many of the newest sequence numbers a Stream remembers
// for NACKs (a power of two).
const Window = 512

// Limits of the sequence number tracking (RFC 3550 A.1).
const (
	maxDropout  = 3000 // a larger jump forward is a restart, or an error
	maxMisorder = 100  // a larger jump back is a restart, or an error
)

// Stream is the receive state of one SSRC.
type Stream struct {
	clock uint32 // RTP clock rate, Hz; 0: no jitter
	nack  bool   // keep the NACK log

	// The sequence numbers (RFC 3550 A.1, without the probation).
	started       bool
	maxSeq        uint16
	cycles        uint32 // sequence number cycles, shifted left 16
	baseSeq       uint32 // extended
	badSeq        uint32 // the sequence number after a large jump; >0xffff: none
	received      uint32 // packets received, duplicates included
	expectedPrior uint32 // at the last report
	receivedPrior uint32

	// The interarrival jitter (RFC 3550 A.8), scaled by 16.
	transit    uint32
	transitSet bool
	jitter     uint32

	// The last sender report.
	lsr   uint32 // the middle 32 bits of its NTP time; 0: none yet
	lsrAt int64  // when it arrived (the caller's clock, ns)

	// The NACK log: for each of the Window newest sequence numbers
	// (modulo Window) whether it arrived, and for a missing one how often
	// it was asked for and when it may be asked for next.
	got   [Window / 64]uint64
	tries [Window]uint8
	due   [Window]int64
	base  uint16 // the oldest sequence number still to ask for (or not yet settled)
	end   uint16 // the newest sequence number received (== maxSeq once started)
}

// New returns the state of a stream with this RTP clock rate (Hz, 0 for
// unknown: then its jitter is reported as 0), keeping the NACK log only
// if nack.
func New(clock uint32, nack bool) *Stream {
	return &Stream{clock: clock, nack: nack, badSeq: 1 << 16}
}

// Received notes a packet with sequence number seq and RTP timestamp ts
// that arrived at now (ns, any monotonic clock the caller keeps for the
// stream). A NACKed packet first becomes due at now+delay.
func (s *Stream) Received(seq uint16, ts uint32, now, delay int64) {
	if !s.started {
		s.started = true
		s.restart(seq)
		s.received = 1
		s.jitterAt(ts, now)
		if s.nack {
			s.setGot(seq)
		}
		return
	}
	udelta := seq - s.maxSeq
	switch {
	case udelta == 0:
		// A duplicate of the newest.
		s.received++
		return
	case udelta < maxDropout:
		// In order, with a gap of udelta-1 allowed.
		if seq < s.maxSeq {
			s.cycles += 1 << 16
		}
		if s.nack {
			s.advance(seq, now+delay)
		}
		s.maxSeq = seq
	case udelta <= 1<<16-maxMisorder:
		// A very large jump: a restart if the next packet follows it.
		if uint32(seq) != s.badSeq {
			s.badSeq = uint32(seq+1) & 0xffff
			return
		}
		s.restart(seq)
		if s.nack {
			s.clearLog(seq)
		}
	default:
		// Late or duplicate: within maxMisorder behind the newest.
		if s.nack && s.end-seq < Window {
			s.setGot(seq)
		}
	}
	s.received++
	s.jitterAt(ts, now)
}

// restart begins the sequence numbers again at seq (RFC 3550 A.1 init_seq).
func (s *Stream) restart(seq uint16) {
	s.baseSeq = uint32(seq)
	s.maxSeq = seq
	s.badSeq = 1 << 16
	s.cycles = 0
	s.received = 0
	s.expectedPrior = 0
	s.receivedPrior = 0
	s.transitSet = false
	s.clearLog(seq)
}

// clearLog empties the NACK log, with seq the newest.
func (s *Stream) clearLog(seq uint16) {
	s.got = [Window / 64]uint64{}
	s.base, s.end = seq, seq
	s.setGot(seq)
}

// advance moves the NACK log's newest sequence number on to seq (newer
// than end by less than maxDropout): the numbers between are missing,
// due at due.
func (s *Stream) advance(seq uint16, due int64) {
	gap := seq - s.end - 1
	from := s.end + 1
	if gap >= Window {
		// Only the newest Window-1 numbers before seq fit in the log.
		from = seq - (Window - 1)
	}
	for i := from; i != seq; i++ {
		k := i % Window
		s.got[k/64] &^= 1 << (k % 64)
		s.tries[k] = 0
		s.due[k] = due
	}
	s.end = seq
	s.setGot(seq)
	if s.end-s.base >= Window {
		s.base = s.end - (Window - 1)
	}
}

func (s *Stream) setGot(seq uint16) {
	k := seq % Window
	s.got[k/64] |= 1 << (k % 64)
}

func (s *Stream) has(seq uint16) bool {
	k := seq % Window
	return s.got[k/64]&(1<<(k%64)) != 0
}

// jitterAt updates the interarrival jitter with a packet stamped ts that
// arrived at now.
func (s *Stream) jitterAt(ts uint32, now int64) {
	if s.clock == 0 {
		return
	}
	// The arrival time in RTP units; only differences matter, so it may
	// wrap.
	sec, ns := now/1e9, now%1e9
	arrival := uint32(sec)*s.clock + uint32(uint64(ns)*uint64(s.clock)/1e9)
	transit := arrival - ts
	if s.transitSet {
		d := int32(transit - s.transit)
		if d < 0 {
			d = -d
		}
		s.jitter += uint32(d) - (s.jitter+8)>>4
	}
	s.transit, s.transitSet = transit, true
}

// NACKs appends to pairs the missing sequence numbers due at now (asked
// for fewer than tries times), as generic NACK pairs, and notes them
// asked for: the next time no sooner than now+retry. A number that
// arrived, or was asked for tries times, is settled and not looked at
// again. pairs needs room for Window/2 pairs not to allocate.
func (s *Stream) NACKs(pairs []rtcp.NackPair, now, retry int64, tries uint8) []rtcp.NackPair {
	if !s.nack || !s.started {
		return pairs
	}
	settled := true
	for i := s.base; i != s.end; i++ {
		k := i % Window
		if s.has(i) || s.tries[k] >= tries {
			if settled {
				s.base = i + 1
			}
			continue
		}
		settled = false
		if now < s.due[k] {
			continue
		}
		s.tries[k]++
		s.due[k] = now + retry
		if n := len(pairs); n > 0 {
			if d := i - pairs[n-1].PacketID; d >= 1 && d <= 16 {
				pairs[n-1].LostPackets |= 1 << (d - 1)
				continue
			}
		}
		pairs = append(pairs, rtcp.NackPair{PacketID: i})
	}
	if settled {
		s.base = s.end
	}
	return pairs
}

// Recovered notes that packet seq arrived by other means (a
// retransmission on another SSRC, RFC 4588): it is not asked for again.
// The counts of the reception report are left alone.
func (s *Stream) Recovered(seq uint16) {
	if s.nack && s.started && s.end-seq < Window {
		s.setGot(seq)
	}
}

// SenderReport notes a sender report of the stream with this NTP time
// that arrived at now.
func (s *Stream) SenderReport(ntp uint64, now int64) {
	s.lsr = uint32(ntp >> 16)
	s.lsrAt = now
}

// Report returns the stream's reception report block at now, and whether
// there is one (a packet has been received). It starts the next
// reporting interval: the fraction lost is since the previous call.
func (s *Stream) Report(ssrc uint32, now int64) (rtcp.ReceptionReport, bool) {
	if !s.started {
		return rtcp.ReceptionReport{}, false
	}
	ext := s.cycles + uint32(s.maxSeq)
	expected := ext - s.baseSeq + 1
	lost := int64(expected) - int64(s.received)
	// The cumulative count is 24 bits, signed; a negative one (more
	// duplicates than losses) is reported as none.
	lost = min(max(lost, 0), 0x7fffff)
	expInt := expected - s.expectedPrior
	recInt := s.received - s.receivedPrior
	s.expectedPrior, s.receivedPrior = expected, s.received
	var fraction uint8
	if lostInt := int64(expInt) - int64(recInt); expInt != 0 && lostInt > 0 {
		fraction = uint8(min(lostInt<<8/int64(expInt), 255))
	}
	var dlsr uint32
	if s.lsr != 0 {
		// In units of 1/65536 s.
		d := max(now-s.lsrAt, 0)
		dlsr = uint32(d/1e9<<16) + uint32(d%1e9<<16/1e9)
	}
	return rtcp.ReceptionReport{
		SSRC:               ssrc,
		FractionLost:       fraction,
		TotalLost:          uint32(lost),
		LastSequenceNumber: ext,
		Jitter:             s.jitter >> 4,
		LastSenderReport:   s.lsr,
		Delay:              dlsr,
	}, true
}
