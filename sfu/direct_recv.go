package sfu

import (
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/srtp/v3"
)

// The direct receive path: a publisher's SRTP is taken off the media
// socket as the socket is read (udpbatch.Conn's filter, on pion's UDP
// mux goroutine), decrypted with the keys directSender derived, and
// queued for the stream's reader at the bottom of pion's interceptor
// chain. The receive-side interceptors (the SFU's feedback to the
// publisher, recvFeedback: NACKs, receiver reports, TWCC feedback) still
// see every packet, above that reader; what is left out is the mux's
// hand-off to the ICE candidate, the ICE connection, pion's DTLS/SRTP
// demultiplexer and its SRTP session — four goroutines and four copies
// per datagram.
//
// A stream goes direct at its first read after the keys are known: until
// then (and for a stream pion has not bound yet: its first packets tell
// pion which track and simulcast layer it is) the datagram goes pion's
// way. What pion had already taken in when its stream switched is moved
// into the queue by the stream's drain, a goroutine that ends with pion's
// reader (those packets may come a little out of order with the first
// direct ones, as the network may deliver them). STUN and DTLS always
// go pion's way; SRTCP does when the participant has no RTCP sink
// (receiveRTCP).
//
// Inline delivery (Service.inline, on a server with one CPU): once the
// stream's reader (the upTrack's read loop) has read what was queued, it
// hands over and waits for the stream to end, and the filter itself
// passes each packet up the stream's chain and forwards it
// (recvStream.deliver), on the goroutine that read the socket: no
// hand-off, and the forwarded copies of all packets one read returned go
// with one sendmmsg (udpbatch.Conn brackets the filter's work as one
// fan-out). Whatever pion still had is then delivered by the drain. A
// stream's retransmissions (its RTX stream) are delivered the same way,
// unwrapped by their own sink (upTrack.rtxSink): pion hands them out
// only through the Read the stream's reader then waits in.

// recvQueue is how many decrypted packets one stream holds for its
// reader; a packet that finds it full is dropped (the reader is more
// than recvQueue packets behind, as pion's own buffer would be).
const recvQueue = 32

// recvStream is one remote stream's queue, or its inline delivery.
type recvStream struct {
	ssrc   uint32
	direct bool // the reader reads the queue (only the reader touches it)

	// Inline delivery (see deliver). top is the stream's chain above the
	// bottom reader (set at binding, before any read); sink, set under
	// mu, is the reader's consumer of the packets. inline is set under
	// mu when the reader hands over; from then on only the filter's
	// goroutine touches pending, ibuf and attrs.
	top     interceptor.RTPReader
	sink    func(p []byte)
	inline  atomic.Bool
	gone    atomic.Bool // unpublished: nothing more is delivered
	pending []byte
	ibuf    []byte
	attrs   interceptor.Attributes

	mu      sync.Mutex
	buf     []byte // recvQueue slots of maxDirectPacket bytes
	lens    [recvQueue]int
	head, n int
	closed  bool
	notify  chan struct{} // has a value after a push
	dropped atomic.Uint64
}

func newRecvStream(ssrc uint32) *recvStream {
	return &recvStream{ssrc: ssrc, notify: make(chan struct{}, 1)}
}

// push queues a copy of p, or drops it when the queue is full or closed
// (or p is longer than a slot). The filter and a stream's drain (see
// BindRemoteStream) both push. It reports true, and does nothing, when
// the stream is delivered inline: p is then for deliver.
func (s *recvStream) push(p []byte) (inline bool) {
	s.mu.Lock()
	if s.inline.Load() && !s.closed {
		s.mu.Unlock()
		return true
	}
	if s.closed || s.n == recvQueue || len(p) > maxDirectPacket {
		s.mu.Unlock()
		s.dropped.Add(1)
		return false
	}
	if s.buf == nil {
		s.buf = make([]byte, recvQueue*maxDirectPacket)
	}
	i := (s.head + s.n) % recvQueue
	s.lens[i] = copy(s.buf[i*maxDirectPacket:], p)
	s.n++
	s.mu.Unlock()
	s.wake()
	return false
}

