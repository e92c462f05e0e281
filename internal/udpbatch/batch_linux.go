//go:build linux

package udpbatch

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
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
	size     int
	errno    syscall.Errno
	readFn   func(fd uintptr) bool
	onceFn   func(fd uintptr) // recvOnce, made once: TryRead allocates nothing
	got      int              // datagrams TryRead's call read
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
	r := &Reader{rc: rc, headroom: headroom, size: size, consume: consume}
	r.grow(count)
	r.readFn = r.recv
	r.onceFn = r.recvOnce
	return r, nil
}

// grow makes the batch count datagrams long, keeping the buffers, the
// lengths and the senders of the datagrams it had.
func (r *Reader) grow(count int) {
	old := len(r.hdrs)
	hdrs, iovs := make([]mmsghdr, count), make([]unix.Iovec, count)
	names, bufs := make([]unix.RawSockaddrAny, count), make([][]byte, count)
	copy(names, r.names)
	copy(bufs, r.bufs)
	for i := range hdrs {
		if i >= old {
			bufs[i] = make([]byte, r.headroom+r.size)
		} else {
			hdrs[i].n = r.hdrs[i].n
		}
		iovs[i].Base = &bufs[i][r.headroom]
		iovs[i].SetLen(r.size)
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
		hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
	}
	r.hdrs, r.iovs, r.names, r.bufs = hdrs, iovs, names, bufs
}

// Cap is the number of datagrams one recvmmsg reads at most.
func (r *Reader) Cap() int { return len(r.hdrs) }

// Grow raises the number of datagrams one recvmmsg reads to count, when
// it is smaller: for a socket found busy, whose batches came back full.
// The datagrams of the last read keep their buffers. Not to be called
// during Read.
func (r *Reader) Grow(count int) {
	if count > len(r.hdrs) {
		r.grow(count)
	}
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

// TryRead reads what is waiting, up to a batch, with one recvmmsg and
// without waiting: for a caller that learnt from its own epoll set that
// the socket is readable. It returns the number of datagrams read (0 when
// there were none), which Packet then gives; the consumer is not called.
// net.ErrClosed when the socket is closed.
func (r *Reader) TryRead() (int, error) {
	r.got, r.errno = 0, 0
	if err := r.rc.Control(r.onceFn); err != nil {
		return 0, net.ErrClosed
	}
	if r.errno != 0 {
		if r.errno == unix.EBADF {
			return 0, net.ErrClosed
		}
		return 0, r.errno
	}
	return r.got, nil
}

// recvOnce makes one recvmmsg and sets r.got; EAGAIN reads nothing.
func (r *Reader) recvOnce(fd uintptr) {
	for i := range r.hdrs {
		r.hdrs[i].hdr.Namelen = unix.SizeofSockaddrAny
		r.hdrs[i].hdr.Flags = 0
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(len(r.hdrs)),
			unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			r.got = int(n)
			return
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return
		default:
			r.errno = errno
			return
		}
	}
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
//
// With EnableGSO, consecutive datagrams of equal size to the same
// destination (the last of them may be shorter) go as one message with a
// UDP_SEGMENT control message: the kernel builds and routes one large
// datagram and splits it only at the end of its path (the device, or on
// loopback the receiving socket), so the per-datagram work of the
// stack is paid once per run. Receivers see the datagrams as they were
// queued, one by one and in order. Only consecutive datagrams are
// joined, so no datagram ever overtakes another.
type Writer struct {
	rc    syscall.RawConn
	inet6 bool // the socket is AF_INET6: IPv4 destinations are sent IPv4-mapped
	// One per message (a datagram, or a run of them sent with GSO).
	hdrs  []mmsghdr
	names []unix.RawSockaddrInet6 // large enough for either family
	first []int32                 // index in iovs of the message's first datagram
	segs  []int32                 // datagrams in the message
	cmsgs []byte                  // a UDP_SEGMENT control message per message, cmsgSpace bytes each
	// One per datagram.
	iovs    []unix.Iovec
	queued  int // datagrams queued
	msgs    int // messages queued
	sent    int // messages sent
	errno   syscall.Errno
	failed  int           // datagrams refused since the last Flush
	lastErr syscall.Errno // the last refusal's error
	calls   uint64        // sendmmsg calls made, for tests and benchmarks
	writeFn func(fd uintptr) bool

	// GSO: on while the kernel takes it. The last message's run may grow
	// while runSize > 0: by datagrams to runTo of at most runSize bytes.
	gso       bool
	gsoMax    int // largest datagram that may start a run
	runTo     netip.AddrPort
	runSize   int
	runBytes  int
	gsoSends  atomic.Uint64 // messages of several datagrams sent
	gsoDgrams atomic.Uint64 // the datagrams in them
	one       mmsghdr       // a datagram of a refused run, sent alone
	oneFn     func(fd uintptr) bool
	refuseGSO bool // tests: act as a kernel that refuses GSO with EIO
}

// GSO limits: the kernel takes up to 64 segments (128 on newer kernels)
// and a datagram of up to 64 KiB in all.
const (
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
	// gsoSafeSize is the largest segment that fits any path's MTU (IPv6's
	// minimum, 1280, less the IPv6 and UDP headers). A larger segment
	// than the route's MTU allows is refused with EINVAL; after that,
	// runs are made only of datagrams this small.
	gsoSafeSize = 1232
)

var cmsgSpace = unix.CmsgSpace(2)

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
		names: make([]unix.RawSockaddrInet6, count), first: make([]int32, count),
		segs: make([]int32, count), iovs: make([]unix.Iovec, count)}
	for i := range w.hdrs {
		w.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
	}
	w.one.hdr.SetIovlen(1)
	w.writeFn = w.send
	w.oneFn = w.sendOne
	return w, nil
}

