// Package loginlimit throttles failed logins so that guessing passwords is
// slow while the account's owner keeps logging in. XMPP SASL and the HTTP
// endpoints that take a password (/api/turn) share one Limiter.
//
// Failures are counted in fixed windows on three keys:
//
//   - an account at one address: Failures per window (default 5), then
//     that address may not try that account until the window ends;
//   - an address, over all accounts: 4 × Failures, then that address may
//     not log in at all (password spraying from one place);
//   - an account, over all addresses: 20 × Failures, then addresses that
//     have not logged in to that account successfully within the last 30
//     days may not try it (guessing spread over many addresses). An
//     address the owner logged in from before is never refused by this
//     count, so a flood of wrong passwords cannot lock the owner out.
//
// A success clears the account-at-address count and remembers the address
// for the account. Memory is bounded: each table holds at most MaxKeys
// entries; a full table forgets first the entries whose window ends soonest.
// Addresses are keys as clientaddr.Key makes them (IPv6 by /64).
package loginlimit

import (
	"container/list"
	"sync"
	"time"
)

// Multipliers of Config.Failures for the wider keys.
const (
	AddressFactor = 4
	AccountFactor = 20
)

// KnownFor is how long a successful login keeps an address trusted for
// its account against the account-wide count.
const KnownFor = 30 * 24 * time.Hour

// knownPerAccount is how many addresses are remembered per account.
const knownPerAccount = 8

// Config shapes a Limiter. Zero values get the defaults noted.
type Config struct {
	Failures int           // per account and address within Window; default 5
	Window   time.Duration // default 5m
	MaxKeys  int           // entries per table; default 100000
	Now      func() time.Time
}

// Refusal says why an attempt may not proceed; Allowed is zero.
type Refusal int

// Reasons a login attempt is refused.
const (
	Allowed Refusal = iota
	ByAddress
	ByAccountAtAddress
	ByAccount
)

// String says the refusal to the person refused.
func (r Refusal) String() string {
	switch r {
	case ByAddress:
		return "too many failed logins from your address"
	case ByAccountAtAddress:
		return "too many failed logins for this account from your address"
	case ByAccount:
		return "too many failed logins for this account from addresses it has not logged in from before"
	}
	return "allowed"
}

// Limiter counts failed logins. It is safe for concurrent use.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	pairs   *table // "account\x00address"
	addrs   *table // address
	account *table // account
	known   *knownAddrs
}

