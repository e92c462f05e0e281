package cluster

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
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

func (r *Redis) ensureGroup(ctx context.Context) error {
	err := r.rdb.XGroupCreateMkStream(ctx, r.k.stream(r.Self()), consumerGroup, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return r.fail("create consumer group", err)
	}
	return nil
}

// rebind binds again every session this node holds, except those another
// live node has taken meanwhile.
func (r *Redis) rebind(ctx context.Context) error {
	r.mu.Lock()
	fulls := make([]jid.JID, 0, len(r.sessions))
	for _, j := range r.sessions {
		fulls = append(fulls, j)
	}
	r.mu.Unlock()
	if len(fulls) == 0 {
		return nil
	}
	self := r.Self()
	// Scripts in a pipeline go in full (Eval): EvalSha's fallback to Eval
	// on NOSCRIPT cannot work there.
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(fulls))
	for i, full := range fulls {
		cmds[i] = rebindScript.Eval(ctx, pipe,
			[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(self)},
			full.Resourcepart(), r.sign.sealSession(full.String(), self), full.String(),
			r.k.prefix+"nodesess:", r.k.nodePrefix(), string(self))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return r.fail("rebind sessions", err)
	}
	for i, cmd := range cmds {
		held, _ := cmd.Text() // "" when bound here again
		if held != "" {
			if _, ok := r.sign.openSession(fulls[i].String(), held); !ok {
				// Not written by a node: nobody's login took it. Bind it
				// here over the forgery rather than end the session.
				r.rejects.Reject(RejectSessionEntry, "jid", fulls[i].String())
				if _, err := r.bindEntry(ctx, fulls[i], self); err != nil {
					return r.fail("rebind sessions", err)
				}
				held = ""
			}
		}
		r.mu.Lock()
		_, still := r.sessions[fulls[i].String()]
		r.mu.Unlock()
		if held == "" && !still {
			// Ended while we were binding it again: take it back out.
			if err := unbindScript.Run(ctx, r.rdb,
				[]string{r.k.sess(fulls[i].Bare().String()), r.k.nodeSess(self)},
				fulls[i].Resourcepart(), string(self), fulls[i].String()).Err(); err != nil {
				return r.fail("rebind sessions", err)
			}
			continue
		}
		if held != "" {
			r.mu.Lock()
			delete(r.sessions, fulls[i].String())
			r.m.sessions.Set(float64(len(r.sessions)))
			r.mu.Unlock()
			r.log.Info("cluster: session taken by another node while redis was away", "jid", fulls[i].String())
			if r.cfg.SessionLost != nil {
				r.cfg.SessionLost(ctx, fulls[i])
			}
		}
	}
	r.log.Info("cluster: sessions bound again", "count", len(fulls))
	return nil
}

// renew extends every lease this node holds and forgets those it lost.
func (r *Redis) renew(ctx context.Context) {
	r.mu.Lock()
	keys := make([]string, 0, len(r.leases))
	for k := range r.leases {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	if len(keys) == 0 {
		return
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = renewScript.Eval(ctx, pipe, []string{r.k.lease(k)}, string(r.Self()), r.cfg.LeaseTTL.Milliseconds())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.log.Warn("cluster: renew leases", "err", r.note(err))
		return
	}
	for i, cmd := range cmds {
		if n, _ := cmd.Int(); n == 0 {
			r.mu.Lock()
			delete(r.leases, keys[i])
			r.m.leases.Set(float64(len(r.leases)))
			r.mu.Unlock()
			r.log.Info("cluster: lease lost", "room", keys[i])
			if r.cfg.PlacementLost != nil {
				r.cfg.PlacementLost(ctx, keys[i])
			}
		}
	}
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

// watch sweeps for nodes that joined, went away or need cleaning up after
// every HeartbeatInterval until ctx ends.
func (r *Redis) watch(ctx context.Context) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.Healthy() {
			r.sweep(ctx, true)
		}
	}
}

