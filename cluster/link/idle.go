package link

import (
	"context"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/cluster"
)

// DefaultRoomIdle is how long a room this node hosts keeps its placement
// after its last stanza once nobody is in it (Config.RoomIdle).
const DefaultRoomIdle = 5 * time.Minute

// A room's placement (its lease in the cluster) is taken by its first
// stanza. Rooms nobody is in that have had no stanza for RoomIdle are
// given back, so addressing random room names grows neither the shared
// state nor the heartbeat's renewals for good. A stanza that arrives
// afterwards places the room again, and the node that takes it reads the
// room afresh from the store (Rooms.Adopt): a persistent room is found as
// it was.
//
// A release must not race with a stanza that would seat someone in the
// room: each stanza for a room is counted while it runs (enter, exit),
// a room with stanzas running is not released, and a stanza arriving
// while its room is being released waits for the release to end, then
// places the room again.

// enter counts a stanza for room as running, first waiting out a
// release of room under way. It returns false when ctx ends meanwhile.
func (l *Link) enter(ctx context.Context, room string) bool {
	for {
		l.mu.Lock()
		done := l.releasing[room]
		if done == nil {
			l.busy[room]++
			l.mu.Unlock()
			return true
		}
		l.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return false
		}
	}
}

// exit ends what enter began: the room counts as used now.
func (l *Link) exit(room string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.busy[room]--; l.busy[room] <= 0 {
		delete(l.busy, room)
	}
	if _, ok := l.hosted[room]; ok {
		l.hosted[room] = now
	}
}

// hostsNow reports whether this node hosts room, placing it here when
// no live node does. It is for stanzas another node forwarded here: the
// room may have been released (or lost) since that node looked.
func (l *Link) hostsNow(ctx context.Context, cl cluster.Cluster, room jid.JID) (host cluster.NodeID, here bool) {
	key := room.String()
	l.mu.Lock()
	_, ok := l.hosted[key]
	l.mu.Unlock()
	if ok {
		return cl.Self(), true
	}
	host, moved, err := cl.Place(ctx, key)
	if err != nil {
		// The shared state is unreachable: run it here, as Room does.
		return cl.Self(), true
	}
	if host != cl.Self() {
		return host, false
	}
	l.adopt(ctx, room, moved)
	return host, true
}

// releaseIdle runs until ctx ends, giving back the placements of idle
// rooms nobody is in.
func (l *Link) releaseIdle(ctx context.Context) {
	every := min(max(l.cfg.RoomIdle/2, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.releaseIdleOnce(ctx)
	}
}

// releaseIdleOnce gives back every room idle for RoomIdle that nobody is
// in, and returns how many it gave back.
func (l *Link) releaseIdleOnce(ctx context.Context) int {
	cl := l.cluster()
	if cl == nil {
		return 0
	}
	now := time.Now()
	var idle []string
	l.mu.Lock()
	for room, last := range l.hosted {
		if l.busy[room] == 0 && now.Sub(last) >= l.cfg.RoomIdle {
			idle = append(idle, room)
		}
	}
	l.mu.Unlock()
	n := 0
	for _, room := range idle {
		if ctx.Err() != nil {
			break
		}
		if l.release(ctx, cl, room, now) {
			n++
		}
	}
	if n > 0 {
		l.log.Debug("cluster: released idle rooms", "count", n)
	}
	return n
}

// release gives back room's placement if it is still idle at now and
// nobody is in it. Stanzas for room wait meanwhile (enter).
func (l *Link) release(ctx context.Context, cl cluster.Cluster, room string, now time.Time) bool {
	l.mu.Lock()
	last, ok := l.hosted[room]
	if !ok || l.busy[room] > 0 || l.releasing[room] != nil || now.Sub(last) < l.cfg.RoomIdle {
		l.mu.Unlock()
		return false
	}
	done := make(chan struct{})
	l.releasing[room] = done
	l.mu.Unlock()
	defer close(done)

	if j, err := jid.Parse(room); err == nil && l.cfg.Rooms.InUse(ctx, j) {
		l.mu.Lock()
		delete(l.releasing, room)
		l.hosted[room] = time.Now() // look again after another idle spell
		l.mu.Unlock()
		return false
	}
	// Whatever Release answers, the cluster no longer renews the lease:
	// if Redis could not be told, the lease runs out by itself.
	if err := cl.Release(ctx, room); err != nil {
		l.log.Debug("cluster: release idle room", "room", room, "err", err)
	}
	l.mu.Lock()
	delete(l.releasing, room)
	delete(l.hosted, room)
	l.mu.Unlock()
	return true
}

// HostedRooms reports how many rooms this node hosts now (holds the
// placement of).
func (l *Link) HostedRooms() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.hosted)
}
