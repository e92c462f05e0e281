package sasl

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash"
	"strings"

	"github.com/xdg-go/scram"

	"poosms.org/poosms/store"
)

// Mechanism names offered by poosms, strongest first.
const (
	ScramSHA256Plus = "SCRAM-SHA-256-PLUS"
	ScramSHA1Plus   = "SCRAM-SHA-1-PLUS"
	ScramSHA256     = "SCRAM-SHA-256"
	ScramSHA1       = "SCRAM-SHA-1"
	Plain           = "PLAIN"
)

// Channel-binding types poosms supports (RFC 9266, RFC 5929).
const (
	BindingExporter       = "tls-exporter"
	BindingServerEndPoint = "tls-server-end-point"
)

// Failure is a SASL failure with its RFC 6120 §6.5 condition.
type Failure struct {
	Condition string // e.g. "not-authorized", "malformed-request"
	Text      string
	Username  string // the normalised user the attempt was for, if known
}

func (f *Failure) Error() string {
	if f.Text != "" {
		return "sasl: " + f.Condition + ": " + f.Text
	}
	return "sasl: " + f.Condition
}

func fail(cond, text string) *Failure { return &Failure{Condition: cond, Text: text} }

// Lookup returns the stored credentials for a normalised username, or an
// error wrapping store.ErrNotFound.
type Lookup func(ctx context.Context, username string) (store.Credentials, error)

// Normalize maps the username a client sends to the stored form (PRECIS
// UsernameCaseMapped through the JID rules) or reports it invalid.
type Normalize func(username string) (string, error)

// Options describe the connection a mechanism runs on.
type Options struct {
	TLS           *tls.ConnectionState // nil without TLS
	ServerCert    []byte               // DER of the server's certificate, for tls-server-end-point
	AdvertisePlus bool                 // -PLUS variants were offered on this stream
	Lookup        Lookup
	Normalize     Normalize
	// FakeKey derives credentials for unknown users so that a login for a
	// name that does not exist looks like one with a wrong password.
	FakeKey []byte
}

// Mechanism runs one SASL exchange on the server side.
type Mechanism interface {
	// Step consumes the client's next message and returns the server's
	// reply. done is true when the exchange succeeded; out then holds the
	// additional data for <success/>. A *Failure error ends the exchange.
	Step(ctx context.Context, in []byte) (out []byte, done bool, err error)
	// Username is the authenticated (normalised) username once done.
	Username() string
}

// Offered lists the mechanisms to advertise on a connection.
func Offered(tlsState *tls.ConnectionState, serverCert []byte, allowPlain bool) []string {
	var m []string
	if tlsState != nil && len(Bindings(tlsState, serverCert)) > 0 {
		m = append(m, ScramSHA256Plus, ScramSHA1Plus)
	}
	m = append(m, ScramSHA256, ScramSHA1)
	if tlsState != nil && allowPlain {
		m = append(m, Plain)
	}
	return m
}

// Bindings lists the channel-binding types available on a TLS connection
// whose server certificate is serverCert (DER).
func Bindings(st *tls.ConnectionState, serverCert []byte) []string {
	if st == nil {
		return nil
	}
	var out []string
	if _, err := scram.NewTLSExporterBinding(st); err == nil {
		out = append(out, BindingExporter)
	}
	if _, err := serverEndPoint(serverCert); err == nil {
		out = append(out, BindingServerEndPoint)
	}
	return out
}

// serverEndPoint is the tls-server-end-point binding (RFC 5929 §4.1): the
// hash of the server certificate with its signature's hash, SHA-256 when
// that is MD5 or SHA-1.
func serverEndPoint(der []byte) (scram.ChannelBinding, error) {
	if len(der) == 0 {
		return scram.ChannelBinding{}, errors.New("no server certificate")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return scram.ChannelBinding{}, fmt.Errorf("parse server certificate: %w", err)
	}
	var h hash.Hash
	switch cert.SignatureAlgorithm {
	case x509.SHA384WithRSA, x509.ECDSAWithSHA384, x509.SHA384WithRSAPSS:
		h = sha512.New384()
	case x509.SHA512WithRSA, x509.ECDSAWithSHA512, x509.SHA512WithRSAPSS:
		h = sha512.New()
	case x509.PureEd25519:
		return scram.ChannelBinding{}, errors.New("tls-server-end-point is undefined for Ed25519 certificates")
	default:
		h = sha256.New()
	}
	h.Write(der)
	return scram.ChannelBinding{Type: scram.ChannelBindingType(BindingServerEndPoint), Data: h.Sum(nil)}, nil
}

