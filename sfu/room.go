package sfu

import (
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// tickInterval is how often a conference re-evaluates the active speaker
// and each subscriber's simulcast layer.
const tickInterval = 500 * time.Millisecond

// room is one conference.
type room struct {
	s      *Service
	jid    jid.JID
	key    string
	opener string // bare JID of the user who opened it, charged for it
	log    *slog.Logger

	// mu guards the conference's membership; it is never held while a
	// participant's mu is taken (see the package doc for the locks).
	mu      sync.Mutex
	parts   map[string]*participant // by participant id
	byJID   map[string]*participant // by full JID
	tracks  map[string]*upTrack     // by track id
	closed  bool
	speaker string // participant id of the active speaker

	stopOnce sync.Once
	quit     chan struct{}
	done     chan struct{}
}

func newRoom(s *Service, j jid.JID, opener string) *room {
	r := &room{
		s: s, jid: j, key: j.String(), opener: opener, log: s.log.With("room", j.String()),
		parts: map[string]*participant{}, byJID: map[string]*participant{}, tracks: map[string]*upTrack{},
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	go r.loop()
	return r
}

func newID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// join adds a participant for peer p, with its address in the room,
// replacing an earlier one of the same full JID. It returns
// errConferenceClosed when the conference closed meanwhile.
func (r *room) join(p Peer, occupant string) (*participant, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errConferenceClosed
	}
	old := r.byJID[p.JID().String()]
	n := len(r.parts)
	if old != nil {
		n--
	}
	r.mu.Unlock()
	if n >= r.s.cfg.MaxParticipants {
		return nil, refuse(errNoRoom, "the conference is full")
	}
	if old != nil {
		r.remove(old, reasonReplaced)
	}
	part, err := newParticipant(r, p)
	if err != nil {
		r.log.Error("sfu: new participant", "jid", p.JID().String(), "err", err)
		return nil, fmt.Errorf("sfu: new participant: %w", err)
	}
	r.mu.Lock()
	if r.closed || len(r.parts) >= r.s.cfg.MaxParticipants || r.byJID[p.JID().String()] != nil {
		closed := r.closed
		r.mu.Unlock()
		part.close()
		if closed {
			return nil, errConferenceClosed
		}
		return nil, refuse(errNoRoom, "the conference is full")
	}
	part.occupant = occupant
	r.parts[part.id] = part
	r.byJID[p.JID().String()] = part
	r.mu.Unlock()
	part.startTimer()
	return part, nil
}

// readmit gives p its address in the room as it is now: a change (a new
// nickname) is announced to the others.
func (r *room) readmit(p *participant, occupant string) {
	r.mu.Lock()
	if r.parts[p.id] != p || p.occupant == occupant {
		r.mu.Unlock()
		return
	}
	p.occupant = occupant
	r.mu.Unlock()
	r.broadcastEach(func(to *participant) *stanza.Element { return r.describe("participant-changed", p, to) }, p)
}

// describe is an element about p for viewer, showing p as its room does:
// its address in the room, and its real JID if viewer may see it (or is
// p). r.mu must be held.
func (r *room) describe(local string, p, viewer *participant) *stanza.Element {
	e := stanza.New(NS, local).SetAttr("id", p.id)
	if p.occupant != "" {
		e.SetAttr("occupant", p.occupant)
	}
	if see := r.s.cfg.SeesRealJIDs; viewer == p || see == nil || see(r.jid, viewer.peer) {
		e.SetAttr("jid", p.jid.String())
	}
	return e
}

// closeIfEmpty closes the conference if nobody is in it (its first join
// failed).
func (r *room) closeIfEmpty() {
	r.mu.Lock()
	empty := len(r.parts) == 0 && !r.closed
	if empty {
		r.closed = true
	}
	r.mu.Unlock()
	if empty {
		r.stop()
	}
}

// joinedElement is the join result: who is here and what they publish.
func (r *room) joinedElement(self *participant) *stanza.Element {
	e := stanza.New(NS, "joined").SetAttr("participant", self.id)
	if fn := r.s.cfg.ICEServers; fn != nil {
		for _, is := range fn(self.jid) {
			e.Append(stanza.New(NS, "ice-server").SetAttr("urls", strings.Join(is.URLs, " ")).
				SetAttr("username", is.Username).SetAttr("credential", is.Credential))
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.parts {
		if p == self {
			continue
		}
		pe := r.describe("participant", p, self)
		for _, u := range r.tracks {
			if u.owner == p {
				pe.Append(trackElement("track", u))
			}
		}
		e.Append(pe)
	}
	if r.speaker != "" {
		e.Append(stanza.New(NS, "active-speaker").SetAttr("participant", r.speaker))
	}
	return e
}

func (r *room) announceJoin(p *participant) {
	r.broadcastEach(func(to *participant) *stanza.Element { return r.describe("participant-joined", p, to) }, p)
}

// broadcast sends a room event to every participant but except.
func (r *room) broadcast(payload *stanza.Element, except *participant) {
	r.broadcastEach(func(*participant) *stanza.Element { return payload.Copy() }, except)
}

// broadcastEach sends every participant but except the event build makes
// for it; build runs with r.mu held.
func (r *room) broadcastEach(build func(to *participant) *stanza.Element, except *participant) {
	type event struct {
		to *participant
		el *stanza.Element
	}
	r.mu.Lock()
	events := make([]event, 0, len(r.parts))
	for _, p := range r.parts {
		if p != except {
			events = append(events, event{p, build(p)})
		}
	}
	r.mu.Unlock()
	for _, e := range events {
		e.to.event(e.el)
	}
}

func (r *room) byPeer(p Peer) *participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	part := r.byJID[p.JID().String()]
	if part == nil || part.peer != p {
		return nil
	}
	return part
}

// ready subscribes p to every track in the conference once its first
// offer has been answered and its connection is up (it is called at
// both; subscribe refuses until both are so).
//
// The subscriptions (pion calls) are made after r.mu is let go, so that
// the conference is not held up for them. A track published after the
// snapshot below reaches p through addTrack: p.answered is true already
// and p is in r.parts; should both subscribe p to it, the second finds it
// there and adds nothing.
func (r *room) ready(p *participant) {
	r.mu.Lock()
	if r.closed || r.parts[p.id] != p {
		r.mu.Unlock()
		return
	}
	tracks := make([]*upTrack, 0, len(r.tracks))
	for _, u := range r.tracks {
		if u.owner != p {
			tracks = append(tracks, u)
		}
	}
	r.mu.Unlock()
	p.subscribe(tracks...)
}

// addTrack publishes u to everyone whose first offer has been answered
// (subscribe refuses the others; room.ready subscribes them later).
//
// The subscriptions (pion calls, one per participant) are made after r.mu
// is let go, so that a publish in a large conference does not hold up
// every join, leave and tick. That is safe because subscribe decides
// under the subscriber's own lock: a participant removed meanwhile is
// closed and refuses; one that has been subscribed already (by ready)
// refuses the second time; and a track removed meanwhile is marked
// unpublished by removeTrack before it unsubscribes anyone, so either
// subscribe comes first and removeTrack takes the subscription away, or
// subscribe sees the mark and refuses. Each subscriber's offer is made
// by subscribe under that same lock, ordered against the client's own
// offers (see participant.negotiateLocked).
func (r *room) addTrack(u *upTrack) {
	r.mu.Lock()
	if r.closed || r.parts[u.owner.id] != u.owner {
		r.mu.Unlock()
		return
	}
	r.tracks[u.id] = u
	parts := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		if p != u.owner {
			parts = append(parts, p)
		}
	}
	r.mu.Unlock()
	for _, p := range parts {
		p.subscribe(u)
	}
	r.broadcast(trackElement("track-published", u), nil)
}

// removeTrack takes u away from its subscribers.
func (r *room) removeTrack(u *upTrack) {
	r.mu.Lock()
	if r.tracks[u.id] != u {
		r.mu.Unlock()
		return
	}
	delete(r.tracks, u.id)
	u.unpublished.Store(true) // before any unsubscribe: see addTrack
	subs := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		if p != u.owner {
			subs = append(subs, p)
		}
	}
	r.mu.Unlock()
	for _, p := range subs {
		p.unsubscribe(u)
	}
	r.broadcast(stanza.New(NS, "track-removed").SetAttr("id", u.id).SetAttr("participant", u.owner.id), nil)
}

