package cluster

import "time"

// Every Redis key the cluster uses is built here, under Config.Prefix.
// Scripts build node, session and lease keys themselves from the same
// prefixes (passed as arguments), so all keys must live on one Redis
// server; a prefix with a hash tag ("{poosms}:") keeps them in one slot
// of a Redis Cluster too.

// Defaults for timing. A node is declared gone when it has not
// heartbeated for NodeTTL.
const (
	DefaultPrefix            = "poosms:"
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultNodeTTL           = 6 * time.Second
	DefaultLeaseTTL          = 10 * time.Second
	DefaultCleanupLockTTL    = 30 * time.Second
	DefaultOpTimeout         = 2 * time.Second
	DefaultReadBlock         = time.Second
	DefaultStreamMaxLen      = 100000
	DefaultMaxAttempts       = 3

	// consumerGroup is the group each node reads its own stream with; the
	// node ID is the only consumer in it.
	consumerGroup = "poosms"

	// Stream entry fields.
	fieldFrom    = "f"
	fieldStamp   = "t"
	fieldPayload = "p"
	fieldAuth    = "a" // boot, sequence and HMAC (see auth.go)
)

type keys struct{ prefix string }

// node: JSON Node record; expires NodeTTL after the last heartbeat.
func (k keys) node(id NodeID) string { return k.prefix + "node:" + string(id) }

// nodePrefix is node(id) without the id, for scripts.
func (k keys) nodePrefix() string { return k.prefix + "node:" }

// nodes: set of node IDs that joined and were not yet cleaned up. A member
// without a node key is a dead node awaiting cleanup.
func (k keys) nodes() string { return k.prefix + "nodes" }

// sess: hash resource -> "NODE TAG" for one bare JID: the node serving
// that full JID, signed (see auth.go).
func (k keys) sess(bare string) string { return k.prefix + "sess:" + bare }

// sessPrefix is sess(bare) without the bare JID, for scripts.
func (k keys) sessPrefix() string { return k.prefix + "sess:" }

// nodeSess: set of full JIDs a node has bound, so cleanup finds them.
func (k keys) nodeSess(id NodeID) string { return k.prefix + "nodesess:" + string(id) }

// nodeSessPrefix is nodeSess(id) without the id, for scripts.
func (k keys) nodeSessPrefix() string { return k.prefix + "nodesess:" }

// stream: the node's inbound stream; entries are deleted once taken, so
// what remains is what the node has not taken yet.
func (k keys) stream(id NodeID) string { return k.prefix + "stream:" + string(id) }

// lease: node ID hosting a room or conference; expires LeaseTTL after the
// last renewal.
func (k keys) lease(key string) string { return k.prefix + "lease:" + key }

// leasePrefix is lease(key) without the key, for scripts.
func (k keys) leasePrefix() string { return k.prefix + "lease:" }

// placed: hash room key -> the node that last took its lease, to tell a
// takeover from a first placement.
func (k keys) placed() string { return k.prefix + "placed" }

// nodeLeases: set of room keys a node has taken, so cleanup finds them.
func (k keys) nodeLeases(id NodeID) string { return k.prefix + "nodeleases:" + string(id) }

// cleanup: lock naming the survivor cleaning up after a dead node.
func (k keys) cleanup(id NodeID) string { return k.prefix + "cleanup:" + string(id) }
