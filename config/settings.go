package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"
)

// setting is one configuration knob: its name (the flag form without
// dashes), its help text, how to parse a value into a Config and how to
// render the current value.
type setting struct {
	name   string
	usage  string
	isBool bool
	isInt  bool
	isList bool   // several values: comma-separated, a YAML list, or the flag repeated
	typ    string // shown in --help: "duration", "addr", …; "string" when empty
	secret bool
	// set parses v into c. On failure it returns what the setting accepts,
	// in words, to be wrapped in an *Error.
	set func(c *Config, v string) (want string, ok bool)
	get func(c *Config) string
}

// flagName is "--name".
func (s *setting) flagName() string { return "--" + s.name }

// envName is "POOSMS_NAME".
func (s *setting) envName() string {
	return "POOSMS_" + strings.ToUpper(strings.ReplaceAll(s.name, "-", "_"))
}

// yamlKey is "name" with underscores.
func (s *setting) yamlKey() string { return strings.ReplaceAll(s.name, "-", "_") }

// settings lists every setting in the order help and Dump show them.
// "config" is handled before the others: it names the file to read.
var settings = []*setting{
	{name: "config", usage: "YAML file to read settings from",
		set: func(c *Config, v string) (string, bool) { c.Config = v; return "", true },
		get: func(c *Config) string { return c.Config }},
	{name: "domain", usage: "XMPP domain this server serves (JIDs are name@domain)",
		set: func(c *Config, v string) (string, bool) {
			d, ok := normaliseDomain(v)
			if !ok {
				return "want a domain name such as example.org (no @, / or spaces)", false
			}
			c.Domain = d
			return "", true
		},
		get: func(c *Config) string { return c.Domain }},
	strSetting("data-dir", "directory for the database, certificate and generated secrets",
		func(c *Config) *string { return &c.DataDir }),
	{name: "db", usage: `database: "sqlite", "sqlite:PATH" or "mysql://user:pass@tcp(host:port)/db"`,
		set: func(c *Config, v string) (string, bool) {
			if !validDB(v) {
				return `want "sqlite", "sqlite:PATH", "mysql://user:password@tcp(host:port)/dbname" or "mysql://user:password@host:port/dbname"`, false
			}
			c.DB = v
			return "", true
		},
		get: func(c *Config) string { return redactDB(c.DB) }},
	intSetting("db-max-conns", "most connections to a MySQL database this node opens (SQLite uses one)", 1, 10000,
		"want a whole number of connections between 1 and 10000, below the database's max_connections divided by the nodes",
		func(c *Config) *int { return &c.DBMaxConns }),
	addrSetting("c2s-addr", "client address (STARTTLS)", false, func(c *Config) *string { return &c.C2SAddr }),
	addrSetting("c2s-tls-addr", "client address with TLS from the first byte; empty disables", true, func(c *Config) *string { return &c.C2STLSAddr }),
	addrSetting("http-addr", "HTTP address: registration, web client, /xmpp-websocket, /api/turn, /healthz", false, func(c *Config) *string { return &c.HTTPAddr }),
	addrSetting("metrics-addr", "address serving Prometheus metrics at /metrics (keep it private); empty disables", true,
		func(c *Config) *string { return &c.MetricsAddr }),
	{name: "metrics-token", usage: "bearer token /metrics requires; when set, /metrics is also served on --http-addr", secret: true,
		set: func(c *Config, v string) (string, bool) {
			if v != "" && (len(v) < 16 || strings.ContainsAny(v, " \t\r\n")) {
				return "want at least 16 characters without spaces (e.g. from: openssl rand -hex 24), or empty", false
			}
			c.MetricsToken = v
			return "", true
		},
		get: func(c *Config) string { return c.MetricsToken }},
	cidrSetting("trusted-proxies", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For/Forwarded headers name the client",
		func(c *Config) *[]netip.Prefix { return &c.TrustedProxies }),
	{name: "websocket-origins", usage: "comma-separated browser origins (https://app.example.org) or host patterns (*.example.org) allowed to open /xmpp-websocket besides the server's own",
		isList: true,
		set: func(c *Config, v string) (string, bool) {
			var out []string
			for f := range strings.SplitSeq(v, ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				if !validOrigin(f) {
					return fmt.Sprintf("want comma-separated origins such as https://app.example.org or host patterns such as *.example.org (%q is neither)", f), false
				}
				out = append(out, f)
			}
			c.WebSocketOrigins = out
			return "", true
		},
		get: func(c *Config) string { return strings.Join(c.WebSocketOrigins, ",") }},
	strSetting("tls-cert", "PEM certificate file (with --tls-key; neither: self-signed in data dir)",
		func(c *Config) *string { return &c.TLSCert }),
	strSetting("tls-key", "PEM private key file (with --tls-cert)",
		func(c *Config) *string { return &c.TLSKey }),
	intSetting("max-stanza-bytes", "largest stanza accepted, in bytes", MinStanzaBytes, MaxStanzaBytes,
		"want a whole number of bytes between 4096 and 16777216",
		func(c *Config) *int { return &c.MaxStanzaBytes }),
	intSetting("max-stanza-elements", "most elements in one stanza", 64, 1<<20,
		"want a whole number of elements between 64 and 1048576",
		func(c *Config) *int { return &c.MaxStanzaElements }),
	intSetting("max-stanza-depth", "deepest nesting of elements in a stanza (the stanza is level 1)", 8, 1024,
		"want a whole number of levels between 8 and 1024",
		func(c *Config) *int { return &c.MaxStanzaDepth }),
	intSetting("max-stanza-attributes", "most attributes in one stanza, namespace declarations included", 64, 1<<20,
		"want a whole number of attributes between 64 and 1048576",
		func(c *Config) *int { return &c.MaxStanzaAttributes }),
	{name: "registration", usage: "open: anyone may register on the web form; closed: accounts via 'poosmsd user add'",
		set: func(c *Config, v string) (string, bool) {
			switch r := Registration(strings.ToLower(v)); r {
			case RegistrationOpen, RegistrationClosed:
				c.Registration = r
				return "", true
			}
			return `want "open" or "closed"`, false
		},
		get: func(c *Config) string { return string(c.Registration) }},
	{name: "log-format", usage: "log format: text or json",
		set: func(c *Config, v string) (string, bool) {
			switch f := strings.ToLower(v); f {
			case LogText, LogJSON:
				c.LogFormat = f
				return "", true
			}
			return `want "text" or "json"`, false
		},
		get: func(c *Config) string { return c.LogFormat }},
	{name: "log-level", usage: "least important log level shown: debug, info, warn or error",
		set: func(c *Config, v string) (string, bool) {
			switch strings.ToLower(v) {
			case "debug":
				c.LogLevel = slog.LevelDebug
			case "info":
				c.LogLevel = slog.LevelInfo
			case "warn":
				c.LogLevel = slog.LevelWarn
			case "error":
				c.LogLevel = slog.LevelError
			default:
				return `want "debug", "info", "warn" or "error"`, false
			}
			return "", true
		},
		get: func(c *Config) string { return strings.ToLower(c.LogLevel.String()) }},
	durSetting("auth-timeout", "time a new stream has to authenticate", time.Second,
		func(c *Config) *time.Duration { return &c.AuthTimeout }),
	intSetting("offline-limit", "messages kept for an offline user", 1, 1<<30,
		"want a whole number of messages, at least 1",
		func(c *Config) *int { return &c.OfflineLimit }),
	boolSetting("allow-plain", "allow SASL PLAIN inside TLS", func(c *Config) *bool { return &c.AllowPlain }),
	boolSetting("allow-insecure-loopback-auth", "allow authentication without TLS on loopback connections (development only)",
		func(c *Config) *bool { return &c.AllowInsecureLoopbackAuth }),
	strSetting("upload-dir", "folder for shared files (XEP-0363); empty: DATA_DIR/uploads",
		func(c *Config) *string { return &c.UploadDir }),
	strSetting("upload-url", "public base URL of uploaded files, e.g. https://chat.example.org/upload; empty: http://DOMAIN:HTTP-PORT/upload",
		func(c *Config) *string { return &c.UploadURL }),
	intSetting("upload-max-bytes", "largest file a user may share", 1024, 1<<40,
		"want a whole number of bytes, at least 1024",
		func(c *Config) *int { return &c.UploadMaxBytes }),
	intSetting("upload-quota-bytes", "storage each user may fill with shared files", 1024, 1<<50,
		"want a whole number of bytes, at least 1024",
		func(c *Config) *int { return &c.UploadQuotaBytes }),
	durSetting("archive-retention", "how long message history (XEP-0313) is kept; 0 keeps it forever", 0,
		func(c *Config) *time.Duration { return &c.ArchiveRetention }),
	intSetting("turn-max-allocations", "TURN allocations one user may hold at once", 1, 1<<20,
		"want a whole number of allocations, at least 1",
		func(c *Config) *int { return &c.TURNMaxAllocations }),
	addrSetting("debug-addr", "address serving Go's pprof profiles at /debug/pprof/ (keep it on loopback); empty disables", true,
		func(c *Config) *string { return &c.DebugAddr }),
	intSetting("gc-percent", "the Go collector's target (GOGC): heap growth past the live heap before a collection, in percent; 0 is automatic (100 for a small live heap, down to 25 past 32 MiB live; GOGC from the environment wins)", 0, 10000,
		"want a whole number of percent between 0 and 10000",
		func(c *Config) *int { return &c.GCPercent }),
	boolSetting("inband-registration", "let clients create accounts on the XMPP stream (XEP-0077)",
		func(c *Config) *bool { return &c.InBandRegistration }),
	durSetting("resume-timeout", "how long a lost session waits for its client to resume it (XEP-0198)", time.Second,
		func(c *Config) *time.Duration { return &c.ResumeTimeout }),
	intSetting("max-sessions-per-user", "resources one account may have online at once", 1, 1<<16,
		"want a whole number between 1 and 65536",
		func(c *Config) *int { return &c.MaxSessionsPerUser }),
	intSetting("login-failures", "failed logins per account and per address within --login-window before throttling", 1, 1<<20,
		"want a whole number of attempts, at least 1",
		func(c *Config) *int { return &c.LoginFailures }),
	durSetting("login-window", "window over which failed logins are counted", time.Second,
		func(c *Config) *time.Duration { return &c.LoginWindow }),
	intSetting("scram-iterations", "PBKDF2 iterations of new password verifiers; weaker stored ones are upgraded at login", 4096, 1<<24,
		"want a whole number of iterations between 4096 (the least RFC 7677 allows) and 16777216",
		func(c *Config) *int { return &c.SCRAMIterations }),
	durSetting("idle-timeout", "close a stream that has sent nothing for this long", time.Second,
		func(c *Config) *time.Duration { return &c.IdleTimeout }),
	intSetting("write-queue", "stanzas queued per session before a slow client is disconnected", 1, 1<<20,
		"want a whole number of stanzas, at least 1",
		func(c *Config) *int { return &c.WriteQueue }),
	intSetting("write-queue-bytes", "bytes queued per session before a slow client is disconnected", 16384, 1<<30,
		"want a whole number of bytes between 16384 and 1073741824",
		func(c *Config) *int { return &c.WriteQueueBytes }),
	intSetting("max-presence-bytes", "largest presence stanza a client may send, in bytes (presence is copied to every contact and room occupant)", 1024, MaxStanzaBytes,
		"want a whole number of bytes between 1024 and 16777216",
		func(c *Config) *int { return &c.MaxPresenceBytes }),
	intSetting("unacked-bytes", "bytes of stanzas a session keeps until its client acknowledges them (XEP-0198), also while it waits to be resumed", 16384, 1<<30,
		"want a whole number of bytes between 16384 and 1073741824",
		func(c *Config) *int { return &c.UnackedBytes }),
	addrSetting("media-udp-addr", "UDP address for all conference media", false, func(c *Config) *string { return &c.MediaUDPAddr }),
	addrSetting("media-tcp-addr", "TCP address for conference media; empty disables", true, func(c *Config) *string { return &c.MediaTCPAddr }),
	{name: "public-ip", usage: "IP address clients reach this host at, when behind NAT",
		set: func(c *Config, v string) (string, bool) {
			if v == "" {
				c.PublicIP = netip.Addr{}
				return "", true
			}
			a, err := netip.ParseAddr(v)
			if err != nil || a.Zone() != "" {
				return "want an IPv4 or IPv6 address such as 203.0.113.7, or empty", false
			}
			c.PublicIP = a.Unmap()
			return "", true
		},
		get: func(c *Config) string {
			if !c.PublicIP.IsValid() {
				return ""
			}
			return c.PublicIP.String()
		}},
	addrSetting("turn-addr", "TURN/STUN address (UDP and TCP); empty disables the relay", true, func(c *Config) *string { return &c.TURNAddr }),
	addrSetting("turn-tls-addr", "TURN-over-TLS address; empty disables", true, func(c *Config) *string { return &c.TURNTLSAddr }),
	{name: "turn-secret", usage: "secret signing TURN credentials (empty: generated in the data dir)", secret: true,
		set: func(c *Config, v string) (string, bool) { c.TURNSecret = v; return "", true },
		get: func(c *Config) string { return c.TURNSecret }},
	durSetting("turn-credential-ttl", "lifetime of a TURN credential", time.Minute,
		func(c *Config) *time.Duration { return &c.TURNCredentialTTL }),
	cidrSetting("turn-allow-peers", "comma-separated CIDRs the relay may reach although private or loopback",
		func(c *Config) *[]netip.Prefix { return &c.TURNAllowPeers }),
	boolSetting("turn-allow-self", "let the relay reach this host's own addresses (its SFU, TURN and other services) even inside --turn-allow-peers; for tests",
		func(c *Config) *bool { return &c.TURNAllowSelf }),
	{name: "redis", usage: "Redis URL shared by the nodes of a cluster, redis://[user:password@]host:port[/db] or rediss:// (TLS); empty runs one node on its own",
		set: func(c *Config, v string) (string, bool) {
			if v != "" && !validRedis(v) {
				return "want a URL such as redis://127.0.0.1:6379 or rediss://poosms:password@redis.example.org:6380/0, or empty for a single node", false
			}
			if u, _ := url.Parse(v); u != nil && u.Query().Has("skip_verify") {
				return "the Redis server's certificate is always verified: remove skip_verify and, for a private CA, give it with --redis-ca-file", false
			}
			c.Redis = v
			return "", true
		},
		get: func(c *Config) string { return redactURL(c.Redis) }},
	{name: "redis-prefix", usage: "prefix of every Redis key this cluster uses (several clusters may share one Redis)",
		set: func(c *Config, v string) (string, bool) {
			if v == "" || len(v) > 64 || strings.ContainsAny(v, " \t\r\n") {
				return "want 1 to 64 characters without spaces, such as poosms: or {poosms}:", false
			}
			c.RedisPrefix = v
			return "", true
		},
		get: func(c *Config) string { return c.RedisPrefix }},
	strSetting("redis-ca-file", "PEM file of the CA certificates a rediss:// server is checked against (empty: the system's)",
		func(c *Config) *string { return &c.RedisCAFile }),
	{name: "cluster-secret", usage: "secret of at least 32 bytes, the same on every node, signing what nodes exchange through Redis (required with --redis)", secret: true,
		set: func(c *Config, v string) (string, bool) { c.ClusterSecret = v; return "", true },
		get: func(c *Config) string { return c.ClusterSecret }},
	strSetting("cluster-secret-file", "file holding the cluster secret, instead of --cluster-secret",
		func(c *Config) *string { return &c.ClusterSecretFile }),
	{name: "node-id", usage: "this node's name in a cluster; keep it across restarts and unique among the nodes",
		set: func(c *Config, v string) (string, bool) {
			if !nodeID.MatchString(v) {
				return "want 1 to 64 letters, digits, '.', '_' or '-', such as node1", false
			}
			c.NodeID = v
			return "", true
		},
		get: func(c *Config) string { return c.NodeID }},
	durSetting("cluster-heartbeat", "how often a cluster node renews its membership and room leases", 50*time.Millisecond,
		func(c *Config) *time.Duration { return &c.ClusterHeartbeat }),
	durSetting("cluster-node-ttl", "how long after its last heartbeat a cluster node counts as gone (longer than --cluster-heartbeat)", 100*time.Millisecond,
		func(c *Config) *time.Duration { return &c.ClusterNodeTTL }),
	durSetting("cluster-lease-ttl", "how long a room's placement outlives its host's last heartbeat (longer than --cluster-heartbeat)", 100*time.Millisecond,
		func(c *Config) *time.Duration { return &c.ClusterLeaseTTL }),
	durSetting("cluster-room-idle", "how long a room nobody is in keeps its placement on its node after its last stanza; then it is given back (a node that is sent a stanza for it places it again)", 100*time.Millisecond,
		func(c *Config) *time.Duration { return &c.ClusterRoomIdle }),
	intSetting("max-participants", "people in one conference", 1, 1<<16,
		"want a whole number between 1 and 65536",
		func(c *Config) *int { return &c.MaxParticipants }),
	intSetting("max-conferences", "conferences running at once on this node", 1, 1<<20,
		"want a whole number, at least 1",
		func(c *Config) *int { return &c.MaxConferences }),
	intSetting("max-conferences-per-user", "conferences one user may have opened that still run on this node", 1, 1<<20,
		"want a whole number, at least 1",
		func(c *Config) *int { return &c.MaxConferencesPerUser }),
	addrSetting("s2s-addr", "address other XMPP servers federate with (STARTTLS); empty turns federation off", true,
		func(c *Config) *string { return &c.S2SAddr }),
	addrSetting("s2s-tls-addr", "address other servers federate with using TLS from the first byte; empty disables", true,
		func(c *Config) *string { return &c.S2STLSAddr }),
	domainList("s2s-allow", "the only domains (with their subdomains) to federate with; empty: any",
		func(c *Config) *[]string { return &c.S2SAllow }),
	domainList("s2s-deny", "domains (with their subdomains) never to federate with",
		func(c *Config) *[]string { return &c.S2SDeny }),
	{name: "s2s-route", usage: "DOMAIN=HOST:PORT: reach DOMAIN's server there instead of through DNS (repeatable)", isList: true, typ: "route",
		set: func(c *Config, v string) (string, bool) {
			var routes map[string]string
			for f := range strings.SplitSeq(v, ",") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				d, addr, ok := strings.Cut(f, "=")
				dom, okDom := normaliseDomain(strings.TrimSpace(d))
				host, _, err := net.SplitHostPort(strings.TrimSpace(addr))
				if !ok || !okDom || err != nil || host == "" || !validAddr(strings.TrimSpace(addr)) {
					return fmt.Sprintf("want DOMAIN=HOST:PORT, such as chat.example.net=10.0.0.5:5269 (%q is not one)", f), false
				}
				if routes == nil {
					routes = map[string]string{}
				}
				routes[dom] = strings.TrimSpace(addr)
			}
			c.S2SRoutes = routes
			return "", true
		},
		get: func(c *Config) string {
			out := make([]string, 0, len(c.S2SRoutes))
			for d, a := range c.S2SRoutes {
				out = append(out, d+"="+a)
			}
			slices.Sort(out)
			return strings.Join(out, ",")
		}},
	boolSetting("s2s-secure-auth", "require certificates valid for the peer's domain on server streams (no dialback on DNS alone)",
		func(c *Config) *bool { return &c.S2SSecureAuth }),
	strSetting("s2s-ca-file", "PEM file of certificate authorities trusted for other servers, besides the system's",
		func(c *Config) *string { return &c.S2SCAFile }),
	{name: "s2s-dialback-secret", usage: "secret deriving Server Dialback keys, the same on every node (empty: generated in the data dir)", secret: true,
		set: func(c *Config, v string) (string, bool) {
			if v != "" && len(v) < 16 {
				return "want at least 16 characters, or empty to have one generated", false
			}
			c.S2SDialbackSecret = v
			return "", true
		},
		get: func(c *Config) string { return c.S2SDialbackSecret }},
	durSetting("s2s-timeout", "how long stanzas wait for another server to be reached before they bounce", time.Second,
		func(c *Config) *time.Duration { return &c.S2STimeout }),
	intSetting("s2s-stanza-rate", "stanzas per second one incoming server stream may deliver (bursts of twice as many)", 1, 1<<20,
		"want a whole number of stanzas per second, at least 1",
		func(c *Config) *int { return &c.S2SStanzaRate }),
}

