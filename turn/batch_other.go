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
}

func newBatchReader(c *net.UDPConn, _, headroom, size int) (*batchReader, error) {
	return &batchReader{c: c, buf: make([]byte, headroom+size), headroom: headroom}, nil
}

func (r *batchReader) read() (int, error) {
	n, from, err := r.c.ReadFromUDPAddrPort(r.buf[r.headroom:])
	if err != nil {
		return 0, err
	}
	r.n, r.from = n, unmapAP(from)
	return 1, nil
}

func (r *batchReader) packet(int) ([]byte, int, netip.AddrPort) { return r.buf, r.n, r.from }

type batchWriter struct{ c *net.UDPConn }

func newBatchWriter(c *net.UDPConn, _ int) (*batchWriter, error) { return &batchWriter{c: c}, nil }

func (w *batchWriter) add(p []byte, to netip.AddrPort) { _, _ = w.c.WriteToUDPAddrPort(p, to) }

func (w *batchWriter) flush() {}
