// Package clientaddr finds who is on the other end of an HTTP request: the
// TCP peer, or, when the peer is a reverse proxy the operator trusts
// (--trusted-proxies), the client the proxy names in X-Forwarded-For or
// Forwarded (RFC 7239). Headers from any other peer are ignored: they are
// whatever the client chose to write.
package clientaddr

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver reads client addresses and schemes through trusted proxies.
// The zero value trusts no proxy.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver that believes the forwarding headers of peers
// inside trusted.
func New(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: append([]netip.Prefix(nil), trusted...)}
}

// Trusts reports whether a is one of the trusted proxies.
func (r *Resolver) Trusts(a netip.Addr) bool { return r.isTrusted(a) }

func (r *Resolver) isTrusted(a netip.Addr) bool {
	if r == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Peer is the TCP peer of req; the zero Addr when RemoteAddr is not an
// IP address.
func Peer(req *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap().WithZone("")
}

// Client is the address of the client that sent req. For a trusted peer
// it is the rightmost address in the forwarding header that is not itself
// a trusted proxy (every hop to its right was added by a proxy we trust;
// everything to its left the client may have written). When the request
// carries both X-Forwarded-For and Forwarded and they name different
// clients, one of them was written by the client: the request then counts
// as the proxy's own, so a forger cannot choose whose bucket it lands in.
func (r *Resolver) Client(req *http.Request) netip.Addr {
	peer := Peer(req)
	if !peer.IsValid() || !r.isTrusted(peer) {
		return peer
	}
	xff, hasXFF := r.fromXFF(req.Header)
	fwd, hasFwd := r.fromForwarded(req.Header)
	switch {
	case hasXFF && hasFwd:
		if xff == fwd {
			return xff
		}
		return peer
	case hasXFF:
		return xff
	case hasFwd:
		return fwd
	}
	return peer
}

// HTTPS reports whether the client reached us over HTTPS: the request came
// over TLS, or a trusted proxy says so with X-Forwarded-Proto or
// Forwarded proto= (both, when both are present).
func (r *Resolver) HTTPS(req *http.Request) bool {
	if req.TLS != nil {
		return true
	}
	peer := Peer(req)
	if !peer.IsValid() || !r.isTrusted(peer) {
		return false
	}
	xfp, hasXFP := lastToken(req.Header.Values("X-Forwarded-Proto"))
	fp, hasFP := forwardedParam(req.Header.Values("Forwarded"), "proto")
	switch {
	case hasXFP && hasFP:
		return strings.EqualFold(xfp, "https") && strings.EqualFold(fp, "https")
	case hasXFP:
		return strings.EqualFold(xfp, "https")
	case hasFP:
		return strings.EqualFold(fp, "https")
	}
	return false
}

// Host is the host (with port) the client asked for: a trusted proxy's
// X-Forwarded-Host or Forwarded host=, else the request's Host.
func (r *Resolver) Host(req *http.Request) string {
	if peer := Peer(req); peer.IsValid() && r.isTrusted(peer) {
		if h, ok := lastToken(req.Header.Values("X-Forwarded-Host")); ok {
			return h
		}
		if h, ok := forwardedParam(req.Header.Values("Forwarded"), "host"); ok {
			return h
		}
	}
	return req.Host
}

// fromXFF walks X-Forwarded-For from the right. ok is false when the
// header is absent or names no usable address.
func (r *Resolver) fromXFF(h http.Header) (netip.Addr, bool) {
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for f := range strings.SplitSeq(v, ",") {
			hops = append(hops, strings.TrimSpace(f))
		}
	}
	return r.pick(hops)
}

// fromForwarded walks the for= parameters of Forwarded from the right.
func (r *Resolver) fromForwarded(h http.Header) (netip.Addr, bool) {
	var hops []string
	for _, el := range forwardedElements(h.Values("Forwarded")) {
		hops = append(hops, el["for"])
	}
	return r.pick(hops)
}

// pick returns the rightmost hop that is not a trusted proxy, or the
// leftmost when every hop is trusted. A hop that is not an address
// ("unknown", an obfuscated name, garbage) where the client should be
// gives no answer: the caller falls back to the peer.
func (r *Resolver) pick(hops []string) (netip.Addr, bool) {
	if len(hops) == 0 {
		return netip.Addr{}, false
	}
	var last netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return netip.Addr{}, false
		}
		if !r.isTrusted(a) {
			return a, true
		}
		last = a
	}
	return last, true
}

// parseHop reads "192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
// "[2001:db8::1]:4711" or the quoted forms Forwarded uses.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// forwardedElements splits Forwarded header values into their elements
// (comma-separated), each a map of lower-case parameter names to values
// with quotes removed. Quoted commas and semicolons are kept.
func forwardedElements(values []string) []map[string]string {
	var out []map[string]string
	for _, v := range values {
		for _, el := range splitQuoted(v, ',') {
			m := map[string]string{}
			for _, pair := range splitQuoted(el, ';') {
				k, val, ok := strings.Cut(pair, "=")
				if !ok {
					continue
				}
				m[strings.ToLower(strings.TrimSpace(k))] = strings.Trim(strings.TrimSpace(val), `"`)
			}
			out = append(out, m)
		}
	}
	return out
}

// forwardedParam is param of the rightmost Forwarded element, the one the
// proxy nearest to us wrote.
func forwardedParam(values []string, param string) (string, bool) {
	els := forwardedElements(values)
	if len(els) == 0 {
		return "", false
	}
	v, ok := els[len(els)-1][param]
	return v, ok && v != ""
}

// lastToken is the rightmost comma-separated value of a header.
func lastToken(values []string) (string, bool) {
	if len(values) == 0 {
		return "", false
	}
	parts := strings.Split(values[len(values)-1], ",")
	v := strings.TrimSpace(parts[len(parts)-1])
	return v, v != ""
}

// splitQuoted splits s at sep outside double quotes.
func splitQuoted(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// Key groups addresses for rate limits: an IPv4 address as it is, an IPv6
// address by the /64 it belongs to (one household or host usually holds a
// whole /64). The zero Addr gives "".
func Key(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

// KeyOf is Key for a net.Addr (a connection's remote address).
func KeyOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return Key(ap.Addr())
	}
	if ad, err := netip.ParseAddr(a.String()); err == nil {
		return Key(ad)
	}
	return a.String()
}
