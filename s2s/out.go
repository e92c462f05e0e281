package s2s

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"poosms.org/poosms/stanza"
)

// link carries the stanzas from one of our domains to one remote domain:
// a bounded queue, and a runner goroutine (while there is something to
// send) that connects, authenticates and writes. A domain that cannot be
// reached bounces what waits for it, and what is sent to it for a while
// after (growing on each failure), instead of holding stanzas it may never
// deliver. One link's trouble never holds up another's.
type link struct {
	s    *Server
	pair pair
	wake chan struct{} // cap 1: something was queued

	// mu guards the fields below. Lock order: link.mu before Server.mu.
	mu       sync.Mutex
	queue    []queued
	bytes    int
	running  bool             // a runner goroutine owns the link
	dead     bool             // forgotten by the server: use a new link
	out      *outStream       // the authenticated stream, while there is one
	retryAt  time.Time        // until then stanzas bounce at once
	backoff  time.Duration    // the wait after the next failure
	lastCond stanza.Condition // the condition they bounce with
	lastText string
}

// queued is a stanza waiting for its stream, already serialised.
type queued struct {
	el  *stanza.Element
	raw []byte
}

// outStream is an outgoing stream after TLS.
type outStream struct {
	c        *conn
	hdr      *header
	features *stanza.Element
	method   string
}

// send queues el, starting a runner when none runs.
func (l *link) send(ctx context.Context, el *stanza.Element) {
	raw := appendS2S(nil, el)
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock()
		l.s.linkFor(l.pair).send(ctx, el)
		return
	}
	if time.Now().Before(l.retryAt) {
		cond, text := l.lastCond, l.lastText
		l.mu.Unlock()
		l.s.bounce(ctx, el, cond, text)
		return
	}
	if len(l.queue) >= l.s.cfg.QueueStanzas || l.bytes+len(raw) > l.s.cfg.QueueBytes {
		l.mu.Unlock()
		l.s.bounce(ctx, el, stanza.ResourceConstraint, "too much is waiting to be sent to "+l.pair.remote)
		return
	}
	l.queue = append(l.queue, queued{el: el, raw: raw})
	l.bytes += len(raw)
	if l.running {
		l.mu.Unlock()
		select {
		case l.wake <- struct{}{}:
		default:
		}
		return
	}
	l.s.mu.Lock()
	closing := l.s.closing
	if !closing {
		l.s.wg.Add(1)
	}
	l.s.mu.Unlock()
	if closing {
		q := l.takeLocked()
		l.mu.Unlock()
		l.bounceAll(q, "remote-server-timeout", "the server is shutting down")
		return
	}
	l.running = true
	l.mu.Unlock()
	go l.run()
}

// takeLocked empties the queue. l.mu must be held.
func (l *link) takeLocked() []queued {
	q := l.queue
	l.queue, l.bytes = nil, 0
	return q
}

// requeue puts stanzas that could not be written back at the front.
func (l *link) requeue(q []queued) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range q {
		n += len(e.raw)
	}
	l.queue = append(slices.Clone(q), l.queue...)
	l.bytes += n
}

func (l *link) bounceAll(q []queued, cond stanza.Condition, text string) {
	for _, e := range q {
		l.s.bounce(l.s.ctx, e.el, cond, text)
	}
}

// run connects, serves the stream while there is something to send, and
// reconnects once when a stream breaks with stanzas still waiting.
func (l *link) run() {
	defer l.s.wg.Done()
	log := l.s.log.With("local", l.pair.local, "remote", l.pair.remote)
	for {
		ctx, cancel := context.WithTimeout(l.s.ctx, l.s.cfg.Timeout)
		st, err := l.s.connect(ctx, l.pair)
		cond := reachCondition(ctx, err)
		cancel()
		if err != nil {
			log.Info("s2s: cannot reach the domain", "err", err)
			l.failed(cond, "cannot reach "+l.pair.remote)
			return
		}
		log.Info("s2s: outgoing stream authenticated", "method", st.method)
		l.mu.Lock()
		l.out, l.backoff = st, 0
		l.mu.Unlock()
		wrote, err := l.serve(st)
		l.mu.Lock()
		l.out = nil
		if len(l.queue) == 0 || l.s.ctx.Err() != nil {
			q := l.takeLocked()
			l.running = false
			l.mu.Unlock()
			l.bounceAll(q, "remote-server-timeout", "the server is shutting down")
			return
		}
		l.mu.Unlock()
		if err != nil && !wrote {
			// The peer takes streams and drops them at once: a failure.
			log.Info("s2s: outgoing stream broke before sending anything", "err", err)
			l.failed(stanza.RemoteServerNotFound, "the stream to "+l.pair.remote+" broke")
			return
		}
		log.Debug("s2s: outgoing stream ended with stanzas waiting; reconnecting", "err", err)
	}
}

