package signaling

import (
	"context"
	"errors"
	"strconv"
	"time"

	"poosms.org/poosms/stanza"
)

// XEP-0198 stream management and XEP-0352 client state indication.
const (
	nsSM  = "urn:xmpp:sm:3"
	nsCSI = "urn:xmpp:csi:0"
)

// maxHeld bounds the presence held back from an inactive client.
const maxHeld = 64

// smState is a session's stream-management bookkeeping, guarded by the
// session's wmu.
type smState struct {
	id        string // resumption id; "" when resumption is off
	unacked   []outgoing
	bytes     int           // in unacked
	acked     uint32        // the client's last h
	requested bool          // an <r/> is outstanding
	limit     int           // most unacknowledged stanzas kept
	maxBytes  int           // most bytes of them kept (one stanza always fits)
	ackc      chan struct{} // closed at the next acknowledgement, when a writer waits for it
}

// fits reports whether o may be sent without passing the bounds.
func (m *smState) fits(o outgoing) bool {
	return len(m.unacked) < m.limit && (len(m.unacked) == 0 || m.bytes+o.size() <= m.maxBytes)
}

// sent records o as handed to the client; false when too many, or too
// many bytes, are waiting for an acknowledgement.
func (m *smState) sent(o outgoing) bool {
	if !m.fits(o) {
		return false
	}
	m.unacked = append(m.unacked, o)
	m.bytes += o.size()
	return true
}

// nextAck returns a channel closed at the client's next acknowledgement.
func (m *smState) nextAck() <-chan struct{} {
	if m.ackc == nil {
		m.ackc = make(chan struct{})
	}
	return m.ackc
}

// halfFull reports whether the unacknowledged stanzas take half their
// bound, in count or in bytes.
func (m *smState) halfFull() bool {
	return 2*len(m.unacked) >= m.limit || 2*m.bytes >= m.maxBytes
}

// ack drops what the client says it has handled (h counts every stanza
// sent since <enable/>, modulo 2^32).
func (m *smState) ack(h uint32) error {
	n := h - m.acked
	if int64(n) > int64(len(m.unacked)) {
		return streamErr("undefined-condition", "acknowledged "+strconv.FormatUint(uint64(h), 10)+" stanzas, more than were sent")
	}
	for _, o := range m.unacked[:n] {
		m.bytes -= o.size()
	}
	clear(m.unacked[:n])
	m.unacked = m.unacked[n:]
	m.acked = h
	m.requested = false
	if m.ackc != nil {
		close(m.ackc)
		m.ackc = nil
	}
	return nil
}

func (m *smState) requestAckLocked(t transport) {
	if m.requested || len(m.unacked) == 0 {
		return
	}
	m.requested = true
	_ = t.write(stanza.New(nsSM, "r"))
}

func smFailed(cond string) *stanza.Element {
	return stanza.New(nsSM, "failed").Append(stanza.New(stanza.NSStanzas, cond))
}

// holdWhileInactive: presence (not our own, which the client expects) and
// bare chat-state messages can wait while the client is inactive.
func holdWhileInactive(el *stanza.Element) bool {
	switch el.Local {
	case "presence":
		return el.PresenceType() == stanza.AvailablePresence || el.PresenceType() == stanza.UnavailablePresence
	case "message":
		n := 0
		for _, c := range el.Children {
			if ce, ok := c.(*stanza.Element); ok {
				if ce.Space != "http://jabber.org/protocol/chatstates" {
					return false
				}
				n++
			}
		}
		return n > 0
	}
	return false
}

// nonza handles stream-level elements after binding: stream management
// and client state indication.
func (s *Session) nonza(t transport, el *stanza.Element) error {
	switch {
	case el.Space == nsSM && el.Local == "r":
		s.writeControl(t, stanza.New(nsSM, "a").SetAttr("h", strconv.FormatUint(uint64(s.hIn.Load()), 10)))
	case el.Space == nsSM && el.Local == "a":
		h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
		if err != nil {
			return streamErr("bad-format", "<a/> needs h, a whole number")
		}
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if s.sm == nil {
			return streamErr("unsupported-stanza-type", "stream management is not enabled")
		}
		return s.sm.ack(uint32(h))
	case el.Space == nsSM && el.Local == "enable":
		s.enableSM(t, el)
	case el.Space == nsSM && el.Local == "resume":
		s.writeControl(t, smFailed("unexpected-request"))
	case el.Space == nsCSI && (el.Local == "active" || el.Local == "inactive"):
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.inactive = el.Local == "inactive"
		if !s.inactive {
			s.flushHeldLocked()
		}
	default:
		return streamErr("unsupported-stanza-type", "<"+el.Local+"/> in "+el.Space+" is not supported")
	}
	return nil
}

func (s *Session) enableSM(t transport, el *stanza.Element) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sm != nil || s.t != t {
		_ = t.write(smFailed("unexpected-request"))
		return
	}
	s.sm = &smState{limit: 4 * s.srv.cfg.WriteQueue, maxBytes: s.srv.cfg.UnackedBytes}
	s.hIn.Store(0)
	enabled := stanza.New(nsSM, "enabled")
	if r := el.Attr("resume"); r == "true" || r == "1" {
		s.sm.id = newStreamID()
		s.srv.addResumable(s.sm.id, s)
		enabled.SetAttr("id", s.sm.id).SetAttr("resume", "true").
			SetAttr("max", strconv.Itoa(int(s.srv.cfg.ResumeTimeout/time.Second)))
	}
	_ = t.write(enabled)
}

// detach keeps a resumable session alive after its connection failed.
func (s *Session) detach(t transport, gen int, err error) bool {
	var se *streamError
	if errors.As(err, &se) || errors.Is(err, errClientClosed) {
		return false // the stream ended on purpose
	}
	s.wmu.Lock()
	if s.sm == nil || s.sm.id == "" || s.gen != gen {
		s.wmu.Unlock()
		return false
	}
	if s.q.isClosed() || !s.srv.detach(s) {
		s.wmu.Unlock()
		return false
	}
	s.t = nil
	s.wmu.Unlock()
	_ = t.close()
	s.log.Debug("connection lost; waiting for the client to resume", "within", s.srv.cfg.ResumeTimeout)
	return true
}

// expire ends a detached session that was not resumed in time. It runs on
// the detach timer, counted in the server's WaitGroup.
func (s *Session) expire() {
	s.wmu.Lock()
	if s.t != nil {
		s.wmu.Unlock()
		return
	}
	s.expired = true
	s.wmu.Unlock()
	s.srv.forgetResumable(s)
	s.log.Debug("not resumed in time; session ended")
	s.Stop("", "")
	s.teardown(context.Background())
}

var errNotResumable = errors.New("session cannot be resumed")

// resume attaches t to this (detached or half-dead) session: the client
// has handled h of our stanzas; the rest are sent again.
func (s *Session) resume(t transport, h uint32) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.expired || s.q.isClosed() || s.sm == nil {
		return errNotResumable
	}
	if err := s.sm.ack(h); err != nil {
		return err
	}
	if s.t != nil {
		// The server had not noticed the old connection die yet.
		_ = s.t.close()
	}
	s.srv.undetach(s)
	s.attachLocked(t)
	if err := t.write(stanza.New(nsSM, "resumed").SetAttr("previd", s.sm.id).
		SetAttr("h", strconv.FormatUint(uint64(s.hIn.Load()), 10))); err != nil {
		return err
	}
	for _, o := range s.sm.unacked {
		if err := t.writeEncoded(o.w, o.to); err != nil {
			return err
		}
	}
	s.sm.requested = false
	s.sm.requestAckLocked(t)
	return nil
}
