package sfu

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"

	"poosms.org/poosms/internal/udpbatch"
)

// listenMediaUDP binds the media port and builds the ICE UDP mux over it.
// Each socket is wrapped in a udpbatch.Conn, so the datagrams of one
// fan-out (upTrack.fanOut) leave with one sendmmsg per socket instead of
// one sendto each, and the mux's reads take what is waiting with one
// recvmmsg.
//
// An address with a host binds that address. An unspecified one binds
// the port on every address of every interface that is up (loopback only
// with IncludeLoopback), as ice.NewMultiUDPMuxFromPort does, which cannot
// be given sockets of our own.
func (s *Service) listenMediaUDP(addr *net.UDPAddr, log logging.LeveledLogger) error {
	s.batch = udpbatch.NewGroup(func(failed int, err error) {
		s.log.Debug("media datagrams not sent", "count", failed, "err", err)
	})
	if addr.IP != nil && !addr.IP.IsUnspecified() {
		c, err := s.listenBatched(addr)
		if err != nil {
			return err
		}
		s.udpConn = c
		s.firstUDP = c.LocalAddr()
		s.udpMux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c, Logger: log})
		return nil
	}
	ips, err := interfaceAddrs(s.cfg.IncludeLoopback)
	if err != nil {
		return fmt.Errorf("sfu: listen media udp %q: %w", s.cfg.UDPAddr, err)
	}
	var muxes []ice.UDPMux
	closeAll := func() {
		for _, m := range muxes {
			_ = m.Close()
		}
	}
	for _, ip := range ips {
		c, err := s.listenBatched(&net.UDPAddr{IP: ip.AsSlice(), Zone: ip.Zone(), Port: addr.Port})
		if err != nil {
			closeAll()
			return err
		}
		muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: c, Logger: log}))
	}
	m := ice.NewMultiUDPMuxDefault(muxes...)
	s.udpMux = m
	if addrs := m.GetListenAddresses(); len(addrs) > 0 {
		s.firstUDP = addrs[0]
	}
	return nil
}

// mediaSocketBuffer is the receive and send buffer asked for each media
// socket.
const mediaSocketBuffer = 4 << 20

func (s *Service) listenBatched(addr *net.UDPAddr) (*udpbatch.Conn, error) {
	c, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("sfu: listen media udp %q: %w", addr, err)
	}
	// Every participant's media comes in through this socket; a larger
	// buffer than the default (about 200 KiB) rides out a burst, or a
	// moment the reading goroutine spends forwarding (the kernel caps the
	// request at net.core.rmem_max and wmem_max).
	_ = c.SetReadBuffer(mediaSocketBuffer)
	_ = c.SetWriteBuffer(mediaSocketBuffer)
	bc, err := udpbatch.NewConn(c, s.batch, 0)
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("sfu: media udp %q: %w", addr, err)
	}
	bc.SetFilter(s.recv.filter)
	s.sockets = append(s.sockets, bc)
	return bc, nil
}

// socketFor returns the media socket bound to a, or, when a is none of
// their addresses (an ICE address rewrite to a public IP), the one socket
// of a's family if there is exactly one; nil otherwise.
func (s *Service) socketFor(a netip.Addr) *udpbatch.Conn {
	var only *udpbatch.Conn
	n := 0
	for _, c := range s.sockets {
		ua, ok := c.LocalAddr().(*net.UDPAddr)
		if !ok {
			continue
		}
		ca := ua.AddrPort().Addr().Unmap()
		if ca == a {
			return c
		}
		if ca.Is4() == a.Is4() {
			only = c
			n++
		}
	}
	if n == 1 {
		return only
	}
	return nil
}

// interfaceAddrs lists the addresses ICE may offer host candidates on:
// those of interfaces that are up, loopback ones only when asked, without
// deprecated IPv4-compatible and site-local IPv6 addresses (RFC 8445
// section 5.1.1.1); link-local IPv6 addresses carry their interface as
// zone.
func interfaceAddrs(loopback bool) ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || (ifc.Flags&net.FlagLoopback != 0 && !loopback) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(pfx.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if ip.IsLoopback() && !loopback {
				continue
			}
			if ip.Is6() {
				b := ip.As16()
				if [12]byte(b[:12]) == [12]byte{} || (b[0] == 0xfe && b[1]&0xc0 == 0xc0) {
					continue
				}
				if ip.IsLinkLocalUnicast() {
					ip = ip.WithZone(ifc.Name)
				}
			}
			out = append(out, ip)
		}
	}
	return out, nil
}
