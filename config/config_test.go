package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"poosms.org/poosms/cluster"
)

func writeYAML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "poosms.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeCA writes a PEM file holding one self-signed CA certificate.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaultsAreValid(t *testing.T) {
	c, rest, err := Load(nil, nil)
	if err != nil {
		t.Fatalf("Load with nothing set: %v", err)
	}
	if len(rest) != 0 {
		t.Errorf("positional args = %q, want none", rest)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(nil, nil) = %+v\nwant Default() = %+v", c, Default())
	}
	if kind, path := c.Database(); kind != DBSQLite || path != filepath.Join("data", "poosms.db") {
		t.Errorf("Database() = %q, %q; want sqlite in the data dir", kind, path)
	}
}

func TestPrecedence(t *testing.T) {
	file := writeYAML(t, "max_stanza_bytes: 8192\nlog_level: debug\ndomain: yaml.example\n")
	for _, tc := range []struct {
		name    string
		args    []string
		env     []string
		want    int
		wantDom string
	}{
		{"default", nil, nil, 262144, "localhost"},
		{"yaml over default", []string{"--config", file}, nil, 8192, "yaml.example"},
		{"env over yaml", []string{"--config", file}, []string{"POOSMS_MAX_STANZA_BYTES=9000"}, 9000, "yaml.example"},
		{"flag over env", []string{"--config", file, "--max-stanza-bytes=10000"}, []string{"POOSMS_MAX_STANZA_BYTES=9000"}, 10000, "yaml.example"},
		{"flag over default", []string{"--max-stanza-bytes", "5000"}, nil, 5000, "localhost"},
		{"config file from env", nil, []string{"POOSMS_CONFIG=" + file}, 8192, "yaml.example"},
		{"env domain over yaml", []string{"--config", file}, []string{"POOSMS_DOMAIN=Env.Example"}, 8192, "env.example"},
		{"unrelated env ignored", nil, []string{"HOME=/root", "POOSMS_TEST_MYSQL=x", "PATH"}, 262144, "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := Load(tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.MaxStanzaBytes != tc.want {
				t.Errorf("max_stanza_bytes = %d, want %d", c.MaxStanzaBytes, tc.want)
			}
			if c.Domain != tc.wantDom {
				t.Errorf("domain = %q, want %q", c.Domain, tc.wantDom)
			}
		})
	}
}

