package turn

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"poosms.org/poosms/internal/udpbatch"
)

// The relay's fast path.
//
// The TURN engine handles every datagram through its general request
// path, which costs several allocations and a few lock round trips per
// relayed packet. Relayed data is the bulk of the traffic and needs none
// of that: a ChannelData message or a Send indication from a client over
// UDP goes to one peer, and a datagram from a peer goes back to one
// client. So the sockets under the engine relay those themselves, before
// the engine sees them:
//
//   - a UDP listener (listenConn) forwards a client's ChannelData and Send
//     indications to the peer, from the allocation's relay socket;
//   - a relay socket (relayConn) frames a peer's datagram as ChannelData
//     (or a Data indication when no channel is bound) and sends it to the
//     client from the listener.
//
// The fast path decides nothing on its own account. It relays only what
// the engine itself would relay at that moment: it keeps a mirror of the
// engine's allocations, permissions and channel bindings, fed by the
// engine's events (created, deleted, expired), and whatever it does not
// find there (an unknown client, an unbound channel number, a peer
// without a permission, a malformed message) goes on to the engine,
// which answers, refuses or drops it as before. Credentials, quotas and
// the peer policy are checked by the engine when allocations, permissions
// and channels are made, which the fast path never does; the checks on
// each datagram (the host's own addresses, see selfGuard) run on the
// fast path too.
//
// Lifetimes stay the engine's: a permission or channel binding leaves the
// mirror when the engine's timer removes it, and an allocation leaves it
// when its relay socket closes, which the engine does before it reports
// the allocation deleted.

// fastPath is the mirror shared by all listeners of one server.
type fastPath struct {
	mu      sync.RWMutex
	clients map[netip.AddrPort]*relayConn // UDP client address (unmapped) → its allocation's relay socket
	relays  map[uint16]*relayConn         // relay port → relay socket
}

func newFastPath() *fastPath {
	return &fastPath{
		clients: make(map[netip.AddrPort]*relayConn),
		relays:  make(map[uint16]*relayConn),
	}
}

