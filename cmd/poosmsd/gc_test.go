package main

import "testing"

func TestAutoGCPercent(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{8 << 20, 100},
		{32 << 20, 100},
		{64 << 20, 50},
		{128 << 20, 25},
		{1 << 30, 25},
	} {
		if got := autoGCPercent(c.live); got != c.want {
			t.Errorf("autoGCPercent(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}

// The tuner follows the live heap down to the floor and back up, and
// leaves the target alone for small moves.
func TestGCTunerFollowsLiveHeap(t *testing.T) {
	var live uint64
	var set []int
	tu := &gcTuner{
		read: func() uint64 { return live },
		set:  func(p int) int { set = append(set, p); return 0 },
		cur:  autoGCMaxPercent,
	}
	steps := []struct {
		live    uint64
		changed bool
		cur     int
	}{
		{16 << 20, false, 100}, // small heap: Go's default stands
		{300 << 20, true, 25},  // sessions piled up: a quarter past live
		{310 << 20, false, 25},
		{60 << 20, true, 53},
		{58 << 20, false, 53}, // 55: within a few points
		{20 << 20, true, 100},
	}
	for i, s := range steps {
		live = s.live
		if got := tu.step(); got != s.changed || tu.cur != s.cur {
			t.Fatalf("step %d (live %d MiB): changed=%v cur=%d, want changed=%v cur=%d", i, s.live>>20, got, tu.cur, s.changed, s.cur)
		}
	}
	if want := []int{25, 53, 100}; len(set) != len(want) || set[0] != want[0] || set[1] != want[1] || set[2] != want[2] {
		t.Fatalf("targets set %v, want %v", set, want)
	}
}
