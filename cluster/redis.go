package cluster

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"mellium.im/xmpp/jid"
)

// Config configures a Redis-backed cluster node. Node.ID, URL and Secret
// are required; every other field has a default.
type Config struct {
	// Node is what this node advertises; Node.ID must stay the same across
	// restarts. Node.Started is filled in by Start.
	Node Node
	// URL is the Redis server, "redis://[user:password@]host:port[/db]",
	// or "rediss://…" for TLS (the server's certificate is always
	// verified).
	URL string
	// RootCAs verifies the certificate of a rediss:// server (default:
	// the system's roots).
	RootCAs *x509.CertPool
	// Secret is the cluster secret, the same on every node and at least
	// MinSecretLen bytes: what a node reads from Redis is believed only
	// when signed with it (see auth.go).
	Secret []byte
	// MaxPayloadAge is how far from this node's clock the send time of a
	// payload, or the heartbeat of a node record, may be for it to be
	// believed (default 5m). Payloads older than that are dropped; it is
	// also how long after a restart an old payload could be replayed.
	MaxPayloadAge time.Duration
	// Prefix goes before every key (default "poosms:"), so several
	// clusters or tests can share one Redis.
	Prefix string

	// HeartbeatInterval is how often the node renews its membership and
	// its leases, and looks for nodes that joined or died (default 2s).
	HeartbeatInterval time.Duration
	// NodeTTL is how long after its last heartbeat a node counts as gone
	// (default 6s).
	NodeTTL time.Duration
	// LeaseTTL is how long a placement outlives its holder's last renewal
	// (default 10s).
	LeaseTTL time.Duration
	// CleanupLockTTL bounds how long one survivor may take to clean up
	// after a dead node before another one may try (default 30s).
	CleanupLockTTL time.Duration
	// OpTimeout bounds each Redis call (default 2s).
	OpTimeout time.Duration
	// ReadBlock is how long one stream read waits for new entries
	// (default 1s); Stop may wait this long.
	ReadBlock time.Duration
	// StreamMaxLen bounds a node's backlog of unread payloads (default
	// 100000); Send to a node that far behind returns ErrBacklog.
	StreamMaxLen int64
	// MaxAttempts is how many times a payload is offered to Handler before
	// it is handed to Undeliverable (default 3).
	MaxAttempts int

	// Callbacks run on the node's own goroutines. Handler runs on the one
	// stream reader, so while it waits nothing else arrives: it should
	// queue the stanza for the session and return. The others may do
	// I/O (store offline) but should not wait on the cluster itself.

	// Handler takes payloads other nodes send here.
	Handler Handler
	// Undeliverable receives payloads a dead node never took (found while
	// cleaning up after it) and payloads this node's Handler kept refusing.
	Undeliverable Undeliverable
	// NodeGone is told about each node that stopped heartbeating or left.
	NodeGone func(ctx context.Context, id NodeID)
	// NodeJoined is told about each node that joined after this one, or
	// came back after it was gone (its users' presence may need probing).
	NodeJoined func(ctx context.Context, id NodeID)
	// HealthChanged is told when Redis becomes unreachable (false) and
	// when the node has rejoined after it came back (true).
	HealthChanged func(healthy bool)
	// SessionLost is told about a session bound here that another node
	// took over while Redis was unreachable (its login is newer): end it.
	SessionLost func(ctx context.Context, full jid.JID)
	// PlacementLost is told about a room key whose lease this node no
	// longer holds (it expired while Redis was unreachable and another
	// node took it).
	PlacementLost func(ctx context.Context, key string)

	// Clock tells the time (default the system clock).
	Clock Clock
	// Logger receives the node's logs (default slog.Default()).
	Logger *slog.Logger
}

