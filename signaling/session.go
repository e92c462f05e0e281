package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// ErrSessionGone is returned by Send when the session has ended or its
// write queue overflowed.
var ErrSessionGone = errors.New("signaling: session gone")

// Session is one client's session. Its reader goroutine (run) negotiates
// the stream, then reads stanzas and hands them to the router; after
// resource binding a bounded queue holds what is to be written, and a
// writer goroutine drains it to the connection. The writer runs only while
// the queue has something in it (or the session is ending): most sessions
// are idle most of the time, and an idle session then costs one goroutine,
// not two. With stream management (XEP-0198) a session outlives its
// connection: it waits detached for the client to resume it on a new one.
type Session struct {
	srv    *Server
	id     string
	log    *slog.Logger
	secure bool // TLS, or a transport trusted as such (loopback WebSocket)
	// cbUnsupported: the client tried a channel-binding type this server
	// lacks, so a later SCRAM "y" flag is honest (sasl.Options).
	cbUnsupported bool
	started       time.Time
	// negotiated gives back the connection's place among its address's
	// streams still negotiating: at authentication, or when it ends.
	negotiated func()

	// Set by the reader goroutine during negotiation, read-only after bind.
	user        string    // authenticated localpart
	authStarted time.Time // when the SASL exchange that authenticated user began
	jid         jid.JID
	jidStr      string // jid printed (setJID)
	bound       atomic.Bool

	// removing: the session is removing its own account and ends itself;
	// accountGone: the account is deleted, so what the session never
	// delivered is dropped rather than routed again.
	removing    atomic.Bool
	accountGone atomic.Bool

	// q is what is to be written once bound; closing it stops the
	// session. Lock order: wmu, then q's lock, never the reverse.
	q outQueue

	// wmu serialises what is written to the client once bound (the
	// writer's stanzas, the reader's acks) and guards the fields below,
	// which stream resumption replaces.
	wmu       sync.Mutex
	t         transport  // the attached connection; nil while detached
	gen       int        // bumped each time a connection is attached
	sm        *smState   // nil until the client enables stream management
	unsent    []outgoing // never written nor kept for resumption: handed back at teardown
	inactive  bool       // XEP-0352: the client is not being looked at
	held      []outgoing // presence held back while inactive
	heldBytes int        // bytes in held, at most cfg.WriteQueueBytes
	expired   bool       // detached too long; the session is over

	live atomic.Value  // transportRef: the connection, for closing without wmu
	hIn  atomic.Uint32 // stanzas received since stream management was enabled

	writerDone chan struct{}
}

type transportRef struct{ t transport }

// startWriter starts a writer goroutine; the queue calls it, with its
// lock held, when a stanza arrives or the session stops while none runs.
// The server's WaitGroup counts the writer; its count is not zero here,
// since the session's reader (or its resumption timer) is counted until
// the session is closed.
func (s *Session) startWriter() {
	s.srv.wg.Add(1)
	go s.writer()
}

// JID is the session's full JID once bound.
func (s *Session) JID() jid.JID { return s.jid }

// setJID sets the session's address and keeps its printed form, which
// stamps every stanza the session sends.
func (s *Session) setJID(j jid.JID) {
	s.jid, s.jidStr = j, j.String()
}

// jidString is s.jid printed, built once at bind.
func (s *Session) jidString() string {
	if s.jidStr == "" {
		return s.jid.String()
	}
	return s.jidStr
}

// ID is the stream id.
func (s *Session) ID() string { return s.id }

// Secure reports whether the stream is encrypted.
func (s *Session) Secure() bool { return s.secure }

// Send queues el for the client without blocking. A client whose queue is
// full is disconnected: it has stopped reading. el is encoded before Send
// returns and is not kept.
func (s *Session) Send(el *stanza.Element) error {
	if !s.bound.Load() {
		return ErrSessionGone
	}
	return s.send(newOutgoing(el, stanza.Encode(el), el.To(), s.srv.cfg.Now))
}

