//go:build linux

package udpbatch

import (
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