// Redis is a cluster node whose shared state lives in Redis. Create it
// with NewRedis, then Start it.
type Redis struct {
	cfg     Config
	k       keys
	rdb     *redis.Client
	log     *slog.Logger
	clock   Clock
	m       *metrics
	sign    signer
	rejects *Rejects
	boot    uint64        // random per process: tells this run's payloads from an earlier one's
	seq     atomic.Uint64 // last sequence number sent

	healthy   atomic.Bool
	restoring atomic.Bool
	announced atomic.Bool   // HealthChanged was last told true
	wake      chan struct{} // consumer: Redis is back

	mu       sync.Mutex
	sessions map[string]jid.JID // full JIDs bound to this node
	leases   map[string]struct{}
	live     map[NodeID]struct{} // as of the last sweep
	swept    bool

	peersMu sync.RWMutex
	peers   map[NodeID][]string // Send's keys per target node

	life    sync.Mutex
	started bool
	stopped bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var _ Cluster = (*Redis)(nil)

// NewRedis validates cfg, fills in defaults and returns a node that is
// not yet started.
func NewRedis(cfg Config) (*Redis, error) {
	if err := cfg.Node.ID.Validate(); err != nil {
		return nil, err
	}
	if cfg.URL == "" {
		return nil, errors.New("cluster: no redis url")
	}
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("cluster: redis url: %w", err)
	}
	if opts.TLSConfig != nil {
		if opts.TLSConfig.InsecureSkipVerify {
			return nil, errors.New("cluster: redis url: skip_verify is refused; give the server's CA instead")
		}
		opts.TLSConfig.RootCAs = cfg.RootCAs
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	sign, err := newSigner(cfg.Secret, cfg.Prefix)
	if err != nil {
		return nil, err
	}
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&cfg.HeartbeatInterval, DefaultHeartbeatInterval)
	setDur(&cfg.NodeTTL, DefaultNodeTTL)
	setDur(&cfg.LeaseTTL, DefaultLeaseTTL)
	setDur(&cfg.CleanupLockTTL, DefaultCleanupLockTTL)
	setDur(&cfg.OpTimeout, DefaultOpTimeout)
	setDur(&cfg.ReadBlock, DefaultReadBlock)
	setDur(&cfg.MaxPayloadAge, DefaultMaxPayloadAge)
	if cfg.NodeTTL <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("cluster: node ttl %s must be longer than the heartbeat interval %s", cfg.NodeTTL, cfg.HeartbeatInterval)
	}
	if cfg.LeaseTTL <= cfg.HeartbeatInterval {
		return nil, fmt.Errorf("cluster: lease ttl %s must be longer than the heartbeat interval %s", cfg.LeaseTTL, cfg.HeartbeatInterval)
	}
	if cfg.StreamMaxLen <= 0 {
		cfg.StreamMaxLen = DefaultStreamMaxLen
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Clock == nil {
		cfg.Clock = SystemClock
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// Calls end when their contexts do, so Stop interrupts a blocked
	// stream read; socket deadlines bound every call by OpTimeout (plus
	// the block time of a stream read), so a lost server is noticed
	// promptly without a context per call.
	opts.ContextTimeoutEnabled = true
	opts.DialTimeout = cfg.OpTimeout
	opts.ReadTimeout = cfg.OpTimeout
	opts.WriteTimeout = cfg.OpTimeout
	opts.PoolTimeout = cfg.OpTimeout
	opts.MaxRetries = 1
	// No CLIENT SETINFO on connect: the nodes' ACL user need not be
	// allowed it (docs/operations.md).
	opts.DisableIdentity = true
	routeRedisLogs.Do(func() { redis.SetLogger(redisLogger{cfg.Logger}) })
	var boot [8]byte
	rand.Read(boot[:])
	log := cfg.Logger.With("node", string(cfg.Node.ID))
	r := &Redis{
		cfg:      cfg,
		k:        keys{prefix: cfg.Prefix},
		rdb:      redis.NewClient(opts),
		log:      log,
		clock:    cfg.Clock,
		m:        newMetrics(),
		sign:     sign,
		rejects:  NewRejects(log, cfg.Clock),
		boot:     binary.BigEndian.Uint64(boot[:]),
		wake:     make(chan struct{}, 1),
		sessions: map[string]jid.JID{},
		leases:   map[string]struct{}{},
		live:     map[NodeID]struct{}{},
		peers:    map[NodeID][]string{},
	}
	return r, nil
}

// routeRedisLogs sends the Redis client's own log lines (dial failures,
// mostly, which the node reports itself) to the first node's logger at
// debug level instead of standard error. The client has one logger per
// process.
var routeRedisLogs sync.Once

type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.Debug("cluster: redis client: " + fmt.Sprintf(format, v...))
}

// Collectors returns the node's Prometheus metrics for the caller to
// register.
func (r *Redis) Collectors() []prometheus.Collector {
	return append(r.m.collectors(), r.rejects.Collector())
}

// Reject counts and logs one refusal (see Rejects); cluster/link reports
// the claims it refuses through it.
func (r *Redis) Reject(reason string, attrs ...any) { r.rejects.Reject(reason, attrs...) }

// Rejects returns the node's refusal counter.
func (r *Redis) Rejects() *Rejects { return r.rejects }

// Self returns this node's ID.
func (r *Redis) Self() NodeID { return r.cfg.Node.ID }

// Healthy reports whether Redis is reachable and this node is joined.
func (r *Redis) Healthy() bool { return r.healthy.Load() }