// New returns the server side of mechanism name, or a Failure with
// invalid-mechanism.
func New(name string, opt Options) (Mechanism, error) {
	switch name {
	case ScramSHA256, ScramSHA256Plus:
		return &scramMech{hash: scram.SHA256, sha256: true, plus: name == ScramSHA256Plus, opt: opt}, nil
	case ScramSHA1, ScramSHA1Plus:
		return &scramMech{hash: scram.SHA1, plus: name == ScramSHA1Plus, opt: opt}, nil
	case Plain:
		if opt.TLS == nil {
			return nil, fail("encryption-required", "PLAIN is only accepted over TLS")
		}
		return &plainMech{opt: opt}, nil
	}
	return nil, fail("invalid-mechanism", "unsupported mechanism "+name)
}

type scramMech struct {
	hash   scram.HashGeneratorFcn
	sha256 bool
	plus   bool
	opt    Options
	conv   *scram.ServerConversation
	user   string
	done   bool
}

func (m *scramMech) Username() string { return m.user }

func (m *scramMech) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if m.done {
		return nil, false, fail("malformed-request", "exchange already complete")
	}
	if m.conv == nil {
		if err := m.start(ctx, string(in)); err != nil {
			return nil, false, err
		}
	}
	out, err := m.conv.Step(string(in))
	if err != nil {
		return nil, false, m.mapError(out, err)
	}
	if m.conv.Done() {
		if !m.conv.Valid() {
			return nil, false, &Failure{Condition: "not-authorized", Username: m.user}
		}
		m.done = true
		return []byte(out), true, nil
	}
	return []byte(out), false, nil
}

// start inspects the GS2 header of the client-first message, checks it
// against the chosen mechanism and prepares the conversation with the
// matching channel binding.
func (m *scramMech) start(ctx context.Context, first string) error {
	flag, rest, ok := strings.Cut(first, ",")
	if !ok || first == "" {
		return fail("malformed-request", "SCRAM client-first message expected")
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return fail("malformed-request", "SCRAM GS2 header incomplete")
	}
	if authzid != "" && !strings.HasPrefix(authzid, "a=") {
		return fail("malformed-request", "SCRAM GS2 authzid malformed")
	}
	// Find the user name now so failures can be throttled per account.
	for _, f := range strings.Split(bare, ",") {
		if name, ok := strings.CutPrefix(f, "n="); ok {
			name = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(name)
			if norm, err := m.opt.Normalize(name); err == nil {
				m.user = norm
			} else {
				m.user = name
			}
		}
	}
	server, err := m.hash.NewServer(m.lookup(ctx))
	if err != nil {
		return fmt.Errorf("sasl: new scram server: %w", err)
	}
	switch {
	case strings.HasPrefix(flag, "p="):
		if !m.plus {
			return fail("malformed-request", "channel binding requested with a mechanism that has none; use the -PLUS variant")
		}
		typ := strings.TrimPrefix(flag, "p=")
		var cb scram.ChannelBinding
		switch typ {
		case BindingExporter:
			cb, err = scram.NewTLSExporterBinding(m.opt.TLS)
		case BindingServerEndPoint:
			cb, err = serverEndPoint(m.opt.ServerCert)
		default:
			return fail("malformed-request", "unsupported channel binding type "+typ)
		}
		if err != nil || m.opt.TLS == nil {
			return fail("malformed-request", "channel binding "+typ+" is not available on this connection")
		}
		m.conv = server.NewConversationWithChannelBindingRequired(cb)
	case flag == "n" || flag == "y":
		if m.plus {
			return fail("malformed-request", "a -PLUS mechanism needs channel binding (p=TYPE)")
		}
		// "y" (the client binds, but thinks the server cannot) is accepted
		// like "n": clients that only know tls-unique, which TLS 1.3 lacks
		// and poosms does not offer, send it honestly. The -PLUS variants
		// remain the protection against a stripped mechanism list.
		m.conv = server.NewConversation()
	default:
		return fail("malformed-request", "SCRAM GS2 flag must be n, y or p=TYPE")
	}
	return nil
}

