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
	"bytes"
	"crypto/x509"
	"fmt"
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
	// or "mysql://user:password@tcp(host:port)/dbname", where the password
	// is taken as written, or the URL form
	// "mysql://user:password@host:port/dbname", percent-decoded (a password
	// holding @ / : is written with %40 %2F %3A there). Default: sqlite.
	DB string `yaml:"db"`
	// DBMaxConns bounds the connections to a MySQL database, so that
	// nodes sharing one stay below its max_connections. Default: 32.
	DBMaxConns int `yaml:"db_max_conns"`

	// C2SAddr is where clients connect and upgrade with STARTTLS.
	// Default: :5222.
	C2SAddr string `yaml:"c2s_addr"`
	// C2STLSAddr is where clients connect with TLS from the first byte
	// (XEP-0368). Empty disables it. Default: :5223.
	C2STLSAddr string `yaml:"c2s_tls_addr"`
	// HTTPAddr serves registration, the browser client, /xmpp-websocket,
	// /api/turn and /healthz (and /metrics when MetricsToken is set).
	// Default: :5280.
	HTTPAddr string `yaml:"http_addr"`
	// MetricsAddr serves Prometheus metrics at /metrics, apart from the
	// public HTTP listener. Empty disables it. Default: 127.0.0.1:9280.
	MetricsAddr string `yaml:"metrics_addr"`
	// MetricsToken, when set, is the bearer token every /metrics request
	// must carry, and /metrics is then also served on HTTPAddr. At least
	// 16 characters. Default: empty.
	MetricsToken string `yaml:"metrics_token"`
	// TrustedProxies are the reverse proxies (CIDRs) whose X-Forwarded-For,
	// X-Forwarded-Proto, X-Forwarded-Host and Forwarded headers name the
	// client on HTTP and WebSocket. Without it those headers are ignored.
	// Default: none.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
	// WebSocketOrigins are browser origins, besides the server's own page,
	// allowed to open /xmpp-websocket: exact origins
	// ("https://app.example.org") or host patterns ("*.example.org").
	// Connections without an Origin (native clients) are always allowed.
	// Default: none.
	WebSocketOrigins []string `yaml:"websocket_origins"`
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
	// GCPercent is the Go collector's target (what GOGC sets): how far
	// the heap may grow past what is live, in percent, before the next
	// collection. 0 is automatic: 100 while the live heap is small, down
	// to 25 as it grows past 32 MiB (a node holding many idle sessions),
	// unless GOGC is set in the environment, which then stands
	// (docs/operations.md). Default: 0.
	GCPercent int `yaml:"gc_percent"`
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
	// SCRAMIterations is the PBKDF2 iteration count of new password
	// verifiers (registration, password change, "poosmsd user add|passwd")
	// and of the fake ones shown for unknown users; accounts stored with
	// fewer are upgraded at their next login that shows the password
	// (PLAIN, /api/turn). At least 4096. Default: 10000.
	SCRAMIterations int `yaml:"scram_iterations"`
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
	// MaxPresenceBytes bounds one presence stanza a client sends: presence
	// is copied to every contact and every room occupant, and remembered
	// per session, so it is kept much smaller than a message. A larger one
	// is refused with policy-violation. Default: 16384.
	MaxPresenceBytes int `yaml:"max_presence_bytes"`
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
	// ("redis://[user:password@]host:port[/db]", or "rediss://…" for
	// TLS). Empty runs one node on its own, which needs no Redis. A
	// cluster needs the MySQL store and ClusterSecret. Default: empty.
	Redis string `yaml:"redis"`
	// RedisPrefix goes before every Redis key, so several clusters (or
	// test runs) can share one Redis. Default: poosms:.
	RedisPrefix string `yaml:"redis_prefix"`
	// RedisCAFile is a PEM file of the CA certificates a rediss:// server's
	// certificate is checked against, for a private CA. Empty: the
	// system's. Default: empty.
	RedisCAFile string `yaml:"redis_ca_file"`
	// ClusterSecret signs everything the nodes of a cluster exchange
	// through Redis; every node has the same, of at least 32 bytes.
	// Required with Redis (or ClusterSecretFile). Default: empty.
	ClusterSecret string `yaml:"cluster_secret"`
	// ClusterSecretFile names a file holding the cluster secret (a final
	// newline is ignored), instead of ClusterSecret. Default: empty.
	ClusterSecretFile string `yaml:"cluster_secret_file"`
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
	// ClusterRoomIdle is how long a room nobody is in keeps its
	// placement after its last stanza; then it is given back, so
	// addressing random room names does not grow the shared state.
	// Single nodes too. Default: 5m.
	ClusterRoomIdle time.Duration `yaml:"cluster_room_idle"`

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

	// S2SAddr is where other XMPP servers connect to federate (STARTTLS).
	// Empty turns federation off. Default: :5269.
	S2SAddr string `yaml:"s2s_addr"`
	// S2STLSAddr is where other servers connect with TLS from the first
	// byte (XEP-0368). Empty disables it. Default: :5270.
	S2STLSAddr string `yaml:"s2s_tls_addr"`
	// S2SAllow, when not empty, lists the only domains (with their
	// subdomains) this server federates with. Default: empty (any).
	S2SAllow []string `yaml:"s2s_allow"`
	// S2SDeny lists domains (with their subdomains) this server never
	// federates with. Default: empty.
	S2SDeny []string `yaml:"s2s_deny"`
	// S2SRoutes sends the server streams for a domain to a fixed
	// host:port (STARTTLS) instead of where DNS says. Default: none.
	S2SRoutes map[string]string `yaml:"s2s_route"`
	// S2SSecureAuth requires, on every server stream, a certificate valid
	// for the peer's domain: no Server Dialback on DNS alone.
	// Default: false.
	S2SSecureAuth bool `yaml:"s2s_secure_auth"`
	// S2SCAFile is a PEM file of certificate authorities trusted for
	// other servers' certificates, besides the system's. Default: empty.
	S2SCAFile string `yaml:"s2s_ca_file"`
	// S2SDialbackSecret derives the Server Dialback keys (XEP-0185); the
	// nodes of a cluster need the same one. Empty: a secret is generated
	// and kept in DataDir. Default: empty.
	S2SDialbackSecret string `yaml:"s2s_dialback_secret"`
	// S2STimeout is how long stanzas for another server wait for it to be
	// reached before they bounce to their senders. At least 1s.
	// Default: 30s.
	S2STimeout time.Duration `yaml:"s2s_timeout"`
	// S2SStanzaRate is how many stanzas per second one incoming server
	// stream may deliver (bursts of twice as many); a faster peer waits.
	// Default: 500.
	S2SStanzaRate int `yaml:"s2s_stanza_rate"`

	// Per-user limits (limits.go): what one user can make the server keep.
	// Past each the request is refused with a stanza error naming the
	// limit, except the archive, which drops its oldest messages.

	// PEPMaxItemBytes bounds one PEP item's payload. Default: 524288.
	PEPMaxItemBytes int `yaml:"pep_max_item_bytes"`
	// PEPMaxItems is the most items one PEP node keeps. Default: 1000.
	PEPMaxItems int `yaml:"pep_max_items"`
	// PEPMaxNodeBytes bounds the payloads one PEP node keeps together; at
	// least PEPMaxItemBytes. Default: 1048576.
	PEPMaxNodeBytes int `yaml:"pep_max_node_bytes"`
	// PEPMaxNodes is the most PEP nodes one user may have. Default: 128.
	PEPMaxNodes int `yaml:"pep_max_nodes"`
	// RosterMaxItems is the most contacts in one roster, pending
	// subscription requests included. Default: 1000.
	RosterMaxItems int `yaml:"roster_max_items"`
	// MaxDirectedPresences is how many addresses one session's directed
	// presence is remembered for. Default: 100.
	MaxDirectedPresences int `yaml:"max_directed_presences"`
	// PrivateMaxBytes bounds one user's private XML storage (XEP-0049),
	// all namespaces together. Default: 1048576.
	PrivateMaxBytes int `yaml:"private_max_bytes"`
	// VCardMaxBytes bounds one vCard (XEP-0054). Default: 262144.
	VCardMaxBytes int `yaml:"vcard_max_bytes"`
	// ArchiveMaxMessages and ArchiveMaxBytes cap one user's archive
	// (XEP-0313); past either the oldest messages are dropped.
	// Defaults: 100000 and 268435456.
	ArchiveMaxMessages int `yaml:"archive_max_messages"`
	ArchiveMaxBytes    int `yaml:"archive_max_bytes"`
	// OfflineLimitPerSender is how many messages one sender may have
	// waiting in one user's offline queue (within OfflineLimit).
	// Default: 100.
	OfflineLimitPerSender int `yaml:"offline_limit_per_sender"`
	// MaxNewRoomsPerHour is how many rooms one user may create within an
	// hour, counted on each node. Default: 30.
	MaxNewRoomsPerHour int `yaml:"max_new_rooms_per_hour"`
	// UploadMaxFiles is how many files each user may keep shared, empty
	// ones and uploads under way included. Default: 1000.
	UploadMaxFiles int `yaml:"upload_max_files"`
	// MaxTracksPerParticipant is how many tracks one conference
	// participant may publish. Default: 8.
	MaxTracksPerParticipant int `yaml:"max_tracks_per_participant"`
	// MaxMediaSections is how many media sections of its own one
	// conference offer may carry; at least MaxTracksPerParticipant.
	// Default: 16.
	MaxMediaSections int `yaml:"max_media_sections"`

	// Time and connections (connections.go): how long a connection may
	// take, and how many one address may hold. An address is the peer, or
	// the client a trusted proxy names; IPv6 addresses count by /64.

	// MaxStreamsPerAddress is how many XMPP client streams (TCP, TLS and
	// WebSocket together) one address may have open; one more is refused
	// with policy-violation (TCP), closed (TLS) or answered 429
	// (WebSocket). 0: no limit. Default: 64.
	MaxStreamsPerAddress int `yaml:"max_streams_per_address"`
	// MaxNegotiatingPerAddress is how many of those may not have
	// authenticated yet. 0: no limit. Default: 16.
	MaxNegotiatingPerAddress int `yaml:"max_negotiating_per_address"`
	// HTTPMaxConnsPerAddress is how many HTTP connections one peer may
	// have open (one more is answered 429 and closed), and, behind a
	// trusted proxy, how many requests one client may have under way.
	// 0: no limit. Default: 128.
	HTTPMaxConnsPerAddress int `yaml:"http_max_conns_per_address"`
	// TURNMaxConnsPerAddress is how many TURN TCP and TLS connections one
	// address may have open; one more is closed. 0: no limit. Default: 32.
	TURNMaxConnsPerAddress int `yaml:"turn_max_conns_per_address"`
	// ConnLimitExempt are addresses the per-address connection limits do
	// not count: the host itself, or a local TLS-terminating proxy that
	// carries every client. Default: 127.0.0.0/8, ::1.
	ConnLimitExempt []netip.Prefix `yaml:"conn_limit_exempt"`
	// HTTPReadHeaderTimeout is how long an HTTP client has to send a
	// request's headers. Default: 10s.
	HTTPReadHeaderTimeout time.Duration `yaml:"http_read_header_timeout"`
	// HTTPReadTimeout is how long it has to send a whole request; an
	// upload instead must send 32 KiB within each such time.
	// Default: 30s.
	HTTPReadTimeout time.Duration `yaml:"http_read_timeout"`
	// HTTPWriteTimeout is how long writing a whole response may take; a
	// download instead must take 32 KiB within each such time.
	// Default: 30s.
	HTTPWriteTimeout time.Duration `yaml:"http_write_timeout"`
	// HTTPIdleTimeout closes a keep-alive connection that sends no new
	// request for this long. Default: 1m.
	HTTPIdleTimeout time.Duration `yaml:"http_idle_timeout"`
	// TURNAuthTimeout is how long a TURN TCP or TLS connection may stay
	// open without an allocation (which needs valid credentials),
	// whatever it sends meanwhile. Default: 10s.
	TURNAuthTimeout time.Duration `yaml:"turn_auth_timeout"`
}

