package sfu

import (
	"testing"
	"time"

	"poosms.org/poosms/sfu/internal/forward"
)

// TestFanoutSendsOneBatch: a fan-out to three real subscribers leaves the
// media socket in one sendmmsg per publisher packet, and every
// subscriber decrypts every packet.
func TestFanoutSendsOneBatch(t *testing.T) {
	t.Run("direct", func(t *testing.T) { testFanoutSendsOneBatch(t, true) })
	t.Run("pion", func(t *testing.T) { testFanoutSendsOneBatch(t, false) })
}

func testFanoutSendsOneBatch(t *testing.T, direct bool) {
	svc := newTestService(t, func(c *Config) { c.TCPAddr = "" })
	u := &upTrack{clock: 90000, batch: svc.batch}
	cache := &forward.PacketCache{}
	var subs []*benchSubscriber
	for range 3 {
		bs := connectBenchSubscriber(t, svc, benchPath{direct: direct})
		bs.d.Caches = []*forward.PacketCache{cache}
		u.fan.Add(bs.d)
		subs = append(subs, bs)
	}
	pkt, h := keyframePacket(t, 1000)
	const n = 50
	before := svc.batch.Stats()
	for i := range n {
		h.Seq = uint16(i + 1)
		h.Timestamp = uint32(i+1) * 3000
		cache.Put(h.Seq, h.Marker, pkt[h.Payload:h.PayloadEnd])
		u.fanOut(0, &h, pkt, true, nanotime())
	}
	after := svc.batch.Stats()
	calls, dgrams := after.Calls-before.Calls, after.Datagrams-before.Datagrams
	// 3n datagrams in n calls, plus whatever ICE and RTCP sent meanwhile
	// (one call each).
	if dgrams < 3*n || calls >= dgrams/2 {
		t.Fatalf("%d datagrams in %d calls, want %d or more in about %d", dgrams, calls, 3*n, n)
	}
	deadline := time.After(10 * time.Second)
	for i, bs := range subs {
		for bs.read.Load() < n {
			select {
			case <-bs.got:
			case <-deadline:
				t.Fatalf("subscriber %d read %d of %d packets", i, bs.read.Load(), n)
			}
		}
		if direct && bs.direct.sent.Load() < n {
			t.Errorf("subscriber %d: %d packets went the direct way, want %d", i, bs.direct.sent.Load(), n)
		}
	}
}
