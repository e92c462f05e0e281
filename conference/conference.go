// Package conference owns conference.DOMAIN: the group rooms (chat/muc)
// and, in the same rooms, their voice and video calls (sfu). A room and
// its call share one address, one membership and one anonymity, so one
// service builds both and wires them to each other: the call admits whom
// the room admits and shows them as the room does (Authorize →
// muc.MayConference, SeesRealJIDs), and a change in the room puts out of
// the call whoever it no longer admits (AccessChanged → sfu.Recheck).
//
// The service decides which stanzas to conference.DOMAIN are the call's
// and which the rooms' (see forCall), and it is the room service the
// cluster link runs the rooms this node hosts through: HandleStanza,
// HandleRemote, SessionClosed, InUse, Adopt, Moved and HostLost. It knows
// nothing of the cluster or of sockets other than the SFU's media ports;
// cmd/poosmsd configures it, starts it and routes conference.DOMAIN to it
// through the link.
package conference

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"

	"poosms.org/poosms/chat/muc"
	"poosms.org/poosms/sfu"
)

// Config configures the service.
type Config struct {
	// Domain is the service's domain, e.g. "conference.localhost".
	// Required; Rooms.Domain and Calls.Domain are set to it.
	Domain string
	// Rooms configures the group rooms. Its AccessChanged is set by the
	// service (to recheck the room's call); leave it nil.
	Rooms muc.Config
	// Calls configures the SFU. Its Authorize and SeesRealJIDs are set by
	// the service (the room decides); leave them nil.
	Calls sfu.Config
	// Hosted reports whether a domain is served by this server (its own
	// and its services'): a stanza HandleRemote is given that claims to
	// come from one is dropped. Nil: Rooms.ServerDomain and Domain.
	Hosted func(domain string) bool
	// Logger receives the service's own records (the rooms and the SFU
	// log through their own). Default slog.Default().
	Logger *slog.Logger
}

// Service runs conference.DOMAIN on one node. Create it with New, start
// it with Start; until then it has no rooms and no calls, and what it is
// handed is dropped.
type Service struct {
	cfg Config
	st  muc.Store
	log *slog.Logger
	run atomic.Pointer[parts] // nil until Start
}

// parts are the rooms and their calls, once started.
type parts struct {
	rooms *muc.Service
	calls *sfu.Service
}

// New returns a service for cfg, reading and writing the rooms through
// st (*store.DB implements it). Nothing runs until Start.
func New(cfg Config, st muc.Store) (*Service, error) {
	if cfg.Domain == "" {
		return nil, errors.New("conference: Domain is required")
	}
	if st == nil {
		return nil, errors.New("conference: a store is required")
	}
	cfg.Rooms.Domain = cfg.Domain
	cfg.Calls.Domain = cfg.Domain
	if cfg.Hosted == nil {
		server, own := cfg.Rooms.ServerDomain, cfg.Domain
		cfg.Hosted = func(d string) bool { return d == server || d == own }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{cfg: cfg, st: st, log: log}, nil
}

// Start loads the rooms from the store and opens the SFU's media ports.
// Call it once; after an error nothing runs.
func (s *Service) Start() error {
	if s.run.Load() != nil {
		return errors.New("conference: already started")
	}
	p := &parts{}
	rc := s.cfg.Rooms
	// A ban, a lost membership or leaving the room also ends the person's
	// call; a new nickname shows there too. (No stanza reaches the rooms
	// before p.calls is set: the service runs nothing until Start returns.)
	rc.AccessChanged = p.recheck
	rooms, err := muc.New(rc, s.st)
	if err != nil {
		return err
	}
	cc := s.cfg.Calls
	// The room and its call run on one node (the room's host in a
	// cluster), so the room's occupants are known where this runs.
	cc.Authorize = p.mayConference
	cc.SeesRealJIDs = p.seesRealJIDs
	calls, err := sfu.New(cc)
	if err != nil {
		return err
	}
	p.rooms, p.calls = rooms, calls
	s.run.Store(p)
	return nil
}

// Close stops the calls (the rooms hold nothing to release). The rooms
// keep answering: stanzas that still arrive while the node stops are
// handled as the SFU answers once closed.
func (s *Service) Close() error {
	if p := s.run.Load(); p != nil {
		return p.calls.Close()
	}
	return nil
}

// UDPAddr is the SFU's media port as bound; nil before Start.
func (s *Service) UDPAddr() net.Addr {
	if p := s.run.Load(); p != nil {
		return p.calls.UDPAddr()
	}
	return nil
}
