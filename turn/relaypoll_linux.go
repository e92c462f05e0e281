//go:build linux

package turn

import (
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"poosms.org/poosms/internal/udpbatch"
)

// relayPoller reads the relay sockets of one UDP listener's allocations
// in one goroutine, from one epoll set, and sends what they relay to
// their clients with one writer on the listener. With a goroutine per
// relay socket, each socket that became readable cost a goroutine
// wake-up, a recvmmsg and a sendmmsg of its own; under many allocations
// that each carry a datagram every few milliseconds (a call's media,
// turnutils_uclient), a wake-up carried one datagram. Here one wake-up
// takes every relay socket that is readable: a recvmmsg each (a socket
// reads only its own datagrams), and one sendmmsg for all their
// datagrams to the clients, which all leave through the listener.
//
// The epoll set is edge-triggered (see pollEvents) and itself waited on
// through the runtime's poller, so the goroutine holds no thread while
// nothing happens.
//
// A datagram the fast path does not take (no permission, too long) goes
// to the engine: the poller hands the socket, with the rest of its batch,
// to the engine's reader goroutine (relayConn.ReadFrom), which has waited
// for it, and takes the socket out of the epoll set until that goroutine
// has handed the batch's datagrams on and puts it back.
type relayPoller struct {
	epfd   int
	f      *os.File        // epfd, for the runtime's poller
	rc     syscall.RawConn // f's
	writer *udpbatch.Writer
	done   chan struct{} // closed when run returns

	wakeups, reads atomic.Uint64 // rounds that found relay sockets readable, and the sockets read in them

	mu     sync.Mutex
	relays map[int32]*relayConn // by registration id (relayState.pollID)
	nextID int32
	closed bool
}

// pollEvents is a relay socket's registration: readable, edge-triggered.
// A level-triggered socket is queued again after each report, and the
// kernel then tells the runtime's poller that the set is readable once
// more: a round with nothing to do after every round. So a round reads
// each socket reported until a read comes back short of its batch (the
// socket was empty), and reads again the next round those whose batch
// came back full.
const pollEvents uint32 = unix.EPOLLIN | unix.EPOLLET

// pollerBatch is the number of datagrams the poller's writer sends with
// one sendmmsg: up to a listener batch's worth of relay sockets' datagrams.
const pollerBatch = listenerBatch

// newRelayPoller starts a poller whose relay sockets relay to clients
// through listener; close stops it.
func newRelayPoller(listener *udpConn) (*relayPoller, error) {
	w, err := udpbatch.NewWriter(listener.UDPConn, pollerBatch)
	if err != nil {
		return nil, err
	}
	// A relay socket's datagrams for its client go one after the other,
	// mostly of one size in a burst of media: runs GSO sends as one.
	w.EnableGSO()
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("turn: epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("turn: epoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "turn-relays")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("turn: epoll: %w", err)
	}
	p := &relayPoller{epfd: fd, f: f, rc: rc, writer: w, done: make(chan struct{}), relays: make(map[int32]*relayConn)}
	go p.run()
	return p, nil
}

// close stops the poller and waits for its goroutine. Relay sockets still
// registered are left to their own Close.
func (p *relayPoller) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.f.Close()
	<-p.done
}

// add registers rc, whose reader the poller then owns.
func (p *relayPoller) add(rc *relayConn) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	p.nextID++
	if p.nextID <= 0 {
		p.nextID = 1
	}
	for p.relays[p.nextID] != nil {
		p.nextID++
	}
	rc.pollID = p.nextID
	rc.polled.Store(true)
	p.relays[rc.pollID] = rc
	p.mu.Unlock()
	if err := p.ctl(rc, syscall.EPOLL_CTL_ADD, pollEvents); err != nil {
		p.mu.Lock()
		delete(p.relays, rc.pollID)
		p.mu.Unlock()
		return fmt.Errorf("turn: epoll add: %w", err)
	}
	return nil
}

// remove forgets rc; its socket is about to close.
func (p *relayPoller) remove(rc *relayConn) {
	p.mu.Lock()
	if p.relays[rc.pollID] == rc {
		delete(p.relays, rc.pollID)
	}
	p.mu.Unlock()
	_ = p.ctl(rc, syscall.EPOLL_CTL_DEL, 0)
}

// ctl changes rc's registration. Made while the socket is held open
// (Control) and the set is not closed (p.mu), so neither descriptor can
// be another's meanwhile.
func (p *relayPoller) ctl(rc *relayConn, op int, events uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	var cerr error
	err := rc.raw.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: events, Fd: rc.pollID}
		cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// resume gives rc back to the poller after the engine's goroutine had it.