// EnableGSO makes the writer join runs of datagrams with UDP GSO (see
// Writer) when the kernel has it, and reports whether it does. Should the
// kernel refuse a run later (a device without checksum offload, say),
// the writer sends that run's datagrams one by one and GSO stays off.
func (w *Writer) EnableGSO() bool {
	if w.gso {
		return true
	}
	var serr error
	if err := w.rc.Control(func(fd uintptr) {
		_, serr = unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT)
	}); err != nil || serr != nil {
		return false
	}
	if w.cmsgs == nil {
		w.cmsgs = make([]byte, len(w.hdrs)*cmsgSpace)
		for m := range w.hdrs {
			h := (*unix.Cmsghdr)(unsafe.Pointer(&w.cmsgs[m*cmsgSpace]))
			h.Level = unix.SOL_UDP
			h.Type = unix.UDP_SEGMENT
			h.SetLen(unix.CmsgLen(2))
		}
	}
	w.gso, w.gsoMax = true, gsoMaxBytes
	return true
}

// Len is the number of datagrams queued.
func (w *Writer) Len() int { return w.queued }

// Cap is the number of datagrams one sendmmsg sends.
func (w *Writer) Cap() int { return len(w.iovs) }

// Calls is the number of sendmmsg calls made so far.
func (w *Writer) Calls() uint64 { return w.calls }

// GSO returns how many messages of several datagrams were sent with GSO
// so far, and how many datagrams they held. Other goroutines may call it.
func (w *Writer) GSO() (sends, datagrams uint64) { return w.gsoSends.Load(), w.gsoDgrams.Load() }

// Add queues p for to, sending the queue first when it is full (its
// failures are then reported by the next Flush).
func (w *Writer) Add(p []byte, to netip.AddrPort) {
	if w.queued == len(w.iovs) {
		w.sendQueued()
	}
	if len(p) == 0 {
		return
	}
	i := w.queued
	if w.runSize > 0 && len(p) <= w.runSize && to == w.runTo {
		// Join the last message's run.
		m := w.msgs - 1
		w.iovs[i].Base = &p[0]
		w.iovs[i].SetLen(len(p))
		w.segs[m]++
		w.hdrs[m].hdr.SetIovlen(int(w.segs[m]))
		if w.segs[m] == 2 {
			c := w.cmsgs[m*cmsgSpace : (m+1)*cmsgSpace]
			*(*uint16)(unsafe.Pointer(&c[unix.CmsgLen(0)])) = uint16(w.runSize)
			w.hdrs[m].hdr.Control = &c[0]
			w.hdrs[m].hdr.SetControllen(cmsgSpace)
		}
		w.runBytes += len(p)
		if len(p) < w.runSize || w.segs[m] == gsoMaxSegments || w.runBytes+w.runSize > gsoMaxBytes {
			w.runSize = 0 // a shorter datagram ends a run, as do the limits
		}
		w.queued++
		return
	}
	m := w.msgs
	ip := to.Addr()
	port := to.Port()
	switch {
	case w.inet6:
		sa := &w.names[m]
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		w.hdrs[m].hdr.Namelen = unix.SizeofSockaddrInet6
	case ip.Is4() || ip.Is4In6():
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&w.names[m]))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		w.hdrs[m].hdr.Namelen = unix.SizeofSockaddrInet4
	default:
		// An IPv6 destination on an IPv4 socket: unreachable, as sendto
		// would say.
		w.failed++
		w.lastErr = unix.EAFNOSUPPORT
		w.runSize = 0
		return
	}
	w.iovs[i].Base = &p[0]
	w.iovs[i].SetLen(len(p))
	w.hdrs[m].hdr.Iov = &w.iovs[i]
	w.hdrs[m].hdr.SetIovlen(1)
	w.hdrs[m].hdr.Control = nil
	w.hdrs[m].hdr.SetControllen(0)
	w.first[m], w.segs[m] = int32(i), 1
	w.runSize = 0
	if w.gso && len(p) <= w.gsoMax && 2*len(p) <= gsoMaxBytes {
		w.runTo, w.runSize, w.runBytes = to, len(p), len(p)
	}
	w.msgs++
	w.queued++
}

