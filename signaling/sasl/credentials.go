// Package sasl holds poosms's SASL mechanisms (SCRAM-SHA-256, SCRAM-SHA-1,
// their -PLUS variants, PLAIN) and the derivation of the SCRAM verifiers
// that are stored instead of passwords.
package sasl

import (
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/xdg-go/scram"

	"poosms.org/poosms/store"
)

// DefaultIterations is the PBKDF2 iteration count for new verifiers.
const DefaultIterations = 4096

// MinPasswordLength is the shortest password poosms accepts.
const MinPasswordLength = 8

// ErrPasswordTooShort is returned for passwords under MinPasswordLength.
var ErrPasswordTooShort = fmt.Errorf("password must be at least %d characters", MinPasswordLength)

// NewCredentials derives SCRAM-SHA-1 and SCRAM-SHA-256 verifiers for
// password with a fresh random salt.
func NewCredentials(password string, iterations int) (store.Credentials, error) {
	if password == "" {
		return store.Credentials{}, errors.New("password is empty")
	}
	if len([]rune(password)) < MinPasswordLength {
		return store.Credentials{}, ErrPasswordTooShort
	}
	if iterations < DefaultIterations {
		iterations = DefaultIterations
	}
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
		sc := cl.GetStoredCredentials(kf)
		*h.stored = sc.StoredKey
		*h.server = sc.ServerKey
	}
	return c, nil
}