// domainList is a list setting of domain names.
func domainList(name, usage string, field func(*Config) *[]string) *setting {
	return &setting{name: name, usage: usage, isList: true, typ: "domains",
		set: func(c *Config, v string) (string, bool) {
			var out []string
			for f := range strings.SplitSeq(v, ",") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				d, ok := normaliseDomain(f)
				if !ok {
					return fmt.Sprintf("want comma-separated domains such as example.org,chat.example.net (%q is not one)", f), false
				}
				if !slices.Contains(out, d) {
					out = append(out, d)
				}
			}
			*field(c) = out
			return "", true
		},
		get: func(c *Config) string { return strings.Join(*field(c), ",") }}
}

// nodeID is what a cluster node's ID may hold.
var nodeID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// validRedis reports whether v is a redis:// or rediss:// URL with a host.
func validRedis(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "redis" || u.Scheme == "rediss") && u.Host != ""
}

// redactURL hides a password in a URL setting.
func redactURL(v string) string {
	u, err := url.Parse(v)
	if err != nil || u.User == nil {
		return v
	}
	return u.Redacted()
}

func lookup(name string) *setting {
	for _, s := range settings {
		if s.name == name {
			return s
		}
	}
	return nil
}

func strSetting(name, usage string, field func(*Config) *string) *setting {
	return &setting{name: name, usage: usage,
		set: func(c *Config, v string) (string, bool) { *field(c) = v; return "", true },
		get: func(c *Config) string { return *field(c) }}
}