// wake tells the stream's reader to look again (after a push, a close,
// a sink set), without waiting.
func (s *recvStream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// drain moves what pion's reader r still has (what reached pion before
// the filter took the stream's packets) into the queue, or delivers it
// once the stream is delivered inline (under dmu, as the filter does),
// until pion ends r with the stream (the PeerConnection closing, the
// track stopping).
func (s *recvStream) drain(r interceptor.RTPReader, d *directSender) {
	buf := make([]byte, maxDirectPacket)
	dmu := &d.rmu
	for {
		n, _, err := r.Read(buf, nil)
		if err != nil {
			return
		}
		// Past the few packets pion had when the stream switched, the
		// client is sending from an address not listed.
		d.refreshFrom()
		if s.push(buf[:n]) {
			dmu.Lock()
			s.deliver(buf[:n])
			dmu.Unlock()
		}
	}
}

// pop waits for the next packet and copies it into b.
func (s *recvStream) pop(b []byte) (int, error) {
	for {
		s.mu.Lock()
		if s.n > 0 {
			i := s.head
			n := copy(b, s.buf[i*maxDirectPacket:i*maxDirectPacket+s.lens[i]])
			s.head = (s.head + 1) % recvQueue
			s.n--
			s.mu.Unlock()
			return n, nil
		}
		closed := s.closed
		if !closed && s.sink != nil && s.top != nil {
			// Caught up, and there is a sink: the filter delivers from
			// now on, and the reader waits for the stream to end.
			s.ibuf = make([]byte, maxDirectPacket)
			s.attrs = interceptor.Attributes{}
			s.inline.Store(true)
			s.mu.Unlock()
			return s.park()
		}
		s.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
		<-s.notify
	}
}

// park is where the reader waits once the stream is delivered inline:
// until the stream closes.
func (s *recvStream) park() (int, error) {
	for {
		<-s.notify
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return 0, io.EOF
		}
	}
}

// deliver hands p up the stream's chain (the receive-side interceptors:
// recvFeedback's NACKs, receiver reports and TWCC feedback) and then to
// the sink, on the filter's goroutine, once the reader has handed over;
// it reports false before that (p then goes to the queue). The packets of
// a stream are delivered one at a time (the filter holds the sender's
// decryption lock), and none after the stream is unpublished (unpublish
// waits for that lock).
//
// The bottom reader hands out pending once (see BindRemoteStream): the
// chain above it reads one packet per read, as the SFU's interceptors
// do.
func (s *recvStream) deliver(p []byte) bool {
	if !s.inline.Load() {
		return false
	}
	if s.gone.Load() {
		return true
	}
	s.pending = p
	clear(s.attrs)
	n, _, err := s.top.Read(s.ibuf, s.attrs)
	s.pending = nil
	if err == nil {
		s.sink(s.ibuf[:n])
	}
	return true
}

// errNoPending is the bottom reader's answer to a second read within
// one inline delivery.
var errNoPending = errors.New("sfu: no packet pending for an inline read")

func (s *recvStream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.wake()
}

// cowMap is a map read without locking (one atomic load per look-up)
// and changed by copying it: for the media sockets' filter, which looks
// up every datagram, while entries change only as publishers and streams
// come and go.
type cowMap[K comparable, V comparable] struct {
	mu sync.Mutex // serialises changes
	m  atomic.Pointer[map[K]V]
}

// get returns k's value (V's zero value if none).
func (c *cowMap[K, V]) get(k K) V {
	var v V
	if m := c.m.Load(); m != nil {
		v = (*m)[k]
	}
	return v
}

// set sets k to v.
func (c *cowMap[K, V]) set(k K, v V) {
	c.update(func(m map[K]V) { m[k] = v })
}

// remove removes k if its value is still v.
func (c *cowMap[K, V]) remove(k K, v V) {
	c.update(func(m map[K]V) {
		if m[k] == v {
			delete(m, k)
		}
	})
}

func (c *cowMap[K, V]) update(f func(map[K]V)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := map[K]V{}
	if cur := c.m.Load(); cur != nil {
		for k, v := range *cur {
			next[k] = v
		}
	}
	f(next)
	c.m.Store(&next)
}

// recvTable maps a publisher's address (its selected candidate pair's
// remote end) to its directSender, for the media sockets' filter.
type recvTable struct {
	cowMap[netip.AddrPort, *directSender]
}

