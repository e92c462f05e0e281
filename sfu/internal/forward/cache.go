package forward

import "sync"

// cacheSize is how many recent packets a PacketCache keeps (a power of
// two): about 2 s of a 2 Mbit/s layer, more than a NACK round trip.
const cacheSize = 512

// maxCached is the largest payload kept; a larger one is not cached.
const maxCached = 1500

// PacketCache keeps the recent payloads of one source stream (one layer
// of a published track) for retransmission. One cache serves every
// subscriber of the track: the payload is the same for all of them, only
// the rewritten header differs, and each DownTrack remembers which source
// packet each of its sequence numbers carried. A slot's buffer is
// allocated the first time it is used and reused after that, so storing
// a packet allocates nothing once the cache has wrapped.
type PacketCache struct {
	mu    sync.Mutex
	slots [cacheSize]cacheSlot
}

type cacheSlot struct {
	seq    uint16
	ok     bool
	marker bool
	buf    []byte
}

// Put stores the payload of source packet seq.
func (c *PacketCache) Put(seq uint16, marker bool, payload []byte) {
	if len(payload) > maxCached {
		return
	}
	c.mu.Lock()
	s := &c.slots[seq%cacheSize]
	if cap(s.buf) < len(payload) {
		s.buf = make([]byte, 0, maxCached)
	}
	s.buf = append(s.buf[:0], payload...)
	s.seq, s.ok, s.marker = seq, true, marker
	c.mu.Unlock()
}

// Get copies the payload of source packet seq into dst and returns its
// length and marker bit; ok is false when the packet is no longer (or was
// never) cached or dst is too small.
func (c *PacketCache) Get(seq uint16, dst []byte) (n int, marker, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq%cacheSize]
	if !s.ok || s.seq != seq || len(dst) < len(s.buf) {
		return 0, false, false
	}
	return copy(dst, s.buf), s.marker, true
}