// reachCondition is the stanza error for a failure to reach a domain
// within ctx: remote-server-timeout when time ran out (or the server is
// shutting down), remote-server-not-found otherwise.
func reachCondition(ctx context.Context, err error) stanza.Condition {
	var se *streamError
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) ||
		errors.As(err, &se) && se.cond == "connection-timeout" {
		return "remote-server-timeout"
	}
	return "remote-server-not-found"
}

// failed bounces everything waiting and makes new stanzas bounce at once
// until the next attempt is due.
func (l *link) failed(cond stanza.Condition, text string) {
	l.mu.Lock()
	q := l.takeLocked()
	l.running = false
	if l.backoff == 0 {
		l.backoff = l.s.cfg.RetryMin
	}
	l.retryAt = time.Now().Add(l.backoff)
	l.backoff = min(2*l.backoff, l.s.cfg.RetryMax)
	l.lastCond, l.lastText = cond, text
	l.mu.Unlock()
	l.bounceAll(q, cond, text)
}

// serve writes queued stanzas to st until it has been idle long enough,
// breaks, or the server shuts down. wrote says whether anything was
// written.
func (l *link) serve(st *outStream) (wrote bool, err error) {
	s := l.s
	s.streamUp(l.pair.remote)
	defer s.streamDown(l.pair.remote)
	label := s.m.streamUp(dirOut, l.pair.remote)
	defer s.m.streamDown(dirOut, label)
	c := st.c
	c.raw.limits(0, time.Time{})
	readDone := make(chan error, 1)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		readDone <- l.read(c)
	}()
	idle := time.NewTimer(s.cfg.IdleTimeout)
	defer idle.Stop()
	var batch []byte
	flush := func() error {
		l.mu.Lock()
		q := l.takeLocked()
		l.mu.Unlock()
		// What waits goes out in writes of up to maxBatch bytes: one
		// system call and a few TLS records for many stanzas.
		for i := 0; i < len(q); {
			j := i
			batch = batch[:0]
			for ; j < len(q) && (j == i || len(batch)+len(q[j].raw) <= maxBatch); j++ {
				batch = append(batch, q[j].raw...)
			}
			if err := c.writeRaw(batch); err != nil {
				l.requeue(q[i:])
				return err
			}
			s.m.out.Add(float64(j - i))
			wrote = true
			i = j
		}
		if len(q) > 0 {
			idle.Reset(s.cfg.IdleTimeout)
		}
		return nil
	}
	for {
		if err := flush(); err != nil {
			_ = c.close()
			<-readDone
			return wrote, err
		}
		select {
		case <-l.wake:
		case err := <-readDone:
			_ = c.close()
			return wrote, err
		case <-idle.C:
			l.closeStream(c, readDone)
			return wrote, nil
		case <-s.ctx.Done():
			err := flush()
			l.closeStream(c, readDone)
			return wrote, err
		}
	}
}

// maxBatch bounds the bytes of queued stanzas written at once.
const maxBatch = 64 << 10

// closeStream ends a stream politely: the closing tag, then a short wait
// for the peer's.
func (l *link) closeStream(c *conn, readDone chan error) {
	_ = c.writeClose()
	select {
	case <-readDone:
	case <-time.After(2 * time.Second):
	}
	_ = c.close()
	select {
	case <-readDone:
	default:
	}
}

// read is an outgoing stream's reader: it ends with the stream. Without
// bidirectional streams nothing but keepalives, a stream error or the
// closing tag is expected.
func (l *link) read(c *conn) error {
	for {
		ev, err := c.next()
		switch {
		case err != nil:
			return err
		case ev.closed:
			return errPeerClosed
		case ev.el != nil && ev.el.Space == stanza.NSStream && ev.el.Local == "error":
			return peerStreamError(ev.el)
		case ev.el != nil:
			l.s.log.Debug("s2s: ignored an element on an outgoing stream", "remote", l.pair.remote, "name", ev.el.Local)
		default:
			return streamErr("bad-format", "unexpected stream header")
		}
	}
}

// method is the authentication method of the current stream, or "".
func (l *link) method() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out == nil {
		return ""
	}
	return l.out.method
}