// SendEncoded is Send for a stanza encoded once for several recipients (a
// room message): w is el encoded by stanza.Encode, which leaves out its
// to, and to is this recipient's address. The session keeps w, whose
// bytes it shares with the other recipients; el is only looked at.
func (s *Session) SendEncoded(el *stanza.Element, w stanza.Encoded, to string) error {
	if !s.bound.Load() {
		return ErrSessionGone
	}
	return s.send(newOutgoing(el, w, to, s.srv.cfg.Now))
}

func (s *Session) send(o outgoing) error {
	err := s.q.push(o)
	if err == nil {
		s.srv.metrics.stanzasOut.Inc()
		return nil
	}
	var full *queueFull
	if errors.As(err, &full) {
		s.log.Warn("write queue full; disconnecting a client that stopped reading", "queue", full.stanzas, "bytes", full.bytes)
		s.srv.metrics.slowClients.Inc()
		// The writer may be stuck in a write; the connection goes now.
		s.closeConn()
	}
	return ErrSessionGone
}

// SendWait queues el, waiting while the queue is full, until ctx ends or
// the session stops. It is for bulk deliveries made while handling this
// session's own stanzas (the offline queue at initial presence), where
// waiting slows only this client.
func (s *Session) SendWait(ctx context.Context, el *stanza.Element) error {
	if !s.bound.Load() {
		return ErrSessionGone
	}
	if err := s.q.pushWait(ctx, newOutgoing(el, stanza.Encode(el), el.To(), s.srv.cfg.Now)); err != nil {
		return err
	}
	s.srv.metrics.stanzasOut.Inc()
	return nil
}

// closeConn closes the attached connection, if any, without waiting for
// the writer.
func (s *Session) closeConn() {
	if r, ok := s.live.Load().(transportRef); ok && r.t != nil {
		_ = r.t.close()
	}
}

// attachLocked makes t the session's connection. s.wmu must be held.
func (s *Session) attachLocked(t transport) {
	s.t = t
	s.gen++
	s.live.Store(transportRef{t})
}

// Stop ends the session with a stream error condition (e.g. "conflict",
// "system-shutdown"). Safe to call more than once and from any goroutine.
func (s *Session) Stop(condition, text string) {
	if condition == "" {
		s.stop(nil)
		return
	}
	s.stop(stanza.StreamError(stanza.StreamCondition(condition), text))
}

// stop closes the queue; a writer writes what is queued, then the final
// stream error and the closing tag, then closes writerDone. False if the
// session was stopped already.
func (s *Session) stop(final *stanza.Element) bool {
	if !s.q.close(final) {
		return false
	}
	if !s.bound.Load() {
		// No writer yet: unblock the reader, which is the only writer.
		s.closeConn()
	}
	return true
}

// writer drains the queue until it is empty, and then ends; the next
// stanza queued starts another (outQueue.wakeLocked). Once the session is
// stopped, the writer that sees it writes the rest of the queue, the final
// stream error and the closing tag, and closes writerDone. One writer runs
// at a time, so stanzas keep their order. The server's WaitGroup counts
// each writer; the bind starts the first.
func (s *Session) writer() {
	defer s.srv.wg.Done()
	for {
		o, ok, idle, closed := s.q.take()
		if !ok {
			if closed {
				s.finishWriting()
			}
			return
		}
		s.waitForAck(o)
		s.wmu.Lock()
		s.writeLocked(o, idle)
		s.wmu.Unlock()
	}
}