// Start registers the node, creates its stream's consumer group and
// starts the heartbeat, the watcher and the stream reader. It fails if
// Redis cannot be reached; call Stop afterwards all the same, to close
// the connection pool. Calling it again does nothing.
func (r *Redis) Start(ctx context.Context) error {
	r.life.Lock()
	defer r.life.Unlock()
	if r.stopped {
		return errors.New("cluster: start: node was stopped")
	}
	if r.started {
		return nil
	}
	r.cfg.Node.Started = r.clock.Now().UTC()
	if err := r.join(ctx); err != nil {
		r.healthy.Store(false)
		r.m.healthy.Set(0)
		return err
	}
	r.sweep(ctx, false)
	runCtx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.started = true
	r.wg.Add(3)
	go func() {
		defer r.wg.Done()
		r.heartbeat(runCtx)
	}()
	go func() {
		defer r.wg.Done()
		r.watch(runCtx)
	}()
	go func() {
		defer r.wg.Done()
		r.consume(runCtx)
	}()
	return nil
}

// Stop leaves the cluster: it stops the background work, waits for it,
// removes this node's membership, sessions and leases (payloads still
// queued for it go to a survivor's Undeliverable) and closes the Redis
// connection. Calling it again does nothing.
func (r *Redis) Stop() { r.stop(true) }

func (r *Redis) stop(leave bool) {
	r.life.Lock()
	defer r.life.Unlock()
	if r.stopped {
		return
	}
	r.stopped = true
	if r.started {
		r.cancel()
		r.wg.Wait()
		if leave && r.Healthy() {
			ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
			r.leave(ctx)
			cancel()
		}
	}
	r.healthy.Store(false)
	r.m.healthy.Set(0)
	if err := r.rdb.Close(); err != nil {
		r.log.Debug("cluster: close redis", "err", err)
	}
}

func (r *Redis) leave(ctx context.Context) {
	id := r.cfg.Node.ID
	if err := r.rdb.Del(ctx, r.k.node(id)).Err(); err != nil {
		r.log.Warn("cluster: leave", "err", r.note(err))
		return
	}
	err := cleanupScript.Run(ctx, r.rdb,
		[]string{r.k.node(id), r.k.nodeSess(id), r.k.nodeLeases(id)},
		r.k.sessPrefix(), string(id), r.k.leasePrefix()).Err()
	if err != nil {
		r.log.Warn("cluster: leave: remove sessions", "err", r.note(err))
	}
	r.log.Info("cluster: left")
}

// join writes the membership record. When the record had lapsed or Redis
// had been unreachable, it also makes sure the consumer group exists,
// marks the node healthy and binds again whatever is bound here.
func (r *Redis) join(ctx context.Context) error {
	rec, err := r.sign.sealRecord(r.cfg.Node, r.clock.Now())
	if err != nil {
		return fmt.Errorf("cluster: join: %w", err)
	}
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	existed, err := heartbeatScript.Run(opCtx, r.rdb, []string{r.k.node(r.Self()), r.k.nodes()},
		rec, r.cfg.NodeTTL.Milliseconds(), string(r.Self())).Int()
	if err != nil {
		return r.fail("join", err)
	}
	if existed == 1 && r.Healthy() && !r.restoring.Load() {
		return nil
	}
	// Stays set until a restore completes, so a failed one is retried at
	// the next heartbeat.
	r.restoring.Store(true)
	if err := r.ensureGroup(opCtx); err != nil {
		return err
	}
	// Healthy before rebinding: a Bind racing with rebind then writes
	// to Redis itself rather than only to the local copy. The stream is
	// read, and HealthChanged told, only once every session is bound
	// again: other nodes believe this node's reports about a session only
	// when the directory says it serves it.
	r.setHealthy(true)
	if err := r.rebind(opCtx); err != nil {
		return err
	}
	r.renew(opCtx)
	r.restoring.Store(false)
	r.announce(true)
	return nil
}

// heartbeat renews membership and leases every HeartbeatInterval until
// ctx ends; it is also what notices Redis coming back. It runs apart from
// watch so a long cleanup never delays it past NodeTTL.
func (r *Redis) heartbeat(ctx context.Context) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.join(ctx); err != nil {
			if ctx.Err() == nil {
				r.log.Debug("cluster: heartbeat failed", "err", err)
			}
			continue
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		r.renew(opCtx)
		cancel()
	}
}

func (r *Redis) setHealthy(v bool) {
	if r.healthy.Swap(v) == v {
		return
	}
	if v {
		r.m.healthy.Set(1)
		r.log.Info("cluster: redis reachable; node joined")
	} else {
		r.m.healthy.Set(0)
		r.log.Warn("cluster: redis unreachable; serving local users only")
		r.announce(false)
	}
}

// announce wakes the stream reader once the node is back (its sessions
// bound again) and tells HealthChanged, once per change.
func (r *Redis) announce(v bool) {
	if r.announced.Swap(v) == v {
		return
	}
	if v {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	if r.cfg.HealthChanged != nil {
		r.cfg.HealthChanged(v)
	}
}
