package muc

import (
	"context"
	"errors"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/store"
)

// removalGrace is how long after an account's deletion its bare JID may
// not create rooms: long enough for every node of a cluster to have ended
// the account's sessions.
const removalGrace = time.Minute

// AccountRemoved forgets the local account bare, deleted for good: its
// owner, admin and member affiliations go from every room this service
// knows, in memory and in the store (a ban stays, so that registering the
// name again does not lift it). A room whose only owner this was keeps
// running without one: its admins still moderate it, and no one can
// reconfigure or destroy it. For removalGrace the account's
// sessions that have not ended yet cannot create a room, and so cannot
// become an owner again; a room's call drops whoever the change shuts out.
func (s *Service) AccountRemoved(ctx context.Context, bare jid.JID) {
	key := bare.Bare().String()
	s.mu.Lock()
	now := s.now()
	for k, at := range s.removed {
		if now.Sub(at) > removalGrace {
			delete(s.removed, k)
		}
	}
	s.removed[key] = now
	type change struct {
		room       jid.JID
		name       string
		persistent bool
	}
	var todo []change
	for _, r := range s.sortedRooms() {
		if a, ok := r.affs[key]; ok && a.aff != affOutcast {
			delete(r.affs, key)
			todo = append(todo, change{r.jid, r.name, r.cfg.Persistent})
		}
	}
	s.mu.Unlock()
	for _, c := range todo {
		if c.persistent {
			// The store dropped it already; a session that had not ended
			// may have written it again meanwhile.
			err := s.st.SetRoomAffiliation(ctx, c.name, store.RoomAffiliation{JID: key, Affiliation: store.AffNone})
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				s.log.Error("muc: forget a deleted account's affiliation", "room", c.name, "jid", key, "err", err)
			}
		}
		if s.access != nil {
			s.access(ctx, c.room)
		}
	}
}

// justRemovedLocked reports whether bare's account was deleted less than
// removalGrace ago. s.mu must be held.
func (s *Service) justRemovedLocked(bare jid.JID) bool {
	at, ok := s.removed[bare.Bare().String()]
	return ok && s.now().Sub(at) <= removalGrace
}
