//go:build linux

package udpbatch

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// gsoWriter is a GSO Writer of count datagrams on a socket of network:
// "udp4" or "udp6" on loopback, or "dual", an IPv6 socket on the
// unspecified address that reaches IPv4 too.
func gsoWriter(t testing.TB, network string, count int) (*Writer, *net.UDPConn) {
	t.Helper()
	var ip net.IP
	switch network {
	case "udp4":
		ip = net.IPv4(127, 0, 0, 1)
	case "udp6":
		ip = net.IPv6loopback
	case "dual":
		network, ip = "udp", nil
	}
	sc, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sc.Close() })
	w, err := NewWriter(sc, count)
	if err != nil {
		t.Fatal(err)
	}
	if !w.EnableGSO() {
		t.Fatal("no UDP GSO on this kernel")
	}
	return w, sc
}

// receiver is a plain socket (no UDP_GRO) with room for a few hundred
// datagrams.
func receiver(t testing.TB, network string) *net.UDPConn {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 1)
	if network == "udp6" {
		ip = net.IPv6loopback
	}
	rc, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.SetReadBuffer(4 << 20)
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// datagram k of size bytes: its number, then a pattern.
func datagram(k, size int) []byte {
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(k*7 + i)
	}
	copy(p, fmt.Sprintf("%04d", k))
	return p
}

type queued struct {
	to   int // receiver
	size int
}

func run(n, size, to int) []queued {
	q := make([]queued, n)
	for i := range q {
		q[i] = queued{to, size}
	}
	return q
}

func TestWriterGSO(t *testing.T) {
	for _, tc := range []struct {
		name          string
		q             []queued
		sends, dgrams uint64 // GSO sends and the datagrams in them
	}{
		{"equal sizes", run(10, 1000, 0), 1, 10},
		{"shorter last", slices.Concat(run(5, 1000, 0), run(1, 300, 0), run(2, 1000, 0)), 2, 8},
		{"larger one starts a new run", slices.Concat(run(3, 500, 0), run(3, 800, 0)), 2, 6},
		{"mixed destinations", slices.Concat(run(2, 600, 0), run(3, 600, 1), run(1, 600, 0), run(2, 600, 1)), 3, 7},
		{"more than 64 segments", run(70, 100, 0), 2, 70},
		{"more than 65,000 bytes", run(60, 1200, 0), 2, 60},
		{"lone datagrams", []queued{{0, 100}, {1, 100}, {0, 100}}, 0, 0},
	} {
		for _, nets := range [][2]string{{"udp4", "udp4"}, {"udp6", "udp6"}, {"dual", "udp4"}, {"dual", "udp6"}} {
			t.Run(tc.name+"/"+nets[0]+"→"+nets[1], func(t *testing.T) {
				w, _ := gsoWriter(t, nets[0], 128)
				rs := []*net.UDPConn{receiver(t, nets[1]), receiver(t, nets[1])}
				want := make([][]string, len(rs))
				for k, d := range tc.q {
					p := datagram(k, d.size)
					want[d.to] = append(want[d.to], string(p))
					w.Add(p, addrOf(rs[d.to]))
				}
				if f, err := w.Flush(); f != 0 {
					t.Fatalf("%d failed: %v", f, err)
				}
				for i, r := range rs {
					if got := pending(t, r); !slices.Equal(got, want[i]) {
						t.Errorf("receiver %d got %d datagrams %.40q, want %d %.40q", i, len(got), got, len(want[i]), want[i])
					}
				}
				if s, d := w.GSO(); s != tc.sends || d != tc.dgrams {
					t.Errorf("%d GSO sends of %d datagrams, want %d of %d", s, d, tc.sends, tc.dgrams)
				}
			})
		}
	}
}

// A full queue is sent when the next datagram comes; the run goes on in
// a new message.
func TestWriterGSOFullQueue(t *testing.T) {
	w, _ := gsoWriter(t, "udp4", 4)
	r := receiver(t, "udp4")
	sendAndCheck(t, w, r, 10, 200)
	if s, d := w.GSO(); s != 3 || d != 10 || w.Calls() != 3 {
		t.Fatalf("%d GSO sends of %d datagrams in %d calls, want 3 of 10 in 3", s, d, w.Calls())
	}
}

// mixedQueue queues runs and lone datagrams for r and returns them in
// order.
func mixedQueue(w *Writer, r *net.UDPConn) []string {
	var want []string
	k := 0
	for _, n := range []int{1, 4, 1, 3, 2} {
		for range n {
			p := datagram(k, 300+10*n)
			k++
			want = append(want, string(p))
			w.Add(p, addrOf(r))
		}
	}
	return want
}

// When the kernel refuses GSO, the runs go one by one, nothing is lost,
// and GSO stays off.
func TestWriterGSORefused(t *testing.T) {
	t.Run("hook", func(t *testing.T) {
		w, _ := gsoWriter(t, "udp4", 64)
		w.refuseGSO = true
		r := receiver(t, "udp4")
		for range 2 {
			want := mixedQueue(w, r)
			flushAndCheck(t, w, r, want)
			if w.gso {
				t.Fatal("GSO still on")
			}
		}
		if s, _ := w.GSO(); s != 0 {
			t.Fatalf("%d GSO sends", s)
		}
	})
	t.Run("kernel", func(t *testing.T) {
		// A socket without UDP checksums: the kernel refuses GSO with
		// EINVAL.
		w, sc := gsoWriter(t, "udp4", 64)
		raw, err := sc.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
		}); err != nil || serr != nil {
			t.Fatal(err, serr)
		}
		r := receiver(t, "udp4")
		want := mixedQueue(w, r)
		flushAndCheck(t, w, r, want)
		if w.gso {
			t.Fatal("GSO still on")
		}
	})
}