// filter is the media sockets' udpbatch.Filter: it takes the SRTP of a
// stream that reads directly, and leaves everything else to pion.
func (t *recvTable) filter(p []byte, from netip.AddrPort) bool {
	// RTP or RTCP version 2 (RTCP: payload types 192-223 with the
	// marker bit, RFC 5761), long enough for the SSRC.
	if len(p) < 12 || p[0]>>6 != 2 {
		return false
	}
	d := t.get(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	if d == nil {
		return false
	}
	if p[1] >= 192 && p[1] <= 223 {
		return d.receiveRTCP(p)
	}
	return d.receive(p)
}

// receiveRTCP decrypts a compound SRTCP packet from the participant and
// hands it to rtcpSink: its subscribers' feedback (receiver reports,
// TWCC feedback, NACKs, keyframe requests, REMB) and, as a publisher, its
// sender reports (for the SFU's receiver reports, recvFeedback) go to the
// SFU with no hand-off. One that fails authentication or replays an
// earlier one is dropped.
func (d *directSender) receiveRTCP(p []byte) bool {
	if d.rtcpSink == nil {
		return false
	}
	if len(p) > cap(d.rtcpBuf) {
		return false
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	out, err := d.rctx.DecryptRTCP(d.rtcpBuf[:0], p, nil)
	if err != nil {
		d.recvRefused.Add(1)
		return true
	}
	d.rtcpReceived.Add(1)
	d.rtcpSink(out)
	return true
}

// receive decrypts p into its stream's queue if the stream reads
// directly. A packet that fails authentication or replays an earlier one
// is dropped; so is one that finds the queue full.
func (d *directSender) receive(p []byte) bool {
	s := d.streams.get(binary.BigEndian.Uint32(p[8:12]))
	if s == nil {
		return false
	}
	d.rmu.Lock()
	defer d.rmu.Unlock()
	if len(p) > cap(d.rbuf) {
		s.dropped.Add(1)
		return true
	}
	out, err := d.rctx.DecryptRTP(d.rbuf[:0], p, &d.rhdr)
	if err != nil {
		d.recvRefused.Add(1)
		return true
	}
	d.received.Add(1)
	if s.deliver(out) || s.push(out) && s.deliver(out) {
		d.inlined.Add(1)
	}
	return true
}

// publish lets the filter take s's packets from now on.
func (d *directSender) publish(s *recvStream) { d.streams.set(s.ssrc, s) }

// unpublish stops the filter taking s's packets and ends its reader,
// after a delivery in progress (under rmu) has ended.
func (d *directSender) unpublish(s *recvStream) {
	d.streams.remove(s.ssrc, s)
	s.gone.Store(true)
	d.rmu.Lock()
	//lint:ignore SA2001 an empty critical section: waiting for a delivery to end
	d.rmu.Unlock()
	s.close()
}

// setSink has the stream ssrc delivered to sink on the sockets' filter
// goroutine (see deliver), once its reader has read what was queued
// before: the reader then waits for the stream to end. It does nothing
// without inline delivery, or for a stream not bound (yet).
func (d *directSender) setSink(ssrc uint32, sink func(p []byte)) {
	i := d.bottom.Load()
	if i == nil || !d.inline {
		return
	}
	i.mu.Lock()
	s := i.remote[ssrc]
	i.mu.Unlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.sink = sink
	s.mu.Unlock()
	s.wake()
}

// startReceive makes the decryption context from the remote keys (start
// then lists the publisher's address with the sockets' filter).
func (d *directSender) startReceive(keys *srtp.Config) error {
	ctx, err := srtp.CreateContext(keys.Keys.RemoteMasterKey, keys.Keys.RemoteMasterSalt, keys.Profile,
		srtp.SRTPReplayProtection(recvReplayWindow), srtp.SRTCPReplayProtection(recvReplayWindow),
		srtp.Cryptex(srtp.CryptexModeEnabled))
	if err != nil {
		return err
	}
	d.rmu.Lock()
	d.rctx = ctx
	d.rmu.Unlock()
	d.recvReady.Store(true)
	return nil
}

// recvReplayWindow is the SRTP replay window of the direct receive path,
// in packets (pion's default for its own sessions is 64).
const recvReplayWindow = 64

// BindRemoteStream puts the stream's reader at the bottom of its chain:
// pion's reader until the keys are known, then the stream's queue.
func (i *directInterceptor) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	s := newRecvStream(info.SSRC)
	i.mu.Lock()
	if i.remote == nil {
		i.remote = map[uint32]*recvStream{}
	}
	if old := i.remote[info.SSRC]; old != nil {
		i.d.unpublish(old)
	}
	i.remote[info.SSRC] = s
	closed := i.closed
	i.mu.Unlock()
	if closed {
		s.close()
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if s.inline.Load() {
			p := s.pending
			if p == nil {
				return 0, a, errNoPending
			}
			s.pending = nil
			return copy(b, p), a, nil
		}
		if !s.direct {
			if !i.d.recvReady.Load() {
				return r.Read(b, a)
			}
			s.direct = true
			i.d.publish(s)
			go s.drain(r, i.d)
		}
		n, err := s.pop(b)
		return n, a, err
	})
}

// UnbindRemoteStream ends the stream's direct reading.
func (i *directInterceptor) UnbindRemoteStream(info *interceptor.StreamInfo) {
	i.mu.Lock()
	s := i.remote[info.SSRC]
	delete(i.remote, info.SSRC)
	i.mu.Unlock()
	if s != nil {
		i.d.unpublish(s)
	}
}

// Close ends every stream's direct reading.
func (i *directInterceptor) Close() error {
	i.mu.Lock()
	i.closed = true
	streams := i.remote
	i.remote = nil
	i.mu.Unlock()
	for _, s := range streams {
		i.d.unpublish(s)
	}
	return nil
}

// directTopFactory makes the interceptor that goes last in the chain
// (register it last): it gives each remote stream its chain's top, where
// inline delivery starts a packet (see deliver).
type directTopFactory struct{ d *directSender }

func (f directTopFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &directTop{d: f.d}, nil
}

type directTop struct {
	interceptor.NoOp
	d *directSender
}

// BindRemoteStream notes r as the top of the stream's chain.
func (t *directTop) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if i := t.d.bottom.Load(); i != nil {
		i.mu.Lock()
		if s := i.remote[info.SSRC]; s != nil {
			s.mu.Lock()
			s.top = r
			s.mu.Unlock()
		}
		i.mu.Unlock()
	}
	return r
}