// remove ends participant p: its tracks go, the others hear it left, its
// PeerConnection closes. The last one out closes the conference.
func (r *room) remove(p *participant, reason string) {
	r.mu.Lock()
	if r.parts[p.id] != p {
		r.mu.Unlock()
		return
	}
	delete(r.parts, p.id)
	if r.byJID[p.jid.String()] == p {
		delete(r.byJID, p.jid.String())
	}
	var gone []*upTrack
	for _, u := range r.tracks {
		if u.owner == p {
			gone = append(gone, u)
		}
	}
	empty := len(r.parts) == 0
	if empty {
		r.closed = true
	}
	r.mu.Unlock()
	if empty {
		r.s.dropRoom(r) // a new join opens a fresh conference
	}
	r.log.Debug("sfu: participant removed", "jid", p.jid.String(), "participant", p.id, "reason", reason)
	for _, u := range gone {
		r.removeTrack(u)
	}
	p.close()
	for _, u := range gone {
		u.wait()
	}
	if empty {
		r.stop()
	}
	// The participant hears why it was removed (once its resources are
	// gone) unless it asked to go; the others hear it left.
	left := func(to *participant) *stanza.Element {
		return r.describe("participant-left", p, to).SetAttr("reason", reason)
	}
	if reason != reasonLeave && reason != reasonClosed {
		r.mu.Lock()
		own := left(p)
		r.mu.Unlock()
		p.event(own)
	}
	r.broadcastEach(left, nil)
}

