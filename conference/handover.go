package conference

import (
	"context"

	"mellium.im/xmpp/jid"
)

// What the cluster link asks of the rooms when a room comes to this node
// or leaves it.

// InUse reports whether anyone is in the room or in its call here: a
// room in use keeps its placement however long it is quiet.
func (s *Service) InUse(_ context.Context, room jid.JID) bool {
	p := s.run.Load()
	if p == nil {
		return false
	}
	return p.rooms.Occupied(room.Localpart()) || p.calls.Running(room)
}

// Adopt readies a room this node starts hosting: another node may have
// hosted and changed it in the shared store meanwhile.
func (s *Service) Adopt(ctx context.Context, room jid.JID) {
	p := s.run.Load()
	if p == nil {
		return
	}
	if err := p.rooms.Adopt(ctx, room.Localpart()); err != nil {
		s.log.Error("cluster: read a room taken over from another node", "room", room.String(), "err", err)
	}
}

// Moved stops running a room another node hosts now: its call ends, and
// its occupants are told they are out (status 110 and 332) and rejoin,
// which takes them to the new host.
func (s *Service) Moved(ctx context.Context, room jid.JID) {
	p := s.run.Load()
	if p == nil {
		return
	}
	p.calls.Moved(ctx, room)
	p.rooms.Evict(ctx, room.Localpart())
}