// sweep compares the live nodes with the last sweep, reports the ones that
// joined or went away and cleans up after dead nodes nobody has cleaned up
// yet. The first sweep (in Start, with clean false) only notes who is
// alive, so Start does not wait for a cleanup.
func (r *Redis) sweep(ctx context.Context, clean bool) {
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	ids, err := r.rdb.SMembers(opCtx, r.k.nodes()).Result()
	if err != nil {
		r.note(err)
		return
	}
	recs, there, err := r.records(opCtx, ids)
	if err != nil {
		r.note(err)
		return
	}
	live := make(map[NodeID]struct{}, len(ids))
	var dead []NodeID
	for i, id := range ids {
		switch {
		case recs[i].ID != "":
			live[NodeID(id)] = struct{}{}
		case !there[i] && NodeID(id) != r.Self():
			// No record at all: the node is gone. A record that is there
			// but not believed leaves the node neither live nor gone:
			// cleanup waits for the key to go.
			dead = append(dead, NodeID(id))
		}
	}
	r.mu.Lock()
	var gone, joined []NodeID
	for id := range r.live {
		if _, ok := live[id]; !ok && id != r.Self() {
			gone = append(gone, id)
		}
	}
	if r.swept {
		for id := range live {
			if _, ok := r.live[id]; !ok && id != r.Self() {
				joined = append(joined, id)
			}
		}
	}
	r.live, r.swept = live, true
	r.mu.Unlock()
	for _, id := range joined {
		r.log.Info("cluster: node joined", "joined", string(id))
		if r.cfg.NodeJoined != nil {
			r.cfg.NodeJoined(ctx, id)
		}
	}
	for _, id := range gone {
		r.log.Info("cluster: node gone", "gone", string(id))
		if r.cfg.NodeGone != nil {
			r.cfg.NodeGone(ctx, id)
		}
	}
	if !clean {
		return
	}
	for _, id := range dead {
		r.cleanup(ctx, id)
	}
}

// cleanup removes a dead node's sessions and leases and hands its unread
// payloads to Undeliverable, if this node wins the cleanup lock.
func (r *Redis) cleanup(ctx context.Context, dead NodeID) {
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.CleanupLockTTL)
	defer cancel()
	ok, err := r.rdb.SetNX(opCtx, r.k.cleanup(dead), string(r.Self()), r.cfg.CleanupLockTTL).Result()
	if err != nil || !ok {
		r.note(err)
		return
	}
	log := r.log.With("dead", string(dead))
	n, err := cleanupScript.Run(opCtx, r.rdb,
		[]string{r.k.node(dead), r.k.nodeSess(dead), r.k.nodeLeases(dead)},
		r.k.sessPrefix(), string(dead), r.k.leasePrefix()).Int()
	if err != nil {
		log.Warn("cluster: clean up dead node", "err", r.note(err))
		return
	}
	if n < 0 {
		r.rdb.Del(opCtx, r.k.cleanup(dead))
		return
	}
	handed := 0
	guard := newReplayGuard(r.cfg.MaxPayloadAge)
	for {
		msgs, err := r.rdb.XRangeN(opCtx, r.k.stream(dead), "-", "+", 100).Result()
		if err != nil {
			log.Warn("cluster: read dead node's stream", "err", r.note(err))
			return
		}
		if len(msgs) == 0 {
			break
		}
		ids := make([]any, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
			e, ok := decodeEntry(m.Values)
			if !ok || !r.believe(&e, dead, guard) {
				continue
			}
			guard.mark(r.clock.Now(), e.from, e.boot, e.seq, e.stamp)
			if r.cfg.Undeliverable != nil {
				r.cfg.Undeliverable(opCtx, dead, e.from, e.payload)
			}
			handed++
		}
		res, err := dropScript.Run(opCtx, r.rdb, []string{r.k.node(dead), r.k.stream(dead)}, ids...).Int()
		if err != nil {
			log.Warn("cluster: trim dead node's stream", "err", r.note(err))
			return
		}
		if res < 0 {
			log.Info("cluster: node came back during cleanup")
			return
		}
	}
	if err := forgetScript.Run(opCtx, r.rdb,
		[]string{r.k.node(dead), r.k.stream(dead), r.k.nodes(), r.k.cleanup(dead)}, string(dead)).Err(); err != nil {
		log.Warn("cluster: forget dead node", "err", r.note(err))
		return
	}
	log.Info("cluster: cleaned up after dead node", "sessions", n, "undelivered", handed)
}