// participants returns the participants now.
func (r *room) participants() []*participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	parts := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		parts = append(parts, p)
	}
	return parts
}

// close removes everyone.
func (r *room) close(reason string) {
	parts := r.participants()
	for _, p := range parts {
		r.remove(p, reason)
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.stop()
}

func (r *room) stop() {
	r.stopOnce.Do(func() { close(r.quit) })
	<-r.done
	r.s.dropRoom(r)
}

// loop re-evaluates the active speaker and the subscribers' layers.
func (r *room) loop() {
	defer close(r.done)
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-r.quit:
			return
		case <-t.C:
			r.tick()
		}
	}
}

// speechLevel is the loudest average level (in -dBov, RFC 6464) that
// counts as speaking.
const speechLevel = 70

func (r *room) tick() {
	r.mu.Lock()
	tracks := make([]*upTrack, 0, len(r.tracks))
	for _, u := range r.tracks {
		tracks = append(tracks, u)
	}
	parts := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		parts = append(parts, p)
	}
	cur := r.speaker
	r.mu.Unlock()

	best, bestLevel := "", 128
	for _, u := range tracks {
		u.measure(tickInterval)
		if u.kind != webrtc.RTPCodecTypeAudio {
			continue
		}
		if lvl, ok := u.takeLevel(); ok && lvl <= speechLevel && lvl < bestLevel {
			best, bestLevel = u.owner.id, lvl
		}
	}
	if best != "" && best != cur {
		r.mu.Lock()
		r.speaker = best
		r.mu.Unlock()
		r.broadcast(stanza.New(NS, "active-speaker").SetAttr("participant", best).
			SetAttr("level", itoa(bestLevel)), nil)
	}
	for _, p := range parts {
		p.chooseLayers()
		p.retryKeyframes()
	}
}
