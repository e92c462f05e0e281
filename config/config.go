// Package config is poosmsd's one typed configuration: defaults, then a
// YAML file, then POOSMS_* environment variables, then flags, each layer
// overriding the one before, with validation messages a person can act on.
//
// Every setting has three spellings: the flag --some-name, the environment
// variable POOSMS_SOME_NAME and the YAML key some_name. Only this package
// reads the environment; everything else receives a Config.
//
// An environment variable that is set but empty sets its setting to the
// empty value, which disables the optional listeners (c2s_tls_addr,
// media_tcp_addr, turn_addr, turn_tls_addr) and is an error for numbers.
package config

import (
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Registration says whether people may create their own accounts.
type Registration string

// The accepted values of the registration setting.
const (
	RegistrationOpen   Registration = "open"
	RegistrationClosed Registration = "closed"
)

// The accepted values of the log_format setting.
const (
	LogText = "text"
	LogJSON = "json"
)

// Limits on max_stanza_bytes.
const (
	MinStanzaBytes = 4096
	MaxStanzaBytes = 16 << 20
)

// Config is the effective configuration of one poosmsd process. The zero
// value is not useful: start from Default or Load.
type Config struct {
	// Config is the YAML file the settings were read from, if any
	// (--config, POOSMS_CONFIG). Default: none.
	Config string `yaml:"config"`

	// Domain is the XMPP domain this server is authoritative for; JIDs are
	// name@Domain. Normalised (PRECIS, lower case). Default: localhost.
	Domain string `yaml:"domain"`
	// DataDir holds the SQLite database, the generated certificate and the
	// generated TURN secret. Default: ./data.
	DataDir string `yaml:"data_dir"`
	// DB selects the database: "sqlite" (DataDir/poosms.db), "sqlite:PATH",
	// or "mysql://user:password@tcp(host:port)/dbname" (the URL form
	// "mysql://user:password@host:port/dbname" works too). Default: sqlite.
	DB string `yaml:"db"`

	// C2SAddr is where clients connect and upgrade with STARTTLS.
	// Default: :5222.
	C2SAddr string `yaml:"c2s_addr"`
	// C2STLSAddr is where clients connect with TLS from the first byte
	// (XEP-0368). Empty disables it. Default: :5223.
	C2STLSAddr string `yaml:"c2s_tls_addr"`
	// HTTPAddr serves registration, the browser client, /xmpp-websocket,
	// /metrics and /healthz. Default: :5280.
	HTTPAddr string `yaml:"http_addr"`
	// TLSCert and TLSKey are PEM files for the server's certificate; set
	// both or neither. Neither: a self-signed certificate is generated in
	// DataDir. Default: empty.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`

	// MaxStanzaBytes is the largest stanza a client may send; larger ones
	// end the stream with a policy error. 4096 to 16777216.
	// Default: 262144.
	MaxStanzaBytes int `yaml:"max_stanza_bytes"`
	// MaxStanzaElements, MaxStanzaDepth and MaxStanzaAttributes bound the
	// shape of a stanza from a client: its elements (itself included), how
	// deeply they nest (itself being level 1) and its attributes (namespace
	// declarations included). They are counted as the stanza is read; one
	// past a limit ends the stream with a policy error before the stanza
	// grows any further in memory. Defaults: 4096, 32 and 4096.
	MaxStanzaElements   int `yaml:"max_stanza_elements"`
	MaxStanzaDepth      int `yaml:"max_stanza_depth"`
	MaxStanzaAttributes int `yaml:"max_stanza_attributes"`
	// Registration is open (anyone may create an account on the web form)
	// or closed (accounts are made with "poosmsd user add"). Default: open.
	Registration Registration `yaml:"registration"`
	// LogFormat is "text" or "json". Default: text.
	LogFormat string `yaml:"log_format"`
	// LogLevel is debug, info, warn or error. Default: info.
	LogLevel slog.Level `yaml:"log_level"`

	// AuthTimeout is how long a new stream may take to authenticate.
	// At least 1s. Default: 30s.
	AuthTimeout time.Duration `yaml:"auth_timeout"`
	// OfflineLimit is how many messages are kept for an offline user;
	// more are bounced. At least 1. Default: 1000.
	OfflineLimit int `yaml:"offline_limit"`
	// AllowPlain allows SASL PLAIN inside TLS (for clients without SCRAM).
	// Default: true.
	AllowPlain bool `yaml:"allow_plain"`
	// AllowInsecureLoopbackAuth allows authentication without TLS on
	// loopback connections, for development only. Default: false.
	AllowInsecureLoopbackAuth bool `yaml:"allow_insecure_loopback_auth"`
	// UploadDir keeps files shared through HTTP upload (XEP-0363), one
	// folder per user. Default: DATA_DIR/uploads.
	UploadDir string `yaml:"upload_dir"`
	// UploadURL is the public base URL of uploads (behind a TLS proxy,
	// its https:// address). Default: http://DOMAIN:HTTP-PORT/upload.
	UploadURL string `yaml:"upload_url"`
	// UploadMaxBytes is the largest file a user may share. Default: 104857600 (100 MiB).
	UploadMaxBytes int `yaml:"upload_max_bytes"`
	// UploadQuotaBytes is how much each user may keep shared. Default: 1073741824 (1 GiB).
	UploadQuotaBytes int `yaml:"upload_quota_bytes"`
	// DebugAddr serves Go's pprof profiles at /debug/pprof/ for
	// performance work; keep it on loopback. Empty disables. Default: empty.
	DebugAddr string `yaml:"debug_addr"`
	// TURNMaxAllocations is how many relay allocations one user may hold
	// at once. At least 1. Default: 10.
	TURNMaxAllocations int `yaml:"turn_max_allocations"`
	// ArchiveRetention is how long message history (XEP-0313, one-to-one
	// and rooms) is kept; 0 keeps it forever. Default: 0.
	ArchiveRetention time.Duration `yaml:"archive_retention"`
	// InBandRegistration lets clients create accounts on the XMPP stream
	// (XEP-0077), limited to 5 per address per hour. Default: false.
	InBandRegistration bool `yaml:"inband_registration"`
	// ResumeTimeout is how long a session whose connection was lost waits
	// for its client to resume it (XEP-0198) before its unacknowledged
	// messages go to other resources or offline storage. At least 1s.
	// Default: 5m.
	ResumeTimeout time.Duration `yaml:"resume_timeout"`
	// MaxSessionsPerUser is how many resources one account may have bound
	// at once. At least 1. Default: 10.
	MaxSessionsPerUser int `yaml:"max_sessions_per_user"`
	// LoginFailures failed logins within LoginWindow, for one account or
	// from one address, make further attempts wait. Default: 5 per 5m.
	LoginFailures int           `yaml:"login_failures"`
	LoginWindow   time.Duration `yaml:"login_window"`
	// IdleTimeout closes a stream that has sent nothing, not even
	// whitespace, for this long. At least 1s. Default: 5m.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// WriteQueue is how many stanzas may wait to be written to one
	// session; a client that falls further behind is disconnected.
	// Default: 256.
	WriteQueue int `yaml:"write_queue"`
	// WriteQueueBytes bounds the same queue in bytes, as the stanzas will
	// be written (with those held back from a client that said it is
	// inactive); a stanza always fits in an empty queue. Default: 1048576
	// (1 MiB).
	WriteQueueBytes int `yaml:"write_queue_bytes"`
	// UnackedBytes bounds, in bytes, what a session with stream management
	// (XEP-0198) keeps of the stanzas written to its client and not yet
	// acknowledged: what a lost session holds while it waits to be resumed.
	// At the bound, a connected session waits (at most 10s) for its client
	// to acknowledge before writing more; a client that does not, and a
	// lost session, end there, and their messages go to the user's other
	// resources or offline storage. Default: 2097152 (2 MiB).
	UnackedBytes int `yaml:"unacked_bytes"`

	// MediaUDPAddr is the one UDP port carrying all conference media.
	// Default: :7882.
	MediaUDPAddr string `yaml:"media_udp_addr"`
	// MediaTCPAddr carries conference media over TCP for clients that
	// cannot use UDP. Empty disables it. Default: :7881.
	MediaTCPAddr string `yaml:"media_tcp_addr"`
	// PublicIP is the address clients reach this host at, announced in
	// media and TURN candidates when the host sits behind NAT. Invalid
	// (the zero Addr) when unset. Default: empty.
	PublicIP netip.Addr `yaml:"public_ip"`

	// TURNAddr is the TURN/STUN relay's UDP and TCP address. Empty
	// disables the relay. Default: :3478.
	TURNAddr string `yaml:"turn_addr"`
	// TURNTLSAddr is the TURN-over-TLS address. Empty disables it.
	// Default: empty.
	TURNTLSAddr string `yaml:"turn_tls_addr"`
	// TURNSecret signs ephemeral TURN credentials. Empty: a secret is
	// generated and kept in DataDir. Default: empty.
	TURNSecret string `yaml:"turn_secret"`
	// TURNCredentialTTL is how long a TURN credential stays valid.
	// At least 1m. Default: 24h.
	TURNCredentialTTL time.Duration `yaml:"turn_credential_ttl"`
	// TURNAllowPeers are address ranges the relay may reach even though
	// they are loopback, private or link-local (comma-separated CIDRs).
	// Default: none.
	TURNAllowPeers []netip.Prefix `yaml:"turn_allow_peers"`
	// TURNAllowSelf lets the relay reach this host's own addresses
	// (loopback, its interfaces, its listen addresses, PublicIP): its SFU,
	// its TURN ports and anything else listening here. Off, they are
	// refused even inside TURNAllowPeers, except between two allocations
	// of the relay. For tests and benchmarks whose peers run on the
	// server's host. Default: false.
	TURNAllowSelf bool `yaml:"turn_allow_self"`

	// Redis is the Redis server the nodes of a cluster share
	// ("redis://[:password@]host:port[/db]"). Empty runs one node on its
	// own, which needs no Redis. A cluster needs the MySQL store.
	// Default: empty.
	Redis string `yaml:"redis"`
	// RedisPrefix goes before every Redis key, so several clusters (or
	// test runs) can share one Redis. Default: poosms:.
	RedisPrefix string `yaml:"redis_prefix"`
	// NodeID names this node in a cluster; it must stay the same across
	// restarts and differ between nodes. Default: the host name.
	NodeID string `yaml:"node_id"`
	// ClusterHeartbeat is how often a node renews its membership and
	// room leases. Default: 2s.
	ClusterHeartbeat time.Duration `yaml:"cluster_heartbeat"`
	// ClusterNodeTTL is how long after its last heartbeat a node counts
	// as gone. Longer than ClusterHeartbeat. Default: 6s.
	ClusterNodeTTL time.Duration `yaml:"cluster_node_ttl"`
	// ClusterLeaseTTL is how long a room's placement outlives its host's
	// last renewal. Longer than ClusterHeartbeat. Default: 10s.
	ClusterLeaseTTL time.Duration `yaml:"cluster_lease_ttl"`

	// MaxParticipants is the largest number of people in one conference.
	// Default: 100.
	MaxParticipants int `yaml:"max_participants"`
	// MaxConferences is the number of conferences one node runs at once.
	// Default: 100.
	MaxConferences int `yaml:"max_conferences"`
	// MaxConferencesPerUser is how many conferences one user may have
	// opened that still run on this node (joining a running one is not
	// limited), so one user cannot take all of MaxConferences.
	// Default: 5.
	MaxConferencesPerUser int `yaml:"max_conferences_per_user"`
}

// Default returns the configuration poosmsd uses when nothing is set.
func Default() Config {
	return Config{
		Domain:              "localhost",
		DataDir:             "./data",
		DB:                  "sqlite",
		C2SAddr:             ":5222",
		C2STLSAddr:          ":5223",
		HTTPAddr:            ":5280",
		MaxStanzaBytes:      262144,
		MaxStanzaElements:   4096,
		MaxStanzaDepth:      32,
		MaxStanzaAttributes: 4096,
		Registration:        RegistrationOpen,
		LogFormat:           LogText,
		LogLevel:            slog.LevelInfo,
		AuthTimeout:         30 * time.Second,
		ResumeTimeout:       5 * time.Minute,
		UploadMaxBytes:      100 << 20,
		TURNMaxAllocations:  10,
		UploadQuotaBytes:    1 << 30,
		OfflineLimit:        1000,
		AllowPlain:          true,
		MaxSessionsPerUser:  10,
		LoginFailures:       5,
		LoginWindow:         5 * time.Minute,
		IdleTimeout:         5 * time.Minute,
		WriteQueue:          256,
		WriteQueueBytes:     1 << 20,
		UnackedBytes:        4 << 20,
		MediaUDPAddr:        ":7882",
		MediaTCPAddr:        ":7881",
		TURNAddr:            ":3478",
		TURNCredentialTTL:   24 * time.Hour,
		MaxParticipants:     100,
		MaxConferences:      100,
		RedisPrefix:         "poosms:",
		NodeID:              defaultNodeID(),
		ClusterHeartbeat:    2 * time.Second,
		ClusterNodeTTL:      6 * time.Second,
		ClusterLeaseTTL:     10 * time.Second,

		MaxConferencesPerUser: 5,
	}
}

// defaultNodeID is the host name when it can name a node, else "node1".
func defaultNodeID() string {
	h, err := os.Hostname()
	if err != nil || !nodeID.MatchString(h) {
		return "node1"
	}
	return h
}

// RedactedRedis is the Redis URL with its password hidden, for logs.
func (c Config) RedactedRedis() string { return redactURL(c.Redis) }

// DB kinds returned by Database.
const (
	DBSQLite = "sqlite"
	DBMySQL  = "mysql"
)

// Database says which database to open: DBSQLite with a file path, or
// DBMySQL with the mysql:// URL as given.
func (c Config) Database() (kind, target string) {
	switch {
	case c.DB == "sqlite":
		return DBSQLite, filepath.Join(c.DataDir, "poosms.db")
	case strings.HasPrefix(c.DB, "sqlite:"):
		return DBSQLite, strings.TrimPrefix(c.DB, "sqlite:")
	default:
		return DBMySQL, c.DB
	}
}

// redactDB hides a MySQL password in the db setting.
func redactDB(db string) string {
	if !strings.HasPrefix(db, "mysql://") {
		return db
	}
	if mysqlDriverForm.MatchString(db) {
		rest := strings.TrimPrefix(db, "mysql://")
		at := strings.LastIndex(rest[:strings.Index(rest, "(")], "@")
		if user, _, hasPass := strings.Cut(rest[:max(at, 0)], ":"); at > 0 && hasPass {
			return "mysql://" + user + ":xxxxx" + rest[at:]
		}
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "mysql://(unparseable)"
	}
	return u.Redacted()
}
