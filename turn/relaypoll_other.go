//go:build !linux

package turn

import (
	"errors"

	"poosms.org/poosms/internal/udpbatch"
)

// Without epoll each relay socket is read by the engine's goroutine for
// it (relayConn.ReadFrom); see relaypoll_linux.go.
type relayPoller struct {
	writer *udpbatch.Writer // never set
}

func newRelayPoller(*udpConn) (*relayPoller, error) { return nil, nil }

func (p *relayPoller) close() {}

func (p *relayPoller) add(*relayConn) error { return errors.New("turn: no relay poller here") }

func (p *relayPoller) remove(*relayConn) {}

func (p *relayPoller) resume(*relayConn) error { return nil }
