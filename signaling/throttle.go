package signaling

import (
	"sync"
	"time"
)

// throttle counts events per key (in-band registrations per address) in a
// fixed window; a key with max events is refused until its window ends.
type throttle struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	keys   map[string]*failures
}

type failures struct {
	count int
	since time.Time
}

func newThrottle(max int, window time.Duration, now func() time.Time) *throttle {
	return &throttle{max: max, window: window, now: now, keys: map[string]*failures{}}
}

func (t *throttle) blocked(key string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.keys[key]
	if f == nil {
		return false
	}
	if t.now().Sub(f.since) >= t.window {
		delete(t.keys, key)
		return false
	}
	return f.count >= t.max
}

func (t *throttle) fail(key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	f := t.keys[key]
	if f == nil || now.Sub(f.since) >= t.window {
		if len(t.keys) > 100_000 {
			t.pruneLocked(now)
		}
		f = &failures{since: now}
		t.keys[key] = f
	}
	f.count++
}

// pruneLocked drops expired entries so the map stays bounded. t.mu held.
func (t *throttle) pruneLocked(now time.Time) {
	for k, f := range t.keys {
		if now.Sub(f.since) >= t.window {
			delete(t.keys, k)
		}
	}
}