// The socket was out of the set meanwhile (see serve) and comes back as a
// new registration, which the kernel reports at once when datagrams came
// while it was out: a modified one that was still queued as ready from
// before would not wake the poller again.
func (p *relayPoller) resume(rc *relayConn) error {
	rc.polled.Store(true)
	return p.ctl(rc, syscall.EPOLL_CTL_ADD, pollEvents)
}

func (p *relayPoller) run() {
	defer close(p.done)
	r := pollRound{p: p, events: make([]syscall.EpollEvent, 128)}
	r.ready = make([]*relayConn, 0, len(r.events))
	r.again = make([]*relayConn, 0, len(r.events))
	// One Read for the poller's life: the runtime's poller then keeps an
	// edge of the epoll set that came while a round was served (a Read
	// that began anew would forget it), so a round that left no socket
	// with datagrams waits for the next edge without asking the set once
	// more (see pollRound.round).
	_ = p.rc.Read(r.round) // returns when the set is closed
}

// pollRound is the state of the poller's rounds.
type pollRound struct {
	p      *relayPoller
	events []syscall.EpollEvent
	ready  []*relayConn // the sockets to read in this round
	again  []*relayConn // sockets whose read filled its batch: read again next round
	seq    uint64       // the round's number, to read a socket once a round (relayState.pollSeq)
}

// round serves the relay sockets the epoll set reports readable, and
// reports false to wait for the set's next edge. Called inside the
// runtime poller's Read of the set.
func (r *pollRound) round(fd uintptr) bool {
	p := r.p
	for {
		// The sockets whose last read filled its batch come first: being
		// edge-triggered, the set reports them again only when another
		// datagram comes.
		r.seq++
		for _, rc := range r.again {
			rc.pollSeq = r.seq
			r.ready = append(r.ready, rc)
		}
		clear(r.again)
		r.again = r.again[:0]
		n := 0
		for {
			var err syscall.Errno
			if n, err = epollPoll(fd, r.events); err != syscall.EINTR {
				if err != 0 {
					n = 0
				}
				break
			}
		}
		if n == 0 && len(r.ready) == 0 {
			// Every socket read was emptied: its next datagram is a new
			// edge of the set, which the runtime's poller keeps for the
			// wait that follows.
			return false
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			clear(r.ready)
			r.ready = r.ready[:0]
			return true
		}
		for _, ev := range r.events[:n] {
			if rc := p.relays[ev.Fd]; rc != nil && rc.pollSeq != r.seq {
				rc.pollSeq = r.seq
				r.ready = append(r.ready, rc)
			}
		}
		p.mu.Unlock()
		p.wakeups.Add(1)
		p.reads.Add(uint64(len(r.ready)))
		for _, rc := range r.ready {
			if p.serve(rc) {
				r.again = append(r.again, rc)
			}
		}
		// Every relay socket read in this round is flushed before any of
		// them is read again (their datagrams are sent from the read
		// buffers).
		_, _ = p.writer.Flush()
		clear(r.ready)
		r.ready = r.ready[:0]
		if n < len(r.events) && len(r.again) == 0 {
			return false
		}
	}
}

// serve reads rc once and relays what the fast path takes; at the first
// datagram it does not take, rc goes to the engine's goroutine. It
// reports whether rc may have datagrams left (its read filled the batch).
func (p *relayPoller) serve(rc *relayConn) bool {
	if !rc.polled.Load() {
		return false // the engine's goroutine has it
	}
	if rc.busy {
		// Nothing of rc's is queued in the writer: flushed last round.
		rc.reader.Grow(relayBatchBusy)
		rc.busy = false
	}
	n, err := rc.reader.TryRead()
	if err != nil || n == 0 {
		return false // closed (its Close removes it), or nothing after all
	}
	full := n == rc.reader.Cap()
	rc.noteBatch(n)
	rc.next, rc.count = 0, n
	rc.relayTo(p.writer)
	if rc.next == rc.count {
		return full
	}
	// The engine gets the rest, after what was relayed before it.
	_, _ = p.writer.Flush()
	if p.ctl(rc, syscall.EPOLL_CTL_DEL, 0) != nil {
		return false // closed
	}
	rc.polled.Store(false)
	select {
	case rc.wake <- struct{}{}:
	default:
	}
	return false
}

// epollPoll asks the epoll set fd for its ready sockets without waiting.
// A raw system call, as udpbatch makes its own: it never blocks, so the
// scheduler need not be told, and told (syscall.EpollWait) it keeps the
// runtime's monitor thread waking every 20 µs, which on a relay pinned to
// one CPU takes the CPU from the relay (a tenth of it, profiled).
func epollPoll(fd uintptr, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	return int(n), errno
}