// Nodes lists the live nodes, sorted by ID.
func (r *Redis) Nodes(ctx context.Context) ([]Node, error) {
	if !r.Healthy() {
		return nil, r.unavailable("nodes")
	}
	ids, err := r.rdb.SMembers(ctx, r.k.nodes()).Result()
	if err != nil {
		return nil, r.wrap(ctx, "nodes", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	recs, _, err := r.records(ctx, ids)
	if err != nil {
		return nil, r.wrap(ctx, "nodes", err)
	}
	out := make([]Node, 0, len(recs))
	for _, n := range recs {
		if n.ID != "" {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}

// Node returns a live node's record, or ErrNotFound.
func (r *Redis) Node(ctx context.Context, id NodeID) (Node, error) {
	if !r.Healthy() {
		return Node{}, r.unavailable("node")
	}
	s, err := r.rdb.Get(ctx, r.k.node(id)).Result()
	if err != nil {
		return Node{}, r.wrap(ctx, "node "+string(id), err)
	}
	n, err := r.sign.openRecord(id, s, r.clock.Now(), r.cfg.MaxPayloadAge)
	if err != nil {
		r.rejects.Reject(RejectNodeRecord, "node_id", string(id), "err", err)
		return Node{}, fmt.Errorf("cluster: node %s: %w", id, err)
	}
	return n, nil
}

// records reads the records of the nodes ids. recs[i] is the record of
// ids[i] when it is signed with the cluster secret and fresh, else the
// zero Node; there[i] says whether Redis holds a record at all.
func (r *Redis) records(ctx context.Context, ids []string) (recs []Node, there []bool, err error) {
	recs, there = make([]Node, len(ids)), make([]bool, len(ids))
	if len(ids) == 0 {
		return recs, there, nil
	}
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = r.k.node(NodeID(id))
	}
	vals, err := r.rdb.MGet(ctx, ks...).Result()
	if err != nil {
		return nil, nil, err
	}
	now := r.clock.Now()
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		there[i] = true
		n, err := r.sign.openRecord(NodeID(ids[i]), s, now, r.cfg.MaxPayloadAge)
		if err != nil {
			r.rejects.Reject(RejectNodeRecord, "node_id", ids[i], "err", err)
			continue
		}
		recs[i] = n
	}
	return recs, there, nil
}

// Bind records that node serves full and returns the node that served it
// before ("" if none or gone; node itself if it already did). When node is
// this node the binding is also kept locally and written again after
// Redis comes back, so while Redis is unreachable Bind returns
// ErrUnavailable but the session may go on locally.
func (r *Redis) Bind(ctx context.Context, full jid.JID, node NodeID) (NodeID, error) {
	if full.Resourcepart() == "" {
		return "", fmt.Errorf("cluster: bind %s: not a full jid", full)
	}
	if node == r.Self() {
		r.mu.Lock()
		r.sessions[full.String()] = full
		r.m.sessions.Set(float64(len(r.sessions)))
		r.mu.Unlock()
	}
	if !r.Healthy() {
		return "", r.unavailable("bind")
	}
	prev, err := r.bindEntry(ctx, full, node)
	if err != nil {
		return "", r.wrap(ctx, "bind", err)
	}
	if prev == "" {
		return "", nil
	}
	holder, ok := r.sign.openSession(full.String(), prev)
	if !ok {
		r.rejects.Reject(RejectSessionEntry, "jid", full.String())
		return "", nil
	}
	return holder, nil
}

// bindEntry writes the directory entry saying node serves full and
// returns the entry it replaced ("" when none, or its node is gone).
func (r *Redis) bindEntry(ctx context.Context, full jid.JID, node NodeID) (string, error) {
	return bindScript.Run(ctx, r.rdb,
		[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(node)},
		full.Resourcepart(), r.sign.sealSession(full.String(), node), full.String(),
		r.k.prefix+"nodesess:", r.k.nodePrefix(), string(node)).Text()
}

// Unbind removes full if node still serves it.
func (r *Redis) Unbind(ctx context.Context, full jid.JID, node NodeID) error {
	if node == r.Self() {
		r.mu.Lock()
		delete(r.sessions, full.String())
		r.m.sessions.Set(float64(len(r.sessions)))
		r.mu.Unlock()
	}
	if !r.Healthy() {
		return r.unavailable("unbind")
	}
	err := unbindScript.Run(ctx, r.rdb,
		[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(node)},
		full.Resourcepart(), string(node), full.String()).Err()
	if err != nil {
		return r.wrap(ctx, "unbind", err)
	}
	return nil
}

// Resources lists bare's sessions on every node.
func (r *Redis) Resources(ctx context.Context, bare jid.JID) ([]Entry, error) {
	if !r.Healthy() {
		return nil, r.unavailable("resources")
	}
	b := bare.Bare()
	m, err := r.rdb.HGetAll(ctx, r.k.sess(b.String())).Result()
	if err != nil {
		return nil, r.wrap(ctx, "resources", err)
	}
	out := make([]Entry, 0, len(m))
	for res, v := range m {
		full, err := b.WithResource(res)
		if err != nil {
			continue
		}
		node, ok := r.sign.openSession(full.String(), v)
		if !ok {
			r.rejects.Reject(RejectSessionEntry, "jid", full.String())
			continue
		}
		out = append(out, Entry{Full: full, Node: node})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Full.Resourcepart(), b.Full.Resourcepart()) })
	return out, nil
}

