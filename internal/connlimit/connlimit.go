// Package connlimit counts what each client address holds open at once
// (connections, streams still negotiating) and refuses one more past a
// cap, so one address cannot take every socket or goroutine of a node.
// It never decides who the client is: callers name the address, after the
// trusted-proxy rules of clientaddr, and it never blocks.
package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"poosms.org/poosms/internal/clientaddr"
)

// Limiter holds up to max places per address key. A nil *Limiter, or one
// with max ≤ 0, admits everything.
type Limiter struct {
	max    int
	exempt []netip.Prefix

	refused atomic.Uint64

	mu   sync.Mutex
	held map[string]int // key → places held; keys at zero are removed
}

// New returns a Limiter of max places per address (IPv4 address, or IPv6
// /64: clientaddr.Key). Addresses inside exempt are never counted: the
// host itself, or a proxy that carries many clients.
func New(max int, exempt []netip.Prefix) *Limiter {
	return &Limiter{max: max, exempt: append([]netip.Prefix(nil), exempt...), held: map[string]int{}}
}

// Acquire takes one place for addr. ok is false, and nothing is taken,
// when addr holds max places already. release gives the place back; it
// may be called more than once.
func (l *Limiter) Acquire(addr netip.Addr) (release func(), ok bool) {
	if l == nil || l.max <= 0 || l.exempted(addr) {
		return func() {}, true
	}
	key := clientaddr.Key(addr)
	l.mu.Lock()
	if l.held[key] >= l.max {
		l.mu.Unlock()
		l.refused.Add(1)
		return nil, false
	}
	l.held[key]++
	l.mu.Unlock()
	var once atomic.Bool
	return func() {
		if once.Swap(true) {
			return
		}
		l.mu.Lock()
		if l.held[key]--; l.held[key] <= 0 {
			delete(l.held, key)
		}
		l.mu.Unlock()
	}, true
}

func (l *Limiter) exempted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range l.exempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Held is the number of places addr's key holds.
func (l *Limiter) Held(addr netip.Addr) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held[clientaddr.Key(addr)]
}

// Keys is the number of addresses holding places: what the Limiter
// itself keeps in memory.
func (l *Limiter) Keys() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.held)
}

// Refused is how many Acquire calls were refused.
func (l *Limiter) Refused() uint64 {
	if l == nil {
		return 0
	}
	return l.refused.Load()
}

// AddrOf is the IP address of a connection's remote address (the zero
// Addr when it has none).
func AddrOf(a net.Addr) netip.Addr {
	if a == nil {
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if ad, err := netip.ParseAddr(a.String()); err == nil {
		return ad.Unmap().WithZone("")
	}
	return netip.Addr{}
}