// closeConn drops the current stream's connection at once.
func (l *link) closeConn() {
	l.mu.Lock()
	st := l.out
	l.mu.Unlock()
	if st != nil {
		_ = st.c.close()
	}
}

// connect opens an authenticated outgoing stream for p within ctx.
func (s *Server) connect(ctx context.Context, p pair) (*outStream, error) {
	st, err := s.dialStream(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := s.authenticate(ctx, p, st); err != nil {
		st.c.fail(streamErr("not-authorized", ""))
		return nil, err
	}
	return st, nil
}

// dialStream reaches p.remote and negotiates TLS, trying each target in
// turn: the stream it returns has its post-TLS header and features read.
func (s *Server) dialStream(ctx context.Context, p pair) (*outStream, error) {
	select {
	case s.dialing <- struct{}{}:
		defer func() { <-s.dialing }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	ts, err := s.targets(ctx, p.remote)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, t := range ts {
		st, err := s.tryTarget(ctx, p, t)
		if err == nil {
			return st, nil
		}
		s.log.Debug("s2s: target failed", "remote", p.remote, "addr", t.addr(), "direct_tls", t.direct, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", t.addr(), err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dialTimeout bounds one TCP connection attempt, so a target that does
// not answer leaves time for the next.
const dialTimeout = 10 * time.Second

func (s *Server) tryTarget(ctx context.Context, p pair, t target) (*outStream, error) {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	nc, err := s.cfg.Dial(dctx, "tcp", t.addr())
	cancel()
	if err != nil {
		return nil, err
	}
	c := newConn(nc, s.cfg.MaxStanzaBytes, s.cfg.WriteTimeout).limitShape(s.cfg.StanzaLimits)
	if dl, ok := ctx.Deadline(); ok {
		c.raw.limits(0, dl)
	}
	st, err := s.negotiateTLS(ctx, p, t, c)
	if err != nil {
		_ = c.close()
		return nil, err
	}
	return st, nil
}

func (s *Server) negotiateTLS(ctx context.Context, p pair, t target, c *conn) (*outStream, error) {
	if t.direct {
		if err := c.upgrade(ctx, tls.Client(c.raw, s.clientTLS(p.remote, true))); err != nil {
			return nil, err
		}
	}
	st, err := s.openOut(c, p)
	if err != nil || t.direct {
		return st, err
	}
	if st.features.Child(nsTLS, "starttls") == nil {
		return nil, errors.New("s2s: the peer does not offer TLS")
	}
	if err := c.write(stanza.New(nsTLS, "starttls")); err != nil {
		return nil, err
	}
	el, err := expect(c)
	if err != nil {
		return nil, err
	}
	if el.Space != nsTLS || el.Local != "proceed" {
		return nil, fmt.Errorf("s2s: starttls refused (%s)", el.Local)
	}
	if err := c.upgrade(ctx, tls.Client(c.raw, s.clientTLS(p.remote, false))); err != nil {
		return nil, err
	}
	return s.openOut(c, p)
}

// openOut sends our stream header and reads the peer's header and
// features.
func (s *Server) openOut(c *conn, p pair) (*outStream, error) {
	if err := c.writeHeader(p.local, p.remote, ""); err != nil {
		return nil, err
	}
	ev, err := c.next()
	if err != nil {
		return nil, err
	}
	if ev.header == nil {
		return nil, errors.New("s2s: the peer sent no stream header")
	}
	if ev.header.ns != nsServer {
		return nil, fmt.Errorf("s2s: the peer's stream is %q, not jabber:server", ev.header.ns)
	}
	if !ev.header.version1() {
		return nil, errors.New("s2s: the peer does not speak XMPP 1.0")
	}
	el, err := expect(c)
	if err != nil {
		return nil, err
	}
	if el.Space != stanza.NSStream || el.Local != "features" {
		return nil, fmt.Errorf("s2s: expected stream features, got %s", el.Local)
	}
	return &outStream{c: c, hdr: ev.header, features: el}, nil
}

// expect reads the next element, turning a stream error or the end of
// the stream into an error.
func expect(c *conn) (*stanza.Element, error) {
	ev, err := c.next()
	switch {
	case err != nil:
		return nil, err
	case ev.closed:
		return nil, errPeerClosed
	case ev.header != nil:
		return nil, errors.New("s2s: unexpected stream header")
	case ev.el.Space == stanza.NSStream && ev.el.Local == "error":
		return nil, peerStreamError(ev.el)
	}
	return ev.el, nil
}

// authenticate proves our domain to the peer, and judges the peer's:
// SASL EXTERNAL when the peer's certificate is valid for its domain and
// it offers the mechanism, else Server Dialback (unless SecureAuth, which
// wants a valid certificate).
func (s *Server) authenticate(ctx context.Context, p pair, st *outStream) error {
	valid := s.certValid(st.c.tlsState(), p.remote)
	if !valid && s.cfg.SecureAuth {
		return fmt.Errorf("s2s: %s's certificate is not valid for it (secure authentication is required)", p.remote)
	}
	if valid && offersExternal(st.features) {
		ok, err := s.saslExternal(p, st)
		if err != nil {
			return err
		}
		if ok {
			st.method = MethodSASLExternal
			s.m.auth(dirOut, MethodSASLExternal, authOK)
			return nil
		}
		s.m.auth(dirOut, MethodSASLExternal, authRefused)
	}
	if st.features.Child(nsDialbackFeature, "dialback") == nil && !st.hdr.dialback {
		return errors.New("s2s: the peer offers neither SASL EXTERNAL for our certificate nor dialback")
	}
	key := s.dialbackKey(p.remote, p.local, st.hdr.id)
	if err := st.c.write(dialbackElement("result", p.local, p.remote, "", "", key)); err != nil {
		return err
	}
	for {
		el, err := expect(st.c)
		if err != nil {
			return err
		}
		if el.Space != nsDialback || el.Local != "result" || el.Attr("from") != p.remote || el.Attr("to") != p.local {
			continue
		}
		switch el.Type() {
		case "valid":
			st.method = MethodDialback
			s.m.auth(dirOut, MethodDialback, authOK)
			return nil
		case "error":
			s.m.auth(dirOut, MethodDialback, authRefused)
			return fmt.Errorf("s2s: dialback failed: %s", stanza.ErrorCondition(el))
		default:
			s.m.auth(dirOut, MethodDialback, authRefused)
			return errors.New("s2s: the peer refused our dialback key")
		}
	}
}

func offersExternal(features *stanza.Element) bool {
	m := features.Child(nsSASL, "mechanisms")
	if m == nil {
		return false
	}
	for _, c := range m.Elements() {
		if c.Local == "mechanism" && c.Text() == "EXTERNAL" {
			return true
		}
	}
	return false
}

// saslExternal runs SASL EXTERNAL (XEP-0178) and restarts the stream; a
// refusal returns false so that dialback can be tried.
func (s *Server) saslExternal(p pair, st *outStream) (bool, error) {
	// The authorization identity is our domain (RFC 6120 §6.4.6).
	auth := stanza.New(nsSASL, "auth").SetAttr("mechanism", "EXTERNAL").
		SetText(base64.StdEncoding.EncodeToString([]byte(p.local)))
	if err := st.c.write(auth); err != nil {
		return false, err
	}
	el, err := expect(st.c)
	if err != nil {
		return false, err
	}
	if el.Space != nsSASL || el.Local != "success" {
		s.log.Debug("s2s: SASL EXTERNAL refused; trying dialback", "remote", p.remote, "answer", el.String())
		return false, nil
	}
	st.c.restart()
	next, err := s.openOut(st.c, p)
	if err != nil {
		return false, err
	}
	st.hdr, st.features = next.hdr, next.features
	return true, nil
}

// verifyDialback asks the authoritative server of remote whether key is
// one it gave for the stream id (XEP-0220 §2.3), on a connection of its
// own that ends with the answer.
func (s *Server) verifyDialback(ctx context.Context, local, remote, id, key string) (bool, error) {
	st, err := s.dialStream(ctx, pair{local: local, remote: remote})
	if err != nil {
		return false, err
	}
	c := st.c
	defer func() {
		_ = c.writeClose()
		_ = c.close()
	}()
	if err := c.write(dialbackElement("verify", local, remote, id, "", key)); err != nil {
		return false, err
	}
	for {
		el, err := expect(c)
		if err != nil {
			return false, err
		}
		if el.Space != nsDialback || el.Local != "verify" || el.Attr("id") != id || el.Attr("from") != remote {
			continue
		}
		switch el.Type() {
		case "valid":
			return true, nil
		case "error":
			return false, fmt.Errorf("s2s: dialback verification failed: %s", stanza.ErrorCondition(el))
		}
		return false, nil
	}
}

var _ net.Conn = (*idleConn)(nil)