// Owners returns the node serving each of fulls, "" for a full JID no
// node serves (or whose directory entry is not signed with the cluster
// secret).
func (r *Redis) Owners(ctx context.Context, fulls []jid.JID) ([]NodeID, error) {
	if !r.Healthy() {
		return nil, r.unavailable("owners")
	}
	out := make([]NodeID, len(fulls))
	if len(fulls) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(fulls))
	for i, full := range fulls {
		cmds[i] = pipe.HGet(ctx, r.k.sess(full.Bare().String()), full.Resourcepart())
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, r.wrap(ctx, "owners", err)
	}
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil {
			continue
		}
		node, ok := r.sign.openSession(fulls[i].String(), v)
		if !ok {
			r.rejects.Reject(RejectSessionEntry, "jid", fulls[i].String())
			continue
		}
		out[i] = node
	}
	return out, nil
}

// Send queues payload on node to's stream. It returns ErrNodeGone when to
// is not alive, ErrBacklog when to is too far behind and ErrUnavailable
// when Redis cannot be reached; in each case nothing was queued.
func (r *Redis) Send(ctx context.Context, to NodeID, payload []byte) error {
	if !r.Healthy() {
		return r.unavailable("send")
	}
	e := envelope{from: r.Self(), stamp: r.clock.Now().UnixNano(), boot: r.boot, seq: r.seq.Add(1)}
	sealed, auth := r.sign.sealPayload(to, e, payload)
	n, err := sendScript.Run(ctx, r.rdb, r.sendKeys(to),
		r.cfg.StreamMaxLen, string(e.from), strconv.FormatInt(e.stamp, 10), sealed, auth).Int()
	if err != nil {
		return r.wrap(ctx, "send to "+string(to), err)
	}
	switch n {
	case 0:
		return fmt.Errorf("cluster: send to %s: %w", to, ErrNodeGone)
	case -1:
		return fmt.Errorf("cluster: send to %s: %w", to, ErrBacklog)
	}
	r.m.sent.Inc()
	return nil
}

// sendKeys returns the keys Send touches for node to, built once per node.
// The slice is shared: it must not be changed.
func (r *Redis) sendKeys(to NodeID) []string {
	r.peersMu.RLock()
	ks, ok := r.peers[to]
	r.peersMu.RUnlock()
	if ok {
		return ks
	}
	ks = []string{r.k.node(to), r.k.stream(to)}
	r.peersMu.Lock()
	if len(r.peers) > 4096 { // node IDs are few; bound it anyway
		clear(r.peers)
	}
	r.peers[to] = ks
	r.peersMu.Unlock()
	return ks
}

