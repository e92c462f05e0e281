package udpbatch

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of a Conn's batch.
const (
	// DefaultBatch is the number of datagrams one sendmmsg sends.
	DefaultBatch = 64
	// readBatch is the number of datagrams one recvmmsg reads.
	readBatch = 16
	// readBytes is the room per datagram read, as much as pion/ice's
	// UDP mux reads with.
	readBytes = 8192
	// slotBytes is the room per datagram in a batch's buffer: datagrams
	// are packed, so a batch of small ones holds up to DefaultBatch of
	// them, and one of up to DefaultBatch*slotBytes bytes fits alone.
	slotBytes = 1500
	// maxDelay bounds how long a queued datagram may wait while fan-outs
	// keep overlapping (one whose goroutine was preempted between Begin
	// and End, say): the next write or End after it sends the batch.
	maxDelay = time.Millisecond
)

// Group brackets fan-outs over one or more Conns. While a fan-out is in
// progress (a Begin without its End yet), writes to the group's Conns are
// copied into each Conn's batch instead of being sent; the End that
// leaves none in progress sends each batch with one sendmmsg. Several
// goroutines' fan-outs share the batches: Begin and End count.
//
// A write error of a queued datagram cannot be returned by the WriteTo
// that queued it; such datagrams are dropped, as a failed sendto would
// be, and counted for onError. The datagrams after one that fails are
// still sent.
type Group struct {
	onError func(failed int, err error)

	// mu guards all following fields, and each Conn's batch. It is held
	// across a flush's sendmmsg calls and nothing else is locked while it
	// is held, so no lock order involves it.
	mu     sync.Mutex
	active int       // fan-outs in progress
	queued int       // datagrams queued in all Conns since the last flush
	since  time.Time // when the first of them was queued
	conns  []*Conn
	direct uint64 // datagrams written at once with sendto (a zone, or empty), one system call each
	total  uint64 // datagrams written through the group's Conns
	gone   uint64 // sendmmsg calls of closed Conns
}

// NewGroup makes a group. onError, if not nil, is told about datagrams a
// flush could not send (with the last error); it is called without locks
// held, from the goroutine that flushed.
func NewGroup(onError func(failed int, err error)) *Group {
	return &Group{onError: onError}
}

// Begin marks the start of a fan-out. Every Begin must be followed by one
// End, best deferred right after it. A nil Group does nothing.
func (g *Group) Begin() {
	if g == nil {
		return
	}
	g.mu.Lock()
	g.active++
	g.mu.Unlock()
}

// End marks the end of a fan-out. The last one in progress sends what the
// fan-outs queued.
func (g *Group) End() {
	if g == nil {
		return
	}
	var failed int
	var err error
	g.mu.Lock()
	g.active--
	if g.active < 0 {
		g.mu.Unlock()
		panic("udpbatch: End without Begin")
	}
	if g.queued > 0 && (g.active == 0 || time.Since(g.since) >= maxDelay) {
		failed, err = g.flushLocked()
	}
	g.mu.Unlock()
	g.report(failed, err)
}

// Stats counts what went through a group's Conns.
type Stats struct {
	Datagrams uint64 // datagrams written
	Calls     uint64 // system calls that sent them (sendto and sendmmsg)
}

// Stats returns the group's counts so far.
func (g *Group) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Stats{Datagrams: g.total, Calls: g.direct + g.gone}
	for _, c := range g.conns {
		s.Calls += c.w.Calls()
	}
	return s
}

// flushLocked sends every Conn's batch. g.mu must be held.
func (g *Group) flushLocked() (failed int, err error) {
	for _, c := range g.conns {
		if f, e := c.flushLocked(); f > 0 {
			failed += f
			err = e
		}
	}
	g.queued = 0
	return failed, err
}

func (g *Group) report(failed int, err error) {
	if failed > 0 && g.onError != nil {
		g.onError(failed, err)
	}
}

// Conn is a UDP socket as a net.PacketConn whose writes are batched while
// its Group has a fan-out in progress. Reads take up to readBatch waiting
// datagrams with one recvmmsg and hand them out one by one. It also has
// pion/ice's allocation-free AddrPort methods.
type Conn struct {
	c *net.UDPConn
	g *Group

	// rmu serialises readers (pion's mux has one) and guards the
	// following fields.
	rmu    sync.Mutex
	r      *Reader
	rn, ri int // datagrams of the last read, and the next to hand out

	filter atomic.Pointer[Filter]

	// Guarded by g.mu.
	w      *Writer
	arena  []byte // the queued datagrams' copies, packed
	used   int
	closed bool
}

var _ net.PacketConn = (*Conn)(nil)

// NewConn wraps c, batching up to batch datagrams (DefaultBatch if 0) per
// sendmmsg during g's fan-outs. Closing the Conn closes c.
func NewConn(c *net.UDPConn, g *Group, batch int) (*Conn, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	w, err := NewWriter(c, batch)
	if err != nil {
		return nil, err
	}
	bc := &Conn{c: c, g: g, w: w, arena: make([]byte, batch*slotBytes)}
	if bc.r, err = NewReader(c, readBatch, 0, readBytes, bc.consume); err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.conns = append(g.conns, bc)
	g.mu.Unlock()
	return bc, nil
}

