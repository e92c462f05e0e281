package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// The collector's target when gc_percent is 0 (automatic): a heap may
// grow past what is live by 100 % while that is at most autoGCHeadroom,
// then by autoGCHeadroom, and never by less than autoGCMinPercent. A node
// whose heap is mostly idle sessions (hundreds of MiB live) so collects at
// a quarter past live, which keeps a session near 15 KiB resident instead
// of 24; a node sized by message throughput has a small live heap and
// keeps Go's default. See docs/operations.md "Memory per session".
const (
	autoGCHeadroom   = 32 << 20
	autoGCMinPercent = 25
	autoGCMaxPercent = 100
	autoGCInterval   = time.Second
)

// autoGCPercent returns the collector's target for a live heap of live
// bytes.
func autoGCPercent(live uint64) int {
	if live == 0 {
		return autoGCMaxPercent
	}
	p := int(100 * uint64(autoGCHeadroom) / live)
	return min(max(p, autoGCMinPercent), autoGCMaxPercent)
}

// setGCPercent applies --gc-percent, the collector's target (GOGC), for
// the whole process. A positive value is fixed; 0 sets it from the live
// heap (autoGCPercent) until ctx ends, unless GOGC is set in the
// environment, which then stands.
func setGCPercent(ctx context.Context, log *slog.Logger, percent int) {
	if percent > 0 {
		was := debug.SetGCPercent(percent)
		log.Info("garbage collector target set", "gc_percent", percent, "was", was)
		return
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		log.Info("garbage collector target left to GOGC", "GOGC", v)
		return
	}
	t := &gcTuner{read: liveHeap, set: debug.SetGCPercent, cur: autoGCMaxPercent}
	go t.run(ctx, autoGCInterval)
}

// gcTuner moves the collector's target with the live heap.
type gcTuner struct {
	read func() uint64         // live heap bytes after the last collection
	set  func(percent int) int // debug.SetGCPercent
	cur  int
}

// step sets the target for the live heap now, when it differs from the
// current one by more than a few points (a change has a cost: the heap
// lock). It reports whether it changed the target.
func (t *gcTuner) step() bool {
	p := autoGCPercent(t.read())
	if p == t.cur {
		return false
	}
	atBound := p == autoGCMinPercent || p == autoGCMaxPercent
	if d := p - t.cur; !atBound && d > -5 && d < 5 {
		return false
	}
	t.set(p)
	t.cur = p
	return true
}

func (t *gcTuner) run(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.step()
		}
	}
}

var liveHeapSample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

// liveHeap returns the heap marked live by the last collection. Only the
// tuner's goroutine calls it.
func liveHeap() uint64 {
	metrics.Read(liveHeapSample)
	if liveHeapSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return liveHeapSample[0].Value.Uint64()
}
