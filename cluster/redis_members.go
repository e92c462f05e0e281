package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Membership: the live nodes, and the sweep that notices nodes joining,
// leaving and dying, and cleans up after the dead.
var _ Membership = (*Redis)(nil)

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