func TestEverySettingFromEachSource(t *testing.T) {
	caFile := writeCAFile(t)
	want := Default()
	want.Domain = "example.org"
	want.DataDir = "/srv/poosms"
	want.DB = "mysql://poosms:pw@db:3306/poosms"
	want.C2SAddr = "127.0.0.1:15222"
	want.C2STLSAddr = ""
	want.HTTPAddr = "[::1]:8080"
	want.TLSCert, want.TLSKey = "/etc/cert.pem", "/etc/key.pem"
	want.MaxStanzaBytes = 65536
	want.MaxPresenceBytes = 8192
	want.Registration = RegistrationClosed
	want.LogFormat = LogJSON
	want.LogLevel = slog.LevelWarn
	want.AuthTimeout = 10 * time.Second
	want.OfflineLimit = 50
	want.AllowPlain = false
	want.AllowInsecureLoopbackAuth = true
	want.InBandRegistration = true
	want.ArchiveRetention = 720 * time.Hour
	want.TURNMaxAllocations = 40
	want.DebugAddr = "127.0.0.1:6060"
	want.GCPercent = 25
	want.UploadDir, want.UploadURL = "/srv/files", "https://chat.example.org/upload"
	want.UploadMaxBytes, want.UploadQuotaBytes = 2048, 4096
	want.ResumeTimeout = 30 * time.Second
	want.MaxSessionsPerUser = 3
	want.LoginFailures = 7
	want.LoginWindow = time.Minute
	want.IdleTimeout = 90 * time.Second
	want.WriteQueue = 64
	want.WriteQueueBytes, want.UnackedBytes = 65536, 131072
	want.MaxStanzaElements, want.MaxStanzaDepth, want.MaxStanzaAttributes = 500, 16, 1000
	want.MediaUDPAddr = ":17882"
	want.MediaTCPAddr = ""
	want.PublicIP = netip.MustParseAddr("203.0.113.7")
	want.TURNAddr = ":13478"
	want.TURNTLSAddr = ":5349"
	want.TURNSecret = "s3cret"
	want.TURNCredentialTTL = time.Hour
	want.TURNAllowPeers = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	want.TURNAllowSelf = true
	want.MaxParticipants = 12
	want.MaxConferences = 4
	want.MaxConferencesPerUser = 2
	want.Redis, want.RedisPrefix, want.NodeID = "rediss://poosms:pw@redis:6379/2", "{chat}:", "node-2"
	want.RedisCAFile = writeCA(t)
	want.ClusterSecret = "a-cluster-secret-of-more-than-32-bytes"
	want.ClusterHeartbeat, want.ClusterNodeTTL, want.ClusterLeaseTTL = time.Second, 3*time.Second, 5*time.Second
	want.ClusterRoomIdle = 90 * time.Second
	want.SCRAMIterations, want.MetricsAddr, want.MetricsToken = 20000, "", "0123456789abcdef0123"
	want.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("::1/128")}
	want.WebSocketOrigins = []string{"https://app.example.org", "*.example.net"}
	want.S2SAddr, want.S2STLSAddr = "127.0.0.2:5269", ""
	want.S2SAllow, want.S2SDeny = []string{"example.net", "chat.example.com"}, []string{"spam.example"}
	want.S2SRoutes = map[string]string{"example.net": "10.0.0.5:5269", "chat.example.com": "[fd00::1]:5270"}
	want.S2SSecureAuth, want.S2SCAFile, want.S2SDialbackSecret = true, caFile, "a dialback secret of some length"
	want.S2STimeout = 45 * time.Second
	want.S2SStanzaRate = 2000
	want.DBMaxConns = 20

	values := map[string]string{
		"domain": "Example.ORG", "data-dir": "/srv/poosms", "db": "mysql://poosms:pw@db:3306/poosms", "db-max-conns": "20",
		"c2s-addr": "127.0.0.1:15222", "c2s-tls-addr": "", "http-addr": "[::1]:8080",
		"tls-cert": "/etc/cert.pem", "tls-key": "/etc/key.pem", "max-stanza-bytes": "65536", "max-presence-bytes": "8192",
		"registration": "closed", "log-format": "json", "log-level": "warn", "auth-timeout": "10s",
		"offline-limit": "50", "allow-plain": "false", "allow-insecure-loopback-auth": "true",
		"inband-registration": "true", "resume-timeout": "30s", "archive-retention": "720h", "turn-max-allocations": "40", "debug-addr": "127.0.0.1:6060", "gc-percent": "25",
		"upload-dir": "/srv/files", "upload-url": "https://chat.example.org/upload",
		"upload-max-bytes": "2048", "upload-quota-bytes": "4096",
		"max-sessions-per-user": "3", "login-failures": "7", "login-window": "1m", "idle-timeout": "90s",
		"write-queue": "64", "write-queue-bytes": "65536", "unacked-bytes": "131072",
		"max-stanza-elements": "500", "max-stanza-depth": "16", "max-stanza-attributes": "1000",
		"media-udp-addr": ":17882", "media-tcp-addr": "", "public-ip": "203.0.113.7",
		"turn-addr": ":13478", "turn-tls-addr": ":5349", "turn-secret": "s3cret", "turn-credential-ttl": "1h",
		"turn-allow-peers": "10.0.0.0/8, fd00::/8", "turn-allow-self": "true", "max-participants": "12", "max-conferences": "4",
		"max-conferences-per-user": "2", "redis": "rediss://poosms:pw@redis:6379/2", "redis-prefix": "{chat}:", "node-id": "node-2",
		"redis-ca-file": want.RedisCAFile, "cluster-secret": want.ClusterSecret, "cluster-secret-file": "",
		"cluster-heartbeat": "1s", "cluster-node-ttl": "3s", "cluster-lease-ttl": "5s", "cluster-room-idle": "90s",
		"scram-iterations": "20000", "metrics-addr": "", "metrics-token": "0123456789abcdef0123",
		"trusted-proxies": "192.0.2.0/24, ::1", "websocket-origins": "https://app.example.org, *.example.net",
		"s2s-addr": "127.0.0.2:5269", "s2s-tls-addr": "", "s2s-allow": "Example.NET, chat.example.com",
		"s2s-deny": "spam.example", "s2s-route": "example.net=10.0.0.5:5269,chat.example.com=[fd00::1]:5270",
		"s2s-secure-auth": "true", "s2s-ca-file": caFile, "s2s-dialback-secret": "a dialback secret of some length",
		"s2s-timeout": "45s", "s2s-stanza-rate": "2000",
	}
	limitValues(&want, values)
	connValues(&want, values)
	if len(values) != len(settings)-1 {
		t.Fatalf("test covers %d settings, package has %d (besides config)", len(values), len(settings)-1)
	}
	var args, env []string
	var yml strings.Builder
	for _, s := range settings {
		if s.name == "config" {
			continue
		}
		v := values[s.name]
		args = append(args, "--"+s.name+"="+v)
		env = append(env, s.envName()+"="+v)
		yml.WriteString(s.yamlKey() + ": '" + v + "'\n")
	}
	file := writeYAML(t, yml.String())
	for _, tc := range []struct {
		name      string
		args, env []string
	}{
		{"flags", args, nil},
		{"env", nil, env},
		{"yaml", []string{"--config", file}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := Load(tc.args, tc.env)
			if err != nil {
				t.Fatal(err)
			}
			if tc.name == "yaml" {
				want := want
				want.Config = file
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got  %+v\nwant %+v", got, want)
				}
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestBoolFlagWithoutValue(t *testing.T) {
	c, _, err := Load([]string{"--allow-insecure-loopback-auth"}, []string{"POOSMS_ALLOW_INSECURE_LOOPBACK_AUTH=false"})
	if err != nil {
		t.Fatal(err)
	}
	if !c.AllowInsecureLoopbackAuth {
		t.Error("--allow-insecure-loopback-auth with no value did not switch it on")
	}
}

func TestValidationErrorsNameTheSetting(t *testing.T) {
	for _, tc := range []struct {
		flag, value, want string
	}{
		{"domain", "bob@example.org", "domain name"},
		{"domain", "exa mple.org", "domain name"},
		{"domain", "", "domain name"},
		{"db", "postgres://x", `"sqlite"`},
		{"db", "sqlite:", `"sqlite:PATH"`},
		{"db", "mysql://", "mysql://"},
		{"turn-allow-self", "maybe", `"true" or "false"`},
		{"c2s-addr", "5222", "host:port"},
		{"c2s-addr", "", "host:port"},
		{"c2s-tls-addr", ":99999", "or empty to disable"},
		{"http-addr", "localhost:http", "port from 0 to 65535"},
		{"max-stanza-bytes", "abc", "between 4096 and 16777216"},
		{"max-stanza-bytes", "4095", "between 4096 and 16777216"},
		{"max-stanza-bytes", "16777217", "between 4096 and 16777216"},
		{"registration", "maybe", `"open" or "closed"`},
		{"log-format", "xml", `"text" or "json"`},
		{"log-level", "trace", `"debug", "info", "warn" or "error"`},
		{"auth-timeout", "30", "duration"},
		{"auth-timeout", "500ms", "at least 1s"},
		{"offline-limit", "0", "at least 1"},
		{"allow-plain", "perhaps", `"true" or "false"`},
		{"allow-insecure-loopback-auth", "2", `"true" or "false"`},
		{"max-sessions-per-user", "0", "between 1 and 65536"},
		{"login-failures", "-1", "at least 1"},
		{"login-window", "forever", "duration"},
		{"idle-timeout", "0s", "at least 1s"},
		{"write-queue", "0", "at least 1"},
		{"media-udp-addr", "nope", "host:port"},
		{"media-tcp-addr", "x:y", "host:port"},
		{"public-ip", "example.org", "IPv4 or IPv6 address"},
		{"turn-addr", "3478", "host:port"},
		{"turn-tls-addr", "::5349", "host:port"},
		{"turn-credential-ttl", "30s", "at least 1m"},
		{"turn-allow-peers", "10.0.0.0/8,192.168.1.300/24", `"192.168.1.300/24" is not one`},
		{"max-participants", "0", "between 1 and 65536"},
		{"max-conferences", "lots", "at least 1"},
		{"max-conferences-per-user", "0", "at least 1"},
		{"s2s-addr", "5269", "or empty to disable"},
		{"s2s-allow", "example.org,bad domain", `"bad domain" is not one`},
		{"s2s-deny", "a@b", `"a@b" is not one`},
		{"s2s-route", "example.org:5269", "DOMAIN=HOST:PORT"},
		{"s2s-route", "example.org=10.0.0.1", "DOMAIN=HOST:PORT"},
		{"s2s-dialback-secret", "short", "at least 16 characters"},
		{"s2s-ca-file", "/nonexistent/ca.pem", "readable PEM file"},
		{"s2s-timeout", "100ms", "at least 1s"},
		{"s2s-stanza-rate", "0", "at least 1"},
	} {
		s := lookup(tc.flag)
		for _, src := range []struct {
			name      string
			args, env []string
		}{
			{"flag", []string{"--" + tc.flag + "=" + tc.value}, nil},
			{"env", nil, []string{s.envName() + "=" + tc.value}},
			{"yaml", []string{"--config", writeYAML(t, s.yamlKey()+": '"+tc.value+"'\n")}, nil},
		} {
			t.Run(tc.flag+"/"+src.name+"/"+tc.value, func(t *testing.T) {
				_, _, err := Load(src.args, src.env)
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("Load(%s=%q) = %v, want a *config.Error", tc.flag, tc.value, err)
				}
				if ce.Setting != "--"+tc.flag {
					t.Errorf("Error.Setting = %q, want --%s", ce.Setting, tc.flag)
				}
				msg := err.Error()
				for _, part := range []string{"--" + tc.flag, s.envName(), s.yamlKey(), tc.want} {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q does not mention %q", msg, part)
					}
				}
			})
		}
	}
}

