// Package testfake holds the fakes that the tests of several packages
// share, so each need not keep its own copy. Only tests import it; it
// must never be imported by the server's own code.
package testfake

import (
	"sync"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Session is a client session that records what it is sent. Each stanza
// is serialised and parsed again, as a real session puts it on the wire,
// so a test sees what a client would and the sender may reuse its tree.
// It is safe for concurrent use.
type Session struct {
	jid jid.JID

	mu      sync.Mutex
	got     []*stanza.Element
	goneErr error  // Send's error once the session is gone
	stopped string // the condition Stop was called with
}

// NewSession is a session bound to the full JID full; it panics if full
// is not a valid JID.
func NewSession(full string) *Session {
	return &Session{jid: jid.MustParse(full)}
}

// JID is the session's full JID.
func (s *Session) JID() jid.JID { return s.jid }

// Send records a copy of el, or fails with the error given to SetGone.
func (s *Session) Send(el *stanza.Element) error {
	c, err := stanza.Parse([]byte(el.String()))
	if err != nil {
		panic("testfake: a stanza sent does not parse back: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.goneErr != nil {
		return s.goneErr
	}
	s.got = append(s.got, c)
	return nil
}

// SetGone makes every later Send fail with err, as the session of a
// stream that died does.
func (s *Session) SetGone(err error) {
	s.mu.Lock()
	s.goneErr = err
	s.mu.Unlock()
}

// Stop records condition, as a session's Stop would end its stream with.
func (s *Session) Stop(condition, _ string) {
	s.mu.Lock()
	s.stopped = condition
	s.mu.Unlock()
}

// Stopped is the condition of the last Stop, or "".
func (s *Session) Stopped() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// Take returns what the session received since the last Take, and
// forgets it.
func (s *Session) Take() []*stanza.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	got := s.got
	s.got = nil
	return got
}

// Received returns what the session received since the last Take,
// keeping it.
func (s *Session) Received() []*stanza.Element {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*stanza.Element(nil), s.got...)
}

// Add records els as received, after what came before, without the round
// trip Send makes.
func (s *Session) Add(els ...*stanza.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, els...)
}

// PutBack returns els, taken earlier, to what the session received, in
// front of what came since.
func (s *Session) PutBack(els []*stanza.Element) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(append([]*stanza.Element(nil), els...), s.got...)
}
