package turn

import (
	"net/netip"
)

// forbiddenPeers are the ranges a relay refuses to reach unless the
// operator allows them: everything that lands inside the server's own
// host or network, or that is not a unicast address on the internet.
var forbiddenPeers = mustPrefixes(
	// IPv4
	"0.0.0.0/8",       // "this network", including 0.0.0.0
	"10.0.0.0/8",      // private (RFC 1918)
	"100.64.0.0/10",   // carrier-grade NAT shared space (RFC 6598)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, including cloud metadata 169.254.169.254
	"172.16.0.0/12",   // private (RFC 1918)
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.88.99.0/24",  // 6to4 relay anycast
	"192.168.0.0/16",  // private (RFC 1918)
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, including 255.255.255.255 broadcast
	"::/128",          // unspecified
	"::1/128",         // loopback
	"::ffff:0:0/96",   // IPv4-mapped: only reachable through its IPv4 form
	"64:ff9b:1::/48",  // local-use NAT64 (RFC 8215)
	"100::/64",        // discard-only
	"2001:db8::/32",   // documentation
	"fc00::/7",        // unique local, including fd00:ec2::254 (cloud metadata)
	"fe80::/10",       // link-local
	"fec0::/10",       // deprecated site-local
	"ff00::/8",        // multicast
)

var (
	ipv4Compatible = netip.MustParsePrefix("::/96")
	ipv4Translated = netip.MustParsePrefix("::ffff:0:0:0/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
	teredo         = netip.MustParsePrefix("2001::/32")
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// PeerAllowed reports whether the relay may send to ip. Addresses in the
// server's own host or network (loopback, private, link-local, carrier-grade
// NAT, cloud metadata), multicast, broadcast, unspecified and reserved
// addresses are refused, and so is any IPv6 address that carries one of
// them in IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 (64:ff9b::/96),
// 6to4 (2002::/16) or Teredo (2001::/32) form. A refused address is
// admitted when it, or the IPv4 address it carries, lies inside one of the
// allow prefixes.
func PeerAllowed(ip netip.Addr, allow []netip.Prefix) bool {
	if !ip.IsValid() {
		return false
	}
	ip = ip.WithZone("")
	if inAny(ip, allow) {
		return true
	}
	if ip.Is4In6() {
		return PeerAllowed(ip.Unmap(), allow)
	}
	if inAny(ip, forbiddenPeers) {
		return false
	}
	// Every IPv4 address the IPv6 address carries must itself be allowed.
	var embedded [2]netip.Addr
	for _, v4 := range embeddedIPv4(ip, embedded[:0]) {
		if !PeerAllowed(v4, allow) {
			return false
		}
	}
	return true
}

// embeddedIPv4 appends to dst the IPv4 addresses that ip, an IPv6 address,
// would reach through a translation or tunnelling mechanism.
func embeddedIPv4(ip netip.Addr, dst []netip.Addr) []netip.Addr {
	if !ip.Is6() {
		return dst
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{b[i], b[i+1], b[i+2], b[i+3]}) }
	switch {
	case ipv4Compatible.Contains(ip), ipv4Translated.Contains(ip), nat64.Contains(ip):
		dst = append(dst, v4(12))
	case sixToFour.Contains(ip):
		dst = append(dst, v4(2))
	case teredo.Contains(ip):
		// The Teredo server, then the client's public address (inverted).
		client := netip.AddrFrom4([4]byte{^b[12], ^b[13], ^b[14], ^b[15]})
		dst = append(dst, v4(4), client)
	}
	return dst
}

func inAny(ip netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
