package cluster

import (
	"context"
	"encoding/json"
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

// Config configures a Redis-backed cluster node. Node.ID and URL are
// required; every other field has a default.
type Config struct {
	// Node is what this node advertises; Node.ID must stay the same across
	// restarts. Node.Started is filled in by Start.
	Node Node
	// URL is the Redis server, "redis://[:password@]host:port[/db]".
	URL string
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
	cfg   Config
	k     keys
	rdb   *redis.Client
	log   *slog.Logger
	clock Clock
	m     *metrics

	healthy   atomic.Bool
	restoring atomic.Bool
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
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
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
	routeRedisLogs.Do(func() { redis.SetLogger(redisLogger{cfg.Logger}) })
	r := &Redis{
		cfg:      cfg,
		k:        keys{prefix: cfg.Prefix},
		rdb:      redis.NewClient(opts),
		log:      cfg.Logger.With("node", string(cfg.Node.ID)),
		clock:    cfg.Clock,
		m:        newMetrics(),
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
func (r *Redis) Collectors() []prometheus.Collector { return r.m.collectors() }

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
	rec, err := json.Marshal(r.cfg.Node)
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
	// to Redis itself rather than only to the local copy.
	r.setHealthy(true)
	if err := r.rebind(opCtx); err != nil {
		return err
	}
	r.renew(opCtx)
	r.restoring.Store(false)
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
			full.Resourcepart(), string(self), full.String(), r.k.prefix+"nodesess:", r.k.nodePrefix())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return r.fail("rebind sessions", err)
	}
	for i, cmd := range cmds {
		n, _ := cmd.Int()
		r.mu.Lock()
		_, still := r.sessions[fulls[i].String()]
		r.mu.Unlock()
		if n == 1 && !still {
			// Ended while we were binding it again: take it back out.
			if err := unbindScript.Run(ctx, r.rdb,
				[]string{r.k.sess(fulls[i].Bare().String()), r.k.nodeSess(self)},
				fulls[i].Resourcepart(), string(self), fulls[i].String()).Err(); err != nil {
				return r.fail("rebind sessions", err)
			}
			continue
		}
		if n == 0 {
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
	pipe := r.rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(ids))
	for i, id := range ids {
		exists[i] = pipe.Exists(opCtx, r.k.node(NodeID(id)))
	}
	if _, err := pipe.Exec(opCtx); err != nil {
		r.note(err)
		return
	}
	live := make(map[NodeID]struct{}, len(ids))
	var dead []NodeID
	for i, id := range ids {
		if exists[i].Val() == 1 {
			live[NodeID(id)] = struct{}{}
		} else if NodeID(id) != r.Self() {
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
			from, _, payload, ok := decodeEntry(m.Values)
			if ok && r.cfg.Undeliverable != nil {
				r.cfg.Undeliverable(opCtx, dead, from, payload)
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
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = r.k.node(NodeID(id))
	}
	vals, err := r.rdb.MGet(ctx, ks...).Result()
	if err != nil {
		return nil, r.wrap(ctx, "nodes", err)
	}
	out := make([]Node, 0, len(vals))
	for _, v := range vals {
		s, ok := v.(string)
		if !ok {
			continue
		}
		var n Node
		if err := json.Unmarshal([]byte(s), &n); err != nil {
			r.log.Warn("cluster: bad node record", "err", err)
			continue
		}
		out = append(out, n)
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
	var n Node
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		return Node{}, fmt.Errorf("cluster: node %s: %w", id, err)
	}
	return n, nil
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
	prev, err := bindScript.Run(ctx, r.rdb,
		[]string{r.k.sess(full.Bare().String()), r.k.nodeSess(node)},
		full.Resourcepart(), string(node), full.String(), r.k.prefix+"nodesess:", r.k.nodePrefix()).Text()
	if err != nil {
		return "", r.wrap(ctx, "bind", err)
	}
	return NodeID(prev), nil
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
	for res, node := range m {
		full, err := b.WithResource(res)
		if err != nil {
			continue
		}
		out = append(out, Entry{Full: full, Node: NodeID(node)})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Full.Resourcepart(), b.Full.Resourcepart()) })
	return out, nil
}

// Send queues payload on node to's stream. It returns ErrNodeGone when to
// is not alive, ErrBacklog when to is too far behind and ErrUnavailable
// when Redis cannot be reached; in each case nothing was queued.
func (r *Redis) Send(ctx context.Context, to NodeID, payload []byte) error {
	if !r.Healthy() {
		return r.unavailable("send")
	}
	stamp := strconv.FormatInt(r.clock.Now().UnixNano(), 10)
	n, err := sendScript.Run(ctx, r.rdb, r.sendKeys(to),
		r.cfg.StreamMaxLen, string(r.Self()), stamp, payload).Int()
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
		if !r.Healthy() {
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
			from, stamp, payload, ok := decodeEntry(m.Values)
			if !ok { // deleted after it was read, or malformed
				done = append(done, m.ID)
				continue
			}
			err := r.handle(ctx, from, payload)
			if err == nil {
				delete(attempts, m.ID)
				done = append(done, m.ID)
				r.m.received.Inc()
				if stamp > 0 {
					r.m.latency.Observe(r.clock.Now().Sub(time.Unix(0, stamp)).Seconds())
				}
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

func decodeEntry(v map[string]any) (from NodeID, stamp int64, payload []byte, ok bool) {
	p, ok := v[fieldPayload].(string)
	if !ok {
		return "", 0, nil, false
	}
	f, _ := v[fieldFrom].(string)
	if t, ok := v[fieldStamp].(string); ok {
		stamp, _ = strconv.ParseInt(t, 10, 64)
	}
	return NodeID(f), stamp, []byte(p), true
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
		select {
		case r.wake <- struct{}{}:
		default:
		}
	} else {
		r.m.healthy.Set(0)
		r.log.Warn("cluster: redis unreachable; serving local users only")
	}
	if r.cfg.HealthChanged != nil {
		r.cfg.HealthChanged(v)
	}
}
