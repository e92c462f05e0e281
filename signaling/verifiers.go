package signaling

import (
	"context"
	"crypto/rand"

	"poosms.org/poosms/signaling/sasl"
)

// deriveMissingVerifier completes the verifiers of an account imported
// with only one of them (see poosmsd import), from the password a PLAIN
// login has just proved, so that its SCRAM-SHA-256 logins work from now
// on. A password change made meanwhile is left alone.
func (s *Session) deriveMissingVerifier(ctx context.Context, password string) {
	reg := s.srv.cfg.Registrar
	old, err := s.srv.lookup(ctx, s.user)
	if reg == nil || err != nil || !sasl.MissingVerifier(old) {
		return
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return
	}
	c, err := sasl.Derive(password, salt, max(old.Iterations, sasl.DefaultIterations))
	if err != nil {
		return
	}
	if now, err := s.srv.lookup(ctx, s.user); err != nil || string(now.Salt) != string(old.Salt) {
		return
	}
	if err := reg.SetCredentials(ctx, s.user, c); err != nil {
		s.log.Error("derive the missing SCRAM verifier", "err", err)
		return
	}
	s.log.Info("derived the missing SCRAM verifier at a PLAIN login")
}