// addrPortOf converts an engine address to the mirror's key form.
func addrPortOf(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok || ua == nil {
		return netip.AddrPort{}, false
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok || ua.Port < 0 || ua.Port > 65535 {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(ua.Port)), true
}

func unmapAP(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// opened registers a new relay socket.
func (f *fastPath) opened(rc *relayConn) {
	f.mu.Lock()
	f.relays[rc.port] = rc
	f.mu.Unlock()
}

// closed forgets a relay socket and its client.
func (f *fastPath) closed(rc *relayConn) {
	f.mu.Lock()
	if f.relays[rc.port] == rc {
		delete(f.relays, rc.port)
	}
	rc.smu.Lock()
	client, live := rc.client, rc.live
	rc.live = false
	rc.smu.Unlock()
	if live && f.clients[client] == rc {
		delete(f.clients, client)
	}
	f.mu.Unlock()
}

// relay returns the relay socket at the port of relayAddr.
func (f *fastPath) relay(relayAddr net.Addr) *relayConn {
	ap, ok := addrPortOf(relayAddr)
	if !ok {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.relays[ap.Port()]
}

// allocationCreated links a UDP client to its relay socket. Allocations
// of TCP and TLS clients stay with the engine.
func (f *fastPath) allocationCreated(src, relayAddr net.Addr) {
	client, ok := addrPortOf(src)
	if !ok {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	rp, ok := addrPortOf(relayAddr)
	if !ok {
		return
	}
	rc := f.relays[rp.Port()]
	if rc == nil || rc.listener == nil {
		return
	}
	rc.smu.Lock()
	if rc.closed {
		rc.smu.Unlock()
		return
	}
	rc.client, rc.live = client, true
	rc.smu.Unlock()
	f.clients[client] = rc
}

func (f *fastPath) permissionCreated(relayAddr net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if rc := f.relay(relayAddr); rc != nil && ok {
		rc.smu.Lock()
		rc.perms[ip.Unmap()] = struct{}{}
		rc.smu.Unlock()
	}
}

func (f *fastPath) permissionDeleted(relayAddr net.Addr, peer net.IP) {
	ip, ok := netip.AddrFromSlice(peer)
	if rc := f.relay(relayAddr); rc != nil && ok {
		rc.smu.Lock()
		delete(rc.perms, ip.Unmap())
		rc.smu.Unlock()
	}
}

func (f *fastPath) channelCreated(relayAddr, peer net.Addr, number uint16) {
	ap, ok := addrPortOf(peer)
	if rc := f.relay(relayAddr); rc != nil && ok {
		rc.smu.Lock()
		rc.chans[number] = ap
		rc.peers[ap] = number
		rc.smu.Unlock()
	}
}

func (f *fastPath) channelDeleted(relayAddr, peer net.Addr, number uint16) {
	ap, ok := addrPortOf(peer)
	if rc := f.relay(relayAddr); rc != nil && ok {
		rc.smu.Lock()
		if rc.chans[number] == ap {
			delete(rc.chans, number)
		}
		if rc.peers[ap] == number {
			delete(rc.peers, ap)
		}
		rc.smu.Unlock()
	}
}

// fromClient looks at a datagram a UDP client sent to a listener. When
// it is ChannelData on a bound channel or a Send indication to a
// permitted peer of the client's allocation, it returns the allocation's
// relay socket, the data and the peer to relay it to; otherwise a nil
// relay socket, and the engine gets the datagram.
func (f *fastPath) fromClient(pkt []byte, src netip.AddrPort) (*relayConn, []byte, netip.AddrPort) {
	rc, data, peer, ok := f.lookupClient(pkt, src)
	if !ok {
		return nil, nil, netip.AddrPort{}
	}
	return rc, data, peer
}

func (f *fastPath) lookupClient(pkt []byte, src netip.AddrPort) (rc *relayConn, data []byte, peer netip.AddrPort, ok bool) {
	if len(pkt) < 4 {
		return
	}
	var channel uint16
	switch {
	case pkt[0]&0xc0 == 0x40: // channel numbers 0x4000–0x7FFF
		channel = binary.BigEndian.Uint16(pkt)
		n := int(binary.BigEndian.Uint16(pkt[2:]))
		if n > len(pkt)-4 {
			return
		}
		data = pkt[4 : 4+n]
	case pkt[0] == 0x00 && pkt[1] == 0x16: // Send indication
		if peer, data, ok = parseSend(pkt); !ok {
			return
		}
	default:
		return
	}
	f.mu.RLock()
	rc = f.clients[unmapAP(src)]
	f.mu.RUnlock()
	if rc == nil {
		return nil, nil, peer, false
	}
	rc.smu.RLock()
	defer rc.smu.RUnlock()
	if channel != 0 {
		var bound bool
		if peer, bound = rc.chans[channel]; !bound {
			return nil, nil, peer, false
		}
	} else if _, permitted := rc.perms[peer.Addr()]; !permitted {
		return nil, nil, peer, false
	}
	if !rc.live {
		return nil, nil, peer, false
	}
	return rc, data, peer, true
}

// STUN message layout (RFC 8489).
const (
	stunHeaderSize     = 20
	stunMagicCookie    = 0x2112A442
	attrXORPeerAddress = 0x0012
	attrData           = 0x0013
	typeDataIndication = 0x0017
)

// parseSend reads the peer address and data of a Send indication. It
// reports false for anything it is not sure of, which the engine then
// judges.
func parseSend(pkt []byte) (peer netip.AddrPort, data []byte, ok bool) {
	if len(pkt) < stunHeaderSize || binary.BigEndian.Uint32(pkt[4:]) != stunMagicCookie {
		return peer, nil, false
	}
	size := int(binary.BigEndian.Uint16(pkt[2:]))
	if size%4 != 0 || stunHeaderSize+size > len(pkt) {
		return peer, nil, false
	}
	var havePeer, haveData bool
	attrs := pkt[stunHeaderSize : stunHeaderSize+size]
	for len(attrs) >= 4 {
		typ := binary.BigEndian.Uint16(attrs)
		n := int(binary.BigEndian.Uint16(attrs[2:]))
		if 4+n > len(attrs) {
			return peer, nil, false
		}
		v := attrs[4 : 4+n]
		switch {
		case typ == attrXORPeerAddress && !havePeer:
			if peer, ok = parseXORAddr(v, pkt[4:stunHeaderSize]); !ok {
				return peer, nil, false
			}
			havePeer = true
		case typ == attrData && !haveData:
			data, haveData = v, true
		}
		attrs = attrs[min(len(attrs), 4+(n+3)&^3):]
	}
	return peer, data, havePeer && haveData && len(attrs) == 0
}

// parseXORAddr decodes an XOR-PEER-ADDRESS value; key is the magic
// cookie followed by the transaction ID.
func parseXORAddr(v, key []byte) (netip.AddrPort, bool) {
	if len(v) < 4 {
		return netip.AddrPort{}, false
	}
	port := binary.BigEndian.Uint16(v[2:]) ^ (stunMagicCookie >> 16)
	switch {
	case v[1] == 0x01 && len(v) == 8:
		var ip [4]byte
		for i := range ip {
			ip[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom4(ip), port), true
	case v[1] == 0x02 && len(v) == 20:
		var ip [16]byte
		for i := range ip {
			ip[i] = v[4+i] ^ key[i]
		}
		return netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), port), true
	}
	return netip.AddrPort{}, false
}

// Layout of a relay socket's read buffers: each datagram is read at
// relayHeadroom so that a ChannelData or Data indication header can be
// written in front of it without copying it.
const (
	relayHeadroom = stunHeaderSize + 4 + 20 + 4 // header, XOR-PEER-ADDRESS (IPv6), DATA header
	relayMTU      = 1600                        // the engine's own buffer size
)

// Batch sizes: datagrams read or sent by one system call. When the relay
// gets less CPU than its load needs, datagrams wait in its sockets, and
// the larger the batch, the fewer the system calls and the longer the
// GSO runs for the same datagrams: with batches of 128 on the listeners
// and 64 on busy relay sockets (against 32 and 16) a starved relay
// handled 1.5 times the packets per CPU-second; while it keeps up its
// batches do not fill and the sizes change nothing
// (docs/performance.md). A listener's batch is made at its full size
// (there are a few listeners); a relay socket starts with relayBatch
// datagrams and grows to relayBatchBusy the first time a read fills its
// batch, so idle allocations keep small buffers. Writers are small, so
// they are made at the full size at once.
const (
	listenerBatch  = 128
	relayBatch     = 16
	relayBatchBusy = 64
)

// relayState is the part of a relay socket the fast path reads: the
// mirror of its allocation. smu guards everything below it.
type relayState struct {
	listener *udpConn // the UDP listener its client came through; nil for TCP and TLS clients
	// reader reads the relay socket. With a poller (Linux) the poller's
	// goroutine owns it while polled is true, and the engine's reader
	// goroutine while it is false (see relayPoller); without one, writer
	// sends to the client on the listener and both are the engine's
	// reader goroutine's. nil for TCP and TLS clients.
	reader      *udpbatch.Reader
	writer      *udpbatch.Writer
	next, count int  // the datagrams of the last read not handled yet
	busy        bool // a read filled the batch: grow it before the next
	poller      *relayPoller
	raw         syscall.RawConn // the relay socket's, for the poller's epoll_ctl
	pollID      int32           // the poller's registration
	pollSeq     uint64          // the poller's last round that took it (the poller's goroutine's)
	polled      atomic.Bool     // the poller owns reader (and next, count, busy)
	wake        chan struct{}   // the poller handed the reader to the engine's goroutine
	done        chan struct{}   // closed when the socket closes
	// peerWriter queues datagrams from the client for peers, for the
	// listener goroutine that holds its owner lock until it flushes.
	peerWriter struct {
		owner sync.Mutex
		*udpbatch.Writer
	}

	smu    sync.RWMutex
	client netip.AddrPort // set while live
	live   bool           // an allocation of a UDP client owns the socket
	closed bool
	perms  map[netip.Addr]struct{}
	chans  map[uint16]netip.AddrPort
	peers  map[netip.AddrPort]uint16

	fastIn, fastOut atomic.Uint64 // datagrams relayed by the fast path: client → peer, peer → client
	maxBatch        atomic.Int32  // the most datagrams one read of the relay socket took
}

// toPeer queues data for peer on rc's relay socket, to go at the next
// flush, unless the self guard drops it.
func (c *listenConn) toPeer(rc *relayConn, data []byte, peer netip.AddrPort) {
	if rc.guard.blocksAddrPort(peer) {
		rc.dropped.Add(1)
		return
	}
	rc.fastIn.Add(1)
	// A client's datagrams all reach one listener, whose reader goroutine
	// takes the relay socket's queue until it flushes; should another
	// listener's reader ever meet it there, that one sends on its own.
	switch {
	case slices.Contains(c.queued, rc):
	case rc.peerWriter.owner.TryLock():
		c.queued = append(c.queued, rc)
	default:
		// A failed send is a lost datagram, as on the engine's path.
		_, _ = rc.UDPConn.WriteToUDPAddrPort(data, peer)
		return
	}
	rc.peerWriter.Add(data, peer)
}

// fromPeer frames a datagram the relay socket read (at
// buf[relayHeadroom:][:n]) from peer for the client, when the allocation
// has a permission for peer: it returns the message (in buf) and the
// client, or false when the engine is to judge the datagram.
func (c *relayConn) fromPeer(buf []byte, n int, peer netip.AddrPort) ([]byte, netip.AddrPort, bool) {
	c.smu.RLock()
	client, live := c.client, c.live
	_, permitted := c.perms[peer.Addr()]
	channel, bound := c.peers[peer]
	c.smu.RUnlock()
	if !live || !permitted {
		return nil, client, false
	}
	var msg []byte
	if bound {
		msg = channelData(buf, channel, n)
	} else {
		msg = dataIndication(buf, peer, n)
	}
	c.fastOut.Add(1)
	return msg, client, true
}

// channelData frames the n bytes at buf[relayHeadroom:] as ChannelData,
// padded to four bytes as the engine does.
func channelData(buf []byte, channel uint16, n int) []byte {
	start := relayHeadroom - 4
	b := buf[start:]
	binary.BigEndian.PutUint16(b, channel)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	end := 4 + n
	for end%4 != 0 {
		b[end] = 0
		end++
	}
	return b[:end]
}

// dataIndication frames the n bytes at buf[relayHeadroom:] as a Data
// indication from peer.
func dataIndication(buf []byte, peer netip.AddrPort, n int) []byte {
	ip := peer.Addr()
	addrLen := 8
	if ip.Is6() {
		addrLen = 20
	}
	start := relayHeadroom - (stunHeaderSize + 4 + addrLen + 4)
	b := buf[start:]
	padded := (n + 3) &^ 3
	size := 4 + addrLen + 4 + padded
	binary.BigEndian.PutUint16(b, typeDataIndication)
	binary.BigEndian.PutUint16(b[2:], uint16(size))
	binary.BigEndian.PutUint32(b[4:], stunMagicCookie)
	binary.BigEndian.PutUint64(b[8:], rand.Uint64())
	binary.BigEndian.PutUint32(b[16:], rand.Uint32())
	a := b[stunHeaderSize:]
	binary.BigEndian.PutUint16(a, attrXORPeerAddress)
	binary.BigEndian.PutUint16(a[2:], uint16(addrLen))
	a[4] = 0
	binary.BigEndian.PutUint16(a[6:], peer.Port()^(stunMagicCookie>>16))
	key := b[4:stunHeaderSize]
	if ip.Is6() {
		a[5] = 0x02
		raw := ip.As16()
		for i := range raw {
			a[8+i] = raw[i] ^ key[i]
		}
	} else {
		a[5] = 0x01
		raw := ip.As4()
		for i := range raw {
			a[8+i] = raw[i] ^ key[i]
		}
	}
	d := a[4+addrLen:]
	binary.BigEndian.PutUint16(d, attrData)
	binary.BigEndian.PutUint16(d[2:], uint16(n))
	end := stunHeaderSize + size
	for i := stunHeaderSize + 4 + addrLen + 4 + n; i < end; i++ {
		b[i] = 0
	}
	return b[:end]
}

// listenConn is a UDP listener under the engine: it hands the fast path
// the datagrams it can relay and the engine everything else. Only the
// engine's one reader goroutine calls ReadFrom.
type listenConn struct {
	*udpConn
	fast        *fastPath
	reader      *udpbatch.Reader
	next, count int          // the datagrams of the last read not handled yet
	queued      []*relayConn // relay sockets with datagrams queued for peers, owned until flushed
}

func newListenConn(c *udpConn, fast *fastPath) (*listenConn, error) {
	lc := &listenConn{udpConn: c, fast: fast, queued: make([]*relayConn, 0, listenerBatch)}
	r, err := udpbatch.NewReader(c.UDPConn, listenerBatch, 0, relayMTU, lc.consume)
	if err != nil {
		return nil, err
	}
	lc.reader = r
	return lc, nil
}

// flush sends the datagrams queued for peers, one sendmmsg per relay
// socket, and releases the queues.
func (c *listenConn) flush() {
	for _, rc := range c.queued {
		rc.peerWriter.Flush()
		rc.peerWriter.owner.Unlock()
	}
	clear(c.queued)
	c.queued = c.queued[:0]
}

// consume takes a batch the reader just read and relays what the fast
// path may; it reports whether that was all of it.
func (c *listenConn) consume(n int) bool {
	c.next, c.count = 0, n
	return !c.drain()
}

// drain relays the datagrams of the last read from c.next on until one
// is for the engine, and then reports true with c.next at that one. What
// it relayed is sent first.
func (c *listenConn) drain() bool {
	for ; c.next < c.count; c.next++ {
		buf, n, from := c.reader.Packet(c.next)
		// A datagram filling the buffer may have been cut short; the
		// engine drops those.
		if n >= relayMTU {
			break
		}
		rc, data, peer := c.fast.fromClient(buf[:n], from)
		if rc == nil {
			break
		}
		c.toPeer(rc, data, peer)
	}
	c.flush()
	return c.next < c.count
}

func (c *listenConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for !c.drain() {
		if err := c.reader.Read(); err != nil {
			return 0, nil, err
		}
	}
	// The engine gets this one, after what was relayed before it.
	buf, n, from := c.reader.Packet(c.next)
	c.next++
	return copy(b, buf[:n]), c.addr(from), nil
}
