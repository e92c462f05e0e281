package sfu

import (
	"sync"
	"time"
)

// tickLoop runs a function at a fixed interval on a goroutine of its own,
// from the first start until stop: the RTCP a PeerConnection sends on a
// timer (TWCC feedback, sender reports), started only once there is
// something to report, so that a PeerConnection with nothing to report
// wakes nobody.
type tickLoop struct {
	mu      sync.Mutex
	started bool
	stopped bool
	done    chan struct{}
	wg      sync.WaitGroup
}

// start runs fn every interval, unless the loop has started or stopped
// already.
func (l *tickLoop) start(interval time.Duration, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.stopped {
		return
	}
	l.started = true
	l.done = make(chan struct{})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-t.C:
			}
			fn()
		}
	}()
}

// running reports whether the loop has started and not stopped.
func (l *tickLoop) running() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.started && !l.stopped
}

// stop ends the loop for good and waits for it.
func (l *tickLoop) stop() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		if l.done != nil {
			close(l.done)
		}
	}
	l.mu.Unlock()
	l.wg.Wait()
}
