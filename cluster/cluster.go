package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"mellium.im/xmpp/jid"
)

// NodeID names one poosmsd node in a cluster. It must stay the same across
// restarts of that node, so its stream and consumer are found again.
type NodeID string

// String returns the ID as a plain string.
func (id NodeID) String() string { return string(id) }

// Validate reports whether id can name a node: 1 to 64 characters from
// letters, digits, '.', '_' and '-'.
func (id NodeID) Validate() error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("cluster: node id %q: must be 1 to 64 characters", string(id))
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("cluster: node id %q: only letters, digits, '.', '_' and '-' are allowed", string(id))
		}
	}
	return nil
}

// Node is what a node advertises about itself while it is alive.
type Node struct {
	ID NodeID `json:"id"`
	// C2S is the host:port clients reach its XMPP listener on.
	C2S string `json:"c2s,omitempty"`
	// HTTP is the host:port of its web listener (WebSocket, uploads).
	HTTP string `json:"http,omitempty"`
	// Media is the public address its conferences' media arrives at.
	Media string `json:"media,omitempty"`
	// Started is when the node joined.
	Started time.Time `json:"started"`
}

// Entry is one session in the directory: a full JID and the node serving it.
type Entry struct {
	Full jid.JID
	Node NodeID
}

// Errors returned by every implementation.
var (
	// ErrNotFound: the thing asked about does not exist.
	ErrNotFound = errors.New("cluster: not found")
	// ErrNodeGone: the target node is not alive; the caller should store
	// the stanza offline (or bounce it) instead.
	ErrNodeGone = errors.New("cluster: node gone")
	// ErrBacklog: the target node's queue is full; treat like ErrNodeGone.
	ErrBacklog = errors.New("cluster: node backlog full")
	// ErrUnavailable: the shared state (Redis) cannot be reached right now.
	// The node keeps serving its local users; stanzas for other nodes go
	// to offline storage.
	ErrUnavailable = errors.New("cluster: shared state unavailable")
)

// Handler takes a payload another node sent to this one. Returning nil
// means the payload is taken (it will not be offered again); an error
// leaves it queued to be offered again, a few times, before it is handed
// to the Undeliverable callback.
type Handler func(ctx context.Context, from NodeID, payload []byte) error

// Undeliverable receives a payload that was sent to node to but that node
// will never take: it died with the payload unread, or its handler kept
// refusing it. The caller stores it offline. It may see a payload twice if
// a node cleaning up after a dead one dies itself half-way.
type Undeliverable func(ctx context.Context, to, from NodeID, payload []byte)

// Membership lists the live nodes.
type Membership interface {
	// Self is this node's ID.
	Self() NodeID
	// Nodes lists the nodes alive now, this one included when joined.
	Nodes(ctx context.Context) ([]Node, error)
	// Node returns one live node's record, or ErrNotFound.
	Node(ctx context.Context, id NodeID) (Node, error)
}

// Directory records which node serves each full JID.
type Directory interface {
	// Bind records that node serves full and returns the node that served
	// it before ("" if none, or if that node is gone). A non-empty replaced
	// different from node means a resource conflict: the caller tells
	// replaced to end its session.
	Bind(ctx context.Context, full jid.JID, node NodeID) (replaced NodeID, err error)
	// Unbind removes full if node still serves it.
	Unbind(ctx context.Context, full jid.JID, node NodeID) error
	// Resources lists the sessions of a bare JID on every node.
	Resources(ctx context.Context, bare jid.JID) ([]Entry, error)
	// Owners returns the node serving each full JID, "" where none does.
	Owners(ctx context.Context, fulls []jid.JID) ([]NodeID, error)
}

// Router carries payloads between nodes.
type Router interface {
	// Send queues payload for node to, in order after earlier payloads
	// this node sent it. ErrNodeGone, ErrBacklog and ErrUnavailable mean
	// it was not queued: the caller falls back to offline storage.
	Send(ctx context.Context, to NodeID, payload []byte) error
}

// Placer places a room or conference on one node.
type Placer interface {
	// Place returns the node hosting key, making this node its host when
	// no live node holds it. moved is true when this call took key over
	// from another node that died, so its occupants should be told.
	Place(ctx context.Context, key string) (host NodeID, moved bool, err error)
	// Release gives up key if this node hosts it.
	Release(ctx context.Context, key string) error
}

// Cluster is everything a node uses. Local and Redis implement it.
type Cluster interface {
	Membership
	Directory
	Router
	Placer
	// Healthy reports whether the shared state is reachable.
	Healthy() bool
	// Start joins the cluster and starts background work; Stop leaves and
	// waits for it. Both are safe to call twice.
	Start(ctx context.Context) error
	Stop()
}

// Clock tells the time; tests pass their own.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the real clock.
var SystemClock Clock = systemClock{}
