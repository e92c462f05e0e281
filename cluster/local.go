package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"
)

// Local is the single-node cluster: every session and every room is on
// this node and nothing leaves the process. It is safe for concurrent use.
type Local struct {
	node    Node
	handler Handler

	mu       sync.Mutex
	started  bool
	stopped  bool
	sessions map[string]map[string]NodeID // bare -> resource -> node
	placed   map[string]struct{}
}

var _ Cluster = (*Local)(nil)

// NewLocal returns a single-node cluster for node. handler, if not nil,
// receives what this node Sends to itself.
func NewLocal(node Node, handler Handler) (*Local, error) {
	if err := node.ID.Validate(); err != nil {
		return nil, err
	}
	return &Local{
		node:     node,
		handler:  handler,
		sessions: map[string]map[string]NodeID{},
		placed:   map[string]struct{}{},
	}, nil
}

// Start marks the node joined, now (Node.Started). Calling it again does
// nothing; a node that was stopped cannot start again.
func (l *Local) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return errors.New("cluster: start: node was stopped")
	}
	if !l.started {
		l.started = true
		l.node.Started = time.Now().UTC()
	}
	return nil
}

// Stop marks the node gone. Calling it again does nothing.
func (l *Local) Stop() {
	l.mu.Lock()
	l.started = false
	l.stopped = true
	l.mu.Unlock()
}

// Self returns this node's ID.
func (l *Local) Self() NodeID { return l.node.ID }

// Healthy is always true: there is nothing to lose contact with.
func (l *Local) Healthy() bool { return true }

// Nodes returns this node once started.
func (l *Local) Nodes(ctx context.Context) ([]Node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return nil, nil
	}
	return []Node{l.node}, nil
}

// Node returns this node's record once started; any other is not found.
func (l *Local) Node(ctx context.Context, id NodeID) (Node, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started || id != l.node.ID {
		return Node{}, fmt.Errorf("cluster: node %s: %w", id, ErrNotFound)
	}
	return l.node, nil
}

// Bind records full as served by node and returns the previous holder.
func (l *Local) Bind(ctx context.Context, full jid.JID, node NodeID) (NodeID, error) {
	if full.Resourcepart() == "" {
		return "", fmt.Errorf("cluster: bind %s: not a full jid", full)
	}
	bare := full.Bare().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.sessions[bare]
	if res == nil {
		res = map[string]NodeID{}
		l.sessions[bare] = res
	}
	prev := res[full.Resourcepart()]
	res[full.Resourcepart()] = node
	return prev, nil
}

// Unbind removes full if node still holds it.
func (l *Local) Unbind(ctx context.Context, full jid.JID, node NodeID) error {
	bare := full.Bare().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.sessions[bare]
	if res[full.Resourcepart()] == node {
		delete(res, full.Resourcepart())
		if len(res) == 0 {
			delete(l.sessions, bare)
		}
	}
	return nil
}

// Resources lists bare's sessions, sorted by resource.
func (l *Local) Resources(ctx context.Context, bare jid.JID) ([]Entry, error) {
	b := bare.Bare()
	l.mu.Lock()
	defer l.mu.Unlock()
	res := l.sessions[b.String()]
	out := make([]Entry, 0, len(res))
	for r, n := range res {
		full, err := b.WithResource(r)
		if err != nil {
			continue
		}
		out = append(out, Entry{Full: full, Node: n})
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Full.Resourcepart(), b.Full.Resourcepart()) })
	return out, nil
}

// Owners returns the node serving each of fulls, "" where none does.
func (l *Local) Owners(ctx context.Context, fulls []jid.JID) ([]NodeID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]NodeID, len(fulls))
	for i, full := range fulls {
		out[i] = l.sessions[full.Bare().String()][full.Resourcepart()]
	}
	return out, nil
}

// Send hands payload to this node's handler, synchronously (so the
// handler must not wait for the caller); any other node is gone.
func (l *Local) Send(ctx context.Context, to NodeID, payload []byte) error {
	if to != l.node.ID || l.handler == nil {
		return fmt.Errorf("cluster: send to %s: %w", to, ErrNodeGone)
	}
	if err := l.handler(ctx, l.node.ID, payload); err != nil {
		return fmt.Errorf("cluster: send to %s: %w", to, err)
	}
	return nil
}

// Place always places key here.
func (l *Local) Place(ctx context.Context, key string) (NodeID, bool, error) {
	l.mu.Lock()
	l.placed[key] = struct{}{}
	l.mu.Unlock()
	return l.node.ID, false, nil
}

// Release forgets key.
func (l *Local) Release(ctx context.Context, key string) error {
	l.mu.Lock()
	delete(l.placed, key)
	l.mu.Unlock()
	return nil
}