// waitForAck holds o back while the stanzas the client has not
// acknowledged (XEP-0198) are at their bound and the client is connected:
// the writer asks for an acknowledgement and waits for it, at most the
// write timeout, so a client that reads and answers is slowed down, not
// ended, by a burst larger than the bound. The queue fills meanwhile, as
// for any slow client. Then o is written whatever came: past the bound,
// that ends the session.
func (s *Session) waitForAck(o outgoing) {
	var timeout <-chan time.Time
	for {
		s.wmu.Lock()
		if s.sm == nil || s.t == nil || s.sm.fits(o) {
			s.wmu.Unlock()
			return
		}
		s.sm.requestAckLocked(s.t)
		acked := s.sm.nextAck()
		s.wmu.Unlock()
		if timeout == nil {
			t := time.NewTimer(s.srv.cfg.WriteTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-acked:
		case <-timeout:
			return
		case <-s.q.done():
			return
		}
	}
}

// finishWriting is the last writer's work once the session is stopped and
// the queue written: the final stream error and the closing tag.
func (s *Session) finishWriting() {
	defer close(s.writerDone)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.t == nil {
		return
	}
	if final := s.q.finalError(); final != nil {
		_ = s.t.write(final)
	}
	_ = s.t.writeClose()
	_ = s.t.close()
}

// writeLocked writes one stanza, or keeps it for later when it cannot be
// written now. idle says nothing else is queued. s.wmu must be held.
func (s *Session) writeLocked(o outgoing, idle bool) {
	if s.inactive && o.kind&kindHold != 0 {
		s.held = append(s.held, o)
		s.heldBytes += o.size()
		if len(s.held) <= maxHeld && s.heldBytes <= s.srv.cfg.WriteQueueBytes {
			return
		}
		s.flushHeldLocked() // o last
	} else {
		// What was held goes first, in order.
		s.flushHeldLocked()
		s.writeOneLocked(o)
	}
	// Ask for an acknowledgement when the queue runs empty, and before a
	// long burst (an offline backlog, an archive page) fills the
	// unacknowledged list: a client that reads and answers keeps it short.
	if s.sm != nil && s.t != nil && (idle || s.sm.halfFull()) {
		s.sm.requestAckLocked(s.t)
	}
}

// flushHeldLocked writes the stanzas held back from an inactive client.
// s.wmu must be held.
func (s *Session) flushHeldLocked() {
	held := s.held
	s.held, s.heldBytes = nil, 0
	for _, h := range held {
		s.writeOneLocked(h)
	}
}

func (s *Session) writeOneLocked(o outgoing) {
	if s.sm != nil && !s.sm.sent(o) {
		// The client has not acknowledged anything for too long. The
		// session ends (the writer writes the stream error last), and
		// the stanza goes back to the router with the others at teardown.
		s.unsent = append(s.unsent, o)
		if s.stop(stanza.StreamError("policy-violation", "too many unacknowledged stanzas")) {
			s.log.Warn("too many unacknowledged stanzas; closing", "unacked", len(s.sm.unacked), "bytes", s.sm.bytes)
		}
		if s.t == nil {
			// Lost and waiting to be resumed: it ends now.
			s.srv.expireNow(s)
		}
		return
	}
	if s.t == nil {
		if s.sm == nil {
			s.unsent = append(s.unsent, o)
		}
		return
	}
	if err := s.t.writeEncoded(o.w, o.to); err != nil {
		s.log.Debug("write failed", "err", err)
		_ = s.t.close()
		s.t = nil
		if s.sm == nil {
			// Nothing can resume this session: it takes no more stanzas,
			// and those it has go back to the router at teardown.
			s.unsent = append(s.unsent, o)
			s.Stop("", "")
		}
	}
}

// writeControl writes a stream-level element (an ack, a CSI answer) from
// the reader goroutine, if t is still the attached connection.
func (s *Session) writeControl(t transport, el *stanza.Element) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.t == t && t != nil {
		if err := t.write(el); err != nil {
			_ = t.close()
			s.t = nil
		}
	}
}

func newStreamID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// run is a connection's reader goroutine: negotiation, then the stanza
// loop of the session it binds or resumes, then detach or teardown.
//
// Negotiation runs on a goroutine of its own, which ends with it. The TLS
// handshake, SASL and the services' work at bind (database reads) grow a
// goroutine's stack to tens of KiB, and Go gives a stack back only bit by
// bit, at garbage collections; the reader waits for the client's next
// stanza for the whole life of the session, mostly idle, and keeps only the
// small stack that waiting needs.
//
// A bound connection's reader ends while its client is idle, and another
// starts when the client sends (parking.go); end runs once reading the
// connection is over for good.
func (s *Session) run(ctx context.Context, end func()) {
	t := s.t // this goroutine's connection, whichever session it serves
	var target *Session
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		target, err = s.negotiate(ctx)
	}()
	<-done
	if err != nil {
		s.finishUnbound(err)
		end()
		return
	}
	target.serve(ctx, t, end)
}

