package s2s

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"

	"poosms.org/poosms/stanza"
)

// Authentication methods, as Streams reports them.
const (
	MethodSASLExternal = "sasl-external"
	MethodDialback     = "dialback"
)

// certValid reports whether the peer's certificate chain is valid for
// domain (RFC 6125 DNS-ID, wildcards included) under the trusted roots.
// The chain is checked here rather than in the handshake because an
// invalid certificate is not the end: Server Dialback can still prove the
// peer's domain.
func (s *Server) certValid(st *tls.ConnectionState, domain string) bool {
	if st == nil || len(st.PeerCertificates) == 0 {
		return false
	}
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       domain,
		Roots:         s.cfg.Roots,
		Intermediates: inter,
		// Peers present the same certificate as server and as client.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err == nil
}

// clientTLS is the TLS configuration of an outgoing stream to domain:
// SNI names the domain (not the host DNS pointed to), our certificate goes
// to peers that ask (for SASL EXTERNAL), and the peer's certificate is
// judged after the handshake (certValid).
func (s *Server) clientTLS(domain string, direct bool) *tls.Config {
	cfg := &tls.Config{
		ServerName:         domain,
		InsecureSkipVerify: true, // judged by certValid; dialback covers the rest
		MinVersion:         tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if len(s.cfg.TLS.Certificates) == 0 {
				return &tls.Certificate{}, nil
			}
			return &s.cfg.TLS.Certificates[0], nil
		},
	}
	if direct {
		cfg.NextProtos = []string{"xmpp-server"}
	}
	return cfg
}

// dialbackKey is the XEP-0185 key for a stream: HMAC-SHA256 keyed with
// the hex SHA-256 of the secret, over "receiving originating streamID",
// in hex. Any node holding the secret can verify a key another node gave.
func (s *Server) dialbackKey(receiving, originating, id string) string {
	k := sha256.Sum256(s.cfg.DialbackSecret)
	m := hmac.New(sha256.New, []byte(hex.EncodeToString(k[:])))
	m.Write([]byte(receiving + " " + originating + " " + id))
	return hex.EncodeToString(m.Sum(nil))
}

// checkDialbackKey compares a presented key with ours in constant time.
func (s *Server) checkDialbackKey(receiving, originating, id, key string) bool {
	return id != "" && hmac.Equal([]byte(key), []byte(s.dialbackKey(receiving, originating, id)))
}

// dialbackElement builds <db:NAME from to [id] [type]>[key]</db:NAME>.
func dialbackElement(name, from, to, id, typ, key string) *stanza.Element {
	el := stanza.New(nsDialback, name).SetAttr("from", from).SetAttr("to", to).SetAttr("id", id).SetAttr("type", typ)
	return el.SetText(key)
}

// dialbackError builds a dialback answer of type error (XEP-0220 §2.4).
func dialbackError(name, from, to, id string, cond stanza.Condition) *stanza.Element {
	el := dialbackElement(name, from, to, id, "error", "")
	typ := "cancel"
	if cond == "remote-server-timeout" || cond == "resource-constraint" {
		typ = "wait"
	}
	return el.Append(stanza.New(stanza.NSClient, "error").SetAttr("type", typ).Append(stanza.New(stanza.NSStanzas, string(cond))))
}
