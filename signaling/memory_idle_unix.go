//go:build unix

package signaling

import (
	"io"
	"syscall"
)

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
