package s2s

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"poosms.org/poosms/stanza"
)

// Bounds on what one incoming stream may make this server do.
const (
	maxPendingPerStream = 4   // dialback verifications one stream may have running
	maxVerifying        = 256 // dialback verifications running in all
	maxAuthFailures     = 3   // refused authentications before the stream ends
	maxDomainsPerStream = 64  // domains one stream may prove (dialback multiplexing)
)

// inStream is one incoming server stream. Its reader goroutine (run)
// negotiates TLS and authentication and hands stanzas to Deliver; the
// dialback verifications it starts run on goroutines of their own and
// write their answers through the connection's writer lock.
type inStream struct {
	s       *Server
	c       *conn
	log     *slog.Logger
	direct  bool
	started time.Time
	lim     *rate.Limiter

	// Set by the reader goroutine.
	id       string // the id of the current stream header we sent
	local    string // the hosted domain the peer addressed
	peer     string // the domain the peer's header named, if any
	secured  bool
	saslDone bool

	// mu guards the fields below.
	mu       sync.Mutex
	authed   map[string]string // remote domain → authentication method
	labels   map[string]string // remote domain → its peer label in the metrics
	pending  int               // dialback verifications running
	failures int
}

func (s *Server) serveIn(nc net.Conn, direct bool) {
	in := &inStream{
		s:       s,
		c:       newConn(nc, s.cfg.MaxStanzaBytes, s.cfg.WriteTimeout).limitShape(s.cfg.StanzaLimits),
		log:     s.log.With("remote_addr", nc.RemoteAddr().String()),
		direct:  direct,
		started: time.Now(),
		lim:     rate.NewLimiter(rate.Limit(s.cfg.StanzaRate), s.cfg.StanzaBurst),
		authed:  map[string]string{},
		labels:  map[string]string{},
	}
	s.mu.Lock()
	if s.closing || len(s.ins) >= s.cfg.MaxIncoming {
		full := !s.closing
		s.mu.Unlock()
		if full {
			s.log.Warn("s2s: too many incoming streams; refusing one", "remote_addr", nc.RemoteAddr().String(), "max", s.cfg.MaxIncoming)
		}
		_ = nc.Close()
		return
	}
	s.ins[in] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go in.run()
}

func (in *inStream) run() {
	s := in.s
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.ins, in)
		s.mu.Unlock()
		in.mu.Lock()
		domains := make([]string, 0, len(in.authed))
		for d := range in.authed {
			domains = append(domains, d)
		}
		labels := in.labels
		in.authed, in.labels = map[string]string{}, map[string]string{}
		in.mu.Unlock()
		for _, d := range domains {
			s.streamDown(d)
			s.m.streamDown(dirIn, labels[d])
		}
	}()
	in.c.raw.limits(s.cfg.IdleTimeout, in.started.Add(s.cfg.AuthTimeout))
	err := in.loop()
	var se *streamError
	switch {
	case errors.Is(err, errPeerClosed):
		_ = in.c.writeClose()
		_ = in.c.close()
	case errors.As(err, &se) && !se.remote:
		in.log.Debug("s2s: incoming stream error", "peer", in.peer, "cond", se.cond, "text", se.text)
		in.c.fail(se)
	default:
		in.log.Debug("s2s: incoming stream ended", "peer", in.peer, "err", err)
		_ = in.c.close()
	}
}

// stop ends the stream from another goroutine.
func (in *inStream) stop(se *streamError) { in.c.fail(se) }

func (in *inStream) loop() error {
	if in.direct {
		ctx, cancel := context.WithTimeout(in.s.ctx, 15*time.Second)
		err := in.c.upgrade(ctx, tls.Server(in.c.raw, in.s.tlsInDir))
		cancel()
		if err != nil {
			return err
		}
		in.secured = true
	}
	for {
		if err := in.open(); err != nil {
			return err
		}
		restart, err := in.negotiate()
		if err != nil || !restart {
			return err
		}
	}
}