func addrSetting(name, usage string, emptyOK bool, field func(*Config) *string) *setting {
	want := "want host:port or :port, with a port from 0 to 65535"
	if emptyOK {
		want += ", or empty to disable"
	}
	return &setting{name: name, usage: usage, typ: "addr",
		set: func(c *Config, v string) (string, bool) {
			if v == "" && emptyOK || validAddr(v) {
				*field(c) = v
				return "", true
			}
			return want, false
		},
		get: func(c *Config) string { return *field(c) }}
}

func intSetting(name, usage string, lo, hi int, want string, field func(*Config) *int) *setting {
	return &setting{name: name, usage: usage, isInt: true, typ: "int",
		set: func(c *Config, v string) (string, bool) {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < lo || n > hi {
				return want, false
			}
			*field(c) = n
			return "", true
		},
		get: func(c *Config) string { return strconv.Itoa(*field(c)) }}
}

func durSetting(name, usage string, lo time.Duration, field func(*Config) *time.Duration) *setting {
	want := fmt.Sprintf("want a duration such as 90s, 5m or 1h30m, at least %s", shortDur(lo))
	return &setting{name: name, usage: usage, typ: "duration",
		set: func(c *Config, v string) (string, bool) {
			d, err := time.ParseDuration(strings.TrimSpace(v))
			if err != nil || d < lo {
				return want, false
			}
			*field(c) = d
			return "", true
		},
		get: func(c *Config) string { return shortDur(*field(c)) }}
}