// consume reads this node's stream until ctx ends: first the entries it
// read before but never acknowledged (a restart, a refused payload),
// then new ones. Entries are acknowledged and deleted once Handler takes
// them.
func (r *Redis) consume(ctx context.Context) {
	stream := r.k.stream(r.Self())
	attempts := map[string]int{}
	guard := newReplayGuard(r.cfg.MaxPayloadAge)
	pending, cursor := true, "0"
	retry := time.NewTimer(0)
	<-retry.C
	defer retry.Stop()
	pause := func() bool {
		retry.Reset(r.cfg.HeartbeatInterval / 2)
		select {
		case <-ctx.Done():
			return false
		case <-retry.C:
			return true
		case <-r.wake:
			return true
		}
	}
	for ctx.Err() == nil {
		if !r.Healthy() || r.restoring.Load() {
			pending, cursor = true, "0"
			if !pause() {
				return
			}
			continue
		}
		args := &redis.XReadGroupArgs{Group: consumerGroup, Consumer: string(r.Self()), Count: 128}
		if pending {
			args.Streams = []string{stream, cursor}
			args.Block = -1 // pending entries come back at once
		} else {
			args.Streams = []string{stream, ">"}
			args.Block = r.cfg.ReadBlock
		}
		opCtx, cancel := context.WithTimeout(ctx, r.cfg.ReadBlock+r.cfg.OpTimeout)
		res, err := r.rdb.XReadGroup(opCtx, args).Result()
		cancel()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if strings.HasPrefix(err.Error(), "NOGROUP") {
				r.log.Info("cluster: consumer group missing; creating it")
				cctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				err = r.ensureGroup(cctx)
				cancel()
			}
			if err != nil {
				r.log.Warn("cluster: read stream", "err", r.note(err))
			}
			pending, cursor = true, "0"
			if !pause() {
				return
			}
			continue
		}
		var msgs []redis.XMessage
		if len(res) > 0 {
			msgs = res[0].Messages
		}
		if pending && len(msgs) == 0 {
			pending = false
			continue
		}
		done := make([]string, 0, len(msgs))
		refused := false
		for _, m := range msgs {
			e, ok := decodeEntry(m.Values)
			if !ok || !r.believe(&e, r.Self(), guard) {
				// Deleted after it was read, or not believed.
				done = append(done, m.ID)
				continue
			}
			from, payload := e.from, e.payload
			err := r.handle(ctx, from, payload)
			if err == nil {
				guard.mark(r.clock.Now(), from, e.boot, e.seq, e.stamp)
				delete(attempts, m.ID)
				done = append(done, m.ID)
				r.m.received.Inc()
				r.m.latency.Observe(r.clock.Now().Sub(time.Unix(0, e.stamp)).Seconds())
				continue
			}
			if ctx.Err() != nil {
				break
			}
			attempts[m.ID]++
			if attempts[m.ID] < r.cfg.MaxAttempts {
				r.log.Debug("cluster: handler refused payload; will retry", "from", string(from), "err", err)
				refused = true
				break
			}
			guard.mark(r.clock.Now(), from, e.boot, e.seq, e.stamp)
			delete(attempts, m.ID)
			r.log.Warn("cluster: handler kept refusing payload; handing it to the fallback", "from", string(from), "err", err)
			if r.cfg.Undeliverable != nil {
				r.cfg.Undeliverable(ctx, r.Self(), from, payload)
			}
			done = append(done, m.ID)
		}
		if len(done) > 0 {
			r.ack(ctx, stream, done)
		}
		if pending && !refused && len(msgs) > 0 {
			cursor = msgs[len(msgs)-1].ID
		}
		if refused {
			pending, cursor = true, "0"
			if !pause() {
				return
			}
		}
	}
}

func (r *Redis) handle(ctx context.Context, from NodeID, payload []byte) error {
	if r.cfg.Handler == nil {
		return errors.New("cluster: no handler")
	}
	return r.cfg.Handler(ctx, from, payload)
}

// ack acknowledges and deletes taken entries, so the stream only holds
// what this node has not taken. It uses a fresh context: an entry the
// handler took must be acknowledged even while stopping.
func (r *Redis) ack(ctx context.Context, stream string, ids []string) {
	opCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.OpTimeout)
	defer cancel()
	pipe := r.rdb.Pipeline()
	pipe.XAck(opCtx, stream, consumerGroup, ids...)
	pipe.XDel(opCtx, stream, ids...)
	if _, err := pipe.Exec(opCtx); err != nil {
		r.log.Warn("cluster: acknowledge", "err", r.note(err))
	}
}

// streamEntry is one entry of a node's stream.
type streamEntry struct {
	from      NodeID
	stamp     int64  // send time, Unix nanoseconds
	payload   []byte // encrypted until believe decrypts it
	auth      []byte
	boot, seq uint64 // filled in by believe
}

// decodeEntry reads a stream entry's fields; ok is false for an entry
// with none (deleted after it was read). Missing fields are left empty,
// for believe to refuse.
func decodeEntry(v map[string]any) (e streamEntry, ok bool) {
	if len(v) == 0 {
		return e, false
	}
	f, _ := v[fieldFrom].(string)
	t, _ := v[fieldStamp].(string)
	p, _ := v[fieldPayload].(string)
	a, _ := v[fieldAuth].(string)
	e.from, e.payload, e.auth = NodeID(f), []byte(p), []byte(a)
	e.stamp, _ = strconv.ParseInt(t, 10, 64)
	return e, true
}

