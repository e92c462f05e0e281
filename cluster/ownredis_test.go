package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"poosms.org/poosms/internal/testenv"
)

// A redis-server of the test's own, run the way docs/operations.md tells
// operators to: no default user, an admin user, and a user for the nodes
// that may run only the commands poosms uses, on the cluster's keys.

const (
	testPrefix    = "poosms:"
	nodeUser      = "poosms"
	nodePassword  = "node-password-for-tests"
	adminUser     = "admin"
	adminPassword = "admin-password-for-tests"
)

// nodeACL is the ACL rule of the nodes' user, as docs/operations.md gives
// it (with the test's prefix and password).
const nodeACL = "user " + nodeUser + " on >" + nodePassword + " resetkeys ~" + testPrefix + "* resetchannels -@all " +
	"+ping +hello +auth +select " +
	"+get +set +mget +del +exists +pexpire +sadd +srem +smembers +hget +hset +hdel +hgetall " +
	"+xadd +xlen +xrange +xreadgroup +xack +xdel +xgroup|create +eval +evalsha"

type ownRedis struct {
	addr string // host:port of the plain or the TLS listener
	tls  *tls.Config
	pool *x509.CertPool // the CA that signed the TLS listener's certificate
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

// startOwnRedis starts redis-server on a free loopback port with the ACL
// file above; withTLS serves TLS only, with a certificate from a CA of its
// own (clients are not asked for certificates). It is killed at the end
// of the test.
func startOwnRedis(t *testing.T, withTLS bool) *ownRedis {
	t.Helper()
	bin := testenv.Command(t, "redis-server", "apt-get install redis-server")
	dir := t.TempDir()
	acl := filepath.Join(dir, "users.acl")
	rules := "user default off\n" +
		"user " + adminUser + " on >" + adminPassword + " ~* &* +@all\n" +
		nodeACL + "\n"
	if err := os.WriteFile(acl, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
	r := &ownRedis{addr: "127.0.0.1:" + port, done: make(chan struct{})}
	args := []string{"--bind", "127.0.0.1", "--protected-mode", "yes", "--save", "", "--appendonly", "no",
		"--aclfile", acl, "--dir", dir}
	if withTLS {
		r.pool = writeTestCerts(t, dir)
		r.tls = &tls.Config{RootCAs: r.pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		args = append(args, "--port", "0", "--tls-port", port,
			"--tls-cert-file", filepath.Join(dir, "server.pem"), "--tls-key-file", filepath.Join(dir, "server.key"),
			"--tls-ca-cert-file", filepath.Join(dir, "ca.pem"), "--tls-auth-clients", "no")
	} else {
		args = append(args, "--port", port)
	}
	r.cmd = exec.Command(bin, args...)
	r.cmd.Stdout, r.cmd.Stderr = r, r
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.done
		if t.Failed() {
			t.Logf("---- redis-server ----\n%s", r.output())
		}
	})
	admin := r.client(adminUser, adminPassword)
	defer admin.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := admin.Ping(ctx).Err()
		cancel()
		if err == nil {
			return r
		}
		select {
		case <-r.done:
			if out := r.output(); withTLS && strings.Contains(out, "FATAL CONFIG") && strings.Contains(out, "tls-") {
				testenv.Require(t, "this redis-server was built without TLS:\n"+r.output())
			}
			t.Fatalf("redis-server exited:\n%s", r.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not answer within 10s: %v\n%s", err, r.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *ownRedis) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.Write(p)
}

func (r *ownRedis) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out.String()
}

// client is a client of the server as user.
func (r *ownRedis) client(user, password string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr, Username: user, Password: password, TLSConfig: r.tls, MaxRetries: -1})
}

// url is the URL a node reaches the server at as user.
func (r *ownRedis) url(user, password string) string {
	scheme := "redis"
	if r.tls != nil {
		scheme = "rediss"
	}
	return scheme + "://" + user + ":" + password + "@" + r.addr
}

// harness returns a harness whose nodes reach r as the nodes' user.
func (r *ownRedis) harness(t *testing.T) *harness {
	h := &harness{t: t, addr: r.addr, url: r.url(nodeUser, nodePassword), rootCAs: r.pool, prefix: testPrefix,
		secret: make([]byte, MinSecretLen), admin: r.client(adminUser, adminPassword)}
	rand.Read(h.secret)
	t.Cleanup(func() { h.admin.Close() })
	return h
}

// writeTestCerts writes ca.pem, server.pem and server.key (for 127.0.0.1)
// into dir and returns a pool holding the CA.
func writeTestCerts(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, srvKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "poosms test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ca.pem", "CERTIFICATE", caDER)
	write("server.pem", "CERTIFICATE", srvDER)
	write("server.key", "EC PRIVATE KEY", srvKeyDER)
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool
}
