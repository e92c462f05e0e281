//go:build linux

package udpbatch

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
// relayed or forwarded packet; when it is idle a batch holds one datagram and costs
// what a recvfrom would. The calls go through the runtime's poller
// (syscall.RawConn), so a goroutine waiting for data parks as usual.
// Nothing allocates once the batch is made.
//
// A reader hands each batch to its consumer (TURN's fast path) inside the
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

// Reader reads datagrams into fixed buffers, each with headroom bytes
// free in front of the data. One goroutine at a time may use it.
type Reader struct {
	rc       syscall.RawConn
	hdrs     []mmsghdr
	iovs     []unix.Iovec
	names    []unix.RawSockaddrAny
	bufs     [][]byte
	headroom int
	errno    syscall.Errno
	readFn   func(fd uintptr) bool
	// consume handles the first n datagrams of a batch just read and
	// reports whether it took them all; when not, the caller of Read
	// takes over from where it stopped.
	consume func(n int) bool
}

// NewReader makes a reader of count datagrams of up to size bytes for c.
// consume handles the first n datagrams of each batch read (see Packet)
// and reports whether it took them all.
func NewReader(c *net.UDPConn, count, headroom, size int, consume func(n int) bool) (*Reader, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: reader: %w", err)
	}
	r := &Reader{rc: rc, hdrs: make([]mmsghdr, count), iovs: make([]unix.Iovec, count),
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

func (r *Reader) recv(fd uintptr) bool {
	for {
		for i := range r.hdrs {
			r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
			r.hdrs[i].hdr.Flags = 0
		}
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
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

// Read waits for datagrams and hands them to the consumer, batch by
// batch, until the consumer stops at one or a full batch was read.
func (r *Reader) Read() error {
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

// Packet returns datagram i of the last read: its buffer (data at
// headroom), its length and its sender (IPv4-mapped addresses unmapped).
func (r *Reader) Packet(i int) (buf []byte, n int, from netip.AddrPort) {
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

// Writer queues datagrams for one socket and sends them with one
// sendmmsg. The queued buffers must stay untouched until Flush. One
// goroutine at a time may use it.
type Writer struct {
	rc      syscall.RawConn
	inet6   bool // the socket is AF_INET6: IPv4 destinations are sent IPv4-mapped
	hdrs    []mmsghdr
	iovs    []unix.Iovec
	names   []unix.RawSockaddrInet6 // large enough for either family
	queued  int
	sent    int
	errno   syscall.Errno
	failed  int           // datagrams refused since the last Flush
	lastErr syscall.Errno // the last refusal's error
	calls   uint64        // sendmmsg calls made, for tests and benchmarks
	writeFn func(fd uintptr) bool
}

// NewWriter makes a writer of up to count datagrams per sendmmsg for c.
func NewWriter(c *net.UDPConn, count int) (*Writer, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: writer: %w", err)
	}
	var domain int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("udpbatch: writer: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("udpbatch: writer: socket domain: %w", serr)
	}
	w := &Writer{rc: rc, inet6: domain == unix.AF_INET6, hdrs: make([]mmsghdr, count),
		iovs: make([]unix.Iovec, count), names: make([]unix.RawSockaddrInet6, count)}
	for i := range w.hdrs {
		w.hdrs[i].hdr.Iov = &w.iovs[i]
		w.hdrs[i].hdr.SetIovlen(1)
		w.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
	}
	w.writeFn = w.send
	return w, nil
}

// Len is the number of datagrams queued.
func (w *Writer) Len() int { return w.queued }

// Cap is the number of datagrams one sendmmsg sends.
func (w *Writer) Cap() int { return len(w.hdrs) }

// Calls is the number of sendmmsg calls made so far.
func (w *Writer) Calls() uint64 { return w.calls }

// Add queues p for to, sending the queue first when it is full (its
// failures are then reported by the next Flush).
func (w *Writer) Add(p []byte, to netip.AddrPort) {
	if w.queued == len(w.hdrs) {
		w.sendQueued()
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
		// An IPv6 destination on an IPv4 socket: unreachable, as sendto
		// would say.
		w.failed++
		w.lastErr = unix.EAFNOSUPPORT
		return
	}
	w.queued++
}

func (w *Writer) send(fd uintptr) bool {
	w.calls++
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.sent])),
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

// Flush sends what is queued. A datagram the kernel refuses is dropped,
// as a failed sendto would be, and the rest still go. It returns how
// many datagrams since the last Flush were not sent (refused, or all
// that were left when the socket was closed) and the last error.
func (w *Writer) Flush() (failed int, err error) {
	w.sendQueued()
	failed, w.failed = w.failed, 0
	if failed > 0 {
		err, w.lastErr = w.lastErr, 0
	}
	return failed, err
}

func (w *Writer) sendQueued() {
	for w.sent < w.queued {
		w.errno = 0
		if err := w.rc.Write(w.writeFn); err != nil {
			// The socket is closed: nothing more will go.
			w.failed += w.queued - w.sent
			w.lastErr = unix.EBADF
			break
		}
		if w.errno != 0 {
			w.failed++ // skip the datagram that failed
			w.lastErr = w.errno
			w.sent++
		}
	}
	w.queued, w.sent = 0, 0
}
