//go:build linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

type errs struct {
	mu     sync.Mutex
	failed int
	last   error
}

func (e *errs) note(failed int, err error) {
	e.mu.Lock()
	e.failed += failed
	e.last = err
	e.mu.Unlock()
}

func (e *errs) get() (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed, e.last
}

// pair is a batching Conn on loopback and a plain socket it writes to.
func pair(t testing.TB, batch int) (*Group, *Conn, *net.UDPConn, *errs) {
	t.Helper()
	e := &errs{}
	g := NewGroup(e.note)
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConn(sc, g, batch)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = rc.Close() })
	return g, c, rc, e
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// pending reads what has arrived at rc without waiting: on loopback a
// datagram is in the receiver's queue when the send returns.
func pending(t *testing.T, rc *net.UDPConn) []string {
	t.Helper()
	raw, err := rc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	buf := make([]byte, 70000)
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil {
				if !errors.Is(err, unix.EAGAIN) {
					rerr = err
				}
				return true
			}
			got = append(got, string(buf[:n]))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	return got
}

func TestConnOutsideFanoutSendsAtOnce(t *testing.T) {
	_, c, rc, _ := pair(t, 8)
	if _, err := c.WriteTo([]byte("stun"), rc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, rc); len(got) != 1 || got[0] != "stun" {
		t.Fatalf("got %q, want [stun]", got)
	}
}

func TestConnBatchesUntilLastEnd(t *testing.T) {
	g, c, rc, e := pair(t, 8)
	to := addrOf(rc)
	buf := make([]byte, 4)
	g.Begin()
	g.Begin() // a second publisher's fan-out overlapping the first
	for i := range 5 {
		copy(buf, fmt.Sprintf("p%03d", i))
		if n, err := c.WriteToAddrPort(buf, to); n != 4 || err != nil {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
		copy(buf, "XXXX") // the caller reuses its buffer at once
	}
	if got := pending(t, rc); len(got) != 0 {
		t.Fatalf("sent during the fan-out: %q", got)
	}
	g.End()
	if got := pending(t, rc); len(got) != 0 {
		t.Fatalf("sent while another fan-out runs: %q", got)
	}
	g.End()
	got := pending(t, rc)
	want := []string{"p000", "p001", "p002", "p003", "p004"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if st := g.Stats(); st.Datagrams != 5 || st.Calls != 1 {
		t.Fatalf("stats %+v, want 5 datagrams in 1 call", st)
	}
	if f, _ := e.get(); f != 0 {
		t.Fatalf("%d failed", f)
	}
}

func TestConnFullBatchFlushes(t *testing.T) {
	g, c, rc, _ := pair(t, 4)
	to := addrOf(rc)
	g.Begin()
	for i := range 6 {
		if _, err := c.WriteToAddrPort([]byte{byte('a' + i)}, to); err != nil {
			t.Fatal(err)
		}
	}
	if got := pending(t, rc); fmt.Sprint(got) != "[a b c d]" {
		t.Fatalf("before End: got %q, want the first full batch", got)
	}
	g.End()
	if got := pending(t, rc); fmt.Sprint(got) != "[e f]" {
		t.Fatalf("after End: got %q", got)
	}
}

func TestConnWriteOutsideFanoutKeepsOrder(t *testing.T) {
	g, c, rc, _ := pair(t, 8)
	to := addrOf(rc)
	g.Begin()
	if _, err := c.WriteToAddrPort([]byte("rtp"), to); err != nil {
		t.Fatal(err)
	}
	g.End()
	if _, err := c.WriteToAddrPort([]byte("rtcp"), to); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, rc); fmt.Sprint(got) != "[rtp rtcp]" {
		t.Fatalf("got %q", got)
	}
}

// A datagram the kernel refuses in the middle of a batch is dropped and
// reported; the ones before and after it are sent.
func TestConnFailedDatagramDoesNotBlockTheRest(t *testing.T) {
	g, c, rc, e := pair(t, 64)
	to := addrOf(rc)
	g.Begin()
	for _, p := range [][]byte{[]byte("a"), []byte("b"), make([]byte, 65600), []byte("c")} {
		if _, err := c.WriteToAddrPort(p, to); err != nil {
			t.Fatal(err)
		}
	}
	// An IPv6 destination on an IPv4 socket fails too.
	if _, err := c.WriteToAddrPort([]byte("v6"), netip.MustParseAddrPort("[::1]:9")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte("d"), to); err != nil {
		t.Fatal(err)
	}
	g.End()
	if got := pending(t, rc); fmt.Sprint(got) != "[a b c d]" {
		t.Fatalf("got %q", got)
	}
	if f, err := e.get(); f != 2 || err == nil {
		t.Fatalf("onError saw %d failed (%v), want 2", f, err)
	}
}

func TestEndWithoutBeginPanics(t *testing.T) {
	g := NewGroup(nil)
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	g.End()
}

func TestNilGroup(t *testing.T) {
	var g *Group
	g.Begin()
	g.End()
}

// A fan-out left open too long (its goroutine preempted, say) does not
// hold the others' datagrams past maxDelay: the next write sends them.
func TestConnMaxDelay(t *testing.T) {
	g, c, rc, _ := pair(t, 8)
	to := addrOf(rc)
	g.Begin()
	defer g.End()
	if _, err := c.WriteToAddrPort([]byte("old"), to); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	g.since = g.since.Add(-2 * maxDelay) // as if queued long ago
	g.mu.Unlock()
	if _, err := c.WriteToAddrPort([]byte("new"), to); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, rc); fmt.Sprint(got) != "[old new]" {
		t.Fatalf("got %q", got)
	}
}