// Default returns the configuration poosmsd uses when nothing is set.
func Default() Config {
	c := Config{
		Domain:             "localhost",
		DataDir:            "./data",
		DB:                 "sqlite",
		DBMaxConns:         32,
		C2SAddr:            ":5222",
		C2STLSAddr:         ":5223",
		HTTPAddr:           ":5280",
		MetricsAddr:        "127.0.0.1:9280",
		MaxStanzaBytes:     262144,
		Registration:       RegistrationOpen,
		LogFormat:          LogText,
		LogLevel:           slog.LevelInfo,
		AuthTimeout:        30 * time.Second,
		ResumeTimeout:      5 * time.Minute,
		UploadMaxBytes:     100 << 20,
		TURNMaxAllocations: 10,
		UploadQuotaBytes:   1 << 30,
		OfflineLimit:       1000,
		AllowPlain:         true,
		MaxSessionsPerUser: 10,
		LoginFailures:      5,
		LoginWindow:        5 * time.Minute,
		SCRAMIterations:    10000,
		IdleTimeout:        5 * time.Minute,
		WriteQueue:         256,
		MediaUDPAddr:       ":7882",
		MediaTCPAddr:       ":7881",
		TURNAddr:           ":3478",
		TURNCredentialTTL:  24 * time.Hour,
		MaxParticipants:    100,
		MaxConferences:     100,
		RedisPrefix:        "poosms:",
		NodeID:             defaultNodeID(),
		ClusterHeartbeat:   2 * time.Second,
		ClusterNodeTTL:     6 * time.Second,
		ClusterLeaseTTL:    10 * time.Second,
		ClusterRoomIdle:    5 * time.Minute,

		MaxConferencesPerUser: 5,
		MaxStanzaElements:     4096,
		MaxStanzaDepth:        32,
		MaxStanzaAttributes:   4096,
		WriteQueueBytes:       1 << 20,
		MaxPresenceBytes:      16384,
		UnackedBytes:          2 << 20,
		S2SAddr:               ":5269",
		S2STLSAddr:            ":5270",
		S2STimeout:            30 * time.Second,
		S2SStanzaRate:         500,
	}
	defaultLimits(&c)
	defaultConnLimits(&c)
	return c
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

// RedactedDB is the db setting with a MySQL password hidden, for logs.
func (c Config) RedactedDB() string { return redactDB(c.DB) }

// MinClusterSecret is the shortest cluster secret accepted, in bytes (the
// cluster package's MinSecretLen).
const MinClusterSecret = 32

// ClusterKey returns the cluster secret: ClusterSecret, or what
// ClusterSecretFile holds. A secret that is missing or shorter than
// MinClusterSecret is an *Error.
func (c Config) ClusterKey() ([]byte, error) {
	const how = "generate one with 'openssl rand -base64 48' and give every node the same"
	if c.ClusterSecretFile != "" {
		if c.ClusterSecret != "" {
			return nil, &Error{Setting: "--cluster-secret-file", Value: c.ClusterSecretFile,
				Want: "set --cluster-secret or --cluster-secret-file, not both"}
		}
		b, err := os.ReadFile(c.ClusterSecretFile)
		if err != nil {
			return nil, &Error{Setting: "--cluster-secret-file", Value: c.ClusterSecretFile, Err: err,
				Want: "want a file this node can read that holds the cluster secret (" + err.Error() + ")"}
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) < MinClusterSecret {
			return nil, &Error{Setting: "--cluster-secret-file", Value: c.ClusterSecretFile,
				Want: fmt.Sprintf("the file holds a secret of %d bytes; want at least %d: %s", len(b), MinClusterSecret, how)}
		}
		return b, nil
	}
	if len(c.ClusterSecret) < MinClusterSecret {
		shown := ""
		if c.ClusterSecret != "" {
			shown = fmt.Sprintf("(hidden, %d bytes)", len(c.ClusterSecret))
		}
		return nil, &Error{Setting: "--cluster-secret", Value: shown,
			Want: fmt.Sprintf("a cluster needs a secret of at least %d bytes that signs what the nodes exchange through Redis: "+
				"%s, in POOSMS_CLUSTER_SECRET or a file named by --cluster-secret-file (the command line shows in ps)", MinClusterSecret, how)}
	}
	return []byte(c.ClusterSecret), nil
}

// RedisRootCAs returns the CA certificates of RedisCAFile, or nil (the
// system's) when it is empty.
func (c Config) RedisRootCAs() (*x509.CertPool, error) {
	if c.RedisCAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(c.RedisCAFile)
	if err != nil {
		return nil, &Error{Setting: "--redis-ca-file", Value: c.RedisCAFile, Err: err,
			Want: "want a PEM file of CA certificates this node can read (" + err.Error() + ")"}
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, &Error{Setting: "--redis-ca-file", Value: c.RedisCAFile,
			Want: "want a PEM file holding at least one CA certificate (-----BEGIN CERTIFICATE-----)"}
	}
	return pool, nil
}

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
	if m := mysqlDriverForm.FindStringSubmatchIndex(db); m != nil {
		if m[2] < 0 {
			return db
		}
		userinfo := db[m[2]:m[3]]
		if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
			return db[:m[2]] + user + ":xxxxx@" + db[m[3]:]
		}
		return db
	}
	u, err := url.Parse(db)
	if err != nil {
		return "mysql://(unparseable)"
	}
	return u.Redacted()
}
