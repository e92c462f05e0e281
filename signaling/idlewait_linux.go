//go:build linux

package signaling

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// idleWaiter waits for the next bytes of every parked connection at once,
// on one epoll instance: a bound TCP session whose client is idle has no
// goroutine (see parking.go). Each parked socket is registered one-shot;
// when it becomes readable (or hangs up, or fails) the waiter hands it
// back to its session, which starts a reader goroutine. The epoll instance
// is itself waited on through the runtime's poller, so the waiter holds no
// thread while nothing happens.
type idleWaiter struct {
	epfd int
	f    *os.File        // epfd, for the runtime's poller
	rc   syscall.RawConn // f's
	done chan struct{}   // closed when run returns

	mu     sync.Mutex
	parked map[int32]*tcpTransport // by socket descriptor
	closed bool
}

// newIdleWaiter starts a waiter; close stops it.
func newIdleWaiter() (*idleWaiter, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("signaling: epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("signaling: epoll: %w", err)
	}
	f := os.NewFile(uintptr(fd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("signaling: epoll: %w", err)
	}
	w := &idleWaiter{epfd: fd, f: f, rc: rc, done: make(chan struct{}), parked: map[int32]*tcpTransport{}}
	go w.run()
	return w, nil
}

// close stops the waiter. Connections still parked stay parked: the
// server closes the waiter once every session has ended.
func (w *idleWaiter) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	_ = w.f.Close()
	<-w.done
}

func (w *idleWaiter) run() {
	defer close(w.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		var n int
		err := w.rc.Read(func(fd uintptr) bool {
			for {
				var werr error
				n, werr = syscall.EpollWait(int(fd), events, 0)
				if werr == syscall.EINTR {
					continue
				}
				if werr != nil {
					n = 0
				}
				return n > 0
			}
		})
		if err != nil {
			return // closed
		}
		for _, ev := range events[:n] {
			if t := w.take(ev.Fd, uint32(ev.Pad)); t != nil {
				go t.wake()
			}
		}
	}
}

// take removes the parked connection on socket fd whose registration is
// seq, if it is still parked.
func (w *idleWaiter) take(fd int32, seq uint32) *tcpTransport {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.parked[fd]
	if t == nil || t.seq != seq {
		return nil
	}
	delete(w.parked, fd)
	t.timer.Stop()
	return t
}

// claim takes t back from the waiter: true if t was parked, and the
// caller now owns its wake-up.
func (w *idleWaiter) claim(t *tcpTransport) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.parked[t.fd] != t {
		return false
	}
	delete(w.parked, t.fd)
	t.timer.Stop()
	return true
}

// park registers t, which has nothing buffered, to be woken by its
// client's next bytes, its idle limit or its closing. False when t cannot
// be parked: the caller keeps it and reads.
func (w *idleWaiter) park(t *tcpTransport, wake func()) bool {
	w.mu.Lock()
	if w.closed || t.fd < 0 {
		w.mu.Unlock()
		return false
	}
	t.wake = wake
	w.parked[t.fd] = t
	// The idle limit runs from here; its timer claims t like the others.
	if t.timer == nil {
		t.timer = newStoppedTimer(t.idleExpired)
	}
	if idle := t.raw.idle; idle > 0 {
		t.timer.Reset(idle)
	}
	w.mu.Unlock()
	// Armed last: from here t may be woken, and this goroutine leaves it.
	armed := t.armed
	t.armed = true
	var cerr error
	err := t.raw.rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: t.fd, Pad: int32(t.seq)}
		op := syscall.EPOLL_CTL_MOD
		if !armed {
			op = syscall.EPOLL_CTL_ADD
		}
		cerr = syscall.EpollCtl(w.epfd, op, int(fd), &ev)
		switch {
		case op == syscall.EPOLL_CTL_ADD && errors.Is(cerr, syscall.EEXIST):
			cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		case op == syscall.EPOLL_CTL_MOD && errors.Is(cerr, syscall.ENOENT):
			cerr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
		}
	})
	if err == nil && cerr == nil {
		return true
	}
	// Not armed (the socket is closing): take it back and read, which
	// reports the error; unless the closing took it first and wakes it.
	return !w.claim(t)
}
