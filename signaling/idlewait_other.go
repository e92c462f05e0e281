//go:build !linux

package signaling

import "errors"

// idleWaiter is implemented on Linux only (epoll); elsewhere an idle
// session keeps its reader goroutine, waiting on its socket.
type idleWaiter struct{}

func newIdleWaiter() (*idleWaiter, error) {
	return nil, errors.New("signaling: parking idle sessions needs Linux")
}

func (w *idleWaiter) close()                                 {}
func (w *idleWaiter) claim(*tcpTransport) bool               { return false }
func (w *idleWaiter) park(t *tcpTransport, wake func()) bool { return false }
