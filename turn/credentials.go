package turn

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST credential form specifies.
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SecretFile is the name of the file, inside the data directory, that
// holds the generated credential secret.
const SecretFile = "turn.secret"

// secretLen is the number of random bytes in a generated secret.
const secretLen = 32

// Credentials are time-limited TURN credentials in the REST form:
// Username is "EXPIRY:USER" with EXPIRY in unix seconds, and Password is
// base64(HMAC-SHA1(secret, Username)).
type Credentials struct {
	Username string    `json:"username"`
	Password string    `json:"password"`
	Expires  time.Time `json:"expires"`
}

// NewCredentials returns credentials for user that stop being accepted
// ttl after now (rounded down to the second).
func NewCredentials(secret []byte, user string, ttl time.Duration, now time.Time) Credentials {
	expires := now.Add(ttl).Unix()
	username := strconv.FormatInt(expires, 10) + ":" + user
	return Credentials{
		Username: username,
		Password: password(secret, username),
		Expires:  time.Unix(expires, 0).UTC(),
	}
}

// password computes the password the REST form assigns to username.
func password(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// splitUsername parses "EXPIRY:USER". The user part may itself contain
// colons; it must not be empty.
func splitUsername(username string) (expires time.Time, user string, ok bool) {
	head, user, found := strings.Cut(username, ":")
	if !found || user == "" {
		return time.Time{}, "", false
	}
	secs, err := strconv.ParseInt(head, 10, 64)
	if err != nil || secs <= 0 {
		return time.Time{}, "", false
	}
	return time.Unix(secs, 0), user, true
}

// LoadOrCreateSecret returns the secret stored in dataDir/turn.secret,
// generating a random one (file mode 0600) on first use. The file holds
// the secret base64-encoded on one line.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	return LoadOrCreateSecretFile(filepath.Join(dataDir, SecretFile))
}

// LoadOrCreateSecretFile is LoadOrCreateSecret with the file's full
// path; its directory is created (mode 0700) when missing.
func LoadOrCreateSecretFile(path string) ([]byte, error) {
	secret, err := readSecret(path)
	if err == nil {
		return secret, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	secret = make([]byte, secretLen)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("turn: generate secret: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("turn: create data dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it between our read and our create.
		return readSecret(path)
	}
	if err != nil {
		return nil, fmt.Errorf("turn: create secret file: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(secret) + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("turn: write secret file: %w", err)
	}
	return secret, nil
}

func readSecret(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("turn: read secret file: %w", err)
	}
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return nil, fmt.Errorf("turn: decode secret file %s: %w", path, err)
	}
	if len(secret) == 0 {
		return nil, fmt.Errorf("turn: secret file %s is empty", path)
	}
	return secret, nil
}
