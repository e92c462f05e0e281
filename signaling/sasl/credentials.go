// Package sasl holds poosms's SASL mechanisms (SCRAM-SHA-256, SCRAM-SHA-1,
// their -PLUS variants, PLAIN) and the derivation of the SCRAM verifiers
// that are stored instead of passwords.
package sasl

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/xdg-go/scram"

	"poosms.org/poosms/store"
)

// PBKDF2 iteration counts of the SCRAM verifiers.
const (
	// DefaultIterations is the count for new verifiers when none is
	// configured (--scram-iterations).
	DefaultIterations = 10000
	// MinIterations is the least count poosms creates or accepts in
	// configuration, RFC 7677's minimum. Older accounts may hold it; they
	// are upgraded when a login shows the password (see NeedsUpgrade).
	MinIterations = 4096
)

// NeedsUpgrade reports whether stored verifiers were derived with fewer
// iterations than the configured count and should be derived again the
// next time the password is known.
func NeedsUpgrade(c store.Credentials, iterations int) bool {
	return c.Iterations < effectiveIterations(iterations) || MissingVerifier(c)
}

// effectiveIterations is iterations, or DefaultIterations when it is
// below the minimum (zero: not configured).
func effectiveIterations(iterations int) int {
	if iterations < MinIterations {
		return DefaultIterations
	}
	return iterations
}

// derivations, when set, is told of every PBKDF2 derivation that checks a
// password; see ObserveDerivations.
var derivations atomic.Pointer[func(iterations int)]

// ObserveDerivations calls fn with the iteration count of every PBKDF2
// derivation made to check a password, until stop is called. Tests use it
// to show that a login for an unknown user costs the same work as one for
// a real account; only one observer is active at a time.
func ObserveDerivations(fn func(iterations int)) (stop func()) {
	derivations.Store(&fn)
	return func() { derivations.Store(nil) }
}

// MinPasswordLength is the shortest password poosms accepts.
const MinPasswordLength = 8

// ErrPasswordTooShort is returned for passwords under MinPasswordLength.
var ErrPasswordTooShort = fmt.Errorf("password must be at least %d characters", MinPasswordLength)

// NewCredentials derives SCRAM-SHA-1 and SCRAM-SHA-256 verifiers for
// password with a fresh random salt and iterations PBKDF2 rounds
// (DefaultIterations when below MinIterations).
func NewCredentials(password string, iterations int) (store.Credentials, error) {
	if password == "" {
		return store.Credentials{}, errors.New("password is empty")
	}
	if len([]rune(password)) < MinPasswordLength {
		return store.Credentials{}, ErrPasswordTooShort
	}
	iterations = effectiveIterations(iterations)
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return store.Credentials{}, fmt.Errorf("sasl: salt: %w", err)
	}
	return Derive(password, salt, iterations)
}

// Derive computes the SCRAM-SHA-1 and SCRAM-SHA-256 verifiers of password
// with salt and iterations, applying no rule to the password: accounts
// imported from another server keep the passwords they had.
func Derive(password string, salt []byte, iterations int) (store.Credentials, error) {
	kf := scram.KeyFactors{Salt: string(salt), Iters: iterations}
	c := store.Credentials{Salt: salt, Iterations: iterations}
	for _, h := range []struct {
		fn             scram.HashGeneratorFcn
		stored, server *[]byte
	}{
		{scram.SHA1, &c.StoredKeySHA1, &c.ServerKeySHA1},
		{scram.SHA256, &c.StoredKeySHA256, &c.ServerKeySHA256},
	} {
		cl, err := h.fn.NewClient("", password, "")
		if err != nil {
			return store.Credentials{}, fmt.Errorf("sasl: prepare password: %w", err)
		}
		sc, err := cl.GetStoredCredentialsWithError(kf)
		if err != nil {
			return store.Credentials{}, fmt.Errorf("sasl: derive keys: %w", err)
		}
		*h.stored = sc.StoredKey
		*h.server = sc.ServerKey
	}
	return c, nil
}

// Upgrader stores verifiers derived again for an account, only over the
// ones they replace (store.DB.UpgradeCredentials).
type Upgrader interface {
	UpgradeCredentials(ctx context.Context, username string, old, c store.Credentials) error
}

// Upgrade derives user's verifiers again from password, just proved
// against old, when old has fewer than iterations rounds or lacks one of
// the two verifiers (an imported account), and stores them
// unless the account changed meanwhile. It reports whether it did.
func Upgrade(ctx context.Context, u Upgrader, user string, old store.Credentials, password string, iterations int) (bool, error) {
	if !NeedsUpgrade(old, iterations) {
		return false, nil
	}
	// The password was just proved, so it is derived as it is, even when
	// it predates today's length rule (an imported account).
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return false, fmt.Errorf("sasl: salt: %w", err)
	}
	c, err := Derive(password, salt, max(effectiveIterations(iterations), old.Iterations))
	if err != nil {
		return false, nil
	}
	if err := u.UpgradeCredentials(ctx, user, old, c); errors.Is(err, store.ErrNotFound) {
		return false, nil // deleted or changed meanwhile: the newer state wins
	} else if err != nil {
		return false, fmt.Errorf("sasl: upgrade verifiers: %w", err)
	}
	return true, nil
}
