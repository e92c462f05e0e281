//go:build linux

package turn

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Batched datagram I/O with recvmmsg and sendmmsg: one system call moves
// as many datagrams as are waiting (up to the batch size). When a socket
// is busy that saves most of the system calls, the largest cost of a
// relayed packet; when it is idle a batch holds one datagram and costs
// what a recvfrom would. The calls go through the runtime's poller
// (syscall.RawConn), so a goroutine waiting for data parks as usual.
// Nothing allocates once the batch is made.
//
// A reader hands each batch to its consumer (the fast path) inside the
// poller's read callback. When the consumer takes the whole batch and
// the batch was not full, the socket was empty when it was read, so the
// reader waits for the poller's next readiness edge straight away
// instead of trying another recvmmsg that would only say EAGAIN: one
// system call less each time a socket wakes up, which at light load is
// every datagram. This is safe because the poller's readiness is reset
// only when a RawConn.Read begins, not between the callback's calls, and
// every datagram that arrives after a recvmmsg sets it again.

// mmsghdr is struct mmsghdr, which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// batchReader reads datagrams into fixed buffers, each with headroom
// bytes free in front of the data.
type batchReader struct {
	rc       syscall.RawConn
	hdrs     []mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrAny
	bufs     [][]byte
	headroom int
	errno    syscall.Errno
	readFn   func(fd uintptr) bool
	// consume handles the first n datagrams of a batch just read and
	// reports whether it took them all; when not, the caller of read
	// takes over from where it stopped.
	consume func(n int) bool
}

func newBatchReader(c *net.UDPConn, count, headroom, size int, consume func(n int) bool) (*batchReader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("turn: batch reader: %w", err)
	}
	r := &batchReader{rc: rc, hdrs: make([]mmsghdr, count), iovs: make([]unix.Iovec, count),
		names: make([]unix.RawSockaddrAny, count), bufs: make([][]byte, count), headroom: headroom,
		consume: consume}
	for i := range r.hdrs {
		r.bufs[i] = make([]byte, headroom+size)
		r.iovs[i].Base = &r.bufs[i][headroom]
		r.iovs[i].SetLen(size)
		r.hdrs[i].hdr.Iov = &r.iovs[i]
		r.hdrs[i].hdr.SetIovlen(1)
		r.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.readFn = r.recv
	return r, nil
}

func (r *batchReader) recv(fd uintptr) bool {
	for {
		for i := range r.hdrs {
			r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
			r.hdrs[i].hdr.Flags = 0
		}
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.errno = errno
			return true
		}
		if !r.consume(int(n)) || int(n) == len(r.hdrs) {
			// The consumer stopped at a datagram for the caller, or the
			// batch was full and more may be waiting: back to the caller,
			// which reads again.
			return true
		}
		// All taken and the socket was empty: wait for the next edge.
		return false
	}
}

// read waits for datagrams and hands them to the consumer, batch by
// batch, until the consumer stops at one or a full batch was read.
func (r *batchReader) read() error {
	r.errno = 0
	if err := r.rc.Read(r.readFn); err != nil {
		return err
	}
	if r.errno != 0 {
		if r.errno == unix.EBADF {
			return net.ErrClosed
		}
		return r.errno
	}
	return nil
}

// packet returns datagram i of the last read: its buffer (data at
// headroom), its length and its sender (IPv4-mapped addresses unmapped).
func (r *batchReader) packet(i int) (buf []byte, n int, from netip.AddrPort) {
	return r.bufs[i], int(r.hdrs[i].n), sockaddrAddrPort(&r.names[i])
}

func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(p.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// batchWriter queues datagrams for one socket and sends them with one
// sendmmsg. The queued buffers must stay untouched until flush.
type batchWriter struct {
	rc      syscall.RawConn
	inet6   bool // the socket is AF_INET6: IPv4 destinations are sent IPv4-mapped
	hdrs    []mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrInet6 // large enough for either family
	queued  int
	sent    int
	errno   syscall.Errno
	writeFn func(fd uintptr) bool
}

func newBatchWriter(c *net.UDPConn, count int) (*batchWriter, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("turn: batch writer: %w", err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("turn: batch writer: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("turn: batch writer: socket domain: %w", serr)
	}
	w := &batchWriter{rc: rc, inet6: domain == unix.AF_INET6, hdrs: make([]mmsghdr, count),
		iovs: make([]unix.Iovec, count), names: make([]unix.RawSockaddrInet6, count)}
	for i := range w.hdrs {
		w.hdrs[i].hdr.Iov = &w.iovs[i]
		w.hdrs[i].hdr.SetIovlen(1)
		w.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
	}
	w.writeFn = w.send
	return w, nil
}

// add queues p for to, sending the queue first when it is full.
func (w *batchWriter) add(p []byte, to netip.AddrPort) {
	if w.queued == len(w.hdrs) {
		w.flush()
	}
	i := w.queued
	if len(p) == 0 {
		return
	}
	w.iovs[i].Base = &p[0]
	w.iovs[i].SetLen(len(p))
	ip := to.Addr()
	port := to.Port()
	switch {
	case w.inet6:
		sa := &w.names[i]
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		w.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
	case ip.Is4() || ip.Is4In6():
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&w.names[i]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		w.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
	default:
		return // an IPv6 destination on an IPv4 socket: unreachable, as sendto would say
	}
	w.queued++
}

func (w *batchWriter) send(fd uintptr) bool {
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.sent])),
		uintptr(w.queued-w.sent), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	w.errno = errno
	if errno == 0 {
		w.sent += int(n)
	}
	return true
}

// flush sends what is queued. A datagram the kernel refuses is dropped,
// as a failed sendto would be, and the rest still go.
func (w *batchWriter) flush() {
	for w.sent < w.queued {
		w.errno = 0
		if err := w.rc.Write(w.writeFn); err != nil {
			break // the socket is closed
		}
		if w.errno != 0 {
			w.sent++ // skip the datagram that failed
		}
	}
	w.queued, w.sent = 0, 0
}
