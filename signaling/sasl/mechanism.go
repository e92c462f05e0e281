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
	// UnsupportedBinding: the client asked for a channel-binding type
	// this server does not offer (see Options.ClientLacksBinding).
	UnsupportedBinding bool
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
	// Iterations is the PBKDF2 count given to unknown users' fake
	// credentials, so it matches what real accounts show.
	Iterations int
	// ClientLacksBinding: earlier on this stream the client asked a -PLUS
	// mechanism for a channel-binding type this server does not offer, so
	// its later "y" flag is no sign of a stripped mechanism list.
	ClientLacksBinding bool
	// Domain is the XMPP domain: the only authorization identity a user
	// may ask for is their own bare JID, NAME@Domain.
	Domain string
	// Admit, when set, is asked once the exchange knows the (normalised)
	// user name and before any proof or password is checked; a Failure it
	// returns ends the exchange (login throttling).
	Admit func(user string) *Failure
}

// admit asks Options.Admit about user.
func (o Options) admit(user string) *Failure {
	if o.Admit == nil {
		return nil
	}
	if f := o.Admit(user); f != nil {
		f.Username = user
		return f
	}
	return nil
}

// authzidIs reports whether authzid names the authenticated user: their
// bare JID (RFC 6120 §6.3.8), or the same username.
func (o Options) authzidIs(authzid, user string) bool {
	local, domain, ok := strings.Cut(authzid, "@")
	if !ok {
		local = authzid
	} else if !strings.EqualFold(domain, o.Domain) || o.Domain == "" {
		return false
	}
	norm, err := o.Normalize(local)
	return err == nil && norm == user
}

// FakeCredentials returns stable, unguessable verifiers for a user that
// does not exist, so every check against them fails at the same cost as
// a wrong password for a real account.
func FakeCredentials(key []byte, name string, iterations int) store.Credentials {
	derive := func(label string) []byte {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(label))
		mac.Write([]byte{0})
		mac.Write([]byte(name))
		return mac.Sum(nil)
	}
	return store.Credentials{
		Salt:            derive("salt")[:16],
		Iterations:      effectiveIterations(iterations),
		StoredKeySHA1:   derive("stored-sha1")[:sha1.Size],
		ServerKeySHA1:   derive("server-sha1")[:sha1.Size],
		StoredKeySHA256: derive("stored-sha256"),
		ServerKeySHA256: derive("server-sha256"),
	}
}

// CheckLogin checks a username and password given in the clear (PLAIN,
// the web form, /api/turn). It costs the same for unknown users as for a
// wrong password; the error is only for store failures.
func CheckLogin(ctx context.Context, opt Options, user, password string) (bool, error) {
	c, err := opt.Lookup(ctx, user)
	switch {
	case errors.Is(err, store.ErrNotFound):
		CheckPassword(FakeCredentials(opt.FakeKey, user, opt.Iterations), password)
		return false, nil
	case err != nil:
		return false, err
	}
	return CheckPassword(c, password), nil
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
	user   string // normalised, from the strict parse of client-first
	raw    string // the username exactly as the client sent it (decoded)
	nonce  string // the server's combined nonce, from server-first
	done   bool
}

func (m *scramMech) Username() string { return m.user }

func (m *scramMech) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if m.done {
		return nil, false, fail("malformed-request", "exchange already complete")
	}
	first := m.conv == nil
	if first {
		if err := m.start(ctx, string(in)); err != nil {
			return nil, false, err
		}
	} else {
		// The library checks the proof; this strict parse refuses what
		// RFC 5802 does not allow before the library sees it.
		cf, f := parseClientFinal(string(in))
		if f != nil {
			f.Username = m.user
			return nil, false, f
		}
		if cf.nonce != m.nonce {
			return nil, false, &Failure{Condition: "malformed-request", Text: "SCRAM nonce does not match", Username: m.user}
		}
	}
	out, err := m.conv.Step(string(in))
	if err != nil {
		return nil, false, m.mapError(out, err)
	}
	if first {
		// Both parsers must have read the same name: the identity that
		// signs in is the one whose verifier checks the proof.
		if m.conv.Username() != m.raw {
			return nil, false, &Failure{Condition: "malformed-request", Text: "SCRAM username is ambiguous", Username: m.user}
		}
		if r, ok := strings.CutPrefix(strings.SplitN(out, ",", 2)[0], "r="); ok {
			m.nonce = r
		}
	}
	if m.conv.Done() {
		if !m.conv.Valid() || m.conv.Username() != m.raw {
			return nil, false, &Failure{Condition: "not-authorized", Username: m.user}
		}
		m.done = true
		return []byte(out), true, nil
	}
	return []byte(out), false, nil
}

