// Package bwe is the SFU's send-side bandwidth estimator toward one
// subscriber. It numbers every packet sent on the subscriber's connection
// (transport-wide sequence numbers), keeps each one's send time and size
// in a fixed ring, and reads the subscriber's transport-wide congestion
// control feedback (TWCC, draft-holmer-rmcat-transport-wide-cc-extensions-01)
// against that ring: what arrived, what was lost, and how the delay
// between send and arrival grew. From that it keeps an estimate of what
// the path carries, which the SFU uses to choose simulcast layers.
//
// # The rule
//
// Feedback is gathered into intervals of at least 250 ms of arrival time
// (or 1 s of the server's time, when few packets arrive). At the end of
// each, with R the rate the subscriber acknowledged receiving over the
// interval and L the fraction of packets reported lost:
//
//   - L > 10 %, or the delay detector saw sustained delay growth
//     (overuse): decrease to 0.85 × R, never above the estimate it had
//     and never below half of it in one step;
//   - 2 % ≤ L ≤ 10 %, or the delay is falling (a queue draining): hold;
//   - otherwise: increase by 8 % a second (multiplicatively, for the time
//     since the last decision, at most one second's worth at a time).
//
// The estimate always stays within [Min, Max].
//
// The delay detector is GCC's in outline: packets sent within 5 ms form a
// group; for consecutive groups the growth of (arrival − send) deltas is
// accumulated and smoothed, and the slope of a least-squares line through
// the last 20 points is the trend. Overuse is a trend, scaled by the
// number of deltas (at most 60) and a gain of 4, above a threshold that
// adapts to the path's jitter (6–600, starting at 12.5), on two
// consecutive groups 10 ms apart or more, and not falling.
//
// # What it trusts
//
// The feedback comes from the subscriber and is treated as hostile. Only
// packets this estimator sent are counted, each once: a report of a
// sequence number it has no record of (never sent, older than the ring,
// sent more than 10 s ago) or reported already is ignored. A feedback
// packet that claims more statuses than the ring holds, or is malformed,
// is dropped; one read of the connection processes at most 8,192
// statuses. A jump of the reference time of more than 5 s resets the
// delay detector and the interval. Nothing is allocated per packet or per
// feedback. A subscriber can thus move its own estimate anywhere within
// [Min, Max], and nothing else.
package bwe

import (
	"math"
	"sync"
	"sync/atomic"

	"poosms.org/poosms/sfu/internal/rtpx"
)

// The ring of sent packets: 4,096 slots of 8 bytes, 32 KiB per
// connection. A slot packs one packet: its transport-wide sequence number
// (bits 0–15), its size in bytes (16–30), whether feedback reported it
// already (31) and its send time in microseconds, modulo 2³² (32–63). 0
// is an empty slot (a packet's size is at least 1).
const (
	ringBits    = 12
	ringSize    = 1 << ringBits
	ringMask    = ringSize - 1
	sizeShift   = 16
	maxSize     = 1<<15 - 1
	reportedBit = 1 << 31
	timeShift   = 32
)

const (
	// maxStatusesPerRead bounds the work one read of feedback can cause.
	maxStatusesPerRead = 2 * ringSize
	// maxAge is the oldest a packet may be for feedback on it to count, µs.
	maxAge = 10_000_000
	// maxRefJump is the largest jump of the feedback's reference time
	// (64 ms units) taken as the same clock: 5 s.
	maxRefJump = 5_000 / 64

	intervalSpan = 250_000       // µs of arrival time that end an interval
	intervalMax  = 1_000_000_000 // ns of server time that end one too

	lossDecrease = 0.10
	lossHold     = 0.02
	beta         = 0.85 // the decrease: beta × the acknowledged rate
	increase     = 1.08 // the increase, a second

	groupSpan        = 5_000 // µs: packets sent this close form a group
	trendWindow      = 20
	smoothing        = 0.9
	trendGain        = 4
	maxDeltas        = 60
	initialThreshold = 12.5
	minThreshold     = 6
	maxThreshold     = 600
	kUp              = 0.0087
	kDown            = 0.039
	overuseTime      = 10_000 // µs the trend must stay over the threshold
)

// Estimator is one connection's estimator. Sent may be called from any
// number of goroutines; Feedback serialises itself.
type Estimator struct {
	next   atomic.Uint32
	ring   [ringSize]atomic.Uint64
	target atomic.Int64
	acked  atomic.Uint64

	min, max float64

	mu  sync.Mutex // guards the rest
	est float64

	haveRef bool
	rawRef  uint32 // the last reference time, as sent (24 bits)
	ref     int64  // the same, unwrapped, 64 ms units

	started bool
	// The interval being gathered.
	ivStart               int64 // server time it began, ns
	ivRecv, ivLost        int
	ivBytes               int64
	ivFirstArr, ivLastArr int64 // µs
	ivFirstSize           int64
	ivArrivals            bool
	ivOveruse             bool
	lastDecision          int64 // server time, ns
	underuse              bool
	det                   detector
}

// New returns an estimator starting at initial bits/s, kept within
// [min, max].
func New(initial, min, max int) *Estimator {
	e := &Estimator{min: float64(min), max: float64(max)}
	e.est = e.clamp(float64(initial))
	e.target.Store(int64(e.est))
	e.det.reset()
	return e
}