// open reads the peer's stream header, checks it and answers with ours
// and our features.
func (in *inStream) open() error {
	ev, err := in.c.next()
	if err != nil {
		return err
	}
	if ev.header == nil {
		return streamErr("bad-format", "expected a stream header")
	}
	h := ev.header
	in.id = newStreamID()
	local, ok := normDomain(h.to)
	hosted := ok && in.s.cfg.Hosted(local)
	if !hosted {
		local = in.s.cfg.Domain
	}
	// The header goes first, so that a stream error has a stream to live in.
	if err := in.c.writeHeader(local, h.from, in.id); err != nil {
		return err
	}
	switch {
	case h.ns != nsServer:
		return streamErr("invalid-namespace", "a server stream's default namespace is jabber:server")
	case !h.version1():
		return streamErr("unsupported-version", "XMPP 1.0 is required")
	case !hosted:
		return streamErr("host-unknown", "this server does not serve "+h.to)
	}
	if in.local != "" && local != in.local {
		return streamErr("host-unknown", "the stream restarted for another domain")
	}
	in.local = local
	if h.from != "" {
		from, ok := normDomain(h.from)
		switch {
		case !ok:
			return streamErr("invalid-from", "the stream's from is not a domain")
		case in.s.cfg.Hosted(from):
			return streamErr("invalid-from", from+" is served here")
		case !in.s.allowed(from):
			return streamErr("policy-violation", "this server does not federate with "+from)
		case in.saslDone && from != in.peer:
			return streamErr("invalid-from", "the stream authenticated as "+in.peer)
		}
		in.peer = from
	}
	return in.c.write(in.features())
}

func (in *inStream) features() *stanza.Element {
	f := stanza.New(stanza.NSStream, "features")
	switch {
	case !in.secured:
		f.Append(stanza.New(nsTLS, "starttls").Append(stanza.New(nsTLS, "required")))
	case !in.saslDone:
		if in.peer != "" && in.s.certValid(in.c.tlsState(), in.peer) {
			f.Append(stanza.New(nsSASL, "mechanisms").Append(stanza.New(nsSASL, "mechanism").SetText("EXTERNAL")))
		}
		f.Append(stanza.New(nsDialbackFeature, "dialback").Append(stanza.New(nsDialbackFeature, "errors")))
	}
	return f
}

// negotiate handles elements until the stream restarts (true) or ends.
func (in *inStream) negotiate() (restart bool, err error) {
	for {
		ev, err := in.c.next()
		if err != nil {
			return false, err
		}
		if ev.closed {
			return false, errPeerClosed
		}
		if ev.header != nil {
			return false, streamErr("bad-format", "unexpected stream header")
		}
		el := ev.el
		switch {
		case el.Space == stanza.NSStream && el.Local == "error":
			return false, peerStreamError(el)
		case el.Space == nsTLS && el.Local == "starttls" && !in.secured:
			if err := in.c.write(stanza.New(nsTLS, "proceed")); err != nil {
				return false, err
			}
			ctx, cancel := context.WithTimeout(in.s.ctx, 15*time.Second)
			err := in.c.upgrade(ctx, tls.Server(in.c.raw, in.s.tlsIn))
			cancel()
			if err != nil {
				return false, err
			}
			in.secured = true
			return true, nil
		case !in.secured:
			return false, streamErr("policy-violation", "STARTTLS is required")
		case el.Space == nsSASL && el.Local == "auth" && !in.saslDone:
			ok, err := in.saslExternal(el)
			if err != nil || ok {
				return ok, err
			}
		case el.Space == nsDialback && el.Local == "result":
			if err := in.dialbackResult(el); err != nil {
				return false, err
			}
		case el.Space == nsDialback && el.Local == "verify":
			if err := in.dialbackVerify(el); err != nil {
				return false, err
			}
		case el.Space == nsServer && (el.Local == "message" || el.Local == "presence" || el.Local == "iq"):
			if err := in.stanza(el); err != nil {
				return false, err
			}
		case el.Space == stanza.NSClient:
			return false, streamErr("invalid-namespace", "stanzas between servers are in jabber:server")
		default:
			return false, streamErr("unsupported-stanza-type", "unexpected "+el.Local)
		}
	}
}