// serve reads stanzas from t for this bound session until t fails, then
// detaches (resumable) or ends the session.
func (s *Session) serve(ctx context.Context, t transport, end func()) {
	s.wmu.Lock()
	gen := s.gen
	s.wmu.Unlock()
	r := &reader{s: s, ctx: ctx, t: t, gen: gen, end: end}
	r.wake = r.start
	r.read()
}

// reader reads one connection of a bound session. Its goroutine ends
// while the connection is parked; wake starts the next.
type reader struct {
	s    *Session
	ctx  context.Context
	t    transport
	gen  int // the session's connection generation when t was attached
	end  func()
	wake func() // start, made once
}

func (r *reader) start() { r.read() }

// read reads until the connection parks, or fails; then the session
// detaches or ends.
func (r *reader) read() {
	s, t := r.s, r.t
	err := s.loop(r.ctx, t, r.wake)
	if err == errParked {
		return
	}
	defer r.end()
	s.wmu.Lock()
	superseded := s.gen != r.gen
	s.wmu.Unlock()
	if superseded {
		// The client resumed on another connection, which now reads.
		_ = t.close()
		return
	}
	if s.detach(t, r.gen, err) {
		return
	}
	s.finishBound(err)
	s.teardown(r.ctx)
}

// finishUnbound ends a stream that never bound: the reader is the only
// writer, so it writes the stream error itself.
func (s *Session) finishUnbound(err error) {
	var se *streamError
	if errors.As(err, &se) {
		s.log.Debug("stream error", "cond", se.cond, "text", se.text)
		s.srv.metrics.streamErrors.WithLabelValues(string(se.cond)).Inc()
		_ = s.t.write(stanza.StreamError(se.cond, se.text))
		_ = s.t.writeClose()
	} else if err != nil && !errors.Is(err, errClientClosed) {
		s.log.Debug("connection ended", "err", err)
	}
	s.Stop("", "")
	_ = s.t.close()
}

// finishBound ends a bound session's stream for err; the writer writes the
// stream error after what is already queued.
func (s *Session) finishBound(err error) {
	var se *streamError
	switch {
	case err == nil, errors.Is(err, errClientClosed):
		s.Stop("", "")
	case errors.As(err, &se):
		s.log.Debug("stream error", "cond", se.cond, "text", se.text)
		s.srv.metrics.streamErrors.WithLabelValues(string(se.cond)).Inc()
		s.Stop(string(se.cond), se.text)
	default:
		s.log.Debug("connection ended", "err", err)
		s.Stop("", "")
		s.closeConn()
	}
}

var errClientClosed = errors.New("client closed the stream")

// teardown ends a bound session for good: the services learn of it, the
// writer finishes, and every message that never reached the client goes
// back to the router (other resources, or the offline queue).
func (s *Session) teardown(ctx context.Context) {
	s.srv.unregister(s)
	s.srv.router.closed(ctx, s)
	<-s.writerDone
	s.wmu.Lock()
	var lost []outgoing
	if s.sm != nil {
		lost = s.sm.unacked
		s.sm.unacked, s.sm.bytes = nil, 0
	}
	lost = append(lost, s.unsent...)
	s.unsent = nil
	s.wmu.Unlock()
	// Anything that slipped into the queue after the writer's last look.
	lost = append(lost, s.q.drain()...)
	if s.accountGone.Load() {
		lost = nil
	}
	for i, o := range lost {
		lost[i] = outgoing{} // let each go once handed back
		if o.kind&kindMessage == 0 {
			continue
		}
		el, err := o.handedBack(s.srv.cfg.Domain)
		if err != nil {
			s.log.Error("an undelivered message cannot be read back", "err", err)
			continue
		}
		s.srv.router.undelivered(ctx, s, el)
	}
	s.closeConn()
}

