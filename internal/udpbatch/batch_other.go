//go:build !linux

package udpbatch

import (
	"net"
	"net/netip"
)

// Without recvmmsg and sendmmsg a batch is one datagram (see
// batch_linux.go).

// Reader reads one datagram at a time.
type Reader struct {
	c        *net.UDPConn
	buf      []byte
	headroom int
	n        int
	from     netip.AddrPort
	consume  func(n int) bool
}

// NewReader makes a reader of one datagram of up to size bytes for c.
func NewReader(c *net.UDPConn, _, headroom, size int, consume func(n int) bool) (*Reader, error) {
	return &Reader{c: c, buf: make([]byte, headroom+size), headroom: headroom, consume: consume}, nil
}

// Read reads one datagram and hands it to the consumer.
func (r *Reader) Read() error {
	n, from, err := r.c.ReadFromUDPAddrPort(r.buf[r.headroom:])
	if err != nil {
		return err
	}
	r.n, r.from = n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	r.consume(1)
	return nil
}

// Cap is the number of datagrams one read takes: always 1.
func (r *Reader) Cap() int { return 1 }

// Grow does nothing: a batch is one datagram here.
func (r *Reader) Grow(int) {}

// Packet returns the datagram of the last read.
func (r *Reader) Packet(int) ([]byte, int, netip.AddrPort) { return r.buf, r.n, r.from }

// Writer sends each datagram as it is added.
type Writer struct {
	c       *net.UDPConn
	failed  int
	lastErr error
	calls   uint64
}

// NewWriter makes a writer for c.
func NewWriter(c *net.UDPConn, _ int) (*Writer, error) { return &Writer{c: c}, nil }

// Len is the number of datagrams queued: always 0.
func (w *Writer) Len() int { return 0 }

// Cap is the number of datagrams one call sends.
func (w *Writer) Cap() int { return 1 }

// Calls is the number of send calls made so far.
func (w *Writer) Calls() uint64 { return w.calls }

// EnableGSO reports false: there is no UDP GSO here.
func (w *Writer) EnableGSO() bool { return false }

// GSO returns zeros: there is no UDP GSO here.
func (w *Writer) GSO() (sends, datagrams uint64) { return 0, 0 }

// Add sends p to to.
func (w *Writer) Add(p []byte, to netip.AddrPort) {
	w.calls++
	if _, err := w.c.WriteToUDPAddrPort(p, to); err != nil {
		w.failed++
		w.lastErr = err
	}
}

// Flush reports the datagrams that failed since the last Flush.
func (w *Writer) Flush() (failed int, err error) {
	failed, err = w.failed, w.lastErr
	w.failed, w.lastErr = 0, nil
	return failed, err
}
