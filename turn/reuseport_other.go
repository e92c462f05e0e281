//go:build !unix

package turn

import "syscall"

// reusePortSupported reports whether several UDP sockets may share a port.
const reusePortSupported = false

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }
