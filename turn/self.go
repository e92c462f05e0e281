package turn

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"poosms.org/poosms/internal/udpbatch"
)

// The relay's own host.
//
// An allocation must not become a way into the host the relay runs on:
// the SFU's media port, the TURN ports themselves, the XMPP and HTTP
// listeners, and whatever else listens there (SSH, a database on a
// private address). The peer policy refuses loopback and private ranges,
// but an operator may open a private range that holds this host's
// addresses, and the public address is in no refused range at all. So
// the addresses of this host are refused as peers on their own account,
// whatever AllowPeers says, unless AllowSelf is set:
//
//   - loopback (127.0.0.0/8, ::1) and unspecified (0.0.0.0, ::) addresses;
//   - every address of every interface of this host, read again at most
//     selfRefresh after the last reading, on a permission request;
//   - the addresses the relay listens on, the relayed address it
//     advertises, and Config.SelfAddrs (the other services' listen
//     addresses and the public address behind NAT);
//   - any of those carried in an IPv6 form the peer policy looks through
//     (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo).
//
// One exception keeps clients of this relay able to reach each other
// when both relay: the advertised relayed address may be given a
// permission, and datagrams to and from it pass when their port is one
// of a live allocation's relay socket; every other port of it stays shut.
// Permissions are per address (RFC 8656 §9), so the port is checked on
// each datagram, in both directions, by the relay socket (relayConn).

// selfRefresh is how old the reading of the interface addresses may grow
// before a permission request reads them again.
const selfRefresh = 30 * time.Second

// selfGuard keeps allocations away from this host's own addresses.
type selfGuard struct {
	off        bool       // Config.AllowSelf
	relay      netip.Addr // the advertised relayed address
	fixed      []netip.Addr
	interfaces func() ([]netip.Addr, error)
	now        func() time.Time
	log        *slog.Logger

	set        atomic.Pointer[selfSet]
	refreshing sync.Mutex // held by the one refresh under way

	portsMu sync.Mutex
	ports   map[uint16]int // port of each live relay socket → sockets on it
}

// selfSet is one reading of this host's addresses.
type selfSet struct {
	addrs map[netip.Addr]struct{}
	at    time.Time
}

func newSelfGuard(off bool, relay netip.Addr, fixed []netip.Addr, now func() time.Time, log *slog.Logger) *selfGuard {
	g := &selfGuard{off: off, relay: relay.Unmap(), fixed: fixed, interfaces: interfaceAddrs,
		now: now, log: log, ports: map[uint16]int{}}
	g.fixed = append(g.fixed, g.relay)
	g.refresh()
	return g
}

// interfaceAddrs lists the addresses of this host's interfaces.
func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr)
		}
	}
	return out, nil
}

// refresh reads the interface addresses again. When they cannot be read,
// the previous reading stays in force.
func (g *selfGuard) refresh() {
	ifs, err := g.interfaces()
	if err != nil {
		g.log.Warn("turn: cannot list this host's addresses; the relay keeps refusing the ones it knew", "err", err)
		if old := g.set.Load(); old != nil {
			g.set.Store(&selfSet{addrs: old.addrs, at: g.now()})
			return
		}
	}
	set := &selfSet{addrs: make(map[netip.Addr]struct{}, len(g.fixed)+len(ifs)), at: g.now()}
	for _, list := range [][]netip.Addr{g.fixed, ifs} {
		for _, a := range list {
			if a.IsValid() {
				set.addrs[a.WithZone("").Unmap()] = struct{}{}
			}
		}
	}
	g.set.Store(set)
}

// fresh refreshes a reading older than selfRefresh; while another caller
// refreshes, the current reading serves.
func (g *selfGuard) fresh() {
	if s := g.set.Load(); s != nil && g.now().Sub(s.at) < selfRefresh {
		return
	}
	if g.refreshing.TryLock() {
		defer g.refreshing.Unlock()
		if s := g.set.Load(); s == nil || g.now().Sub(s.at) >= selfRefresh {
			g.refresh()
		}
	}
}

// isSelf reports whether ip, or an IPv4 address it carries, reaches this
// host.
func (g *selfGuard) isSelf(ip netip.Addr) bool {
	ip = ip.WithZone("")
	set := g.set.Load()
	own := func(a netip.Addr) bool {
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		_, ok := set.addrs[a]
		return ok
	}
	if own(ip.Unmap()) {
		return true
	}
	var embedded [2]netip.Addr
	for _, v4 := range embeddedIPv4(ip, embedded[:0]) {
		if own(v4) {
			return true
		}
	}
	return false
}

// refusesPeer reports whether a permission for ip must be refused: it
// reaches this host and is not the advertised relayed address.
func (g *selfGuard) refusesPeer(ip netip.Addr) bool {
	if g.off {
		return false
	}
	g.fresh()
	return g.isSelf(ip) && ip.WithZone("").Unmap() != g.relay
}

// blocks reports whether a datagram between a relay socket and addr must
// be dropped: addr is on this host and is not another allocation's relay
// socket.
func (g *selfGuard) blocks(addr net.Addr) bool {
	if g.off {
		return false
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return true
	}
	ip, ok := netip.AddrFromSlice(ua.IP)
	if !ok {
		return true
	}
	if ua.Port < 0 || ua.Port > 65535 {
		return g.isSelf(ip)
	}
	return g.blocksAddrPort(netip.AddrPortFrom(ip, uint16(ua.Port)))
}

