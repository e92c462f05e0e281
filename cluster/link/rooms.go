package link

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat"
	"poosms.org/poosms/cluster"
	"poosms.org/poosms/stanza"
)

// Room takes a stanza a local session sent to a room or conference (or to
// the room service itself). The room is placed on one node of the cluster
// at its first stanza; this node handles it when it is the host (or while
// the shared state is unreachable, for its own users) and forwards it to
// the host otherwise.
func (l *Link) Room(ctx context.Context, sess chat.Session, el *stanza.Element) {
	to, err := el.ToJID()
	cl := l.cluster()
	if err != nil || to.Localpart() == "" || cl == nil {
		l.cfg.Rooms.HandleStanza(ctx, sess, el)
		return
	}
	room := to.Bare().String()
	if !l.enter(ctx, room) {
		return
	}
	defer l.exit(room)
	host, moved, err := cl.Place(ctx, room)
	if err != nil || host == cl.Self() {
		if err != nil {
			l.log.Debug("cluster: place room; hosting it here", "room", room, "err", err)
		} else {
			l.adopt(ctx, to.Bare(), moved)
		}
		l.cfg.Rooms.HandleStanza(ctx, sess, el)
		return
	}
	l.seat(sess.JID().String(), el, to, host)
	if err := l.send(ctx, host, addressed(kindRoom, sess.JID().String(), el)); err != nil {
		if t := el.Type(); t != "error" && t != "result" {
			r := stanza.ErrorReply(el, stanza.RecipientUnavailable, "the server hosting this room cannot be reached; try again shortly")
			r.SetAttr("to", sess.JID().String())
			sess.Send(r)
		}
	}
}

// seat remembers which rooms on other nodes a local session joins (by
// presence to room/nick), so it can be told when their host dies.
func (l *Link) seat(full string, el *stanza.Element, to jid.JID, host cluster.NodeID) {
	if el.Local != "presence" || to.Resourcepart() == "" {
		return
	}
	room := to.Bare().String()
	l.mu.Lock()
	defer l.mu.Unlock()
	switch el.Type() {
	case "":
		m := l.joined[full]
		if m == nil {
			m = map[string]roomSeat{}
			l.joined[full] = m
		}
		m[room] = roomSeat{nick: to.Resourcepart(), host: host}
	case "unavailable":
		delete(l.joined[full], room)
		if len(l.joined[full]) == 0 {
			delete(l.joined, full)
		}
	}
}

// roomStanza runs a stanza another node's user sent to a room this node
// hosts. If this node gave the room up since (it was idle) and another
// node has taken it meanwhile, the sender is told to try again; sending
// again reaches the new host.
func (l *Link) roomStanza(ctx context.Context, from cluster.NodeID, full string, el *stanza.Element) {
	r, err := l.remote(from, full)
	if err != nil {
		return
	}
	to, err := el.ToJID()
	cl := l.cluster()
	if err != nil || cl == nil {
		return
	}
	room := to.Bare().String()
	if !l.enter(ctx, room) {
		return
	}
	defer l.exit(room)
	if _, here := l.hostsNow(ctx, cl, to.Bare()); !here {
		if t := el.Type(); t != "error" && t != "result" {
			e := stanza.ErrorReply(el, "recipient-unavailable", "the room moved to another server of this cluster; try again")
			e.SetAttr("to", full)
			r.Send(e)
		}
		return
	}
	r.rooms.Store(true)
	l.cfg.Rooms.HandleStanza(ctx, r, el)
}

// roomsGone tells local sessions seated in rooms that node hosted that
// they are out of them (the rooms' HostLost); joining again places the
// room on a live node.
func (l *Link) roomsGone(ctx context.Context, node cluster.NodeID) {
	type out struct {
		full, room, nick string
	}
	var tell []out
	l.mu.Lock()
	for full, rooms := range l.joined {
		for room, seat := range rooms {
			if seat.host != node {
				continue
			}
			delete(rooms, room)
			tell = append(tell, out{full, room, seat.nick})
		}
		if len(rooms) == 0 {
			delete(l.joined, full)
		}
	}
	l.mu.Unlock()
	for _, t := range tell {
		j, err := jid.Parse(t.full)
		if err != nil {
			continue
		}
		room, err := jid.Parse(t.room)
		if err != nil {
			continue
		}
		if sess := l.local(j); sess != nil {
			l.cfg.Rooms.HostLost(ctx, sess, room, t.nick)
		}
	}
}

