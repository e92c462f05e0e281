package loginlimit

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestLimits(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Config{Failures: 2, Window: time.Minute, Now: c.now})
	check := func(what, account, addr string, want Refusal) {
		t.Helper()
		if got, _ := l.Check(account, addr); got != want {
			t.Errorf("%s: Check(%s, %s) = %v, want %v", what, account, addr, got, want)
		}
	}
	l.Fail("alice", "a1")
	check("one failure", "alice", "a1", Allowed)
	l.Fail("alice", "a1")
	check("two failures", "alice", "a1", ByAccountAtAddress)
	check("another address", "alice", "a2", Allowed)
	check("another account", "bob", "a1", Allowed)
	for _, other := range []string{"u", "v", "w", "x", "y"} {
		l.Fail(other, "a1")
	}
	check("address at 7 of 8", "bob", "a1", Allowed)
	l.Fail("z", "a1")
	check("address over 4x", "bob", "a1", ByAddress)
	if r, wait := l.CheckAddress("a1"); r != ByAddress || wait != time.Minute {
		t.Errorf("CheckAddress = %v %v", r, wait)
	}

	// The account from many addresses: 40 failures.
	l.Succeed("carol", "home")
	for i := range 40 {
		l.Fail("carol", fmt.Sprintf("bot%d", i))
	}
	check("carol from a new address", "carol", "cafe", ByAccount)
	check("carol from home", "carol", "home", Allowed)
	c.t = c.t.Add(time.Minute)
	check("carol from a new address after the window", "carol", "cafe", Allowed)

	// A success clears the address's count for the account only.
	l.Fail("dave", "d1")
	l.Fail("dave", "d1")
	check("dave locked at d1", "dave", "d1", ByAccountAtAddress)
	l.Succeed("dave", "d1")
	check("dave after success", "dave", "d1", Allowed)

	// Known addresses expire.
	l.Succeed("erin", "home")
	for i := range 40 {
		l.Fail("erin", fmt.Sprintf("bot%d", i))
	}
	c.t = c.t.Add(KnownFor)
	for i := range 40 {
		l.Fail("erin", fmt.Sprintf("bot%d", i))
	}
	check("erin's home after KnownFor", "erin", "home", ByAccount)
}

func TestMemoryIsBounded(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	l := New(Config{Failures: 5, Window: time.Hour, MaxKeys: 100, Now: c.now})
	for i := range 10_000 {
		l.Fail(fmt.Sprintf("user%d", i), fmt.Sprintf("addr%d", i))
		l.Succeed(fmt.Sprintf("user%d", i), fmt.Sprintf("addr%d", i))
		c.t = c.t.Add(time.Millisecond)
	}
	for name, n := range map[string]int{"pairs": len(l.pairs.keys), "addrs": len(l.addrs.keys),
		"accounts": len(l.account.keys), "known": len(l.known.accounts)} {
		if n > 100 {
			t.Errorf("%s holds %d entries, want at most 100", name, n)
		}
	}
	if l.pairs.order.Len() != len(l.pairs.keys) {
		t.Errorf("pairs: list %d, map %d", l.pairs.order.Len(), len(l.pairs.keys))
	}
	// The newest entries are kept.
	if _, ok := l.account.keys["user9999"]; !ok {
		t.Error("the newest account count was dropped")
	}
	// One account keeps at most knownPerAccount addresses.
	for i := range 50 {
		l.Succeed("frank", fmt.Sprintf("a%d", i))
	}
	if n := len(l.known.accounts["frank"].Value.(*knownAccount).addrs); n != knownPerAccount {
		t.Errorf("frank has %d known addresses, want %d", n, knownPerAccount)
	}
}
