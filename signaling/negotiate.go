package signaling

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
)

// negotiate runs RFC 6120 stream negotiation up to resource binding:
// stream header, STARTTLS, SASL, stream restart, bind. It returns the
// session the connection now serves: s once bound, or the earlier session
// the client resumed (XEP-0198).
func (s *Session) negotiate(ctx context.Context) (*Session, error) {
	authed := false
	for {
		if err := s.openStream(); err != nil {
			return nil, err
		}
		s.writeDirect(s.features(authed))
		restart, target, err := s.negotiateStep(ctx, &authed)
		if err != nil {
			return nil, err
		}
		if !restart {
			return target, nil
		}
		s.t.restart()
	}
}

// read reads the next event; before binding, the time left to
// authenticate bounds it as well as the idle timeout.
func (s *Session) read() (event, error) { return s.readFrom(s.t) }

func (s *Session) readFrom(t transport) (event, error) {
	var hard time.Time
	if !s.bound.Load() {
		hard = s.started.Add(s.srv.cfg.AuthTimeout)
	}
	t.setReadLimits(s.srv.cfg.IdleTimeout, hard)
	return t.next()
}

// openStream reads the client's stream header and answers with ours.
func (s *Session) openStream() error {
	ev, err := s.read()
	if ev.open != nil {
		// Answer the header first so a stream error has a stream to live in.
		s.id = newStreamID()
		if werr := s.t.writeHeader(s.id, s.srv.cfg.Domain); werr != nil {
			return werr
		}
	}
	if err != nil {
		var se *streamError
		if errors.As(err, &se) && ev.open == nil {
			// Errors before any header still get a header (RFC 6120 §4.9.1.1).
			s.id = newStreamID()
			_ = s.t.writeHeader(s.id, s.srv.cfg.Domain)
		}
		return err
	}
	if ev.open == nil {
		s.id = newStreamID()
		_ = s.t.writeHeader(s.id, s.srv.cfg.Domain)
		return streamErr("bad-format", "expected a stream header")
	}
	if to := ev.open.To(); to != "" {
		tj, err := jid.Parse(to)
		if err != nil || tj.String() != s.srv.cfg.Domain {
			return streamErr("host-unknown", "this server serves "+s.srv.cfg.Domain)
		}
	}
	if v := ev.open.Attr("version"); v != "" {
		major, _, _ := strings.Cut(v, ".")
		if n, err := strconv.Atoi(major); err != nil || n < 1 {
			return streamErr("unsupported-version", "XMPP 1.0 is required")
		}
	}
	return nil
}

// writeDirect writes during negotiation, when the reader goroutine is the
// only writer.
func (s *Session) writeDirect(el *stanza.Element) {
	if err := s.t.write(el); err != nil {
		s.log.Debug("write failed", "err", err)
	}
}

func (s *Session) canStartTLS() bool {
	_, ok := s.t.(*tcpTransport)
	return ok && s.t.tlsState() == nil && s.srv.cfg.TLS != nil
}

// mayAuthenticate: SASL needs an encrypted stream, except for loopback
// clients when the operator allows it for development.
func (s *Session) mayAuthenticate() bool {
	return s.secure || (s.srv.cfg.AllowInsecureLoopbackAuth && isLoopback(s.t.remoteAddr()))
}

