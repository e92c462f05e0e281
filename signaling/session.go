package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// ErrSessionGone is returned by Send when the session has ended or its
// write queue overflowed.
var ErrSessionGone = errors.New("signaling: session gone")

// Session is one client stream. Its reader goroutine (run) negotiates the
// stream, then reads stanzas and hands them to the router; after resource
// binding a writer goroutine drains a bounded queue to the connection.
type Session struct {
	srv    *Server
	t      transport
	id     string
	log    *slog.Logger
	secure bool // TLS, or a transport trusted as such (loopback WebSocket)

	// Set by the reader goroutine during negotiation, read-only after bind.
	user  string // authenticated localpart
	jid   jid.JID
	bound atomic.Bool

	mu     sync.Mutex // guards out, closed, final
	out    chan *stanza.Element
	closed bool
	final  *stanza.Element // stream error to write before closing, if any

	writerDone chan struct{}
	started    time.Time
}

// JID is the session's full JID once bound.
func (s *Session) JID() jid.JID { return s.jid }

// ID is the stream id.
func (s *Session) ID() string { return s.id }

// Secure reports whether the stream is encrypted.
func (s *Session) Secure() bool { return s.secure }

// Send queues el for the client without blocking. A client whose queue is
// full is disconnected: it has stopped reading. el must not be changed
// after Send.
func (s *Session) Send(el *stanza.Element) error {
	if !s.bound.Load() {
		return ErrSessionGone
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrSessionGone
	}
	select {
	case s.out <- el:
		s.srv.metrics.stanzasOut.Inc()
		return nil
	default:
		s.log.Warn("write queue full; disconnecting a client that stopped reading", "queue", cap(s.out))
		s.srv.metrics.slowClients.Inc()
		s.stopLocked(nil)
		// The writer may be stuck in a write; the connection goes now.
		_ = s.t.close()
		return ErrSessionGone
	}
}

// Stop ends the session with a stream error condition (e.g. "conflict",
// "system-shutdown"). Safe to call more than once and from any goroutine.
func (s *Session) Stop(condition, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if condition == "" {
		s.stopLocked(nil)
		return
	}
	s.stopLocked(stanza.StreamError(condition, text))
}

// stopLocked closes the queue; the writer writes what is queued, then the
// final stream error and the closing tag. s.mu must be held.
func (s *Session) stopLocked(final *stanza.Element) {
	if s.closed {
		return
	}
	s.closed = true
	s.final = final
	if s.out != nil {
		close(s.out)
	}
	if !s.bound.Load() {
		// No writer yet: unblock the reader, which is the only writer.
		_ = s.t.close()
	}
}

// writer drains the queue. It is started at bind and owned by the reader
// goroutine, which waits for it before returning.
func (s *Session) writer(out <-chan *stanza.Element) {
	defer close(s.writerDone)
	failed := false
	for el := range out {
		if failed {
			continue
		}
		if err := s.t.write(el); err != nil {
			s.log.Debug("write failed", "err", err)
			failed = true
			_ = s.t.close()
		}
	}
	if failed {
		return
	}
	s.mu.Lock()
	final := s.final
	s.mu.Unlock()
	if final != nil {
		_ = s.t.write(final)
	}
	_ = s.t.writeClose()
	_ = s.t.close()
}

func newStreamID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// run is the session's reader goroutine: negotiation, then the stanza loop,
// then teardown. It returns when the connection is closed.
func (s *Session) run(ctx context.Context) {
	defer s.teardown(ctx)
	err := s.negotiate(ctx)
	if err == nil {
		err = s.loop(ctx)
	}
	s.finish(err)
}

// finish ends the stream for err: a stream error is written (by the writer
// when bound, directly otherwise), anything else just closes.
func (s *Session) finish(err error) {
	var se *streamError
	switch {
	case err == nil, errors.Is(err, errClientClosed):
		s.Stop("", "")
	case errors.As(err, &se):
		s.log.Debug("stream error", "cond", se.cond, "text", se.text, "remote", s.t.remoteAddr().String())
		s.srv.metrics.streamErrors.WithLabelValues(se.cond).Inc()
		if s.bound.Load() {
			s.Stop(se.cond, se.text)
		} else {
			_ = s.t.write(stanza.StreamError(se.cond, se.text))
			_ = s.t.writeClose()
			_ = s.t.close()
			s.Stop("", "")
		}
	default:
		s.log.Debug("connection ended", "remote", s.t.remoteAddr().String(), "err", err)
		s.Stop("", "")
		_ = s.t.close()
	}
}

var errClientClosed = errors.New("client closed the stream")

func (s *Session) teardown(ctx context.Context) {
	if s.bound.Load() {
		s.srv.unregister(s)
		s.srv.router.closed(ctx, s)
		<-s.writerDone
	}
	_ = s.t.close()
}

// loop reads stanzas after binding and hands them to the router.
func (s *Session) loop(ctx context.Context) error {
	for {
		ev, err := s.read()
		if err != nil {
			return err
		}
		switch {
		case ev.close:
			return errClientClosed
		case ev.open != nil:
			return streamErr("bad-format", "unexpected stream header")
		}
		el := ev.el
		if !el.IsStanza() {
			return streamErr("unsupported-stanza-type", "<"+el.Local+"/> in "+el.Space+" is not supported")
		}
		if el.Space == "" {
			el.Space = stanza.NSClient
		}
		if err := s.stamp(el); errors.Is(err, errSkip) {
			continue
		} else if err != nil {
			return err
		}
		if el.Local == "iq" && el.Child(nsSession, "session") != nil && el.To() == "" {
			// RFC 3921 session establishment, kept for old clients.
			_ = s.Send(stanza.Result(el))
			continue
		}
		s.srv.metrics.stanzasIn.WithLabelValues(el.Local).Inc()
		s.srv.router.route(ctx, s, el)
	}
}

// stamp validates to and sets from to the session's full JID. A from that
// is not the session's own JID is a spoofing attempt: stream error.
func (s *Session) stamp(el *stanza.Element) error {
	if f := el.From(); f != "" {
		fj, err := jid.Parse(f)
		if err != nil || !(fj.Equal(s.jid) || fj.Equal(s.jid.Bare())) {
			return streamErr("invalid-from", "the from address "+f+" is not this session's JID")
		}
	}
	el.SetAttr("from", s.jid.String())
	if to := el.To(); to != "" {
		tj, err := jid.Parse(to)
		if err != nil {
			el.SetAttr("to", "")
			if el.Type() != "error" {
				_ = s.Send(stanza.ErrorReply(el, "jid-malformed", "the to address is not a valid JID"))
			}
			return errSkip
		}
		el.SetAttr("to", tj.String())
	}
	return nil
}

var errSkip = errors.New("skip")