// A segment larger than the route's MTU is refused with EINVAL: the run
// goes one by one and later runs are made of small datagrams only.
func TestWriterGSOLargeSegments(t *testing.T) {
	w, _ := gsoWriter(t, "udp4", 64)
	r := receiver(t, "udp4")
	w.gsoMax = 1000 // pretend the first run of large ones was refused
	sendAndCheck(t, w, r, 3, 1100)
	if s, _ := w.GSO(); s != 0 {
		t.Fatalf("%d GSO sends of datagrams above gsoMax", s)
	}
}

// A run refused for its destination's sake (port 0) is dropped, the
// datagrams around it still go, and GSO stays on.
func TestWriterGSORunRefusedForItsDestination(t *testing.T) {
	w, _ := gsoWriter(t, "udp4", 64)
	r := receiver(t, "udp4")
	bad := netip.MustParseAddrPort("127.0.0.1:0")
	w.Add(datagram(0, 100), addrOf(r))
	for k := range 3 {
		w.Add(datagram(10+k, 100), bad)
	}
	w.Add(datagram(1, 200), addrOf(r))
	w.Add(datagram(2, 200), addrOf(r))
	f, err := w.Flush()
	if f != 3 || err != unix.EINVAL {
		t.Fatalf("%d failed (%v), want 3 (EINVAL)", f, err)
	}
	want := []string{string(datagram(0, 100)), string(datagram(1, 200)), string(datagram(2, 200))}
	if got := pending(t, r); !slices.Equal(got, want) {
		t.Fatalf("got %.40q", got)
	}
	if !w.gso {
		t.Fatal("GSO turned off")
	}
	if s, d := w.GSO(); s != 1 || d != 2 {
		t.Fatalf("%d GSO sends of %d datagrams, want 1 of 2", s, d)
	}
}

func TestWriterGSOAllocatesNothing(t *testing.T) {
	w, _ := gsoWriter(t, "dual", 64)
	rs := []*net.UDPConn{receiver(t, "udp4"), receiver(t, "udp6")}
	to := []netip.AddrPort{addrOf(rs[0]), addrOf(rs[1])}
	p := make([]byte, 1200)
	short := make([]byte, 500)
	drain := make([]byte, 2000)
	allocs := testing.AllocsPerRun(100, func() {
		for _, a := range to {
			for range 8 {
				w.Add(p, a)
			}
			w.Add(short, a)
		}
		w.Add(p, to[0])
		_, _ = w.Flush()
		for i, r := range rs {
			for range 10 - i { // 8 + 1 (+ 1 for the first)
				_, _, _ = r.ReadFromUDPAddrPort(drain)
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per flush", allocs)
	}
	if s, d := w.GSO(); s == 0 || d != 9*s {
		t.Fatalf("%d GSO sends of %d datagrams", s, d)
	}
}

// BenchmarkWriter sends 16 datagrams of 200 bytes to one receiver per
// flush, as the relay does for a burst from one peer, with and without
// GSO.
func BenchmarkWriter(b *testing.B) {
	for _, gso := range []bool{false, true} {
		b.Run(map[bool]string{false: "sendmmsg", true: "gso"}[gso], func(b *testing.B) {
			sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer sc.Close()
			w, err := NewWriter(sc, 16)
			if err != nil {
				b.Fatal(err)
			}
			if gso && !w.EnableGSO() {
				b.Skip("no GSO")
			}
			r := receiver(b, "udp4")
			to := addrOf(r)
			p := make([]byte, 200)
			drain := make([]byte, 2048)
			b.ReportAllocs()
			for b.Loop() {
				for range 16 {
					w.Add(p, to)
				}
				_, _ = w.Flush()
				for range 16 {
					_, _, _ = r.ReadFromUDPAddrPort(drain)
				}
			}
			s, d := w.GSO()
			if s > 0 {
				b.ReportMetric(float64(d)/float64(s), "datagrams/gso-send")
			}
		})
	}
}

// sendAndCheck queues n datagrams of size bytes for r, flushes, and
// checks that r got each of them, whole and in order.
func sendAndCheck(t *testing.T, w *Writer, r *net.UDPConn, n, size int) {
	t.Helper()
	var want []string
	for k := range n {
		p := datagram(k, size)
		want = append(want, string(p))
		w.Add(p, addrOf(r))
	}
	flushAndCheck(t, w, r, want)
}

// flushAndCheck flushes w and checks that r got want, whole and in order,
// and that nothing failed.
func flushAndCheck(t *testing.T, w *Writer, r *net.UDPConn, want []string) {
	t.Helper()
	if f, err := w.Flush(); f != 0 {
		t.Fatalf("%d failed: %v", f, err)
	}
	if got := pending(t, r); !slices.Equal(got, want) {
		t.Fatalf("got %.40q, want %.40q", got, want)
	}
}
