package turn

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"poosms.org/poosms/internal/connlimit"
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
// accepted), caps the connections of one address, gives a connection
// without an allocation a short life and one with an allocation the idle
// timeout, and rides out transient accept errors, which would otherwise
// stop the engine's accept loop for good.
type trackingListener struct {
	net.Listener
	// authTimeout is how long a connection may live without an
	// allocation, whatever it sends; idle is the silence an allocated
	// one may keep.
	authTimeout, idle time.Duration
	perAddr           *connlimit.Limiter
	log               *slog.Logger

	done      chan struct{} // closed by Close
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	byFive map[string]*trackedConn // the connection's 5-tuple (fiveKey) → it
	closed bool                    // set by closeConns
}

func newTrackingListener(ln net.Listener, authTimeout, idle time.Duration, perAddr *connlimit.Limiter, log *slog.Logger) *trackingListener {
	return &trackingListener{
		Listener:    ln,
		authTimeout: authTimeout,
		idle:        idle,
		perAddr:     perAddr,
		log:         log,
		done:        make(chan struct{}),
		conns:       make(map[*trackedConn]struct{}),
		byFive:      make(map[string]*trackedConn),
	}
}

// fiveKey names a stream connection by its two ends, as the engine's
// allocation events do.
func fiveKey(remote, local net.Addr) string { return remote.String() + " " + local.String() }

// Accept waits for the next connection, retrying with backoff after
// errors other than the listener being closed. A connection past its
// address's cap is closed at once and never handed to the engine.
func (l *trackingListener) Accept() (net.Conn, error) {
	delay := acceptRetryMin
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			tc, err := l.track(c)
			if tc == nil && err == nil {
				continue // refused
			}
			return tc, err
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

// track admits c, or closes it and returns nil, nil when its address
// holds as many connections as it may.
func (l *trackingListener) track(c net.Conn) (*trackedConn, error) {
	release, ok := l.perAddr.Acquire(connlimit.AddrOf(c.RemoteAddr()))
	if !ok {
		l.log.Debug("turn connection refused: too many from its address", "client", c.RemoteAddr().String())
		c.Close()
		return nil, nil
	}
	tc := &trackedConn{Conn: c, owner: l, release: release, key: fiveKey(c.RemoteAddr(), c.LocalAddr())}
	c.SetReadDeadline(time.Now().Add(l.authTimeout))
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		release()
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[tc] = struct{}{}
	l.byFive[tc.key] = tc
	return tc, nil
}

// allocated marks the connection between remote and local as carrying an
// allocation (on) or no longer (off); false when no connection of this
// listener is between them.
func (l *trackingListener) allocated(remote, local net.Addr, on bool) bool {
	l.mu.Lock()
	tc := l.byFive[fiveKey(remote, local)]
	l.mu.Unlock()
	if tc == nil {
		return false
	}
	tc.allocated.Store(on)
	if on {
		tc.Conn.SetReadDeadline(time.Now().Add(l.idle))
	} else {
		tc.Conn.SetReadDeadline(time.Now().Add(l.authTimeout))
	}
	return true
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
	l.byFive = nil
	l.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// trackedConn is a connection accepted by a trackingListener.
type trackedConn struct {
	net.Conn
	owner     *trackingListener
	key       string
	release   func() // gives back the place among its address's connections
	allocated atomic.Bool
}

// Read reads from the connection. Once it carries an allocation, bytes
// that arrive give the peer the idle timeout for its next ones; before
// that, nothing extends the deadline set at accept: sending requests
// without ever allocating does not keep a connection open.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.allocated.Load() {
		c.Conn.SetReadDeadline(time.Now().Add(c.owner.idle))
	}
	return n, err
}

func (c *trackedConn) Close() error {
	c.owner.mu.Lock()
	delete(c.owner.conns, c)
	if c.owner.byFive[c.key] == c {
		delete(c.owner.byFive, c.key)
	}
	c.owner.mu.Unlock()
	c.release()
	return c.Conn.Close()
}