// cidrSetting is a comma-separated list of CIDR ranges (a list in YAML);
// a bare address is a range of one.
func cidrSetting(name, usage string, field func(*Config) *[]netip.Prefix) *setting {
	return &setting{name: name, usage: usage, isList: true,
		set: func(c *Config, v string) (string, bool) {
			var ps []netip.Prefix
			for f := range strings.SplitSeq(v, ",") {
				f = strings.TrimSpace(f)
				if f == "" {
					continue
				}
				p, err := netip.ParsePrefix(f)
				if a, aerr := netip.ParseAddr(f); err != nil && aerr == nil && a.Zone() == "" {
					p, err = a.Unmap().Prefix(a.Unmap().BitLen()) // one address
				}
				if err != nil {
					return fmt.Sprintf("want comma-separated CIDR ranges such as 10.0.0.0/8,fd00::/8 (%q is not one)", f), false
				}
				ps = append(ps, p.Masked())
			}
			*field(c) = ps
			return "", true
		},
		get: func(c *Config) string {
			s := make([]string, len(*field(c)))
			for i, p := range *field(c) {
				s[i] = p.String()
			}
			return strings.Join(s, ",")
		}}
}

// validOrigin accepts an exact origin (scheme://host[:port], no path) or
// a host pattern (letters, digits, '.', '-', ':', '*', '?', '[', ']').
func validOrigin(v string) bool {
	if scheme, host, ok := strings.Cut(v, "://"); ok {
		u, err := url.Parse(v)
		return err == nil && (scheme == "https" || scheme == "http") && host != "" && u.Host == host && u.Path == "" && u.RawQuery == ""
	}
	if _, err := path.Match(v, ""); err != nil {
		return false
	}
	return strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:*?[]") == ""
}

