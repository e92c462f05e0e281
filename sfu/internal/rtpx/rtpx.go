// Package rtpx reads the parts of an RTP packet the forwarding path needs
// (header fields, one header extension, whether a video payload starts a
// keyframe) straight from the wire bytes, without allocating.
package rtpx

import (
	"encoding/binary"
	"errors"
	"strings"
)

// ErrShort is returned for a buffer too short to hold what its header claims.
var ErrShort = errors.New("rtpx: packet too short")

// ErrVersion is returned for a packet whose version is not 2.
var ErrVersion = errors.New("rtpx: not RTP version 2")

// Header is the fixed header of one packet plus the offsets of its
// extension block and payload in the buffer it was parsed from.
type Header struct {
	Marker      bool
	PayloadType uint8
	Seq         uint16
	Timestamp   uint32
	SSRC        uint32

	ExtProfile uint16 // 0xBEDE for one-byte extensions, 0x100x for two-byte
	ExtStart   int    // first byte of the extension elements
	ExtEnd     int
	Payload    int // first payload byte
	PayloadEnd int // one past the last payload byte (padding removed)
}

// Parse fills h from packet b.
func Parse(b []byte, h *Header) error {
	if len(b) < 12 {
		return ErrShort
	}
	if b[0]>>6 != 2 {
		return ErrVersion
	}
	padding := b[0]&0x20 != 0
	ext := b[0]&0x10 != 0
	cc := int(b[0] & 0x0f)
	h.Marker = b[1]&0x80 != 0
	h.PayloadType = b[1] & 0x7f
	h.Seq = binary.BigEndian.Uint16(b[2:])
	h.Timestamp = binary.BigEndian.Uint32(b[4:])
	h.SSRC = binary.BigEndian.Uint32(b[8:])
	off := 12 + 4*cc
	h.ExtProfile, h.ExtStart, h.ExtEnd = 0, 0, 0
	if ext {
		if len(b) < off+4 {
			return ErrShort
		}
		h.ExtProfile = binary.BigEndian.Uint16(b[off:])
		n := int(binary.BigEndian.Uint16(b[off+2:])) * 4
		h.ExtStart = off + 4
		h.ExtEnd = h.ExtStart + n
		off = h.ExtEnd
	}
	if len(b) < off {
		return ErrShort
	}
	end := len(b)
	if padding {
		if end == off {
			return ErrShort
		}
		p := int(b[end-1])
		if p == 0 || end-p < off {
			return ErrShort
		}
		end -= p
	}
	h.Payload, h.PayloadEnd = off, end
	return nil
}

// Extension returns the value of header extension id from packet b, parsed
// into h, for both the one-byte and the two-byte forms (RFC 8285).
func (h *Header) Extension(b []byte, id uint8) ([]byte, bool) {
	if id == 0 || h.ExtStart == 0 {
		return nil, false
	}
	e := b[h.ExtStart:h.ExtEnd]
	switch {
	case h.ExtProfile == 0xBEDE:
		for i := 0; i < len(e); {
			if e[i] == 0 { // padding
				i++
				continue
			}
			eid := e[i] >> 4
			l := int(e[i]&0x0f) + 1
			if eid == 15 {
				return nil, false
			}
			if i+1+l > len(e) {
				return nil, false
			}
			if eid == id {
				return e[i+1 : i+1+l], true
			}
			i += 1 + l
		}
	case h.ExtProfile&0xfff0 == 0x1000:
		for i := 0; i+1 < len(e); {
			if e[i] == 0 {
				i++
				continue
			}
			eid, l := e[i], int(e[i+1])
			if i+2+l > len(e) {
				return nil, false
			}
			if eid == id {
				return e[i+2 : i+2+l], true
			}
			i += 2 + l
		}
	}
	return nil, false
}

// AudioLevel returns the level from the ssrc-audio-level extension (RFC
// 6464): 0 is the loudest (0 dBov), 127 silence.
func (h *Header) AudioLevel(b []byte, id uint8) (level uint8, ok bool) {
	v, ok := h.Extension(b, id)
	if !ok || len(v) < 1 {
		return 0, false
	}
	return v[0] & 0x7f, true
}

// Codec is a video codec whose keyframes the forwarder recognises.
type Codec uint8

// Codecs.
const (
	CodecOther Codec = iota
	CodecOpus
	CodecVP8
	CodecVP9
	CodecH264
	CodecAV1
)

// CodecFromMime maps a MIME type such as "video/VP8" to a Codec.
func CodecFromMime(mime string) Codec {
	switch strings.ToLower(mime) {
	case "audio/opus":
		return CodecOpus
	case "video/vp8":
		return CodecVP8
	case "video/vp9":
		return CodecVP9
	case "video/h264":
		return CodecH264
	case "video/av1":
		return CodecAV1
	}
	return CodecOther
}

// IsKeyframe reports whether payload is the first packet of a keyframe
// (or, for audio and unknown codecs, always true: every packet is a place
// a subscriber can start).
func IsKeyframe(c Codec, p []byte) bool {
	switch c {
	case CodecVP8:
		return vp8Key(p)
	case CodecVP9:
		return vp9Key(p)
	case CodecH264:
		return h264Key(p)
	case CodecAV1:
		return av1Key(p)
	}
	return true
}

// vp8Key reads the VP8 payload descriptor (RFC 7741 §4.2) and the first
// byte of the VP8 frame header: the start of partition 0 with P=0.
func vp8Key(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	x := p[0]&0x80 != 0
	s := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !s || pid != 0 {
		return false
	}
	i := 1
	if x {
		if len(p) < 2 {
			return false
		}
		ext := p[1]
		i = 2
		if ext&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if ext&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if ext&0x30 != 0 { // T or K
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}

// vp9Key reads the VP9 payload descriptor: start of a frame (B) that is
// not inter-picture predicted (P=0), in the lowest spatial layer.
func vp9Key(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b0 := p[0]
	pBit := b0&0x40 != 0
	bBit := b0&0x08 != 0
	if pBit || !bBit {
		return false
	}
	// With layer indices present (L), require spatial layer 0.
	if b0&0x20 != 0 {
		i := 1
		if b0&0x80 != 0 { // I: picture id
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if len(p) <= i {
			return false
		}
		if (p[i]>>1)&0x07 != 0 {
			return false
		}
	}
	return true
}

// h264Key finds an IDR slice or an SPS in a single NAL unit, a STAP-A
// aggregate or the first fragment of an FU-A.
func h264Key(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; {
	case t == 5 || t == 7:
		return true
	case t == 24: // STAP-A
		for i := 1; i+2 < len(p); {
			n := int(binary.BigEndian.Uint16(p[i:]))
			i += 2
			if i >= len(p) {
				break
			}
			if nt := p[i] & 0x1f; nt == 5 || nt == 7 {
				return true
			}
			i += n
		}
	case t == 28: // FU-A
		if len(p) < 2 {
			return false
		}
		if p[1]&0x80 != 0 {
			nt := p[1] & 0x1f
			return nt == 5 || nt == 7
		}
	}
	return false
}

// av1Key reads the AV1 aggregation header: N marks the first packet of a
// new coded video sequence, which starts with a keyframe.
func av1Key(p []byte) bool {
	return len(p) > 0 && p[0]&0x08 != 0
}