// believe reports whether e, read from node to's stream, was signed with
// the cluster secret by the node it names, for to, within the age window,
// and was not taken before (by g); if so it decrypts e's payload. What it
// refuses is counted and logged.
func (r *Redis) believe(e *streamEntry, to NodeID, g *replayGuard) bool {
	payload, boot, seq, ok := r.sign.openPayload(to, e.from, e.stamp, e.auth, e.payload)
	switch {
	case !ok:
		r.rejects.Reject(RejectSignature, "claimed_from", string(e.from), "stream_of", string(to))
	case !g.fresh(r.clock.Now(), e.stamp):
		r.rejects.Reject(RejectStale, "from", string(e.from), "stream_of", string(to),
			"sent", time.Unix(0, e.stamp).UTC().Format(time.RFC3339))
	case g.seen(e.from, boot, seq):
		r.rejects.Reject(RejectReplay, "from", string(e.from), "stream_of", string(to), "seq", seq)
	default:
		e.payload, e.boot, e.seq = payload, boot, seq
		return true
	}
	return false
}

// Place returns the node hosting key, taking it for this node when no
// live node holds its lease. moved reports a takeover from a node that
// died. This node renews the lease until Release or Stop. While Redis is
// unreachable it returns ErrUnavailable; the caller may then host the
// room for its local users only.
func (r *Redis) Place(ctx context.Context, key string) (NodeID, bool, error) {
	if !r.Healthy() {
		return "", false, r.unavailable("place")
	}
	self := r.Self()
	res, err := placeScript.Run(ctx, r.rdb,
		[]string{r.k.lease(key), r.k.placed(), r.k.nodeLeases(self)},
		string(self), r.cfg.LeaseTTL.Milliseconds(), key, r.k.nodePrefix()).StringSlice()
	if err != nil {
		return "", false, r.wrap(ctx, "place "+key, err)
	}
	if len(res) != 2 {
		return "", false, fmt.Errorf("cluster: place %s: unexpected reply %q", key, res)
	}
	host, prev := NodeID(res[0]), NodeID(res[1])
	if host == self {
		r.mu.Lock()
		r.leases[key] = struct{}{}
		r.m.leases.Set(float64(len(r.leases)))
		r.mu.Unlock()
	}
	moved := host == self && prev != "" && prev != self
	if moved {
		r.log.Info("cluster: room moved here", "room", key, "from", string(prev))
	}
	return host, moved, nil
}

// Release gives up key's lease if this node holds it.
func (r *Redis) Release(ctx context.Context, key string) error {
	r.mu.Lock()
	delete(r.leases, key)
	r.m.leases.Set(float64(len(r.leases)))
	r.mu.Unlock()
	if !r.Healthy() {
		return r.unavailable("release")
	}
	self := r.Self()
	err := releaseScript.Run(ctx, r.rdb,
		[]string{r.k.lease(key), r.k.placed(), r.k.nodeLeases(self)}, string(self), key).Err()
	if err != nil {
		return r.wrap(ctx, "release "+key, err)
	}
	return nil
}

// note counts a failed Redis call and, when the failure is the connection
// rather than an error reply, switches to degraded mode. It returns err.
func (r *Redis) note(err error) error {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return err
	}
	r.m.redisErrors.Inc()
	var reply redis.Error
	if errors.As(err, &reply) {
		return err
	}
	r.setHealthy(false)
	return err
}

// wrap turns a Redis error from a call made for a caller into the
// package's: redis.Nil becomes ErrNotFound, a lost connection
// ErrUnavailable. A failure because the caller's ctx ended says nothing
// about Redis and does not count.
func (r *Redis) wrap(ctx context.Context, op string, err error) error {
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("cluster: %s: %w", op, ErrNotFound)
	}
	if ctx.Err() == nil {
		r.note(err)
	}
	var reply redis.Error
	if errors.As(err, &reply) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("cluster: %s: %w", op, err)
	}
	return fmt.Errorf("cluster: %s: %w: %w", op, ErrUnavailable, err)
}

// fail is wrap for the node's own calls, bounded by OpTimeout.
func (r *Redis) fail(op string, err error) error { return r.wrap(context.Background(), op, err) }

func (r *Redis) unavailable(op string) error {
	return fmt.Errorf("cluster: %s: %w", op, ErrUnavailable)
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