// blocksAddrPort is blocks for an address in netip form.
func (g *selfGuard) blocksAddrPort(ap netip.AddrPort) bool {
	if g.off {
		return false
	}
	ip := ap.Addr()
	if !g.isSelf(ip) {
		return false
	}
	if ip.Unmap() != g.relay || ap.Port() == 0 {
		return true
	}
	g.portsMu.Lock()
	defer g.portsMu.Unlock()
	return g.ports[ap.Port()] == 0
}

// opened and closed track the ports of live relay sockets.
func (g *selfGuard) opened(port uint16) {
	g.portsMu.Lock()
	g.ports[port]++
	g.portsMu.Unlock()
}

func (g *selfGuard) closed(port uint16) {
	g.portsMu.Lock()
	if g.ports[port]--; g.ports[port] <= 0 {
		delete(g.ports, port)
	}
	g.portsMu.Unlock()
}

// relayConn is an allocation's relay socket. Datagrams to and from this
// host's own addresses are dropped (see selfGuard), as if lost on the way:
// an error would be logged by the engine for each of them. Datagrams
// from permitted peers of a UDP client go straight to the client (see
// fastPath).
type relayConn struct {
	*udpConn
	relayState
	guard   *selfGuard
	port    uint16
	dropped *atomic.Uint64
	fast    *fastPath
	once    sync.Once
}

func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.guard.blocks(addr) {
		c.dropped.Add(1)
		return len(p), nil
	}
	return c.udpConn.WriteTo(p, addr)
}

func (c *relayConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.reader == nil {
		for {
			n, addr, err := c.udpConn.ReadFrom(b)
			if err != nil || !c.guard.blocks(addr) {
				return n, addr, err
			}
			c.dropped.Add(1)
		}
	}
	if c.poller != nil {
		return c.readFromPoller(b)
	}
	for !c.drain() {
		if c.busy {
			// Everything of the last read is handled and sent.
			c.reader.Grow(relayBatchBusy)
			c.busy = false
		}
		if err := c.reader.Read(); err != nil {
			return 0, nil, err
		}
	}
	// The engine gets this one: what the fast path queued before it went
	// first.
	buf, n, from := c.reader.Packet(c.next)
	c.next++
	return copy(b, buf[relayHeadroom:relayHeadroom+n]), c.addr(from), nil
}

// readFromPoller is ReadFrom of a relay socket the poller reads: it waits
// until the poller hands it a batch with a datagram for the engine,
// relays what the fast path takes of the rest of that batch, and gives
// the socket back to the poller once the batch is done.
func (c *relayConn) readFromPoller(b []byte) (int, net.Addr, error) {
	for {
		if !c.polled.Load() {
			// This goroutine has the reader. Datagrams for the client go
			// one by one: this happens only around datagrams the fast
			// path leaves to the engine.
			for ; c.next < c.count; c.next++ {
				buf, n, from := c.reader.Packet(c.next)
				if c.guard.blocksAddrPort(from) {
					c.dropped.Add(1)
					continue
				}
				if n < relayMTU {
					if msg, client, ok := c.fromPeer(buf, n, from); ok {
						// A failed send is a lost datagram, as on the engine's path.
						_, _ = c.listener.WriteToUDPAddrPort(msg, client)
						continue
					}
				}
				c.next++
				return copy(b, buf[relayHeadroom:relayHeadroom+n]), c.addr(from), nil
			}
			if err := c.poller.resume(c); err != nil {
				return 0, nil, net.ErrClosed
			}
		}
		select {
		case <-c.wake:
		case <-c.done:
			return 0, nil, net.ErrClosed
		}
	}
}

// noteBatch records a read of n datagrams: a full batch marks the socket
// busy, to be grown before its next read.
func (c *relayConn) noteBatch(n int) {
	if n == c.reader.Cap() && n < relayBatchBusy {
		c.busy = true
	}
	if int32(n) > c.maxBatch.Load() {
		c.maxBatch.Store(int32(n))
	}
}

// consume takes a batch the reader just read and relays what the fast
// path may; it reports whether that was all of it.
func (c *relayConn) consume(n int) bool {
	c.next, c.count = 0, n
	c.noteBatch(n)
	return !c.drain()
}

// drain relays (or, for this host's own addresses, drops) the datagrams
// of the last read from c.next on until one is for the engine, and then
// reports true with c.next at that one. What it relayed is sent first.
func (c *relayConn) drain() bool {
	c.relayTo(c.writer)
	c.writer.Flush()
	return c.next < c.count
}

// relayTo queues on w the datagrams of the last read from c.next on (or,
// for this host's own addresses, drops them) until one is for the engine,
// where c.next stops.
func (c *relayConn) relayTo(w *udpbatch.Writer) {
	for ; c.next < c.count; c.next++ {
		buf, n, from := c.reader.Packet(c.next)
		if c.guard.blocksAddrPort(from) {
			c.dropped.Add(1)
			continue
		}
		if n >= relayMTU {
			break
		}
		msg, client, ok := c.fromPeer(buf, n, from)
		if !ok {
			break
		}
		w.Add(msg, client)
	}
}

func (c *relayConn) Close() error {
	c.once.Do(func() {
		c.guard.closed(c.port)
		c.smu.Lock()
		c.closed = true
		c.smu.Unlock()
		c.fast.closed(c)
		if c.poller != nil {
			c.poller.remove(c)
			close(c.done)
		}
	})
	return c.udpConn.Close()
}

// ListenAddrs turns listen addresses ("host:port") into Config.SelfAddrs:
// the host of each, or the unspecified address when the host is empty or
// a name (every interface address is refused anyway). Empty addresses
// (listeners that are off) are skipped.
func ListenAddrs(addrs ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a == "" {
			continue
		}
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			host = a
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			ip = netip.IPv4Unspecified()
		}
		out = append(out, ip)
	}
	return out
}
