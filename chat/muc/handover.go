package muc

import (
	"context"
	"errors"
	"fmt"

	"poosms.org/poosms/store"
)

// StatusMoved is the XEP-0045 status code (332, "removed because of a
// system shutdown") an occupant is sent when the room stops running here:
// the client joins again and reaches the room wherever it runs now.
const StatusMoved = 332

// Adopt makes the service current on room name before it starts hosting
// it, when another node of a cluster may have hosted it meanwhile and
// changed it in the shared store. A room with occupants here is left as
// it is; otherwise it is read again from the store, or forgotten when the
// store no longer has it (it was destroyed, or was never persistent).
func (s *Service) Adopt(ctx context.Context, name string) error {
	s.mu.Lock()
	r := s.rooms[name]
	busy := r != nil && len(r.occupants) > 0
	s.mu.Unlock()
	if busy {
		return nil
	}
	sr, err := s.st.Room(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		s.mu.Lock()
		if cur := s.rooms[name]; cur != nil && len(cur.occupants) == 0 {
			delete(s.rooms, name)
		}
		s.mu.Unlock()
		return nil
	}
	if err != nil {
		return fmt.Errorf("muc: adopt room %q: %w", name, err)
	}
	fresh, err := s.loadRoom(ctx, sr)
	if err != nil || fresh == nil {
		return err
	}
	s.mu.Lock()
	if cur := s.rooms[name]; cur == nil || len(cur.occupants) == 0 {
		s.rooms[name] = fresh
	}
	s.mu.Unlock()
	return nil
}

// Evict stops running room name here, because another node of a cluster
// hosts it now: each occupant hears of its own departure with status
// codes 110 and 332 and rejoins there. The stored room and its archive
// stay: they are the other node's now.
func (s *Service) Evict(ctx context.Context, name string) {
	s.mu.Lock()
	r := s.rooms[name]
	if r == nil {
		s.mu.Unlock()
		return
	}
	var fx effects
	for _, o := range r.sorted() {
		aff := r.affiliation(o.bare)
		all := o.sessions
		o.role = roleNone
		for _, sess := range all {
			o.sessions = []Session{sess}
			fx.send(sess, r.unavailableFor(o, o, sess, aff, nil, nil, "", "", StatusMoved))
			s.track(sess, r.name, false)
		}
		o.sessions = nil
	}
	clear(r.occupants)
	delete(s.rooms, name)
	s.unlockAndRun(ctx, &fx)
}

// Occupied reports whether anyone is in room name here.
func (s *Service) Occupied(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[name]
	return r != nil && len(r.occupants) > 0
}
