package turn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Accept retry backoff after a transient error such as running out of
// file descriptors.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// trackingListener sits under the engine's TCP and TLS listeners. It
// remembers the connections it accepted so that Close can end them (the
// engine closes its listeners but not the client connections already
// accepted), closes connections that stay silent, and rides out
// transient accept errors, which would otherwise stop the engine's
// accept loop for good.
type trackingListener struct {
	net.Listener
	firstRead, idle time.Duration
	log             *slog.Logger

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool // set by closeConns
}

func newTrackingListener(ln net.Listener, firstRead, idle time.Duration, log *slog.Logger) *trackingListener {
	return &trackingListener{
		Listener:  ln,
		firstRead: firstRead,
		idle:      idle,
		log:       log,
		done:      make(chan struct{}),
		conns:     make(map[*trackedConn]struct{}),
	}
}

// Accept waits for the next connection, retrying with backoff after
// errors other than the listener being closed.
func (l *trackingListener) Accept() (net.Conn, error) {
	delay := acceptRetryMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return l.track(c)
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		l.log.Warn("turn accept failed; retrying", "addr", l.Addr().String(), "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
		delay = min(2*delay, acceptRetryMax)
	}
}

func (l *trackingListener) track(c net.Conn) (net.Conn, error) {
	tc := &trackedConn{Conn: c, owner: l}
	c.SetReadDeadline(time.Now().Add(l.firstRead))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// Close stops accepting; accepted connections stay open until
// closeConns.
func (l *trackingListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// closeConns closes every accepted connection and any accepted later.
func (l *trackingListener) closeConns() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// trackedConn is a connection accepted by a trackingListener.
type trackedConn struct {
	net.Conn
	owner *trackingListener
}

// Read reads from the connection and, once something arrived, gives the
// peer the idle timeout for its next bytes.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.Conn.SetReadDeadline(time.Now().Add(c.owner.idle))
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.owner.mu.Lock()
	delete(c.owner.conns, c)
	c.owner.mu.Unlock()
	return c.Conn.Close()
}
