package testfake

import (
	"context"

	"poosms.org/poosms/internal/testenv"
	"poosms.org/poosms/stanza"
)

// SlowSession is a session whose client reads slowly: Send fails when its
// queue is full, as a real session's does for a client that stopped
// reading, and SendWait waits for room. The test reads for the client with
// Queue.Read; what got through is recorded as by Session.
type SlowSession struct {
	*Session
	Queue testenv.SlowReader
}

// NewSlowSession is a slow session bound to the full JID full, with room
// for two stanzas.
func NewSlowSession(full string) *SlowSession {
	return &SlowSession{Session: NewSession(full), Queue: testenv.NewSlowReader()}
}

// Send records el if there is room for it in the queue, or fails with
// testenv.ErrQueueFull.
func (s *SlowSession) Send(el *stanza.Element) error {
	if err := s.Queue.Take(); err != nil {
		return err
	}
	return s.Session.Send(el)
}

// SendWait records el once there is room for it in the queue, or fails
// when ctx ends first.
func (s *SlowSession) SendWait(ctx context.Context, el *stanza.Element) error {
	if err := s.Queue.Wait(ctx); err != nil {
		return err
	}
	return s.Session.Send(el)
}