func (s *Session) features(authed bool) *stanza.Element {
	f := stanza.New(stanza.NSStream, "features")
	if s.srv.cfg.Caps != nil && (authed || s.mayAuthenticate()) {
		f.Append(s.srv.cfg.Caps())
	}
	if authed {
		f.Append(stanza.New(nsBind, "bind"))
		f.Append(stanza.New(nsSession, "session").Append(stanza.New(nsSession, "optional")))
		f.Append(stanza.New(nsSM, "sm"))
		f.Append(stanza.New(nsCSI, "csi"))
		return f
	}
	if s.canStartTLS() {
		st := stanza.New(nsTLS, "starttls")
		if !s.mayAuthenticate() {
			st.Append(stanza.New(nsTLS, "required"))
		}
		f.Append(st)
	}
	if s.offersRegistration() {
		f.Append(stanza.New(nsRegisterFeature, "register"))
	}
	if s.mayAuthenticate() {
		mechs := stanza.New(nsSASL, "mechanisms")
		for _, m := range s.mechanisms() {
			mechs.Append(stanza.New(nsSASL, "mechanism").SetText(m))
		}
		f.Append(mechs)
		if b := sasl.Bindings(s.t.tlsState(), s.srv.certDER); len(b) > 0 {
			cb := stanza.New(nsSASLCB, "sasl-channel-binding")
			for _, typ := range b {
				cb.Append(stanza.New(nsSASLCB, "channel-binding").SetAttr("type", typ))
			}
			f.Append(cb)
		}
	}
	return f
}

func (s *Session) mechanisms() []string {
	st := s.t.tlsState()
	if st == nil && !s.secure {
		return sasl.Offered(nil, nil, false)
	}
	return sasl.Offered(st, s.srv.certDER, s.srv.cfg.AllowPlain && st != nil)
}

// negotiateStep handles elements until the stream restarts (true) or a
// session is bound or resumed (false, with that session).
func (s *Session) negotiateStep(ctx context.Context, authed *bool) (restart bool, target *Session, err error) {
	for {
		ev, err := s.read()
		if err != nil {
			return false, nil, err
		}
		if ev.close {
			return false, nil, errClientClosed
		}
		if ev.open != nil {
			return false, nil, streamErr("bad-format", "unexpected stream header")
		}
		el := ev.el
		switch {
		case el.Space == nsTLS && el.Local == "starttls" && !*authed:
			if !s.canStartTLS() {
				s.writeDirect(stanza.New(nsTLS, "failure"))
				return false, nil, errors.New("starttls refused")
			}
			s.writeDirect(stanza.New(nsTLS, "proceed"))
			if err := s.t.startTLS(s.srv.cfg.TLS); err != nil {
				return false, nil, err
			}
			s.secure = true
			return true, nil, nil
		case el.Space == nsSASL && el.Local == "auth" && !*authed:
			ok, err := s.authenticate(ctx, el)
			if err != nil {
				return false, nil, err
			}
			if ok {
				*authed = true
				return true, nil, nil
			}
		case !*authed && el.Local == "iq" && (el.Space == stanza.NSClient || el.Space == "") && el.Child(nsRegister, "query") != nil:
			s.registerBeforeAuth(ctx, el)
		case *authed && el.Space == nsSM && el.Local == "resume":
			if old := s.resumeOld(el); old != nil {
				return false, old, nil
			}
		case *authed && el.Space == nsSM:
			s.writeDirect(smFailed("unexpected-request"))
		case *authed && el.Local == "iq" && (el.Space == stanza.NSClient || el.Space == ""):
			bound, err := s.bindIQ(ctx, el)
			if err != nil {
				return false, nil, err
			}
			if bound {
				return false, s, nil
			}
		case !*authed:
			if s.canStartTLS() && !s.mayAuthenticate() {
				return false, nil, streamErr("policy-violation", "STARTTLS is required before authentication")
			}
			return false, nil, streamErr("not-authorized", "authenticate first")
		default:
			return false, nil, streamErr("not-authorized", "bind a resource first")
		}
	}
}

// resumeOld hands this connection to the session the client asks to
// resume, or answers <failed/> so the client can bind afresh.
func (s *Session) resumeOld(el *stanza.Element) *Session {
	h, err := strconv.ParseUint(el.Attr("h"), 10, 32)
	old := s.srv.resumable(el.Attr("previd"))
	if err != nil || old == nil || old.user != s.user {
		s.writeDirect(smFailed("item-not-found"))
		return nil
	}
	if err := old.resume(s.t, uint32(h)); err != nil {
		s.log.Debug("resume failed", "err", err)
		s.writeDirect(smFailed("item-not-found"))
		return nil
	}
	old.log.Debug("session resumed")
	// This placeholder session never bound; the connection is old's now.
	s.q.close(nil)
	return old
}

