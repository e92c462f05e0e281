package connlimit

import (
	"net"
	"net/netip"
	"sync"
	"testing"
)

func TestPlacesPerAddress(t *testing.T) {
	l := New(2, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")

	r1, ok1 := l.Acquire(a)
	r2, ok2 := l.Acquire(a)
	if !ok1 || !ok2 {
		t.Fatal("the first two places of an address were refused")
	}
	if _, ok := l.Acquire(a); ok {
		t.Fatal("a third place for the same address was granted")
	}
	if _, ok := l.Acquire(b); !ok {
		t.Fatal("another address was refused while the first was full")
	}
	if l.Refused() != 1 {
		t.Errorf("Refused = %d, want 1", l.Refused())
	}
	r1()
	r1() // twice gives back one place only
	if l.Held(a) != 1 {
		t.Errorf("after one release Held = %d, want 1", l.Held(a))
	}
	r3, ok := l.Acquire(a)
	if !ok {
		t.Fatal("a released place was not given again")
	}
	if _, ok := l.Acquire(a); ok {
		t.Fatal("a double release gave an extra place")
	}
	r2()
	r3()
	if l.Held(a) != 0 || l.Keys() != 1 {
		t.Errorf("after every release of a: Held = %d, keys = %d; want 0 and 1 (b's)", l.Held(a), l.Keys())
	}

	// An IPv6 /64 is one address; exempt addresses are never counted.
	v6a, v6b := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::ffff")
	if _, ok := l.Acquire(v6a); !ok {
		t.Fatal(v6a)
	}
	if _, ok := l.Acquire(v6b); !ok {
		t.Fatal(v6b)
	}
	if _, ok := l.Acquire(netip.MustParseAddr("2001:db8::2")); ok {
		t.Fatal("a third address of one /64 was granted a place")
	}
	lo := netip.MustParseAddr("127.0.0.1")
	for range 10 {
		if _, ok := l.Acquire(lo); !ok {
			t.Fatal("an exempt address was refused")
		}
	}
	if l.Held(lo) != 0 {
		t.Errorf("an exempt address was counted: %d", l.Held(lo))
	}
}

func TestNoLimit(t *testing.T) {
	var nilLimiter *Limiter
	for _, l := range []*Limiter{nilLimiter, New(0, nil)} {
		for range 100 {
			if _, ok := l.Acquire(netip.MustParseAddr("192.0.2.1")); !ok {
				t.Fatal("a limiter without a cap refused")
			}
		}
	}
}

func TestConcurrentAcquire(t *testing.T) {
	l := New(5, nil)
	a := netip.MustParseAddr("192.0.2.9")
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := 0
	var releases []func()
	for range 50 {
		wg.Go(func() {
			if r, ok := l.Acquire(a); ok {
				mu.Lock()
				granted++
				releases = append(releases, r)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if granted != 5 {
		t.Errorf("granted %d places to one address, want 5", granted)
	}
	for _, r := range releases {
		r()
	}
	if l.Keys() != 0 {
		t.Errorf("%d keys left after every release", l.Keys())
	}
}

func TestAddrOf(t *testing.T) {
	for _, tc := range []struct {
		in   net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 5}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 5}, "2001:db8::1"},
		{nil, "invalid IP"},
	} {
		if got := AddrOf(tc.in).String(); got != tc.want {
			t.Errorf("AddrOf(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