// adopt readies a room this node has just become the host of.
func (l *Link) adopt(ctx context.Context, room jid.JID, moved bool) {
	key := room.String()
	l.mu.Lock()
	_, held := l.hosted[key]
	l.hosted[key] = time.Now()
	l.mu.Unlock()
	fresh := !held
	if !fresh {
		return
	}
	if moved {
		l.log.Info("cluster: room moved to this node", "room", key)
	}
	l.cfg.Rooms.Adopt(ctx, room)
}

// PlacementLost is the cluster's PlacementLost: another node took a room
// this node hosted while it could not reach Redis. Its occupants here
// are told to rejoin, which takes them to the new host.
func (l *Link) PlacementLost(ctx context.Context, key string) {
	l.mu.Lock()
	delete(l.hosted, key)
	l.mu.Unlock()
	room, err := jid.Parse(key)
	if err != nil {
		return
	}
	l.log.Info("cluster: room now runs on another node", "room", key)
	l.cfg.Rooms.Moved(ctx, room)
}

// ErrHostUnreachable: the node that hosts a room could not be reached.
var ErrHostUnreachable = errors.New("cluster: the node hosting the room cannot be reached")

// RemoteRoom takes a stanza a user of another server sent to a room or
// conference, as federation received it on this node: run here when
// this node hosts the room (or the shared state is unreachable),
// forwarded to the host otherwise, whose federation answers the user.
// It fails with ErrHostUnreachable when the host cannot be reached.
func (l *Link) RemoteRoom(ctx context.Context, el *stanza.Element) error {
	to, err := el.ToJID()
	cl := l.cluster()
	if err != nil || to.Localpart() == "" || cl == nil {
		l.cfg.Rooms.HandleRemote(ctx, el)
		return nil
	}
	room := to.Bare().String()
	if !l.enter(ctx, room) {
		return ctx.Err()
	}
	defer l.exit(room)
	host, moved, err := cl.Place(ctx, room)
	if err != nil || host == cl.Self() {
		if err == nil {
			l.adopt(ctx, to.Bare(), moved)
		}
		l.cfg.Rooms.HandleRemote(ctx, el)
		return nil
	}
	if err := l.send(ctx, host, addressed(kindFedRoom, el.From(), el)); err != nil {
		return ErrHostUnreachable
	}
	return nil
}

// fedRoomStanza runs a stanza from a user of another server that node
// forwarded to a room this node hosts. The sender is believed about
// users of other servers only: an address of a domain served here would
// let a node speak for a local user whose session it does not serve.
func (l *Link) fedRoomStanza(ctx context.Context, node cluster.NodeID, full string, el *stanza.Element) {
	j, err := jid.Parse(full)
	if err != nil || el.From() != full {
		l.reject(cluster.RejectNotOwner, "from", string(node), "kind", "fedroom", "jid", full, "stanza_from", el.From())
		return
	}
	if l.cfg.Hosted == nil || l.cfg.Hosted(j.Domainpart()) {
		l.reject(cluster.RejectNotOwner, "from", string(node), "kind", "fedroom", "jid", full)
		return
	}
	to, err := el.ToJID()
	cl := l.cluster()
	if err != nil || cl == nil {
		return
	}
	room := to.Bare().String()
	if !l.enter(ctx, room) {
		return
	}
	defer l.exit(room)
	if host, here := l.hostsNow(ctx, cl, to.Bare()); !here {
		// Given up here since node looked, and taken by host: pass it on.
		l.send(ctx, host, addressed(kindFedRoom, full, el))
		return
	}
	l.cfg.Rooms.HandleRemote(ctx, el)
}