func saslFailure(cond, text string) *stanza.Element {
	f := stanza.New(nsSASL, "failure").Append(stanza.New(nsSASL, cond))
	if text != "" {
		f.Append(stanza.New(nsSASL, "text").SetText(text))
	}
	return f
}

// authenticate runs one SASL exchange. It reports success; a failed
// attempt returns (false, nil) and the client may try again.
func (s *Session) authenticate(ctx context.Context, auth *stanza.Element) (bool, error) {
	if !s.mayAuthenticate() {
		s.writeDirect(saslFailure("encryption-required", "use STARTTLS first"))
		return false, nil
	}
	addr := clientaddr.KeyOf(s.t.remoteAddr())
	if r, _ := s.srv.limiter.CheckAddress(addr); r != loginlimit.Allowed {
		s.log.Info("login throttled", "why", r.String())
		s.writeDirect(saslFailure("temporary-auth-failure", r.String()+"; try again later"))
		return false, nil
	}
	name := auth.Attr("mechanism")
	offered := s.mechanisms()
	allowed := false
	for _, m := range offered {
		allowed = allowed || m == name
	}
	if !allowed {
		s.writeDirect(saslFailure("invalid-mechanism", "offered: "+strings.Join(offered, ", ")))
		return false, nil
	}
	s.authStarted = s.srv.cfg.Now() // before the credentials are read
	mech, err := sasl.New(name, sasl.Options{
		TLS:                s.t.tlsState(),
		ServerCert:         s.srv.certDER,
		AdvertisePlus:      len(sasl.Bindings(s.t.tlsState(), s.srv.certDER)) > 0,
		Lookup:             s.srv.lookup,
		Normalize:          s.srv.normalizeUser,
		FakeKey:            s.srv.fakeKey,
		Iterations:         s.srv.cfg.SCRAMIterations,
		ClientLacksBinding: s.cbUnsupported,
		Domain:             s.srv.cfg.Domain,
		// Asked before any proof or password is checked.
		Admit: func(user string) *sasl.Failure {
			r, _ := s.srv.limiter.Check(user, addr)
			if r == loginlimit.Allowed {
				return nil
			}
			s.log.Info("login throttled", "user", user, "why", r.String())
			return &sasl.Failure{Condition: "temporary-auth-failure", Text: r.String() + "; try again later"}
		},
	})
	if err != nil {
		var f *sasl.Failure
		if errors.As(err, &f) {
			s.writeDirect(saslFailure(f.Condition, f.Text))
			return false, nil
		}
		return false, err
	}
	in, ok := decodeSASL(auth.Text())
	for {
		if !ok {
			s.writeDirect(saslFailure("incorrect-encoding", "the payload is not base64"))
			return false, nil
		}
		out, done, err := mech.Step(ctx, in)
		if err != nil {
			var f *sasl.Failure
			if errors.As(err, &f) && f.UnsupportedBinding {
				s.cbUnsupported = true
			}
			if !errors.As(err, &f) {
				s.log.Error("authentication backend failed", "err", err)
				s.writeDirect(saslFailure("temporary-auth-failure", "the server could not check your password; try again"))
				return false, nil
			}
			if f.Condition == "not-authorized" {
				s.srv.limiter.Fail(f.Username, addr)
				s.srv.metrics.authFailures.Inc()
				s.log.Info("failed login", "user", f.Username)
			}
			s.writeDirect(saslFailure(f.Condition, f.Text))
			return false, nil
		}
		if done {
			s.negotiated()
			s.user = mech.Username()
			s.srv.limiter.Succeed(s.user, addr)
			if p, ok := mech.(interface{ Password() string }); ok && p.Password() != "" {
				s.upgradeVerifiers(ctx, p.Password())
			}
			succ := stanza.New(nsSASL, "success")
			if len(out) > 0 {
				succ.SetText(base64.StdEncoding.EncodeToString(out))
			}
			s.writeDirect(succ)
			s.log = s.log.With("user", s.user)
			return true, nil
		}
		ch := stanza.New(nsSASL, "challenge")
		if len(out) > 0 {
			ch.SetText(base64.StdEncoding.EncodeToString(out))
		}
		s.writeDirect(ch)
		ev, err := s.read()
		if err != nil {
			return false, err
		}
		if ev.el == nil {
			return false, streamErr("bad-format", "SASL response expected")
		}
		switch {
		case ev.el.Space == nsSASL && ev.el.Local == "response":
			in, ok = decodeSASL(ev.el.Text())
		case ev.el.Space == nsSASL && ev.el.Local == "abort":
			s.writeDirect(saslFailure("aborted", ""))
			return false, nil
		default:
			return false, streamErr("not-authorized", "SASL exchange in progress")
		}
	}
}