func (m *scramMech) lookup(ctx context.Context) scram.CredentialLookup {
	return func(name string) (scram.StoredCredentials, error) {
		norm, err := m.opt.Normalize(name)
		if err != nil {
			return m.fake(name), nil
		}
		c, err := m.opt.Lookup(ctx, norm)
		if errors.Is(err, store.ErrNotFound) {
			return m.fake(norm), nil
		}
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		sc := scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations}}
		if m.sha256 {
			sc.StoredKey, sc.ServerKey = c.StoredKeySHA256, c.ServerKeySHA256
		} else {
			sc.StoredKey, sc.ServerKey = c.StoredKeySHA1, c.ServerKeySHA1
		}
		return sc, nil
	}
}

// fake returns stable, unguessable credentials for a user that does not
// exist, so the exchange fails only at the proof, like a wrong password.
func (m *scramMech) fake(name string) scram.StoredCredentials {
	derive := func(label string) []byte {
		mac := hmac.New(sha256.New, m.opt.FakeKey)
		mac.Write([]byte(label))
		mac.Write([]byte(name))
		return mac.Sum(nil)
	}
	n := sha1.Size
	if m.sha256 {
		n = sha256.Size
	}
	return scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(derive("salt")[:16]), Iters: DefaultIterations},
		StoredKey:  derive("stored")[:n],
		ServerKey:  derive("server")[:n],
	}
}

func (m *scramMech) mapError(out string, err error) error {
	switch out {
	case scram.ErrInvalidProof:
		return &Failure{Condition: "not-authorized", Username: m.user}
	case scram.ErrChannelBindingsDontMatch:
		return &Failure{Condition: "not-authorized", Text: "channel binding does not match", Username: m.user}
	case scram.ErrServerDoesSupportChannelBinding:
		return &Failure{Condition: "not-authorized", Text: "channel binding downgrade refused", Username: m.user}
	case scram.ErrUnknownUser:
		// Lookup only fails for store errors: unknown users get fake keys.
		return fmt.Errorf("sasl: scram credentials: %w", err)
	}
	return &Failure{Condition: "malformed-request", Text: err.Error(), Username: m.user}
}

type plainMech struct {
	opt  Options
	user string
}

func (m *plainMech) Username() string { return m.user }

func (m *plainMech) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	parts := strings.Split(string(in), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return nil, false, fail("malformed-request", "PLAIN wants authzid NUL user NUL password")
	}
	norm, err := m.opt.Normalize(parts[1])
	if err != nil {
		return nil, false, &Failure{Condition: "not-authorized", Username: parts[1]}
	}
	m.user = norm
	c, err := m.opt.Lookup(ctx, norm)
	if errors.Is(err, store.ErrNotFound) {
		return nil, false, &Failure{Condition: "not-authorized", Username: norm}
	}
	if err != nil {
		return nil, false, fmt.Errorf("sasl: plain lookup: %w", err)
	}
	if !CheckPassword(c, parts[2]) {
		return nil, false, &Failure{Condition: "not-authorized", Username: norm}
	}
	if parts[0] != "" {
		if az, ok := strings.CutPrefix(parts[0], norm+"@"); !ok || strings.Contains(az, "/") {
			return nil, false, &Failure{Condition: "invalid-authzid", Username: norm}
		}
	}
	return nil, true, nil
}

// CheckPassword reports whether password matches the stored verifiers.
func CheckPassword(c store.Credentials, password string) bool {
	cl, err := scram.SHA256.NewClient("", password, "")
	if err != nil {
		return false
	}
	sc := cl.GetStoredCredentials(scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations})
	return subtle.ConstantTimeCompare(sc.StoredKey, c.StoredKeySHA256) == 1
}
