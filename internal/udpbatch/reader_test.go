//go:build linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestReaderGrow: a reader grown between reads reads the larger batch at
// once, and the datagrams of the read before keep their buffers, lengths
// and senders.
func TestReaderGrow(t *testing.T) {
	src := receiver(t, "udp4")
	dst := receiver(t, "udp4")
	const headroom = 4
	var got []int
	r, err := NewReader(dst, 2, headroom, 64, func(n int) bool {
		got = append(got, n)
		return false // back to the caller of Read with each batch
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Cap() != 2 {
		t.Fatalf("Cap %d, want 2", r.Cap())
	}
	const total = 7
	for i := range total {
		if _, err := src.WriteToUDPAddrPort(fmt.Appendf(nil, "d%d", i), dst.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
	}
	// On loopback a datagram is in the receiver's queue when the send
	// returns, so all seven wait for the first read.
	if err := r.Read(); err != nil {
		t.Fatal(err)
	}
	check := func(i int, want string) {
		t.Helper()
		buf, n, from := r.Packet(i)
		if string(buf[headroom:headroom+n]) != want || from != src.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("datagram %d: %q from %s, want %q from %s", i, buf[headroom:headroom+n], from, want, src.LocalAddr())
		}
	}
	check(0, "d0")
	check(1, "d1")
	r.Grow(1) // smaller: no change
	if r.Cap() != 2 {
		t.Fatalf("Cap %d after Grow(1), want 2", r.Cap())
	}
	r.Grow(8)
	if r.Cap() != 8 {
		t.Fatalf("Cap %d after Grow(8), want 8", r.Cap())
	}
	check(0, "d0")
	check(1, "d1")
	if err := r.Read(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != 2 || got[1] != total-2 {
		t.Fatalf("batches %v, want [2 %d]: the grown batch should take the other five at once", got, total-2)
	}
	for i := range total - 2 {
		check(i, fmt.Sprintf("d%d", i+2))
	}
}

// TestReaderTryRead: TryRead takes what is waiting, up to a batch, without
// waiting and without calling the consumer; 0 on an empty socket,
// net.ErrClosed on a closed one; and it allocates nothing.
func TestReaderTryRead(t *testing.T) {
	src := receiver(t, "udp4")
	dst := receiver(t, "udp4")
	r, err := NewReader(dst, 4, 2, 64, func(int) bool {
		t.Error("TryRead called the consumer")
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := r.TryRead(); n != 0 || err != nil {
		t.Fatalf("TryRead on an empty socket: %d, %v; want 0, nil", n, err)
	}
	to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := range 6 {
		if _, err := src.WriteToUDPAddrPort([]byte(fmt.Sprintf("datagram %d", i)), to); err != nil {
			t.Fatal(err)
		}
	}
	// On loopback each datagram is in dst's queue when its send returns.
	next := 0
	for _, want := range []int{4, 2, 0} {
		n, err := r.TryRead()
		if n != want || err != nil {
			t.Fatalf("TryRead: %d, %v; want %d, nil", n, err, want)
		}
		for i := range n {
			buf, size, from := r.Packet(i)
			if got := string(buf[2 : 2+size]); got != fmt.Sprintf("datagram %d", next) || from != src.LocalAddr().(*net.UDPAddr).AddrPort() {
				t.Fatalf("datagram %q from %s, want datagram %d from %s", got, from, next, src.LocalAddr())
			}
			next++
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = r.TryRead() }); allocs != 0 {
		t.Errorf("TryRead allocates %.1f times per call, want 0", allocs)
	}
	_ = dst.Close()
	if _, err := r.TryRead(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryRead on a closed socket: %v, want net.ErrClosed", err)
	}
}