// refused counts a refused authentication; too many end the stream.
func (in *inStream) refused() error {
	in.mu.Lock()
	in.failures++
	n := in.failures
	in.mu.Unlock()
	if n >= maxAuthFailures {
		return streamErr("not-authorized", "too many failed authentications")
	}
	return nil
}

// saslExternal authenticates the peer as the domain its header named,
// when its certificate is valid for that domain (XEP-0178).
func (in *inStream) saslExternal(el *stanza.Element) (bool, error) {
	failure := func(cond string) (bool, error) {
		in.s.m.auth(dirIn, MethodSASLExternal, authRefused)
		if err := in.c.write(stanza.New(nsSASL, "failure").Append(stanza.New(nsSASL, cond))); err != nil {
			return false, err
		}
		return false, in.refused()
	}
	if el.Attr("mechanism") != "EXTERNAL" {
		return failure("invalid-mechanism")
	}
	if in.peer == "" || !in.s.certValid(in.c.tlsState(), in.peer) {
		return failure("not-authorized")
	}
	if authz := strings.TrimSpace(el.Text()); authz != "" && authz != "=" {
		b, err := base64.StdEncoding.DecodeString(authz)
		if err != nil {
			return failure("incorrect-encoding")
		}
		if d, ok := normDomain(string(b)); !ok || d != in.peer {
			return failure("invalid-authzid")
		}
	}
	if err := in.c.write(stanza.New(nsSASL, "success")); err != nil {
		return false, err
	}
	in.saslDone = true
	in.authorize(in.peer, MethodSASLExternal)
	in.c.restart()
	return true, nil
}

// authorize records that the stream proved domain.
func (in *inStream) authorize(domain, method string) {
	in.s.m.auth(dirIn, method, authOK)
	in.mu.Lock()
	_, had := in.authed[domain]
	in.authed[domain] = method
	if !had {
		in.labels[domain] = in.s.m.streamUp(dirIn, domain)
	}
	in.mu.Unlock()
	if !had {
		// Authenticated streams have only the idle limit.
		in.c.raw.limits(in.s.cfg.IdleTimeout, time.Time{})
		in.log.Info("s2s: incoming stream authenticated", "peer", domain, "local", in.local, "method", method)
		in.s.streamUp(domain)
	}
}

func (in *inStream) authedCount() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return len(in.authed)
}

func (in *inStream) isAuthed(domain string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	_, ok := in.authed[domain]
	return ok
}

// dialbackResult is the receiving server's side of XEP-0220: the peer
// claims a domain with a key, which the authoritative server of that
// domain (found through DNS) must confirm; a certificate valid for the
// domain is proof enough without asking (XEP-0344).
func (in *inStream) dialbackResult(el *stanza.Element) error {
	from, okFrom := normDomain(el.Attr("from"))
	to, okTo := normDomain(el.Attr("to"))
	key := strings.TrimSpace(el.Text())
	if !okFrom || !okTo || key == "" || el.Type() != "" {
		return streamErr("improper-addressing", "a dialback request names two domains and carries a key")
	}
	answer := func(typ string) error {
		return in.c.write(dialbackElement("result", to, from, "", typ, ""))
	}
	switch {
	case !in.s.cfg.Hosted(to):
		return in.c.write(dialbackError("result", to, from, "", "item-not-found"))
	case in.s.cfg.Hosted(from) || !in.s.allowed(from):
		in.s.m.auth(dirIn, MethodDialback, authRefused)
		if err := in.c.write(dialbackError("result", to, from, "", "forbidden")); err != nil {
			return err
		}
		return in.refused()
	case in.isAuthed(from):
		return answer("valid")
	case in.s.certValid(in.c.tlsState(), from):
		in.authorize(from, MethodDialback)
		return answer("valid")
	case in.s.cfg.SecureAuth:
		in.s.m.auth(dirIn, MethodDialback, authRefused)
		if err := answer("invalid"); err != nil {
			return err
		}
		return in.refused()
	}
	if in.authedCount() >= maxDomainsPerStream || !in.startVerify() {
		return in.c.write(dialbackError("result", to, from, "", "resource-constraint"))
	}
	id := in.id
	in.s.wg.Add(1)
	go func() {
		defer in.s.wg.Done()
		defer in.endVerify()
		ctx, cancel := context.WithTimeout(in.s.ctx, in.s.cfg.Timeout)
		valid, err := in.s.verifyDialback(ctx, to, from, id, key)
		cond := reachCondition(ctx, err)
		cancel()
		switch {
		case err != nil:
			in.log.Info("s2s: dialback verification failed", "peer", from, "err", err)
			in.s.m.auth(dirIn, MethodDialback, authRefused)
			_ = in.c.write(dialbackError("result", to, from, "", cond))
		case valid:
			in.authorize(from, MethodDialback)
			_ = answer("valid")
		default:
			in.log.Warn("s2s: dialback key refused by the authoritative server", "peer", from)
			in.s.m.auth(dirIn, MethodDialback, authRefused)
			_ = answer("invalid")
			if in.refused() != nil {
				in.stop(streamErr("not-authorized", "too many failed authentications"))
			}
		}
	}()
	return nil
}

