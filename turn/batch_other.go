//go:build !linux

package turn

import (
	"net"
	"net/netip"
)

// Without recvmmsg and sendmmsg a batch is one datagram (see
// batch_linux.go).

type batchReader struct {
	c        *net.UDPConn
	buf      []byte
	headroom int
	n        int
	from     netip.AddrPort
	consume  func(n int) bool
}

func newBatchReader(c *net.UDPConn, _, headroom, size int, consume func(n int) bool) (*batchReader, error) {
	return &batchReader{c: c, buf: make([]byte, headroom+size), headroom: headroom, consume: consume}, nil
}

func (r *batchReader) read() error {
	n, from, err := r.c.ReadFromUDPAddrPort(r.buf[r.headroom:])
	if err != nil {
		return err
	}
	r.n, r.from = n, unmapAP(from)
	r.consume(1)
	return nil
}

func (r *batchReader) packet(int) ([]byte, int, netip.AddrPort) { return r.buf, r.n, r.from }

type batchWriter struct{ c *net.UDPConn }

func newBatchWriter(c *net.UDPConn, _ int) (*batchWriter, error) { return &batchWriter{c: c}, nil }

func (w *batchWriter) add(p []byte, to netip.AddrPort) { _, _ = w.c.WriteToUDPAddrPort(p, to) }

func (w *batchWriter) flush() {}