func boolSetting(name, usage string, field func(*Config) *bool) *setting {
	return &setting{name: name, usage: usage, isBool: true,
		set: func(c *Config, v string) (string, bool) {
			b, err := strconv.ParseBool(strings.TrimSpace(v))
			if err != nil {
				return `want "true" or "false"`, false
			}
			*field(c) = b
			return "", true
		},
		get: func(c *Config) string { return strconv.FormatBool(*field(c)) }}
}

// shortDur renders 5m0s as 5m and 24h0m0s as 24h.
func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func normaliseDomain(v string) (string, bool) {
	if v == "" || strings.ContainsAny(v, "@/ \t") {
		return "", false
	}
	j, err := jid.New("", v, "")
	if err != nil || j.Domainpart() == "" {
		return "", false
	}
	return j.Domainpart(), true
}

func validAddr(v string) bool {
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// mysqlDriverForm matches mysql://[user[:password]@]tcp(host:port)/dbname[?params]
// (or unix(/path)), the MySQL driver's own DSN after the scheme. The
// address is the last "net(…)" after an "@", so the password may hold any
// character; group 1 is "user[:password]@".
var mysqlDriverForm = regexp.MustCompile(`^(?s)mysql://(.*@)?(tcp|unix)\([^)]*\)/[^/?]+(\?.*)?$`)

func validDB(v string) bool {
	switch {
	case v == "sqlite":
		return true
	case strings.HasPrefix(v, "sqlite:"):
		return len(v) > len("sqlite:")
	case strings.HasPrefix(v, "mysql://"):
		if mysqlDriverForm.MatchString(v) {
			return true
		}
		u, err := url.Parse(v)
		return err == nil && u.Host != "" && strings.Trim(u.Path, "/") != ""
	}
	return false
}