func TestErrorMessageShape(t *testing.T) {
	_, _, err := Load([]string{"--max-stanza-bytes", "abc"}, nil)
	want := `invalid --max-stanza-bytes (POOSMS_MAX_STANZA_BYTES, max_stanza_bytes) "abc" from the command line: want a whole number of bytes between 4096 and 16777216`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
}

func TestDBPasswordNotEchoed(t *testing.T) {
	_, _, err := Load([]string{"--db", "mysql://root:hunter2@"}, nil)
	if err == nil {
		t.Fatal("a mysql URL without a host was accepted")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the database password: %v", err)
	}
}

func TestYAMLMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "domain: example.org\n\nmax_stanza: 4096\n", []string{`unknown setting "max_stanza"`, "line 3"}},
		{"flag spelling", "max-stanza-bytes: 4096\n", []string{`unknown setting "max-stanza-bytes"`, "line 1"}},
		{"config key", "config: other.yaml\n", []string{`unknown setting "config"`, "line 1"}},
		{"twice", "domain: a.example\ndomain: b.example\n", []string{`"domain" is set twice`, "line 2", "line 1"}},
		{"list", "domain: [a, b]\n", []string{"domain", "single value", "line 1"}},
		{"not a mapping", "- domain\n", []string{"key: value", "line 1"}},
		{"broken", "domain: 'unterminated\n", []string{"not valid YAML"}},
		{"bad value has line", "\n\nlog_level: loud\n", []string{"--log-level", "line 3", `"loud"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeYAML(t, tc.body)
			_, _, err := Load([]string{"--config", file}, nil)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Load = %v, want a *config.Error", err)
			}
			for _, w := range append(tc.want, file) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// writeCAFile writes a PEM file holding one CA certificate.
func writeCAFile(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// TestListSettings: a list flag may be repeated, and a list is a YAML
// sequence or a comma-separated value.
func TestListSettings(t *testing.T) {
	c, _, err := Load([]string{"--s2s-route", "a.example=127.0.0.2:5269", "--s2s-route=b.example=127.0.0.3:5270",
		"--s2s-deny", "x.example", "--s2s-deny", "y.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.S2SRoutes) != 2 || c.S2SRoutes["b.example"] != "127.0.0.3:5270" {
		t.Errorf("repeated --s2s-route gave %v", c.S2SRoutes)
	}
	if !slices.Equal(c.S2SDeny, []string{"x.example", "y.example"}) {
		t.Errorf("repeated --s2s-deny gave %v", c.S2SDeny)
	}
	file := writeYAML(t, "s2s_route:\n  - a.example=127.0.0.2:5269\ns2s_allow:\n  - a.example\n  - b.example\n")
	c, _, err = Load([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.S2SRoutes["a.example"] != "127.0.0.2:5269" || !slices.Equal(c.S2SAllow, []string{"a.example", "b.example"}) {
		t.Errorf("YAML lists gave routes %v, allow %v", c.S2SRoutes, c.S2SAllow)
	}
}

func TestYAMLListAndEmpty(t *testing.T) {
	file := writeYAML(t, "turn_allow_peers:\n  - 10.1.0.0/16\n  - 192.168.0.0/24\nturn_tls_addr:\n")
	c, _, err := Load([]string{"--config", file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TURNAllowPeers) != 2 || c.TURNAllowPeers[1].String() != "192.168.0.0/24" {
		t.Errorf("turn_allow_peers = %v", c.TURNAllowPeers)
	}
	if _, _, err := Load([]string{"--config", writeYAML(t, "")}, nil); err != nil {
		t.Errorf("empty file: %v", err)
	}
	if _, _, err := Load([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestTLSFilesBothOrNeither(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		env     []string
		wantErr string
	}{
		{nil, nil, ""},
		{[]string{"--tls-cert=c.pem", "--tls-key=k.pem"}, nil, ""},
		{[]string{"--tls-cert=c.pem"}, []string{"POOSMS_TLS_KEY=k.pem"}, ""},
		{[]string{"--tls-cert=c.pem"}, nil, "--tls-cert"},
		{[]string{"--tls-key=k.pem"}, nil, "--tls-key"},
		{[]string{"--tls-key="}, []string{"POOSMS_TLS_KEY=k.pem", "POOSMS_TLS_CERT=c.pem"}, "--tls-cert"},
	} {
		_, _, err := Load(tc.args, tc.env)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("Load(%q, %q) = %v, want success", tc.args, tc.env, err)
			}
			continue
		}
		var ce *Error
		if !errors.As(err, &ce) || ce.Setting != tc.wantErr || !strings.Contains(err.Error(), "or neither") {
			t.Errorf("Load(%q, %q) = %v, want an error about %s: both or neither", tc.args, tc.env, err, tc.wantErr)
		}
	}
}

func TestPositionalArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"alice"}, []string{"alice"}},
		{[]string{"--domain", "example.org", "alice"}, []string{"alice"}},
		{[]string{"alice", "--domain=example.org"}, []string{"alice"}},
		{[]string{"--", "--alice"}, []string{"--alice"}},
		{[]string{"--allow-plain", "bob", "carol"}, []string{"bob", "carol"}},
	} {
		c, rest, err := Load(tc.args, nil)
		if err != nil {
			t.Fatalf("Load(%q): %v", tc.args, err)
		}
		if !reflect.DeepEqual(rest, tc.want) {
			t.Errorf("Load(%q) positional = %q, want %q", tc.args, rest, tc.want)
		}
		if strings.Contains(strings.Join(tc.args, " "), "example.org") && c.Domain != "example.org" {
			t.Errorf("Load(%q) lost the domain flag: %q", tc.args, c.Domain)
		}
	}
}

func TestUnknownFlagAndHelp(t *testing.T) {
	_, _, err := Load([]string{"--max-stanza", "1"}, nil)
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "--max-stanza") {
		t.Errorf("unknown flag: %v, want a *config.Error naming it", err)
	}
	for _, h := range []string{"--help", "-h"} {
		if _, _, err := Load([]string{h}, nil); !errors.Is(err, ErrHelp) {
			t.Errorf("Load(%s) = %v, want ErrHelp", h, err)
		}
	}
	u := Usage()
	for _, s := range settings {
		if !strings.Contains(u, "--"+s.name) || !strings.Contains(u, s.envName()) {
			t.Errorf("usage does not list --%s with %s", s.name, s.envName())
		}
	}
	if !strings.Contains(u, "(default 262144)") {
		t.Errorf("usage does not show defaults:\n%s", u)
	}
}

func TestDumpRoundTripsAndHidesSecrets(t *testing.T) {
	c, _, err := Load([]string{
		"--domain=example.org", "--db=mysql://poosms:hunter2@db/poosms", "--turn-secret=topsecret",
		"--turn-allow-peers=10.0.0.0/8", "--c2s-tls-addr=", "--idle-timeout=90s", "--public-ip=::1",
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := c.Dump()
	for _, secret := range []string{"hunter2", "topsecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("dump shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "turn_secret: (set)") {
		t.Errorf("dump does not say the TURN secret is set:\n%s", out)
	}
	withSecret := c
	withSecret.ClusterSecret = testSecret
	if d := withSecret.Dump(); strings.Contains(d, testSecret) || !strings.Contains(d, "cluster_secret: (set)") {
		t.Errorf("dump shows the cluster secret, or not that it is set:\n%s", d)
	}
	back, _, err := Load([]string{"--config", writeYAML(t, out)}, nil)
	if err != nil {
		t.Fatalf("dump does not load back: %v\n%s", err, out)
	}
	back.Config, back.TURNSecret, back.DB = "", c.TURNSecret, c.DB
	if !reflect.DeepEqual(back, c) {
		t.Errorf("dump round trip:\ngot  %+v\nwant %+v", back, c)
	}
}

func TestValidateConfigBuiltInCode(t *testing.T) {
	c := Default()
	c.WriteQueue = 0
	var ce *Error
	if err := c.Validate(); !errors.As(err, &ce) || ce.Setting != "--write-queue" {
		t.Errorf("Validate with write_queue 0 = %v, want an error naming --write-queue", err)
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

// TestStructDocumentsEverySetting keeps the Config struct, its yaml tags
// and the settings table in step.
func TestStructDocumentsEverySetting(t *testing.T) {
	typ := reflect.TypeFor[Config]()
	tags := make(map[string]bool)
	for f := range typ.Fields() {
		tag := f.Tag.Get("yaml")
		if tag == "" {
			t.Errorf("field %s has no yaml tag", f.Name)
			continue
		}
		tags[tag] = true
		if s := lookup(strings.ReplaceAll(tag, "_", "-")); s == nil {
			t.Errorf("field %s (yaml %q) has no flag or environment variable", f.Name, tag)
		}
	}
	for _, s := range settings {
		if !tags[s.yamlKey()] {
			t.Errorf("setting --%s has no Config field tagged yaml:%q", s.name, s.yamlKey())
		}
	}
}

func TestClusterSettingsChecked(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"--redis", "redis://127.0.0.1:6379"}, "--redis"},
		{[]string{"--redis", "redis://127.0.0.1:6379", "--db", "sqlite:/tmp/x.db"}, "MySQL"},
		{[]string{"--redis", "http://127.0.0.1:6379", "--db", "mysql://u:p@tcp(h:3306)/d"}, "redis://"},
		{[]string{"--node-id", "a b"}, "--node-id"},
		{[]string{"--redis", "redis://h:1", "--db", "mysql://u:p@tcp(h:3306)/d", "--cluster-heartbeat", "7s"}, "--cluster-node-ttl"},
	} {
		_, _, err := Load(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	c, _, err := Load([]string{"--redis", "redis://:pw@h:1", "--db", "mysql://u:p@tcp(h:3306)/d"}, []string{"POOSMS_CLUSTER_SECRET=" + testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(c.Dump(), "pw") {
		t.Errorf("Dump shows the Redis password:\n%s", c.Dump())
	}
}

const testSecret = "0123456789abcdef0123456789abcdef-and-more"

// A cluster needs a secret of at least 32 bytes, from the setting or a
// file; a bad one is refused naming the setting and the fix, without
// showing the secret; so is a CA file that cannot serve.
func TestClusterSecretAndRedisTLSChecked(t *testing.T) {
	if MinClusterSecret != cluster.MinSecretLen {
		t.Fatalf("MinClusterSecret %d, cluster.MinSecretLen %d", MinClusterSecret, cluster.MinSecretLen)
	}
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, short := file("good", testSecret+"\n"), file("short", "only-20-bytes-here!!\n")
	notPEM := file("notpem", "hello")
	base := []string{"--redis", "redis://:pw@h:1", "--db", "mysql://u:p@tcp(h:3306)/d"}
	tls := []string{"--redis", "rediss://poosms:pw@h:1", "--db", "mysql://u:p@tcp(h:3306)/d", "--cluster-secret", testSecret}
	for _, tc := range []struct {
		args, env []string
		want      []string // in the error
	}{
		{base, nil, []string{"--cluster-secret", "POOSMS_CLUSTER_SECRET", "at least 32 bytes", "openssl rand"}},
		{append(base, "--cluster-secret", "tooshort-secret-12345"), nil, []string{"--cluster-secret", "21 bytes"}},
		{base, []string{"POOSMS_CLUSTER_SECRET=tooshort-secret-12345"}, []string{"--cluster-secret"}},
		{append(base, "--cluster-secret-file", short), nil, []string{"--cluster-secret-file", "20 bytes"}},
		{append(base, "--cluster-secret-file", filepath.Join(dir, "missing")), nil, []string{"--cluster-secret-file", "no such file"}},
		{append(base, "--cluster-secret-file", good, "--cluster-secret", testSecret), nil, []string{"not both"}},
		{append(base, "--cluster-secret", testSecret, "--redis-ca-file", writeCA(t)), nil, []string{"--redis-ca-file", "rediss://"}},
		{append(tls, "--redis-ca-file", notPEM), nil, []string{"--redis-ca-file", "CERTIFICATE"}},
		{append(tls, "--redis-ca-file", filepath.Join(dir, "missing")), nil, []string{"--redis-ca-file"}},
		{append(tls, "--redis", "rediss://poosms:pw@h:1?skip_verify=true"), nil, []string{"--redis", "skip_verify", "--redis-ca-file"}},
	} {
		_, _, err := Load(tc.args, tc.env)
		var ce *Error
		if !errors.As(err, &ce) {
			t.Errorf("Load(%q, %q) = %v, want a config error", tc.args, tc.env, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Load(%q, %q) = %v, want it to mention %q", tc.args, tc.env, err, w)
			}
		}
		for _, secret := range []string{"tooshort-secret-12345", "only-20-bytes", ":pw@"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("Load(%q) error shows a secret: %v", tc.args, err)
			}
		}
	}

	for _, tc := range []struct {
		args, env []string
	}{
		{append(base, "--cluster-secret-file", good), nil},
		{base, []string{"POOSMS_CLUSTER_SECRET=" + testSecret}},
		{append(tls, "--redis-ca-file", writeCA(t)), nil},
	} {
		c, _, err := Load(tc.args, tc.env)
		if err != nil {
			t.Errorf("Load(%q, %q) = %v", tc.args, tc.env, err)
			continue
		}
		key, err := c.ClusterKey()
		if err != nil || string(key) != testSecret {
			t.Errorf("Load(%q, %q): key %q %v, want the secret without the newline", tc.args, tc.env, key, err)
		}
		if pool, err := c.RedisRootCAs(); err != nil || (c.RedisCAFile != "") != (pool != nil) {
			t.Errorf("Load(%q): CA pool %v %v", tc.args, pool, err)
		}
		if d := c.Dump(); strings.Contains(d, testSecret) {
			t.Errorf("Dump shows the cluster secret:\n%s", d)
		}
	}
	// Without --redis no secret is needed.
	if _, _, err := Load(nil, nil); err != nil {
		t.Errorf("a single node without a cluster secret: %v", err)
	}
}