func (w *Writer) send(fd uintptr) bool {
	count := w.msgs - w.sent
	if w.refuseGSO {
		// Stop before the first run, and refuse it when it comes first.
		for k := w.sent; k < w.msgs; k++ {
			if w.segs[k] > 1 {
				if k == w.sent {
					w.errno = unix.EIO
					return true
				}
				count = k - w.sent
				break
			}
		}
	}
	w.calls++
	n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.hdrs[w.sent])),
		uintptr(count), unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	w.errno = errno
	if errno == 0 {
		var sends, dgrams uint64
		for _, s := range w.segs[w.sent : w.sent+int(n)] {
			if s > 1 {
				sends++
				dgrams += uint64(s)
			}
		}
		if sends > 0 {
			w.gsoSends.Add(sends)
			w.gsoDgrams.Add(dgrams)
		}
		w.sent += int(n)
	}
	return true
}

// sendOne sends w.one with one sendmmsg.
func (w *Writer) sendOne(fd uintptr) bool {
	w.calls++
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.one)), 1, unix.MSG_DONTWAIT, 0, 0)
	if errno == unix.EAGAIN || errno == unix.EINTR {
		return false
	}
	w.errno = errno
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
	for w.sent < w.msgs {
		w.errno = 0
		if err := w.rc.Write(w.writeFn); err != nil {
			// The socket is closed: nothing more will go.
			w.failed += w.unsent()
			w.lastErr = unix.EBADF
			break
		}
		if w.errno == 0 {
			continue
		}
		m := w.sent
		w.sent++ // skip the message that failed
		if w.segs[m] == 1 {
			w.failed++
			w.lastErr = w.errno
			continue
		}
		// A run refused: GSO may be what the kernel does not take. Its
		// datagrams go one by one; should each of those be refused with
		// the same error, GSO was not the cause and stays as it was.
		errno, gso, gsoMax := w.errno, w.gso, w.gsoMax
		switch errno {
		case unix.EINVAL:
			// Also the answer to a segment larger than the route's MTU
			// allows: keep GSO for small datagrams, unless those were
			// refused too.
			if size := int(w.iovs[w.first[m]].Len); size > gsoSafeSize {
				w.gsoMax = gsoSafeSize
				break
			}
			w.gso = false
		case unix.EIO, unix.ENOPROTOOPT, unix.EOPNOTSUPP:
			w.gso = false
		}
		failed := w.failed
		if !w.sendAlone(m) {
			w.failed += w.unsent()
			w.lastErr = unix.EBADF
			break
		}
		if w.failed-failed == int(w.segs[m]) && w.lastErr == errno {
			w.gso, w.gsoMax = gso, gsoMax
		}
	}
	w.queued, w.msgs, w.sent, w.runSize = 0, 0, 0, 0
}

// unsent is the number of datagrams in the messages not sent yet.
func (w *Writer) unsent() int {
	if w.sent == w.msgs {
		return 0
	}
	return w.queued - int(w.first[w.sent])
}

// sendAlone sends the datagrams of message m one by one, dropping those
// refused. It reports false when the socket is closed (the datagrams not
// sent yet are then counted as failed).
func (w *Writer) sendAlone(m int) bool {
	w.one.hdr.Name = w.hdrs[m].hdr.Name
	w.one.hdr.Namelen = w.hdrs[m].hdr.Namelen
	first, end := int(w.first[m]), int(w.first[m]+w.segs[m])
	for i := first; i < end; i++ {
		w.one.hdr.Iov = &w.iovs[i]
		w.errno = 0
		if err := w.rc.Write(w.oneFn); err != nil {
			w.failed += end - i
			return false
		}
		if w.errno != 0 {
			w.failed++
			w.lastErr = w.errno
		}
	}
	return true
}
