package signaling

import (
	"context"
	"errors"
	"strings"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// XEP-0077 in-band registration: creating an account before logging in
// (when the operator allows it), changing one's password and removing
// one's account after.
const (
	nsRegister        = "jabber:iq:register"
	nsRegisterFeature = "http://jabber.org/features/iq-register"
)

// Registrar creates, changes and removes accounts. DeleteAccount deletes
// an account for good, with everything that names it, and ends its other
// sessions (through Server.EndUser on every node); it returns
// store.ErrNotFound for an account that does not exist.
// UpgradeCredentials replaces weak verifiers after a login that showed
// the password (see sasl.Upgrade).
type Registrar interface {
	CreateAccount(ctx context.Context, username string, c store.Credentials) error
	SetCredentials(ctx context.Context, username string, c store.Credentials) error
	DeleteAccount(ctx context.Context, username string) error
	sasl.Upgrader
}

func registerQuery(children ...*stanza.Element) *stanza.Element {
	return stanza.New(nsRegister, "query").Append(children...)
}

// offersRegistration: the stream may create accounts now.
func (s *Session) offersRegistration() bool {
	return s.srv.cfg.InBandRegistration && s.srv.cfg.Registrar != nil && s.mayAuthenticate()
}

// registerBeforeAuth answers jabber:iq:register IQs before authentication.
func (s *Session) registerBeforeAuth(ctx context.Context, iq *stanza.Element) {
	if !s.offersRegistration() {
		s.writeDirect(stanza.ErrorReply(iq, stanza.NotAllowed, "registration on the stream is closed; ask the operator"))
		return
	}
	q := iq.Child(nsRegister, "query")
	switch iq.Type() {
	case "get":
		s.writeDirect(stanza.Result(iq, registerQuery(
			stanza.New(nsRegister, "instructions").SetText("Choose a user name and a password of at least 8 characters."),
			stanza.New(nsRegister, "username"),
			stanza.New(nsRegister, "password"),
		)))
	case "set":
		addr := clientaddr.KeyOf(s.t.remoteAddr())
		if s.srv.registrations.blocked(addr) {
			s.writeDirect(stanza.ErrorReply(iq, stanza.ResourceConstraint, "too many registrations from your address; try again later"))
			return
		}
		if q.Child(nsRegister, "remove") != nil {
			s.writeDirect(stanza.ErrorReply(iq, stanza.NotAllowed, "log in to remove your account"))
			return
		}
		name, err := s.srv.normalizeUser(strings.TrimSpace(q.ChildText(nsRegister, "username")))
		if err != nil || name == "" || len(name) > 64 {
			s.writeDirect(stanza.ErrorReply(iq, stanza.NotAcceptable, "the user name is not valid: letters, digits and most symbols except @ / : ' \" & < > and spaces, at most 64 bytes"))
			return
		}
		cred, err := sasl.NewCredentials(q.ChildText(nsRegister, "password"), s.srv.cfg.SCRAMIterations)
		if err != nil {
			s.writeDirect(stanza.ErrorReply(iq, stanza.NotAcceptable, err.Error()))
			return
		}
		s.srv.registrations.fail(addr) // counts every creation attempt
		switch err := s.srv.cfg.Registrar.CreateAccount(ctx, name, cred); {
		case errors.Is(err, store.ErrExists):
			s.writeDirect(stanza.ErrorReply(iq, stanza.Conflict, "that user name is taken"))
		case err != nil:
			s.log.Error("in-band registration", "err", err)
			s.writeDirect(stanza.ErrorReply(iq, stanza.InternalServerError, "the account could not be created; try again"))
		default:
			s.log.Info("account registered in band", "user", name)
			s.writeDirect(stanza.Result(iq))
		}
	}
}

// accountIQ answers jabber:iq:register IQs from a logged-in user to the
// server: password change and account removal. It reports whether the
// session must end (the account is gone).
func (s *Session) accountIQ(ctx context.Context, iq *stanza.Element) (handled, removed bool) {
	q := iq.Child(nsRegister, "query")
	if q == nil || iq.Local != "iq" || (iq.To() != "" && iq.To() != s.srv.cfg.Domain) {
		return false, false
	}
	reg := s.srv.cfg.Registrar
	switch {
	case iq.IQType() == stanza.GetIQ:
		_ = s.Send(stanza.Result(iq, registerQuery(
			stanza.New(nsRegister, "registered"),
			stanza.New(nsRegister, "username").SetText(s.user),
		)))
	case iq.IQType() != stanza.SetIQ:
		return true, false
	case reg == nil:
		_ = s.Send(stanza.ErrorReply(iq, stanza.ServiceUnavailable, ""))
	case q.Child(nsRegister, "remove") != nil:
		// This session answers and ends itself; the deletion ends the
		// account's other sessions.
		s.removing.Store(true)
		if err := reg.DeleteAccount(ctx, s.user); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.removing.Store(false)
			s.accountGone.Store(false)
			s.log.Error("remove account", "err", err)
			_ = s.Send(stanza.ErrorReply(iq, stanza.InternalServerError, "the account could not be removed; try again"))
			return true, false
		}
		s.accountGone.Store(true)
		s.log.Info("account removed by its owner")
		_ = s.Send(stanza.Result(iq))
		return true, true
	default:
		if u := q.ChildText(nsRegister, "username"); u != "" {
			if norm, err := s.srv.normalizeUser(u); err != nil || norm != s.user {
				_ = s.Send(stanza.ErrorReply(iq, stanza.NotAllowed, "you can only change your own password"))
				return true, false
			}
		}
		cred, err := sasl.NewCredentials(q.ChildText(nsRegister, "password"), s.srv.cfg.SCRAMIterations)
		if err != nil {
			_ = s.Send(stanza.ErrorReply(iq, stanza.NotAcceptable, err.Error()))
			return true, false
		}
		if err := reg.SetCredentials(ctx, s.user, cred); err != nil {
			s.log.Error("change password", "err", err)
			_ = s.Send(stanza.ErrorReply(iq, stanza.InternalServerError, "the password could not be changed; try again"))
			return true, false
		}
		s.log.Info("password changed in band")
		_ = s.Send(stanza.Result(iq))
	}
	return true, false
}

// upgradeVerifiers derives user's verifiers again with the configured
// iteration count when the stored ones have fewer, now that a login has
// shown the password.
func (s *Session) upgradeVerifiers(ctx context.Context, password string) {
	reg := s.srv.cfg.Registrar
	if reg == nil {
		return
	}
	old, err := s.srv.lookup(ctx, s.user)
	if err != nil {
		return
	}
	done, err := sasl.Upgrade(ctx, reg, s.user, old, password, s.srv.cfg.SCRAMIterations)
	switch {
	case err != nil:
		s.log.Error("upgrade the account's verifiers", "err", err)
	case done:
		s.log.Info("verifiers upgraded", "from_iterations", old.Iterations, "to_iterations", s.srv.cfg.SCRAMIterations)
	}
}
