package signaling

import (
	"errors"
	"io"
	"syscall"
	"time"
)

// Waiting for an idle client's next stanza, cheaply.
//
// A session spends most of its life waiting for the client's next stanza.
// Waiting inside the XML decoder and crypto/tls keeps a stack of about
// 5 KiB in use (an 8 KiB stack, since Go doubles stacks), for every idle
// session. So a bound TCP session first waits at the top of its loop for
// the socket to become readable, with nothing but the poller below it, and
// only then decodes; the runtime then shrinks the idle goroutine's stack
// at the next garbage collection.

// errWouldBlock is what the raw connection returns to crypto/tls while
// probing: nothing is waiting on the socket. It is a temporary net.Error,
// which crypto/tls reports without failing the connection (as it does for
// a read deadline), keeping any partial record for the next read.
var errWouldBlock = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "signaling: no data waiting" }
func (wouldBlockError) Timeout() bool   { return false }
func (wouldBlockError) Temporary() bool { return true }

// rawConn returns the socket's syscall.RawConn, or nil when the connection
// is not a socket (tests over pipes).
func (d *deadlineConn) rawConn() syscall.RawConn {
	sc, ok := d.Conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// readNow reads what is waiting on the socket without waiting:
// errWouldBlock when nothing is.
func (d *deadlineConn) readNow(p []byte) (int, error) {
	var n int
	var rerr error
	err := d.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, errWouldBlock
	case rerr != nil:
		return 0, rerr
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// waitReadable waits until the socket has bytes (or an end, or an error),
// within the read limits, without reading them.
func (d *deadlineConn) waitReadable() error {
	d.setDeadline()
	var one [1]byte
	return d.rc.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // the poller waits, then asks again
			}
			return true
		}
	})
}

// waitStanza returns once bytes other than whitespace are ready to decode,
// waiting in a shallow frame while there are none. Whitespace between
// stanzas (keepalives) is consumed here, so that an idle client sending
// keepalives does not leave the reader waiting inside the decoder. Errors
// are the stream's, as next would return them; an error waitStanza cannot
// judge is left for next to find.
func (t *tcpTransport) waitStanza() error {
	if t.raw.rc == nil {
		return nil
	}
	b := t.cr.r
	t.raw.setDeadline()
	for {
		// Skip whitespace between stanzas.
		for b.r < len(b.buf) && isXMLSpace(b.buf[b.r]) {
			b.r++
			t.cr.n++
		}
		if b.buffered() > 0 {
			return nil
		}
		if b.err != nil {
			return nil // next reports it
		}
		// crypto/tls may hold decrypted bytes, or whole records it read
		// earlier: ask it without waiting on the socket.
		t.raw.probe = true
		err := b.fill()
		t.raw.probe = false
		if err == nil {
			continue
		}
		if !errors.Is(err, errWouldBlock) {
			return nil // next meets it again and reports it
		}
		if err := t.raw.waitReadable(); err != nil {
			t.cr.ioErr = err
			return t.readError(err)
		}
	}
}

func isXMLSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// setDeadline sets the read deadline from the limits.
func (d *deadlineConn) setDeadline() {
	if d.idle > 0 || !d.hard.IsZero() {
		dl := d.hard
		if d.idle > 0 {
			if soft := time.Now().Add(d.idle); dl.IsZero() || soft.Before(dl) {
				dl = soft
			}
		}
		_ = d.Conn.SetReadDeadline(dl)
	}
}