// start parses the client-first message strictly, checks its GS2 header
// against the chosen mechanism and the stream, and prepares the
// conversation with the matching channel binding.
func (m *scramMech) start(ctx context.Context, first string) error {
	cf, f := parseClientFirst(first)
	if f != nil {
		return f
	}
	m.raw = cf.user
	norm, err := m.opt.Normalize(cf.user)
	if err != nil {
		// An invalid name cannot exist: it fails at the proof like a
		// wrong password, with the same cost.
		norm = cf.user
	}
	m.user = norm
	if f := m.opt.admit(norm); f != nil {
		return f
	}
	if cf.authzid != "" && !m.opt.authzidIs(cf.authzid, norm) {
		return &Failure{Condition: "invalid-authzid", Text: "the authorization identity must be your own bare JID", Username: norm}
	}
	server, err := m.hash.NewServer(m.lookup(ctx))
	if err != nil {
		return fmt.Errorf("sasl: new scram server: %w", err)
	}
	switch cf.flag {
	case "p":
		if !m.plus {
			return fail("malformed-request", "channel binding requested with a mechanism that has none; use the -PLUS variant")
		}
		var cb scram.ChannelBinding
		switch cf.cbType {
		case BindingExporter:
			cb, err = scram.NewTLSExporterBinding(m.opt.TLS)
		case BindingServerEndPoint:
			cb, err = serverEndPoint(m.opt.ServerCert)
		default:
			f := fail("malformed-request", "unsupported channel binding type "+cf.cbType+"; this server offers "+strings.Join(Bindings(m.opt.TLS, m.opt.ServerCert), ", "))
			f.UnsupportedBinding = true
			return f
		}
		if err != nil || m.opt.TLS == nil {
			return fail("malformed-request", "channel binding "+cf.cbType+" is not available on this connection")
		}
		m.conv = server.NewConversationWithChannelBindingRequired(cb)
	case "y":
		if m.plus {
			return fail("malformed-request", "a -PLUS mechanism needs channel binding (p=TYPE)")
		}
		if m.opt.AdvertisePlus && !m.opt.ClientLacksBinding {
			// RFC 5802 §6: the client can bind and believes the server
			// cannot, yet -PLUS was offered: the mechanism list may have
			// been stripped on the way. Refuse the downgrade — unless the
			// client already tried -PLUS on this stream with a binding
			// type the server lacks (tls-unique, which TLS 1.3 does not
			// define): then no binding is possible between the two, and
			// "y" is the honest answer, not a sign of tampering.
			return &Failure{Condition: "not-authorized", Text: "channel binding downgrade refused: this server offers -PLUS mechanisms", Username: norm}
		}
		m.conv = server.NewConversation()
	default: // "n"
		if m.plus {
			return fail("malformed-request", "a -PLUS mechanism needs channel binding (p=TYPE)")
		}
		m.conv = server.NewConversation()
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
		return m.stored(c), nil
	}
}

// fake returns the SCRAM view of FakeCredentials, so the exchange for an
// unknown user fails only at the proof, like a wrong password.
func (m *scramMech) fake(name string) scram.StoredCredentials {
	return m.stored(FakeCredentials(m.opt.FakeKey, name, m.opt.Iterations))
}

// stored is the verifier of this mechanism's hash. An account without one
// (imported with only SCRAM-SHA-1 data) gets fake credentials, and so
// fails like a wrong password, until a PLAIN login derives it.
func (m *scramMech) stored(c store.Credentials) scram.StoredCredentials {
	sc := scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations}}
	if m.sha256 {
		sc.StoredKey, sc.ServerKey = c.StoredKeySHA256, c.ServerKeySHA256
	} else {
		sc.StoredKey, sc.ServerKey = c.StoredKeySHA1, c.ServerKeySHA1
	}
	if len(sc.StoredKey) == 0 && len(c.Salt) > 0 {
		return m.stored(FakeCredentials(m.opt.FakeKey, m.user, m.opt.Iterations))
	}
	return sc
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
	opt      Options
	user     string
	password string
}

func (m *plainMech) Username() string { return m.user }

func (m *plainMech) Step(ctx context.Context, in []byte) ([]byte, bool, error) {
	if m.user != "" {
		return nil, false, fail("malformed-request", "exchange already complete")
	}
	parts := strings.Split(string(in), "\x00")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return nil, false, fail("malformed-request", "PLAIN wants authzid NUL user NUL password")
	}
	norm, err := m.opt.Normalize(parts[1])
	if err != nil {
		// Same cost as a real check, so invalid names tell nothing.
		norm = parts[1]
	}
	m.user = norm
	if f := m.opt.admit(norm); f != nil {
		return nil, false, f
	}
	ok, err := CheckLogin(ctx, m.opt, norm, parts[2])
	if err != nil {
		return nil, false, fmt.Errorf("sasl: plain lookup: %w", err)
	}
	if !ok {
		return nil, false, &Failure{Condition: "not-authorized", Username: norm}
	}
	if parts[0] != "" && !m.opt.authzidIs(parts[0], norm) {
		return nil, false, &Failure{Condition: "invalid-authzid", Username: norm}
	}
	m.password = parts[2]
	return nil, true, nil
}

// Password is the password a PLAIN login proved, so the caller can
// upgrade the stored verifiers; "" for other mechanisms.
func (m *plainMech) Password() string { return m.password }

// CheckPassword reports whether password matches the stored verifiers:
// the SCRAM-SHA-256 one, or the SCRAM-SHA-1 one for an account that has
// only that (imported from a server that kept SCRAM-SHA-1 data).
func CheckPassword(c store.Credentials, password string) bool {
	h, want := scram.SHA256, c.StoredKeySHA256
	if len(want) == 0 && len(c.StoredKeySHA1) > 0 {
		h, want = scram.SHA1, c.StoredKeySHA1
	}
	cl, err := h.NewClient("", password, "")
	if err != nil {
		return false
	}
	sc, err := cl.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations})
	if err != nil {
		return false
	}
	if fn := derivations.Load(); fn != nil {
		(*fn)(c.Iterations)
	}
	return len(want) > 0 && subtle.ConstantTimeCompare(sc.StoredKey, want) == 1
}

// MissingVerifier reports whether c lacks the SCRAM-SHA-1 or the
// SCRAM-SHA-256 verifier (an imported account), so that a login that
// shows the password should derive both.
func MissingVerifier(c store.Credentials) bool {
	return len(c.StoredKeySHA1) == 0 || len(c.StoredKeySHA256) == 0
}