func decodeSASL(text string) ([]byte, bool) {
	text = strings.TrimSpace(text)
	if text == "" || text == "=" {
		return nil, true
	}
	b, err := base64.StdEncoding.DecodeString(text)
	return b, err == nil
}

// bindIQ handles IQs after SASL and before binding.
func (s *Session) bindIQ(ctx context.Context, iq *stanza.Element) (bool, error) {
	b := iq.Child(nsBind, "bind")
	if b == nil || iq.IQType() != stanza.SetIQ {
		if iq.IQType() == stanza.GetIQ || iq.IQType() == stanza.SetIQ {
			s.writeDirect(stanza.ErrorReply(iq, stanza.NotAllowed, "bind a resource first"))
		}
		return false, nil
	}
	res := strings.TrimSpace(b.ChildText(nsBind, "resource"))
	if res == "" {
		r := make([]byte, 6)
		_, _ = rand.Read(r)
		res = "poosms-" + hex.EncodeToString(r)
	}
	j, err := jid.New(s.user, s.srv.cfg.Domain, res)
	if err != nil {
		s.writeDirect(stanza.ErrorReply(iq, stanza.BadRequest, "the resource is not valid: "+err.Error()))
		return false, nil
	}
	s.setJID(j)
	if !s.q.open() {
		return false, errClientClosed
	}
	s.writerDone = make(chan struct{})
	old, err := s.srv.register(s)
	if err != nil {
		s.q.unopen()
		s.writerDone = nil
		if errors.Is(err, errAccountEnded) {
			return false, streamErr("not-authorized", "the account was deleted")
		}
		s.writeDirect(stanza.ErrorReply(iq, stanza.ResourceConstraint, err.Error()))
		return false, nil
	}
	// From here Send queues stanzas. The services learn of the session
	// before the client sees the bind result, so nothing sent to the new
	// JID is lost; the writer starts after the result, so the result comes
	// first on the wire.
	s.wmu.Lock()
	s.attachLocked(s.t)
	s.wmu.Unlock()
	s.bound.Store(true)
	if old != nil {
		old.Stop("conflict", "replaced by a new login with the same resource")
	}
	s.log = s.log.With("jid", j.String())
	s.srv.router.bound(ctx, s)
	s.writeDirect(stanza.Result(iq, stanza.New(nsBind, "bind").Append(stanza.New(nsBind, "jid").SetText(j.String()))))
	s.srv.wg.Add(1)
	go s.writer()
	s.log.Debug("session bound")
	return true, nil
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

func isLoopback(a net.Addr) bool {
	ip := net.ParseIP(hostOf(a))
	return ip != nil && ip.IsLoopback()
}
