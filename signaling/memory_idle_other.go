//go:build !unix

package signaling

import "syscall"

// rawConn is nil where waiting on the socket without reading is not
// implemented: the reader then waits inside the decoder.
func (d *deadlineConn) rawConn() syscall.RawConn { return nil }

func (d *deadlineConn) readNow(p []byte) (int, error) { return d.Conn.Read(p) }

func (d *deadlineConn) waitReadable() error { return nil }
