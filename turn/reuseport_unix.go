//go:build unix

package turn

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reusePortSupported reports whether several UDP sockets may share a port.
const reusePortSupported = true

// reusePort sets SO_REUSEPORT on a socket before it is bound, so that
// the kernel spreads datagrams from different clients over several
// sockets on one port (each client's flow stays on one socket).
func reusePort(_, _ string, c syscall.RawConn) error {
	var opErr error
	if err := c.Control(func(fd uintptr) {
		opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return opErr
}
