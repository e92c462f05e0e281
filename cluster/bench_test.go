package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// benchPair starts nodes a and b; b's handler counts what it takes and
// signals when want payloads have arrived.
func benchPair(b *testing.B, want int64) (a *Redis, done <-chan struct{}) {
	h := newHarness(b)
	var n atomic.Int64
	ch := make(chan struct{})
	cb := h.config("b")
	cb.HeartbeatInterval, cb.NodeTTL = time.Second, 5*time.Second
	cb.LeaseTTL = 5 * time.Second
	cb.Handler = func(ctx context.Context, from NodeID, p []byte) error {
		if n.Add(1) == want {
			close(ch)
		}
		return nil
	}
	h.start(cb)
	ca := h.config("a")
	ca.HeartbeatInterval, ca.NodeTTL = time.Second, 5*time.Second
	ca.LeaseTTL = 5 * time.Second
	return h.start(ca), ch
}

// BenchmarkRouteSerial: one sender, one receiver, in order; each Send
// waits for Redis, so this is bound by the round trip.
func BenchmarkRouteSerial(b *testing.B) {
	a, done := benchPair(b, int64(b.N))
	ctx := context.Background()
	payload := make([]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := a.Send(ctx, "b", payload); err != nil {
			b.Fatal(err)
		}
	}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkRouteParallel: many goroutines of one node sending to another
// (order holds per goroutine's sequence of Sends only).
func BenchmarkRouteParallel(b *testing.B) {
	a, done := benchPair(b, int64(b.N))
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		payload := make([]byte, 256)
		for pb.Next() {
			if err := a.Send(ctx, "b", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
