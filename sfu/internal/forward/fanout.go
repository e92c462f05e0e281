package forward

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Fanout is the set of subscribers of one published track. Readers take a
// snapshot without locking; Add and Remove copy the set.
type Fanout struct {
	mu   sync.Mutex
	subs atomic.Pointer[[]*DownTrack]
}

// Add adds d.
func (f *Fanout) Add(d *DownTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var cur []*DownTrack
	if p := f.subs.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), d)
	f.subs.Store(&next)
}

// Remove removes d.
func (f *Fanout) Remove(d *DownTrack) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.subs.Load()
	if p == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*p), func(x *DownTrack) bool { return x == d })
	f.subs.Store(&next)
}

// Snapshot returns the current subscribers; the slice must not be changed.
func (f *Fanout) Snapshot() []*DownTrack {
	if p := f.subs.Load(); p != nil {
		return *p
	}
	return nil
}
