package bwe

// feedback is one TWCC feedback packet (RTCP PT 205, FMT 15), as views
// into the packet.
type feedback struct {
	base   uint16 // sequence number of the first status
	count  int    // statuses
	ref    uint32 // reference time, 64 ms units, 24 bits
	chunks []byte // packet status chunks, exactly those that cover count
	deltas []byte // receive deltas, and any zero padding
}

// parseFeedback reads pkt, one whole RTCP packet, if it is TWCC feedback
// whose status chunks fit in it and that reports between 1 and ringSize
// packets.
func parseFeedback(pkt []byte) (feedback, bool) {
	var f feedback
	if len(pkt) < 20 || pkt[0]>>6 != 2 || pkt[0]&0x1f != 15 || pkt[1] != 205 {
		return f, false
	}
	if pkt[0]&0x20 != 0 { // padding: its length is the last byte
		p := int(pkt[len(pkt)-1])
		if p == 0 || p > len(pkt)-20 {
			return f, false
		}
		pkt = pkt[:len(pkt)-p]
	}
	f.base = uint16(pkt[12])<<8 | uint16(pkt[13])
	f.count = int(pkt[14])<<8 | int(pkt[15])
	f.ref = uint32(pkt[16])<<16 | uint32(pkt[17])<<8 | uint32(pkt[18])
	if f.count == 0 || f.count > ringSize {
		return f, false
	}
	c := pkt[20:]
	i, covered := 0, 0
	for covered < f.count {
		if i+2 > len(c) {
			return f, false
		}
		covered += chunkStatuses(uint16(c[i])<<8 | uint16(c[i+1]))
		i += 2
	}
	f.chunks, f.deltas = c[:i], c[i:]
	return f, true
}

// chunkStatuses is how many statuses a chunk holds.
func chunkStatuses(ch uint16) int {
	switch {
	case ch&0x8000 == 0: // run length: 2-bit symbol, 13-bit length
		return int(ch & 0x1fff)
	case ch&0x4000 == 0: // status vector of 14 1-bit symbols
		return 14
	default: // status vector of 7 2-bit symbols
		return 7
	}
}

// walk calls fn for each of the feedback's statuses, in order, with its
// sequence number, whether it was received and, if so, its arrival time
// in µs after the reference time. It stops at a malformed status (a
// reserved symbol, a missing delta), having reported those before it.
func (f *feedback) walk(fn func(seq uint16, received bool, at int64)) {
	seq, left := f.base, f.count
	d := f.deltas
	var at int64
	// status handles one 2-bit symbol; false stops the walk.
	status := func(sym uint16) bool {
		switch sym {
		case 0:
			fn(seq, false, 0)
		case 1:
			if len(d) < 1 {
				return false
			}
			at += int64(d[0]) * 250
			d = d[1:]
			fn(seq, true, at)
		case 2:
			if len(d) < 2 {
				return false
			}
			at += int64(int16(uint16(d[0])<<8|uint16(d[1]))) * 250
			d = d[2:]
			fn(seq, true, at)
		default:
			return false
		}
		seq++
		left--
		return true
	}
	for c := f.chunks; len(c) >= 2 && left > 0; c = c[2:] {
		ch := uint16(c[0])<<8 | uint16(c[1])
		switch {
		case ch&0x8000 == 0:
			sym := ch >> 13 & 3
			for n := int(ch & 0x1fff); n > 0 && left > 0; n-- {
				if !status(sym) {
					return
				}
			}
		case ch&0x4000 == 0:
			for i := 13; i >= 0 && left > 0; i-- {
				if !status(ch >> i & 1) {
					return
				}
			}
		default:
			for i := 12; i >= 0 && left > 0; i -= 2 {
				if !status(ch >> i & 3) {
					return
				}
			}
		}
	}
}