// TargetBitrate is the estimate, bits per second.
func (e *Estimator) TargetBitrate() int { return int(e.target.Load()) }

// Acked is how many of the packets sent feedback reported received.
func (e *Estimator) Acked() uint64 { return e.acked.Load() }

// Numbered is how many packets Sent has numbered (modulo 2^32).
func (e *Estimator) Numbered() uint32 { return e.next.Load() }

// Sent records a packet of size bytes sent at now (a monotonic time in
// ns) and returns the transport-wide sequence number it must carry.
func (e *Estimator) Sent(size int, now int64) uint16 {
	seq := uint16(e.next.Add(1) - 1)
	size = min(max(size, 1), maxSize)
	us := uint32(now / 1000)
	e.ring[seq&ringMask].Store(uint64(us)<<timeShift | uint64(size)<<sizeShift | uint64(seq))
	return seq
}

// Feedback reads one RTCP compound packet from the subscriber (as
// decrypted) at now (ns) and takes the TWCC feedback in it. Everything
// else in it is ignored.
func (e *Estimator) Feedback(buf []byte, now int64) {
	budget := maxStatusesPerRead
	for len(buf) > 0 && budget > 0 {
		kind, pkt, rest, ok := rtpx.NextRTCP(buf)
		if !ok {
			return
		}
		buf = rest
		if kind != rtpx.RTCPTWCC {
			continue
		}
		f, ok := parseFeedback(pkt)
		if !ok || f.count > budget {
			continue
		}
		budget -= f.count
		e.mu.Lock()
		e.apply(&f, now)
		e.mu.Unlock()
	}
}

// apply takes one feedback packet. e.mu is held.
func (e *Estimator) apply(f *feedback, now int64) {
	if !e.started {
		e.started, e.ivStart, e.lastDecision = true, now, now
	}
	if !e.haveRef {
		e.haveRef, e.rawRef, e.ref = true, f.ref, 0
	} else {
		d := int64(int32((f.ref-e.rawRef)<<8) >> 8) // 24-bit difference, signed
		e.rawRef = f.ref
		if d > maxRefJump || d < -maxRefJump {
			// Another clock, or nonsense: start over.
			e.ref = 0
			e.det.reset()
			e.resetInterval(now)
		} else {
			e.ref += d
		}
	}
	base := e.ref * 64_000
	nowUs := now / 1000
	f.walk(func(seq uint16, received bool, at int64) {
		slot := &e.ring[seq&ringMask]
		v := slot.Load()
		if v == 0 || uint16(v) != seq || v&reportedBit != 0 {
			return
		}
		age := int64(uint32(nowUs) - uint32(v>>timeShift))
		if age > maxAge || !slot.CompareAndSwap(v, v|reportedBit) {
			return
		}
		if !received {
			e.ivLost++
			return
		}
		size := int64(v>>sizeShift) & maxSize
		arr := base + at
		e.acked.Add(1)
		e.ivRecv++
		e.ivBytes += size
		switch {
		case !e.ivArrivals:
			e.ivArrivals = true
			e.ivFirstArr, e.ivLastArr, e.ivFirstSize = arr, arr, size
		case arr < e.ivFirstArr:
			e.ivFirstArr, e.ivFirstSize = arr, size
		case arr > e.ivLastArr:
			e.ivLastArr = arr
		}
		switch e.det.packet(nowUs-age, arr) {
		case overusing:
			e.ivOveruse = true
			e.underuse = false
		case underusing:
			e.underuse = true
		case normal:
			e.underuse = false
		}
	})
	e.maybeDecide(now)
}

func (e *Estimator) resetInterval(now int64) {
	e.ivStart = now
	e.ivRecv, e.ivLost, e.ivBytes, e.ivFirstSize = 0, 0, 0, 0
	e.ivArrivals, e.ivOveruse = false, false
}

// maybeDecide ends the interval if it is long enough and applies the rule
// (see the package doc). e.mu is held.
func (e *Estimator) maybeDecide(now int64) {
	span := e.ivLastArr - e.ivFirstArr
	if !(e.ivArrivals && span >= intervalSpan) && now-e.ivStart < intervalMax {
		return
	}
	if e.ivRecv+e.ivLost == 0 {
		// Nothing was sent: no decision, and no increase for the idle time.
		e.resetInterval(now)
		e.lastDecision = now
		return
	}
	rate := 0.0
	if e.ivArrivals && span > 0 {
		rate = float64(e.ivBytes-e.ivFirstSize) * 8e6 / float64(span)
	}
	loss := float64(e.ivLost) / float64(e.ivLost+e.ivRecv)
	est := e.est
	switch {
	case loss > lossDecrease || e.ivOveruse:
		t := beta * rate
		if !(t < est) {
			t = est
		}
		if !(t >= est/2) {
			t = est / 2
		}
		est = t
	case loss >= lossHold || e.underuse:
	default:
		dt := min(float64(now-e.lastDecision)/1e9, 1)
		if dt > 0 {
			est *= math.Pow(increase, dt)
		}
	}
	e.est = e.clamp(est)
	e.target.Store(int64(e.est))
	e.lastDecision = now
	e.resetInterval(now)
}

func (e *Estimator) clamp(v float64) float64 {
	if !(v >= e.min) { // NaN too
		return e.min
	}
	return min(v, e.max)
}