// startVerify reserves a verification slot, within the stream's and the
// server's bounds.
func (in *inStream) startVerify() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	if in.pending >= maxPendingPerStream || in.s.verifying >= maxVerifying || in.s.closing {
		return false
	}
	in.pending++
	in.s.verifying++
	return true
}

func (in *inStream) endVerify() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.s.mu.Lock()
	defer in.s.mu.Unlock()
	in.pending--
	in.s.verifying--
}

// dialbackVerify is the authoritative server's side: is this key one we
// gave for that stream?
func (in *inStream) dialbackVerify(el *stanza.Element) error {
	from, okFrom := normDomain(el.Attr("from"))
	to, okTo := normDomain(el.Attr("to"))
	id := el.Attr("id")
	if !okFrom || !okTo || id == "" || el.Type() != "" {
		return streamErr("improper-addressing", "a dialback verification names two domains and a stream")
	}
	if !in.s.cfg.Hosted(to) {
		return in.c.write(dialbackError("verify", to, from, id, "item-not-found"))
	}
	typ := "invalid"
	if in.s.checkDialbackKey(from, to, id, strings.TrimSpace(el.Text())) {
		typ = "valid"
	}
	return in.c.write(dialbackElement("verify", to, from, id, typ, ""))
}

// stanza checks a stanza's addresses against what the stream proved,
// applies the rate and hands it to Deliver.
func (in *inStream) stanza(el *stanza.Element) error {
	from, ferr := el.FromJID()
	to, terr := el.ToJID()
	switch {
	case el.From() == "" || el.To() == "" || ferr != nil || terr != nil:
		return streamErr("improper-addressing", "a stanza between servers has a valid from and to")
	case !in.isAuthed(from.Domainpart()):
		return streamErr("invalid-from", "this stream has not proved "+from.Domainpart())
	case !in.s.cfg.Hosted(to.Domainpart()):
		return streamErr("host-unknown", "this server does not serve "+to.Domainpart())
	}
	toClientNS(el)
	el.SetAttr("from", from.String())
	el.SetAttr("to", to.String())
	if el.Local == "message" {
		// This server's stamps on a message are its own to add.
		stanza.RemoveDelayFrom(el, in.s.cfg.Domain)
	}
	if err := in.lim.Wait(in.s.ctx); err != nil {
		return streamErr("system-shutdown", "")
	}
	in.s.m.in.Inc()
	in.s.cfg.Deliver(in.s.ctx, el)
	return nil
}

// info describes the stream's authenticated domains.
func (in *inStream) info() []StreamInfo {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []StreamInfo
	for d, m := range in.authed {
		out = append(out, StreamInfo{Local: in.local, Remote: d, Method: m})
	}
	slices.SortFunc(out, func(a, b StreamInfo) int { return strings.Compare(a.Remote, b.Remote) })
	return out
}

func newStreamID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
