package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"poosms.org/poosms/internal/udpbatch"
)

// relayPortAttempts bounds the ports tried per allocation in a relay
// port range.
const relayPortAttempts = 64

// addrCacheMax bounds the per-socket cache of peer addresses.
const addrCacheMax = 4096

// udpConn wraps a UDP socket for the TURN engine so that the packet path
// does not allocate a new address per datagram: ReadFrom hands back one
// shared *net.UDPAddr per remote address, and every address carries its
// IP in 16-byte form, which the engine's allocation lookup would
// otherwise convert (and allocate) on each packet. The engine never
// modifies the addresses it is given.
type udpConn struct {
	*net.UDPConn
	local *net.UDPAddr

	mu    sync.Mutex
	addrs map[netip.AddrPort]*net.UDPAddr
}

func newUDPConn(c *net.UDPConn) *udpConn {
	return &udpConn{
		UDPConn: c,
		local:   udpAddr16(c.LocalAddr().(*net.UDPAddr).AddrPort()),
		addrs:   make(map[netip.AddrPort]*net.UDPAddr),
	}
}

func udpAddr16(ap netip.AddrPort) *net.UDPAddr {
	ip := ap.Addr().As16()
	return &net.UDPAddr{IP: ip[:], Port: int(ap.Port()), Zone: ap.Addr().Zone()}
}

// ReadFrom reads a datagram and returns the shared address of its sender.
func (c *udpConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.UDPConn.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, c.addr(ap), nil
}

// addr returns the shared address for ap.
func (c *udpConn) addr(ap netip.AddrPort) *net.UDPAddr {
	c.mu.Lock()
	defer c.mu.Unlock()
	addr, ok := c.addrs[ap]
	if !ok {
		if len(c.addrs) >= addrCacheMax {
			clear(c.addrs)
		}
		addr = udpAddr16(ap)
		c.addrs[ap] = addr
	}
	return addr
}

// LocalAddr returns the socket's address, IP in 16-byte form.
func (c *udpConn) LocalAddr() net.Addr { return c.local }

// relayGenerator opens the relay sockets of allocations: UDP sockets
// bound to bind on a port from [minPort, maxPort] (an ephemeral port when
// both are zero), advertised to clients as advertise and that port.
type relayGenerator struct {
	advertise        net.IP
	bind             net.IP
	minPort, maxPort uint16
	self             *selfGuard     // keeps relays off this host's own addresses
	dropped          *atomic.Uint64 // datagrams self dropped
	fast             *fastPath
	listener         *udpConn     // the UDP listener served; nil for TCP and TLS
	poller           *relayPoller // reads the relay sockets of listener's clients; nil without epoll
}

func (g *relayGenerator) Validate() error {
	if g.advertise.To4() == nil || g.bind.To4() == nil {
		return errors.New("turn: relay addresses must be IPv4")
	}
	return nil
}

func (g *relayGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	c, err := g.listen(network, port)
	if err != nil {
		return nil, nil, err
	}
	p := uint16(c.LocalAddr().(*net.UDPAddr).Port)
	relayed := udpAddr16(netip.AddrPortFrom(netip.AddrFrom4([4]byte(g.advertise.To4())), p))
	g.self.opened(p)
	rc := &relayConn{udpConn: newUDPConn(c), guard: g.self, port: p, dropped: g.dropped, fast: g.fast}
	rc.listener = g.listener
	rc.perms = make(map[netip.Addr]struct{})
	rc.chans = make(map[uint16]netip.AddrPort)
	rc.peers = make(map[netip.AddrPort]uint16)
	if rc.listener != nil {
		if rc.reader, err = udpbatch.NewReader(c, relayBatch, relayHeadroom, relayMTU, rc.consume); err == nil && g.poller == nil {
			rc.writer, err = udpbatch.NewWriter(rc.listener.UDPConn, relayBatchBusy)
			if err == nil {
				// A relay socket's batch is mostly one peer's datagrams
				// for the client, of one size in a burst of media: runs
				// that GSO sends as one datagram through the stack.
				rc.writer.EnableGSO()
			}
		}
		if err == nil {
			rc.peerWriter.Writer, err = udpbatch.NewWriter(c, relayBatchBusy)
		}
		if err == nil {
			// A listener's batch may hold several of a client's datagrams
			// for one peer: a GSO run too.
			rc.peerWriter.EnableGSO()
			rc.raw, err = c.SyscallConn()
		}
		if err != nil {
			c.Close()
			g.self.closed(p)
			return nil, nil, err
		}
	}
	g.fast.opened(rc)
	if rc.listener != nil && g.poller != nil {
		rc.poller = g.poller
		rc.wake, rc.done = make(chan struct{}, 1), make(chan struct{})
		if err := g.poller.add(rc); err != nil {
			rc.poller = nil
			rc.Close()
			return nil, nil, err
		}
	}
	return rc, relayed, nil
}

// listen binds a relay socket: on port when one is requested, otherwise
// on a random free port of the range.
func (g *relayGenerator) listen(network string, port int) (*net.UDPConn, error) {
	if port != 0 || g.maxPort == 0 {
		if port != 0 && g.maxPort != 0 && (port < int(g.minPort) || port > int(g.maxPort)) {
			return nil, fmt.Errorf("turn: requested relay port %d outside %d-%d", port, g.minPort, g.maxPort)
		}
		return net.ListenUDP(network, &net.UDPAddr{IP: g.bind, Port: port})
	}
	span := int(g.maxPort) - int(g.minPort) + 1
	start := rand.IntN(span)
	var err error
	for i := range min(span, relayPortAttempts) {
		p := int(g.minPort) + (start+i)%span
		var c *net.UDPConn
		if c, err = net.ListenUDP(network, &net.UDPAddr{IP: g.bind, Port: p}); err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("turn: no free relay port in %d-%d: %w", g.minPort, g.maxPort, err)
}

func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turn: TCP relay allocations are not supported")
}
