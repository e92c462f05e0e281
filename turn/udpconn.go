package turn

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

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
	c.mu.Lock()
	addr, ok := c.addrs[ap]
	if !ok {
		if len(c.addrs) >= addrCacheMax {
			clear(c.addrs)
		}
		addr = udpAddr16(ap)
		c.addrs[ap] = addr
	}
	c.mu.Unlock()
	return n, addr, nil
}

// LocalAddr returns the socket's address, IP in 16-byte form.
func (c *udpConn) LocalAddr() net.Addr { return c.local }

// relayGenerator opens the relay sockets of allocations: UDP sockets
// bound to bind on an ephemeral port, advertised to clients as
// advertise and that port.
type relayGenerator struct {
	advertise net.IP
	bind      net.IP
}

func (g *relayGenerator) Validate() error {
	if g.advertise.To4() == nil || g.bind.To4() == nil {
		return errors.New("turn: relay addresses must be IPv4")
	}
	return nil
}

func (g *relayGenerator) AllocatePacketConn(network string, port int) (net.PacketConn, net.Addr, error) {
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: g.bind, Port: port})
	if err != nil {
		return nil, nil, err
	}
	relayed := udpAddr16(netip.AddrPortFrom(
		netip.AddrFrom4([4]byte(g.advertise.To4())), uint16(c.LocalAddr().(*net.UDPAddr).Port)))
	return newUDPConn(c), relayed, nil
}

func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errors.New("turn: TCP relay allocations are not supported")
}