// flushLocked sends c's batch. g.mu must be held.
func (c *Conn) flushLocked() (int, error) {
	c.used = 0
	return c.w.Flush()
}

// WriteToAddrPort sends p to to, or during a fan-out copies it into the
// batch and returns len(p) and no error.
func (c *Conn) WriteToAddrPort(p []byte, to netip.AddrPort) (int, error) {
	g := c.g
	g.mu.Lock()
	if c.closed {
		g.mu.Unlock()
		return 0, net.ErrClosed
	}
	g.total++
	if g.active == 0 || len(p) > len(c.arena) || to.Addr().Zone() != "" {
		// Outside a fan-out (ICE checks, DTLS, RTCP) a datagram goes at
		// once, after anything still queued so as to keep their order.
		// So does one to a link-local IPv6 address with a zone, which
		// the batch's socket addresses have no room for (its scope).
		var failed int
		var ferr error
		if g.queued > 0 {
			failed, ferr = g.flushLocked()
		}
		// Through the Writer, whose raw system call keeps the runtime's
		// monitor asleep (see the package doc; its batch is empty here),
		// except what its socket addresses cannot carry (a zone) and the
		// empty datagram, which it does not send.
		viaNet := to.Addr().Zone() != "" || len(p) == 0
		var f int
		var err error
		if viaNet {
			g.direct++
		} else {
			c.w.Add(p, to)
			f, err = c.w.Flush()
		}
		g.mu.Unlock()
		g.report(failed, ferr)
		if viaNet {
			return c.c.WriteToUDPAddrPort(p, to)
		}
		if f > 0 {
			return 0, &net.OpError{Op: "write", Net: "udp", Source: c.c.LocalAddr(), Addr: net.UDPAddrFromAddrPort(to), Err: err}
		}
		return len(p), nil
	}
	var failed int
	var ferr error
	if c.used+len(p) > len(c.arena) || c.w.Len() == c.w.Cap() {
		g.queued -= c.w.Len()
		failed, ferr = c.flushLocked()
	}
	n := copy(c.arena[c.used:], p)
	c.w.Add(c.arena[c.used:c.used+n], to)
	c.used += n
	if g.queued == 0 {
		g.since = time.Now()
	} else if time.Since(g.since) >= maxDelay {
		f, e := g.flushLocked()
		failed += f
		if f > 0 {
			ferr = e
		}
	}
	g.queued++
	g.mu.Unlock()
	g.report(failed, ferr)
	return len(p), nil
}

// WriteTo is WriteToAddrPort for a *net.UDPAddr; other addresses are
// written at once.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return c.WriteToAddrPort(p, ua.AddrPort())
	}
	return c.c.WriteTo(p, addr)
}

// consume notes a batch just read and stops the Reader, so that
// ReadFromAddrPort hands the datagrams out.
func (c *Conn) consume(n int) bool {
	c.rn, c.ri = n, 0
	return false
}

// Filter sees each datagram a Conn reads before the Conn hands it out;
// one it takes (returns true) is not handed out. It runs on the reading
// goroutine and must not keep p.
type Filter func(p []byte, from netip.AddrPort) (taken bool)

// SetFilter sets the filter of the datagrams read (nil: none).
func (c *Conn) SetFilter(f Filter) {
	if f == nil {
		c.filter.Store(nil)
		return
	}
	c.filter.Store(&f)
}

// ReadFromAddrPort returns the next datagram, reading a batch when none
// is left from the last one. A datagram longer than b is cut, as a
// socket read would cut it.
//
// The datagrams of one read that the filter takes are one fan-out of the
// Conn's group: what the filter writes meanwhile (a publisher's packet
// forwarded to its subscribers, say) goes with one sendmmsg when the
// batch read is done, before the next read waits.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	fanout := false
	defer func() {
		if fanout {
			c.g.End()
		}
	}()
	for {
		for c.ri >= c.rn {
			if fanout {
				c.g.End()
				fanout = false
			}
			c.rn, c.ri = 0, 0
			if err := c.r.Read(); err != nil {
				return 0, netip.AddrPort{}, err
			}
		}
		buf, n, from := c.r.Packet(c.ri)
		c.ri++
		if f := c.filter.Load(); f != nil {
			if !fanout {
				c.g.Begin()
				fanout = true
			}
			if (*f)(buf[:n], from) {
				continue
			}
		}
		return copy(b, buf[:n]), from, nil
	}
}

// ReadFrom is ReadFromAddrPort with a *net.UDPAddr.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Close sends what is queued for the socket, leaves the group and closes
// the socket.
func (c *Conn) Close() error {
	g := c.g
	g.mu.Lock()
	if c.closed {
		g.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	g.queued -= c.w.Len()
	failed, err := c.flushLocked()
	for i, o := range g.conns {
		if o == c {
			g.conns = append(g.conns[:i], g.conns[i+1:]...)
			g.gone += c.w.Calls()
			break
		}
	}
	g.mu.Unlock()
	g.report(failed, err)
	return c.c.Close()
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.c.LocalAddr() }

// SetDeadline sets the socket's read and write deadlines; a batch sent
// after the write deadline has passed is dropped.
func (c *Conn) SetDeadline(t time.Time) error { return c.c.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.c.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.c.SetWriteDeadline(t) }
