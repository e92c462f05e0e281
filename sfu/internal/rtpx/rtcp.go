package rtpx

import "encoding/binary"

// RTCPKind is what an RTCP packet is to the SFU: the few kinds it acts on,
// and everything else.
type RTCPKind uint8

// The RTCP packets the SFU reads from a subscriber, and a publisher's
// sender reports.
const (
	RTCPOther          RTCPKind = iota
	RTCPReceiverReport          // RFC 3550 RR (PT 201)
	RTCPPLI                     // RFC 4585 picture loss indication (PT 206, FMT 1)
	RTCPFIR                     // RFC 5104 full intra request (PT 206, FMT 4)
	RTCPNack                    // RFC 4585 generic NACK (PT 205, FMT 1)
	RTCPREMB                    // REMB (PT 206, FMT 15, "REMB")
	RTCPTWCC                    // transport-wide congestion control feedback (PT 205, FMT 15)
	RTCPSenderReport            // RFC 3550 SR (PT 200)
)

// NextRTCP splits the first packet off the compound RTCP packet b, in
// place: its kind, the packet itself (common header included) and what
// follows it. ok is false when b holds no whole packet of version 2 (its
// length field past the end of b); a compound packet is read up to there.
func NextRTCP(b []byte) (kind RTCPKind, pkt, rest []byte, ok bool) {
	if len(b) < 4 || b[0]>>6 != 2 {
		return RTCPOther, nil, nil, false
	}
	n := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
	if n > len(b) {
		return RTCPOther, nil, nil, false
	}
	pkt, rest = b[:n], b[n:]
	format := b[0] & 0x1f
	switch b[1] {
	case 200:
		kind = RTCPSenderReport
	case 201:
		kind = RTCPReceiverReport
	case 205:
		switch format {
		case 1:
			kind = RTCPNack
		case 15:
			kind = RTCPTWCC
		}
	case 206:
		switch format {
		case 1:
			kind = RTCPPLI
		case 4:
			kind = RTCPFIR
		case 15:
			if n >= 20 && string(pkt[12:16]) == "REMB" {
				kind = RTCPREMB
			}
		}
	}
	return kind, pkt, rest, true
}

// NackPairs calls fn with each (packet ID, bitmask of following lost
// packets) pair of a generic NACK packet from NextRTCP.
func NackPairs(pkt []byte, fn func(id, lost uint16)) {
	if len(pkt) > 0 && pkt[0]&0x20 != 0 { // padding: its length is the last byte
		p := int(pkt[len(pkt)-1])
		if p == 0 || p > len(pkt)-12 {
			return
		}
		pkt = pkt[:len(pkt)-p]
	}
	// Header (4), sender SSRC (4), media SSRC (4), then 4-byte pairs.
	for i := 12; i+4 <= len(pkt); i += 4 {
		fn(binary.BigEndian.Uint16(pkt[i:]), binary.BigEndian.Uint16(pkt[i+2:]))
	}
}

// REMBBitrate is the bitrate in bits per second a REMB packet from
// NextRTCP announces (an 18-bit mantissa times two to a 6-bit exponent),
// saturated at the largest int64 rather than overflowing.
func REMBBitrate(pkt []byte) int64 {
	if len(pkt) < 20 {
		return 0
	}
	exp := pkt[17] >> 2
	mantissa := uint64(pkt[17]&3)<<16 | uint64(pkt[18])<<8 | uint64(pkt[19])
	if mantissa == 0 {
		return 0
	}
	// mantissa < 2^18, so a shift by up to 44 stays below 2^62.
	if exp > 44 {
		return 1<<63 - 1
	}
	return int64(mantissa << exp)
}

// SenderReportTime returns the sender's SSRC and the NTP time of a sender
// report from NextRTCP; ok is false when the packet is too short to hold
// the sender information.
func SenderReportTime(pkt []byte) (ssrc uint32, ntp uint64, ok bool) {
	if len(pkt) < 28 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint32(pkt[4:8]), binary.BigEndian.Uint64(pkt[8:16]), true
}
