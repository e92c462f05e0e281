package pie

import (
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/stanza"
	"poosms.org/poosms/store"
)

// credentialsOf derives the verifiers poosms keeps from what a <user/>
// carries, and names what they came from (see Stats.Credentials):
//
//   - a password attribute (Prosody with plain storage, ejabberd's default):
//     both verifiers, derived here with a new salt;
//   - <scram-credentials/> for SCRAM-SHA-1 and/or SCRAM-SHA-256 (Prosody's
//     and ejabberd's hashed storage): those verifiers as they are. An
//     account with only SCRAM-SHA-1 logs in with SCRAM-SHA-1 and PLAIN;
//     its SCRAM-SHA-256 logins fail like a wrong password until a PLAIN
//     login or a password change derives the missing verifier.
//
// problem, when not empty, says what was wrong and left out.
func credentialsOf(u *stanza.Element, iterations int) (c store.Credentials, kind, problem string) {
	if pw := u.Attr("password"); pw != "" {
		salt := make([]byte, 16)
		if _, err := rand.Read(salt); err == nil {
			if iterations <= 0 {
				iterations = sasl.DefaultIterations
			}
			if c, err = sasl.Derive(pw, salt, iterations); err == nil {
				return c, "password", ""
			}
		}
		problem = "the password could not be turned into verifiers"
	}
	var found []scramData
	for _, el := range u.Elements() {
		if el.Space != NSScram || el.Local != "scram-credentials" {
			continue
		}
		d, err := readSCRAM(el)
		if err != nil {
			problem = err.Error()
			continue
		}
		found = append(found, d)
	}
	var sha1d, sha256d *scramData
	for i := range found {
		if found[i].sha256 {
			sha256d = &found[i]
		} else {
			sha1d = &found[i]
		}
	}
	switch {
	case sha1d != nil && sha256d != nil && sha1d.sameFactors(sha256d):
		c = sha256d.credentials()
		c.StoredKeySHA1, c.ServerKeySHA1 = sha1d.stored, sha1d.server
		return c, "SCRAM-SHA-1+SCRAM-SHA-256", problem
	case sha256d != nil:
		if sha1d != nil {
			problem = "SCRAM-SHA-1 and SCRAM-SHA-256 data have different salts; only SCRAM-SHA-256 is kept (poosms keeps one salt per account)"
		}
		return sha256d.credentials(), "SCRAM-SHA-256", problem
	case sha1d != nil:
		return sha1d.credentials(), "SCRAM-SHA-1", problem
	}
	if problem == "" {
		problem = "no password or SCRAM data: set a password with poosmsd user passwd"
	}
	return store.Credentials{}, "none", problem
}

// scramData is one <scram-credentials/>.
type scramData struct {
	sha256         bool
	iterations     int
	salt           []byte
	stored, server []byte
}

func (d *scramData) sameFactors(o *scramData) bool {
	return d.iterations == o.iterations && string(d.salt) == string(o.salt)
}

func (d *scramData) credentials() store.Credentials {
	c := store.Credentials{Salt: d.salt, Iterations: d.iterations}
	if d.sha256 {
		c.StoredKeySHA256, c.ServerKeySHA256 = d.stored, d.server
	} else {
		c.StoredKeySHA1, c.ServerKeySHA1 = d.stored, d.server
	}
	return c
}

// readSCRAM reads one <scram-credentials/>. ejabberd 23.01 writes each
// value base64-encoded twice; the keys' known lengths tell which, and the
// salt is then decoded twice too.
func readSCRAM(el *stanza.Element) (scramData, error) {
	var d scramData
	mech := el.Attr("mechanism")
	switch strings.TrimSuffix(strings.ToUpper(mech), "-PLUS") {
	case "SCRAM-SHA-1":
	case "SCRAM-SHA-256":
		d.sha256 = true
	default:
		return d, fmt.Errorf("SCRAM data for %q left out: poosms keeps SCRAM-SHA-1 and SCRAM-SHA-256", mech)
	}
	text := func(local string) string { return strings.TrimSpace(el.ChildText(NSScram, local)) }
	n, err := strconv.Atoi(text("iter-count"))
	if err != nil || n < 1 || n > 10_000_000 {
		return d, fmt.Errorf("%s data left out: iter-count %q", mech, text("iter-count"))
	}
	d.iterations = n
	size := sha1.Size
	if d.sha256 {
		size = sha256.Size
	}
	var twice bool
	if d.stored, twice, err = decodeKey(text("stored-key"), size); err != nil {
		return d, fmt.Errorf("%s data left out: stored-key: %v", mech, err)
	}
	var twice2 bool
	if d.server, twice2, err = decodeKey(text("server-key"), size); err != nil || twice2 != twice {
		return d, fmt.Errorf("%s data left out: server-key does not match stored-key's encoding", mech)
	}
	if d.salt, err = base64.StdEncoding.DecodeString(text("salt")); err == nil && twice {
		d.salt, err = base64.StdEncoding.DecodeString(string(d.salt))
	}
	if err != nil || len(d.salt) == 0 {
		return d, fmt.Errorf("%s data left out: salt is not base64", mech)
	}
	return d, nil
}

// decodeKey decodes a base64 key of size bytes, or one encoded twice.
func decodeKey(s string, size int) (key []byte, twice bool, err error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false, fmt.Errorf("not base64")
	}
	if len(b) == size {
		return b, false, nil
	}
	if b2, err := base64.StdEncoding.DecodeString(string(b)); err == nil && len(b2) == size {
		return b2, true, nil
	}
	return nil, false, fmt.Errorf("want %d bytes, base64-encoded", size)
}