// loop reads stanzas after binding and hands them to the router, until
// the connection fails, or has nothing more to read and is parked with
// wake (errParked).
func (s *Session) loop(ctx context.Context, t transport, wake func()) error {
	for {
		// A bound session has only the idle limit. With nothing to
		// decode the connection parks (parking.go); where it cannot,
		// the reader waits for the next stanza in this shallow frame: an
		// idle session then keeps a small stack (memory_idle.go).
		t.setReadLimits(s.srv.cfg.IdleTimeout, time.Time{})
		if t.park(wake) {
			return errParked
		}
		if err := t.waitStanza(); err != nil {
			return err
		}
		ev, err := s.readFrom(t)
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
			if err := s.nonza(t, el); err != nil {
				return err
			}
			continue
		}
		if el.Space == "" {
			el.Space = stanza.NSClient
		}
		err = s.stamp(el)
		if err == nil {
			if el.Local == "iq" && el.Child(nsSession, "session") != nil && el.To() == "" {
				// RFC 3921 session establishment, kept for old clients.
				_ = s.Send(stanza.Result(el))
			} else if handled, removed := s.accountIQ(ctx, el); handled {
				if removed {
					return streamErr("not-authorized", "the account was removed")
				}
			} else if n := s.srv.cfg.MaxPresenceBytes; el.Local == "presence" && encodedLen(el) > n {
				// Presence is copied to every contact and room occupant
				// and remembered per session: kept small.
				_ = s.Send(stanza.ErrorReply(el, stanza.PolicyViolation, fmt.Sprintf("presence larger than %d bytes is refused", n)))
			} else {
				s.srv.metrics.stanzasIn.WithLabelValues(el.Local).Inc()
				s.srv.router.route(ctx, s, el)
			}
		} else if !errors.Is(err, errSkip) {
			return err
		}
		// Counted once handled, so an ack covers what the services did
		// with it (stored offline, archived, delivered).
		s.hIn.Add(1)
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
	el.SetFrom(s.jid, s.jidString())
	if el.Local == "message" {
		// Only the server stamps a message as its own (a message handed
		// back at teardown, one kept offline): a client's stamp from the
		// server's domain would pass for it.
		stanza.RemoveDelayFrom(el, s.srv.cfg.Domain)
	}
	if to := el.To(); to != "" {
		tj, ts, err := canonicalJID(to)
		if err != nil {
			el.SetAttr("to", "")
			if !el.IsError() {
				_ = s.Send(stanza.ErrorReply(el, stanza.JIDMalformed, "the to address is not a valid JID"))
			}
			return errSkip
		}
		// The parsed address goes along with the stanza: the router and
		// the services read it with ToJID instead of parsing it again.
		el.SetTo(tj, ts)
	}
	return nil
}

var errSkip = errors.New("skip")

// printsAs reports whether j.String() would be s, without building it.
func printsAs(j jid.JID, s string) bool {
	if l := j.Localpart(); l != "" {
		if !strings.HasPrefix(s, l) || len(s) == len(l) || s[len(l)] != '@' {
			return false
		}
		s = s[len(l)+1:]
	}
	d := j.Domainpart()
	if !strings.HasPrefix(s, d) {
		return false
	}
	s = s[len(d):]
	if r := j.Resourcepart(); r != "" {
		return len(s) == len(r)+1 && s[0] == '/' && s[1:] == r
	}
	return s == ""
}

// canonicalJID parses an address a client sent and refuses one whose
// printed form reads as another address: jid.Parse drops one trailing dot
// of the domain, so "a@host.." becomes "a@host.", which the next reader
// (the router, federation, a room) takes as "a@host", and ".." becomes
// ".", which does not parse at all. Found by FuzzJID.
func canonicalJID(s string) (jid.JID, string, error) {
	j, err := jid.Parse(s)
	if err != nil {
		return jid.JID{}, "", err
	}
	if printsAs(j, s) {
		// Printed as it came: parsing it again gives j again, and s is
		// its printed form without building another string.
		return j, s, nil
	}
	js := j.String()
	again, err := jid.Parse(js)
	if err != nil || again.String() != js {
		return jid.JID{}, "", fmt.Errorf("address %q does not read back as itself", s)
	}
	return j, js, nil
}

// encodeScratch holds buffers for measuring stanzas as they would be
// written (encodedLen).
var encodeScratch = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// encodedLen is the size of el as poosms writes it.
func encodedLen(el *stanza.Element) int {
	bp := encodeScratch.Get().(*[]byte)
	b := el.AppendXML((*bp)[:0], "")
	n := len(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		encodeScratch.Put(bp)
	}
	return n
}