func TestConnConcurrentFanouts(t *testing.T) {
	g, c, rc, _ := pair(t, 16)
	to := addrOf(rc)
	const writers, per = 4, 15 // 120 datagrams fit in the receive buffer
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			buf := []byte{byte(w), 0}
			for i := range per {
				g.Begin()
				buf[1] = byte(i)
				_, _ = c.WriteToAddrPort(buf, to)
				_, _ = c.WriteToAddrPort(buf, to)
				g.End()
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	// Every datagram went before the last End returned.
	if got := pending(t, rc); len(got) != writers*per*2 {
		t.Fatalf("got %d datagrams, want %d", len(got), writers*per*2)
	}
}

func TestConnFanoutAllocatesNothing(t *testing.T) {
	g, c, rc, _ := pair(t, 64)
	to := addrOf(rc)
	ua := rc.LocalAddr()
	p := make([]byte, 1200)
	drain := make([]byte, 2000)
	allocs := testing.AllocsPerRun(100, func() {
		g.Begin()
		for range 10 {
			_, _ = c.WriteToAddrPort(p, to)
			_, _ = c.WriteTo(p, ua)
		}
		g.End()
		for range 20 {
			_, _, _ = rc.ReadFromUDPAddrPort(drain)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per fan-out", allocs)
	}
}

// BenchmarkFanout writes one 1,200-byte datagram to each of ten
// receivers per operation, as a fan-out of one packet to ten
// subscribers, batched (one sendmmsg) and not (ten sendto).
func BenchmarkFanout(b *testing.B) {
	for _, batched := range []bool{true, false} {
		b.Run(map[bool]string{true: "batched", false: "sendto"}[batched], func(b *testing.B) {
			g, c, _, _ := pair(b, DefaultBatch)
			var dst []netip.AddrPort
			for range 10 {
				r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					b.Fatal(err)
				}
				_ = r.SetReadBuffer(8 << 20)
				defer r.Close()
				dst = append(dst, addrOf(r))
			}
			p := make([]byte, 1200)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if batched {
					g.Begin()
				}
				for _, to := range dst {
					_, _ = c.WriteToAddrPort(p, to)
				}
				if batched {
					g.End()
				}
			}
			st := g.Stats()
			b.ReportMetric(float64(st.Calls)/float64(st.Datagrams), "syscalls/datagram")
		})
	}
}

func TestConnReadsBatchesInOrder(t *testing.T) {
	_, c, rc, _ := pair(t, 8)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	const n = readBatch + 3 // more than one recvmmsg takes
	for i := range n {
		if _, err := rc.WriteToUDPAddrPort([]byte{byte(i), 1, 2}, to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2)
	for i := range n {
		got, from, err := c.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		if got != 2 || buf[0] != byte(i) || from != addrOf(rc) {
			t.Fatalf("datagram %d: %d bytes %v from %v", i, got, buf[:got], from)
		}
	}
	if _, err := rc.WriteToUDPAddrPort([]byte("x"), to); err != nil {
		t.Fatal(err)
	}
	n1, from, err := c.ReadFrom(buf)
	if err != nil || n1 != 1 || from.String() != rc.LocalAddr().String() {
		t.Fatalf("ReadFrom: %d, %v, %v", n1, from, err)
	}
	allocs := testing.AllocsPerRun(50, func() {
		_, _ = rc.WriteToUDPAddrPort([]byte("y"), to)
		_, _, _ = c.ReadFromAddrPort(buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per read", allocs)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadFromAddrPort(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	if _, err := c.WriteToAddrPort([]byte("z"), addrOf(rc)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

// A datagram to an address with a zone (a link-local IPv6 peer) goes at
// once even during a fan-out: the batch has no room for its scope.
func TestConnZonedAddressGoesAtOnce(t *testing.T) {
	sc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	g := NewGroup(nil)
	c, err := NewConn(sc, g, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	lo := ""
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback != 0 {
			lo = ifc.Name
		}
	}
	if lo == "" {
		t.Skip("no loopback interface")
	}
	zoned := netip.AddrPortFrom(netip.IPv6Loopback().WithZone(lo), addrOf(rc).Port())
	g.Begin()
	defer g.End()
	if _, err := c.WriteToAddrPort([]byte("queued"), addrOf(rc)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToAddrPort([]byte("zoned"), zoned); err != nil {
		t.Fatal(err)
	}
	if got := pending(t, rc); fmt.Sprint(got) != "[queued zoned]" {
		t.Fatalf("got %q", got)
	}
}

// A write outside a fan-out that the kernel refuses returns its error to
// the caller, as sendto would, and the next one still goes.
func TestConnDirectWriteError(t *testing.T) {
	_, c, rc, _ := pair(t, 8)
	if _, err := c.WriteToAddrPort([]byte("v6"), netip.MustParseAddrPort("[::1]:9")); err == nil {
		t.Fatal("an IPv6 destination on an IPv4 socket: no error")
	}
	if n, err := c.WriteToAddrPort([]byte("after"), addrOf(rc)); err != nil || n != 5 {
		t.Fatalf("next write: %d, %v", n, err)
	}
	if got := pending(t, rc); fmt.Sprint(got) != "[after]" {
		t.Fatalf("got %q", got)
	}
}

// TestConnFilterTakesDatagrams: datagrams the filter takes are not handed
// out; the rest come in order, and nothing is allocated.
func TestConnFilterTakesDatagrams(t *testing.T) {
	_, c, rc, _ := pair(t, 8)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	var taken []byte
	c.SetFilter(func(p []byte, from netip.AddrPort) bool {
		if from != addrOf(rc) {
			t.Errorf("filter saw a datagram from %v", from)
		}
		if p[0]%2 == 1 {
			taken = append(taken, p[0])
			return true
		}
		return false
	})
	const n = readBatch + 5
	for i := range n {
		if _, err := rc.WriteToUDPAddrPort([]byte{byte(i), 1}, to); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 2)
	for i := 0; i < n; i += 2 {
		got, _, err := c.ReadFromAddrPort(buf)
		if err != nil || got != 2 || buf[0] != byte(i) {
			t.Fatalf("want datagram %d, read %v (%v)", i, buf[:got], err)
		}
	}
	// The filter took the odd ones, in order, by the time the last even
	// one was handed out.
	if len(taken) != n/2 || taken[0] != 1 || taken[len(taken)-1] != byte(n-2) {
		t.Fatalf("filter took %v", taken)
	}
	c.SetFilter(nil)
	if _, err := rc.WriteToUDPAddrPort([]byte{3, 1}, to); err != nil {
		t.Fatal(err)
	}
	if got, _, err := c.ReadFromAddrPort(buf); err != nil || got != 2 || buf[0] != 3 {
		t.Fatalf("without a filter: %v (%v)", buf[:got], err)
	}
	c.SetFilter(func([]byte, netip.AddrPort) bool { return false })
	allocs := testing.AllocsPerRun(50, func() {
		_, _ = rc.WriteToUDPAddrPort([]byte{2, 1}, to)
		_, _, _ = c.ReadFromAddrPort(buf)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per filtered read", allocs)
	}
}

// TestConnFilterWritesGoInOneBatch checks that what the filter writes
// while it takes the datagrams of one read goes with one sendmmsg, after
// the last of them, and before the Conn hands out the next datagram.
func TestConnFilterWritesGoInOneBatch(t *testing.T) {
	g, c, rc, _ := pair(t, 8)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	var seen []uint64 // the group's calls as the filter took each datagram
	c.SetFilter(func(p []byte, from netip.AddrPort) bool {
		if p[0] == 0xff {
			return false
		}
		calls := g.Stats().Calls
		if _, err := c.WriteToAddrPort([]byte{'r', p[0]}, from); err != nil {
			t.Error(err)
		}
		if g.Stats().Calls != calls {
			t.Errorf("the write for datagram %d went out during the read", p[0])
		}
		seen = append(seen, calls)
		return true
	})
	const n = 5 // fewer than one read takes
	for i := range n {
		if _, err := rc.WriteToUDPAddrPort([]byte{byte(i)}, to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rc.WriteToUDPAddrPort([]byte{0xff}, to); err != nil {
		t.Fatal(err)
	}
	before := g.Stats()
	buf := make([]byte, 8)
	if got, _, err := c.ReadFromAddrPort(buf); err != nil || got != 1 || buf[0] != 0xff {
		t.Fatalf("read %v (%v), want the one the filter leaves", buf[:got], err)
	}
	after := g.Stats()
	// One sendmmsg per read the datagrams came in (one, unless the
	// kernel had not queued them all by the first read).
	reads := uint64(len(slices.Compact(slices.Clone(seen))))
	if d, calls := after.Datagrams-before.Datagrams, after.Calls-before.Calls; d != n || calls != reads {
		t.Fatalf("the filter's %d writes over %d reads went as %d datagrams in %d system calls", n, reads, d, calls)
	}
	_ = rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range n {
		got, _, err := rc.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:got]) != string([]byte{'r', byte(i)}) {
			t.Fatalf("reply %d: %q (%v)", i, buf[:got], err)
		}
	}
}