// New returns a Limiter with cfg's defaults filled in.
func New(cfg Config) *Limiter {
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.Window <= 0 {
		cfg.Window = 5 * time.Minute
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = 100_000
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{
		cfg:     cfg,
		pairs:   newTable(cfg.MaxKeys, cfg.Window),
		addrs:   newTable(cfg.MaxKeys, cfg.Window),
		account: newTable(cfg.MaxKeys, cfg.Window),
		known:   newKnown(cfg.MaxKeys),
	}
}

func pairKey(account, addr string) string { return account + "\x00" + addr }

// CheckAddress reports whether addr may attempt a login at all, and if
// not, how long until it may.
func (l *Limiter) CheckAddress(addr string) (Refusal, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	if wait := l.addrs.over(addr, AddressFactor*l.cfg.Failures, now); wait > 0 {
		return ByAddress, wait
	}
	return Allowed, 0
}

// Check reports whether addr may try account's password now, and if not,
// why and how long until it may.
func (l *Limiter) Check(account, addr string) (Refusal, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	if wait := l.addrs.over(addr, AddressFactor*l.cfg.Failures, now); wait > 0 {
		return ByAddress, wait
	}
	if wait := l.pairs.over(pairKey(account, addr), l.cfg.Failures, now); wait > 0 {
		return ByAccountAtAddress, wait
	}
	if wait := l.account.over(account, AccountFactor*l.cfg.Failures, now); wait > 0 && !l.known.has(account, addr, now) {
		return ByAccount, wait
	}
	return Allowed, 0
}

// Fail counts a wrong password (or proof) for account from addr.
func (l *Limiter) Fail(account, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	l.addrs.add(addr, now)
	l.pairs.add(pairKey(account, addr), now)
	l.account.add(account, now)
}

// Succeed records a login that proved the password: the address's count
// for the account is cleared and the address is known for the account.
// The address-wide and account-wide counts stay: a success with one's own
// account must not buy more guesses at others'.
func (l *Limiter) Succeed(account, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pairs.remove(pairKey(account, addr))
	l.known.add(account, addr, l.cfg.Now())
}

// table counts events per key in fixed windows that start at a key's
// first event. Entries are listed in the order their windows started, so
// the front is always the one that ends first.
type table struct {
	max    int
	window time.Duration
	keys   map[string]*list.Element
	order  *list.List // of *entry
}

type entry struct {
	key   string
	start time.Time
	count int
}

func newTable(max int, window time.Duration) *table {
	return &table{max: max, window: window, keys: map[string]*list.Element{}, order: list.New()}
}

// live returns key's entry if its window has not ended.
func (t *table) live(key string, now time.Time) *entry {
	el := t.keys[key]
	if el == nil {
		return nil
	}
	e := el.Value.(*entry)
	if now.Sub(e.start) >= t.window {
		t.order.Remove(el)
		delete(t.keys, key)
		return nil
	}
	return e
}

// over returns how long key stays at or above limit; 0 when it is below.
func (t *table) over(key string, limit int, now time.Time) time.Duration {
	e := t.live(key, now)
	if e == nil || e.count < limit {
		return 0
	}
	return e.start.Add(t.window).Sub(now)
}

func (t *table) add(key string, now time.Time) {
	if e := t.live(key, now); e != nil {
		e.count++
		return
	}
	t.expire(now)
	for len(t.keys) >= t.max {
		t.drop(t.order.Front())
	}
	t.keys[key] = t.order.PushBack(&entry{key: key, start: now, count: 1})
}

func (t *table) remove(key string) {
	if el := t.keys[key]; el != nil {
		t.drop(el)
	}
}

// expire drops the entries whose windows have ended.
func (t *table) expire(now time.Time) {
	for el := t.order.Front(); el != nil && now.Sub(el.Value.(*entry).start) >= t.window; el = t.order.Front() {
		t.drop(el)
	}
}

func (t *table) drop(el *list.Element) {
	delete(t.keys, el.Value.(*entry).key)
	t.order.Remove(el)
}

// knownAddrs remembers, per account, the addresses of its recent
// successful logins: at most knownPerAccount each, for KnownFor, and at
// most max accounts (the least recently successful forgotten first).
type knownAddrs struct {
	max      int
	accounts map[string]*list.Element
	order    *list.List // of *knownAccount, least recent first
}

type knownAccount struct {
	account string
	addrs   []knownAddr
}

type knownAddr struct {
	addr string
	seen time.Time
}

func newKnown(max int) *knownAddrs {
	return &knownAddrs{max: max, accounts: map[string]*list.Element{}, order: list.New()}
}

func (k *knownAddrs) has(account, addr string, now time.Time) bool {
	el := k.accounts[account]
	if el == nil {
		return false
	}
	for _, a := range el.Value.(*knownAccount).addrs {
		if a.addr == addr && now.Sub(a.seen) < KnownFor {
			return true
		}
	}
	return false
}

func (k *knownAddrs) add(account, addr string, now time.Time) {
	el := k.accounts[account]
	if el == nil {
		for len(k.accounts) >= k.max {
			front := k.order.Front()
			delete(k.accounts, front.Value.(*knownAccount).account)
			k.order.Remove(front)
		}
		el = k.order.PushBack(&knownAccount{account: account})
		k.accounts[account] = el
	} else {
		k.order.MoveToBack(el)
	}
	ka := el.Value.(*knownAccount)
	kept := ka.addrs[:0]
	for _, a := range ka.addrs {
		if a.addr != addr && now.Sub(a.seen) < KnownFor {
			kept = append(kept, a)
		}
	}
	if len(kept) >= knownPerAccount {
		kept = kept[1:] // the oldest goes
	}
	ka.addrs = append(kept, knownAddr{addr: addr, seen: now})
}
