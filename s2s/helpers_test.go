package s2s

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"poosms.org/poosms/stanza"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "poosms test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// leaf issues a certificate for names; a nil CA makes it self-signed.
func leaf(t *testing.T, ca *testCA, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	parent, signer := tmpl, any(key)
	if ca != nil {
		parent, signer = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// inbox collects what a server delivers.
type inbox struct {
	mu  sync.Mutex
	els []*stanza.Element
	ch  chan struct{}
}

func newInbox() *inbox { return &inbox{ch: make(chan struct{}, 1)} }

func (b *inbox) deliver(_ context.Context, el *stanza.Element) {
	b.mu.Lock()
	b.els = append(b.els, el)
	b.mu.Unlock()
	select {
	case b.ch <- struct{}{}:
	default:
	}
}

// wait returns the first delivered element matching fn, failing the test
// after d.
func (b *inbox) wait(t *testing.T, d time.Duration, fn func(*stanza.Element) bool) *stanza.Element {
	t.Helper()
	deadline := time.After(d)
	for {
		b.mu.Lock()
		for _, el := range b.els {
			if fn(el) {
				b.mu.Unlock()
				return el
			}
		}
		b.mu.Unlock()
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("nothing matching arrived within %s; got %d elements", d, b.count())
			return nil
		}
	}
}

func (b *inbox) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.els)
}

// node is one federating test server on 127.0.0.1.
type node struct {
	*Server
	domain string
	in     *inbox
}

// newNode starts a server for domain with cert, trusting roots (nil:
// nothing), listening on loopback; edit changes its Config first.
func newNode(t *testing.T, domain string, cert tls.Certificate, roots *x509.CertPool, edit func(*Config)) *node {
	t.Helper()
	if roots == nil {
		roots = x509.NewCertPool()
	}
	in := newInbox()
	cfg := Config{
		Domain:         domain,
		Hosted:         func(d string) bool { return d == domain || d == "conference."+domain },
		TLS:            &tls.Config{Certificates: []tls.Certificate{cert}},
		Addr:           "127.0.0.1:0",
		Roots:          roots,
		DialbackSecret: []byte("dialback secret of " + domain),
		Deliver:        in.deliver,
		Routes:         map[string]string{},
		Timeout:        5 * time.Second,
		Resolver:       noSRV{},
		Logger:         testLogger(),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close %s: %v", domain, err)
		}
	})
	return &node{Server: s, domain: domain, in: in}
}

func testLogger() *slog.Logger {
	if os.Getenv("S2S_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// route makes n reach other's domain (and so its services) at other's
// listener.
func (n *node) route(other *node) { n.cfg.Routes[other.domain] = other.Addrs()[0].String() }

// noSRV is a resolver without records: lookups fail as for a domain that
// publishes none.
type noSRV struct{}

func (noSRV) LookupSRV(context.Context, string, string, string) (string, []*net.SRV, error) {
	return "", nil, &net.DNSError{Err: "no such host", IsNotFound: true}
}

func message(from, to, body string) *stanza.Element {
	return stanza.New(stanza.NSClient, "message").SetAttr("from", from).SetAttr("to", to).
		SetAttr("type", "chat").SetAttr("id", body).
		Append(stanza.New(stanza.NSClient, "body").SetText(body))
}

func hasBody(body string) func(*stanza.Element) bool {
	return func(el *stanza.Element) bool { return el.ChildText("", "body") == body }
}

// errorCond returns the condition of a stanza error, or "".
func errorCond(el *stanza.Element) stanza.Condition {
	if !el.IsError() {
		return ""
	}
	return stanza.ErrorCondition(el)
}

// waitFor polls fn until it holds, failing after d.
func waitFor(t *testing.T, d time.Duration, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
