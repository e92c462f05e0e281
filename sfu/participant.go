package sfu

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/sfu/internal/forward"
	"poosms.org/poosms/sfu/internal/rtpx"
	"poosms.org/poosms/stanza"
)

// participant is one client in one conference, with its PeerConnection.
type participant struct {
	id   string
	room *room
	peer Peer
	jid  jid.JID
	log  *slog.Logger
	pc   *webrtc.PeerConnection

	occupant string // address in the room (room/nick), "" for none; guarded by room.mu

	// mu serialises the participant's negotiation (see negotiateLocked)
	// and is held around every pion call that changes its session (lock
	// order: see the package doc).
	mu           sync.Mutex
	closed       bool
	answered     bool   // the client's first offer was answered: it may be subscribed to tracks
	pendingOffer string // id of the server's offer iq awaiting the answer
	needNeg      bool   // renegotiate once the current exchange ends
	remoteCands  []webrtc.ICECandidateInit
	subs         map[string]*subscription // by published track id
	served       []*webrtc.RTPTransceiver // every transceiver subscribe added
	ups          map[*webrtc.RTPReceiver]*upTrack
	nextTrack    int
	offerTimer   *time.Timer // removes the participant if an offer goes unanswered

	sigMu      sync.Mutex // guards localCands, descSent and eocSent
	descSent   bool
	eocSent    bool // <end-of-candidates/> went out (it goes once)
	localCands []*stanza.Element

	direct *directSender                // the SFU's own SRTP, both ways, below pion's interceptors
	out    *sendPath                    // pc's send path: the subscriptions write through it; guarded by mu
	in     atomic.Pointer[recvFeedback] // pc's feedback to the publisher (NACKs, receiver reports, TWCC feedback)
	bwe    atomic.Pointer[bandwidthEstimator]
	remb   atomic.Int64  // the subscriber's latest REMB, bits/s
	twccIn atomic.Uint64 // TWCC feedback packets from the subscriber
	rrIn   atomic.Uint64 // receiver reports from the subscriber
	// bySSRC finds a subscription by the SSRC the SFU sends it with, for
	// the RTCP read directly (directRTCP); directNacks is that path's
	// NACK buffer.
	bySSRC      cowMap[uint32, *subscription]
	directNacks [maxNackPairs]rtcp.NackPair
	connected   chan struct{}
	connOnce    sync.Once
	timer       *time.Timer
	wg          sync.WaitGroup // RTCP loops of subscriptions
}

type subscription struct {
	up     *upTrack
	dt     *forward.DownTrack
	sender *webrtc.RTPSender
	ssrc   uint32 // what the SFU sends it with
}

func newParticipant(r *room, p Peer) (*participant, error) {
	part := &participant{
		id: newID(), room: r, peer: p, jid: p.JID(),
		subs: map[string]*subscription{}, ups: map[*webrtc.RTPReceiver]*upTrack{},
		connected: make(chan struct{}),
	}
	part.log = r.log.With("jid", part.jid.String(), "participant", part.id)
	part.direct = newDirectSender(r.s.socketFor, &r.s.recv)
	part.direct.inline = r.s.inline
	part.direct.rtcpSink = part.directRTCP
	pc, out, err := part.newPC(part.direct)
	if err != nil {
		return nil, err
	}
	part.pc, part.out = pc, out
	return part, nil
}

// newPC makes the participant's PeerConnection, with its send path and
// bandwidth estimator and its feedback to the publisher (p.in, from
// now on), and sets its callbacks; with direct, its RTP leaves through
// direct (see directSender).
func (p *participant) newPC(direct *directSender) (*webrtc.PeerConnection, *sendPath, error) {
	out := newSendPath(direct, true)
	in := newRecvFeedback()
	api, err := p.room.s.newAPI(in, out)
	if err != nil {
		return nil, nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	if e := out.estimator(); e != nil {
		p.bwe.Store(&e)
	}
	p.in.Store(in)
	r := p.room
	pc.OnICECandidate(p.onLocalCandidate)
	pc.OnTrack(p.onTrack)
	pc.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(*webrtc.ICECandidatePair) {
		p.direct.updateRoute(pc)
	})
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			p.connOnce.Do(func() {
				if why := p.direct.start(pc); why != "" {
					p.log.Debug("sfu: rtp through pion's session", "why", why)
				}
				close(p.connected)
				r.ready(p) // the tracks held until now (see subscribe)
			})
		case webrtc.PeerConnectionStateFailed:
			r.remove(p, reasonFailed)
		case webrtc.PeerConnectionStateClosed:
			// The client closed DTLS (or we did, and this is a no-op).
			r.remove(p, reasonPCClosed)
		}
	})
	return pc, out, nil
}

// startTimer removes the participant if it has not connected in time.
func (p *participant) startTimer() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.timer = time.AfterFunc(p.room.s.cfg.ConnectTimeout, func() {
		select {
		case <-p.connected:
		default:
			p.room.remove(p, reasonTimeout)
		}
	})
}

func (p *participant) roomJID() string { return p.room.key }

func (p *participant) send(el *stanza.Element) {
	if err := p.peer.Send(el); err != nil {
		p.log.Debug("sfu: send to client", "err", err)
	}
}

func (p *participant) event(payload *stanza.Element) {
	p.send(headline(p.roomJID(), p.jid.String(), payload))
}

// onLocalCandidate trickles the server's candidates, holding them until
// the client has the description they belong to. Pion reports the end of
// gathering again at every later SetLocalDescription; the client hears it
// once.
func (p *participant) onLocalCandidate(c *webrtc.ICECandidate) {
	var payload *stanza.Element
	if c == nil {
		p.sigMu.Lock()
		again := p.eocSent
		p.eocSent = true
		p.sigMu.Unlock()
		if again {
			return
		}
		payload = stanza.New(NS, "end-of-candidates")
	} else {
		init := c.ToJSON()
		mid, ufrag := "", ""
		if init.SDPMid != nil {
			mid = *init.SDPMid
		}
		if init.UsernameFragment != nil {
			ufrag = *init.UsernameFragment
		}
		payload = candidateElement(init.Candidate, mid, init.SDPMLineIndex, ufrag)
	}
	p.sigMu.Lock()
	if !p.descSent {
		p.localCands = append(p.localCands, payload)
		p.sigMu.Unlock()
		return
	}
	p.sigMu.Unlock()
	p.send(iqSet(p.roomJID(), p.jid.String(), p.room.s.nextID(), payload))
}

// sendDescription sends a result or offer carrying our description, then
// any candidates gathered before it.
func (p *participant) sendDescription(el *stanza.Element) {
	p.send(el)
	p.sigMu.Lock()
	p.descSent = true
	held := p.localCands
	p.localCands = nil
	p.sigMu.Unlock()
	for _, c := range held {
		p.send(iqSet(p.roomJID(), p.jid.String(), p.room.s.nextID(), c))
	}
}

// handleOffer applies the client's offer and answers it, or returns why
// it refuses it. While the
// server's own offer is outstanding (glare) the client's offer is refused
// with unexpected-request: the client gives way, answers the server and
// offers again.
func (p *participant) handleOffer(iq *stanza.Element, text string) error {
	sd, err := parseSDP(text)
	if err != nil {
		return refuse(errBadRequest, "malformed SDP: %v", err)
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return refuse(errNotFound, "not in this conference")
	}
	// Over a cap, nothing of the offer is applied: no track is added and
	// no other participant is renegotiated for it.
	cfg := p.room.s.cfg
	if why := offerRefusal(sd, p.servedMids(), cfg.MaxTracksPerParticipant, cfg.MaxMediaSections); why != "" {
		p.mu.Unlock()
		return refuse(errOverLimit, "%s", why)
	}
	if p.pendingOffer != "" || p.pc.SignalingState() != webrtc.SignalingStateStable {
		p.mu.Unlock()
		return refuse(errGlare, "the server's offer is outstanding: answer it, then offer again")
	}
	if p.pc.RemoteDescription() == nil && offersPassive(text) {
		// The client wants to be the DTLS server: a PeerConnection that
		// answers as pion does by default (see directSender).
		pc, out, err := p.newPC(nil)
		if err != nil {
			p.mu.Unlock()
			return refuse(errCannotAnswer, "cannot answer: %v", err)
		}
		old := p.pc
		p.pc, p.out = pc, out
		old.OnConnectionStateChange(func(webrtc.PeerConnectionState) {})
		_ = old.Close()
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: text}); err != nil {
		p.mu.Unlock()
		return refuse(errBadRequest, "offer refused: %v", err)
	}
	// The first answer starts gathering; it is local (the media ports
	// are bound already) and takes milliseconds, so the answer waits for
	// it and carries every candidate and a=end-of-candidates, for clients
	// that do not trickle. The candidates are trickled as well.
	var gathered <-chan struct{}
	if !p.answered {
		gathered = webrtc.GatheringCompletePromise(p.pc)
	}
	answer, err := p.pc.CreateAnswer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(answer)
	}
	if err != nil {
		p.mu.Unlock()
		return refuse(errCannotAnswer, "cannot answer: %v", err)
	}
	p.direct.syncCryptex(p.pc)
	if gathered != nil {
		t := time.NewTimer(gatherTimeout)
		select {
		case <-gathered:
		case <-t.C:
		}
		t.Stop()
	}
	p.addRemoteCandidates()
	p.sendDescription(stanza.Result(iq, sdpElement("answer", p.pc.LocalDescription().SDP)))
	first := !p.answered
	p.answered = true
	if !first && p.needNeg {
		p.negotiateLocked() // what changed during the exchange
	}
	p.mu.Unlock()
	if first {
		p.room.ready(p)
	}
	return nil
}

// addRemoteCandidates applies candidates that came before the remote
// description. p.mu must be held.
func (p *participant) addRemoteCandidates() {
	for _, c := range p.remoteCands {
		if err := p.pc.AddICECandidate(c); err != nil {
			p.log.Debug("sfu: queued candidate", "err", err)
		}
	}
	p.remoteCands = nil
}

func (p *participant) handleCandidate(iq, el *stanza.Element) error {
	text := el.Text()
	if text == "" {
		return refuse(errBadRequest, "empty candidate")
	}
	init := webrtc.ICECandidateInit{Candidate: text}
	if mid := el.Attr("mid"); el.HasAttr("mid") {
		init.SDPMid = &mid
	}
	if s := el.Attr("mline"); s != "" {
		n, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return refuse(errBadRequest, "mline is not a number")
		}
		m := uint16(n)
		init.SDPMLineIndex = &m
	}
	if u := el.Attr("ufrag"); u != "" {
		init.UsernameFragment = &u
	}
	p.mu.Lock()
	var err error
	switch {
	case p.closed:
	case p.pc.RemoteDescription() == nil:
		if len(p.remoteCands) < maxQueuedCandidates {
			p.remoteCands = append(p.remoteCands, init)
		}
	default:
		err = p.pc.AddICECandidate(init)
	}
	p.mu.Unlock()
	if err != nil {
		return refuse(errBadRequest, "candidate refused: %v", err)
	}
	p.send(stanza.Result(iq))
	return nil
}

const maxQueuedCandidates = 64

// gatherTimeout bounds how long the first answer waits for the server's
// candidates; what comes later is trickled.
const gatherTimeout = 2 * time.Second

// offerTimeout is how long the client has to answer a server offer.
const offerTimeout = 15 * time.Second

func (p *participant) handleEndOfCandidates(iq *stanza.Element) {
	p.send(stanza.Result(iq))
}

// negotiateLocked sends the server's offer for what changed in p's session
// now, or, while an exchange is in progress, notes (needNeg) that one is
// due when it ends. p.mu must be held.
//
// p.mu serialises negotiation: every change to the session (subscribe,
// unsubscribe) and every step of an exchange (handleOffer answering the
// client, handleReply taking the answer to the server's offer) happens
// under it and ends, before p.mu is let go, with negotiateLocked if it
// changed something or found a change waiting. So whenever p.mu is free
// either a server offer is outstanding, or the client has been offered
// every change made so far. A client offer is therefore refused as glare
// exactly when it crosses a server offer already sent; one taken before a
// change is answered first, and the change is offered after it; and a
// client offer never meets a media section of ours that no offer has
// carried yet (pion could otherwise hand that section to a new m-line of
// the client's).
func (p *participant) negotiateLocked() {
	if p.closed || !p.answered {
		return
	}
	if p.pendingOffer != "" || p.pc.SignalingState() != webrtc.SignalingStateStable {
		p.needNeg = true
		return
	}
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed || p.pc.SignalingState() == webrtc.SignalingStateClosed {
		return
	}
	p.needNeg = false
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	if err != nil {
		if errors.Is(err, webrtc.ErrConnectionClosed) || p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed ||
			p.pc.SignalingState() == webrtc.SignalingStateClosed {
			return
		}
		p.log.Error("sfu: create offer", "err", err)
		return
	}
	id := p.room.s.nextID()
	p.pendingOffer = id
	if p.offerTimer != nil {
		p.offerTimer.Stop()
	}
	p.offerTimer = time.AfterFunc(offerTimeout, func() {
		p.mu.Lock()
		late := p.pendingOffer == id && !p.closed
		p.mu.Unlock()
		if late {
			p.log.Info("sfu: offer not answered in time")
			p.room.remove(p, reasonNegotiation)
		}
	})
	p.sendDescription(iqSet(p.roomJID(), p.jid.String(), id, sdpElement("offer", p.pc.LocalDescription().SDP)))
}

// handleReply takes the client's result or error for a server iq; only
// the answer to an offer matters.
func (p *participant) handleReply(iq *stanza.Element) {
	p.mu.Lock()
	if p.closed || iq.ID() == "" || iq.ID() != p.pendingOffer {
		p.mu.Unlock()
		return
	}
	p.pendingOffer = ""
	var err error
	if iq.IsError() {
		err = errors.New("client refused the offer")
	} else if ans := iq.Child(NS, "answer"); ans == nil {
		err = errors.New("result without <answer/>")
	} else {
		err = p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: ans.Text()})
	}
	if err == nil {
		p.direct.syncCryptex(p.pc)
	}
	if err == nil && p.needNeg {
		p.negotiateLocked() // what changed during the exchange
	}
	p.mu.Unlock()
	if err != nil {
		// The offer cannot be withdrawn: the session is unusable.
		p.log.Info("sfu: renegotiation failed", "err", err)
		p.room.remove(p, reasonNegotiation)
	}
}

// subscribe adds a copy of each of tracks to p's PeerConnection and
// offers them to the client (see negotiateLocked). room.mu must not be
// held: the room lets go of it before it calls into a participant.
//
// It adds nothing before p's first offer is answered and its connection
// is up (room.ready, called then, subscribes p to what is published by
// then), after p closed, twice for one track, or for a track unpublished
// meanwhile (see room.addTrack). Not while ICE and DTLS are starting: a
// server offer applied then can cost a Pion client its first
// connectivity checks (seen in poosms-bench media: ICE took one 200 ms
// check interval instead of a few milliseconds).
func (p *participant) subscribe(tracks ...*upTrack) {
	dts := make([]*forward.DownTrack, len(tracks))
	for i, u := range tracks {
		dt := forward.NewDownTrack(u.codec.RTPCodecCapability, u.id, u.owner.id, 0)
		dt.NeedKeyframe = u.requestKeyframe
		dt.Caches = u.caches
		if len(u.layers) > 1 {
			dt.OnSwitch = func(layer int) {
				p.event(stanza.New(NS, "layer-changed").SetAttr("track", u.id).SetAttr("rid", u.rid(layer)))
			}
		}
		dts[i] = dt
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.answered || !p.isConnected() {
		return
	}
	added := false
	for i, u := range tracks {
		if p.subs[u.id] != nil || u.unpublished.Load() {
			continue
		}
		dt := dts[i]
		dt.Out = p.out
		tr, err := p.pc.AddTransceiverFromTrack(dt, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			p.log.Error("sfu: subscribe", "track", u.id, "err", err)
			continue
		}
		s := &subscription{up: u, dt: dt, sender: tr.Sender()}
		p.subs[u.id] = s
		if enc := s.sender.GetParameters().Encodings; len(enc) > 0 {
			s.ssrc = uint32(enc[0].SSRC)
			p.bySSRC.set(s.ssrc, s)
		}
		p.served = append(p.served, tr)
		u.fan.Add(dt)
		p.wg.Add(1)
		go p.rtcpLoop(s)
		added = true
	}
	if added {
		p.negotiateLocked()
	}
}

// isConnected reports whether p's connection has been up.
func (p *participant) isConnected() bool {
	select {
	case <-p.connected:
		return true
	default:
		return false
	}
}

// servedMids returns the mids of the media sections subscribe added (once
// negotiated), which a client's offer repeats. p.mu must be held.
func (p *participant) servedMids() map[string]bool {
	mids := make(map[string]bool, len(p.served))
	for _, tr := range p.served {
		if mid := tr.Mid(); mid != "" {
			mids[mid] = true
		}
	}
	return mids
}

// unsubscribe removes u from p's PeerConnection, if p has it, and offers
// the client the change (see negotiateLocked). room.mu must not be held.
func (p *participant) unsubscribe(u *upTrack) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.subs[u.id]
	if s == nil {
		return
	}
	delete(p.subs, u.id)
	p.bySSRC.remove(s.ssrc, s)
	u.fan.Remove(s.dt)
	if p.closed {
		return
	}
	if err := p.pc.RemoveTrack(s.sender); err != nil {
		p.log.Debug("sfu: remove track", "err", err)
	}
	p.negotiateLocked()
}

// rtcpLoop reads the subscriber's RTCP for one track: keyframe requests go
// to the publisher; NACKs are answered from the track's packet cache. The
// compound packets are read in place (rtpx.NextRTCP), so nothing is
// allocated per packet; a malformed packet ends its compound packet, the
// packets before it still count.
func (p *participant) rtcpLoop(s *subscription) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	var nacks [maxNackPairs]rtcp.NackPair
	for {
		n, _, err := s.sender.Read(buf)
		if err != nil {
			return
		}
		if p.direct.recvReady.Load() {
			// Feedback that came the pion way although the participant
			// is read directly: it sends from an address not listed.
			p.direct.refreshFrom()
		}
		for rest := buf[:n]; len(rest) > 0; {
			kind, pkt, next, ok := rtpx.NextRTCP(rest)
			if !ok {
				break
			}
			rest = next
			p.handleRTCP(s, kind, pkt, &nacks)
		}
	}
}

// handleRTCP acts on one RTCP packet from the subscriber about s.
func (p *participant) handleRTCP(s *subscription, kind rtpx.RTCPKind, pkt []byte, nacks *[maxNackPairs]rtcp.NackPair) {
	switch kind {
	case rtpx.RTCPREMB:
		p.remb.Store(rtpx.REMBBitrate(pkt))
	case rtpx.RTCPPLI, rtpx.RTCPFIR:
		l := s.dt.Current()
		if l == forward.NoLayer {
			l = s.dt.Target()
		}
		s.up.requestKeyframe(l)
	case rtpx.RTCPNack:
		k := 0
		rtpx.NackPairs(pkt, func(id, lost uint16) {
			if k == len(nacks) {
				s.dt.Retransmit(nacks[:k], nanotime())
				k = 0
			}
			nacks[k] = rtcp.NackPair{PacketID: id, LostPackets: rtcp.PacketBitmap(lost)}
			k++
		})
		if k > 0 {
			s.dt.Retransmit(nacks[:k], nanotime())
		}
	case rtpx.RTCPTWCC:
		p.twccIn.Add(1)
	case rtpx.RTCPReceiverReport:
		p.rrIn.Add(1)
	}
}

// directRTCP acts on a compound RTCP packet the media sockets' filter
// decrypted (directSender.receiveRTCP), as rtcpLoop acts on what pion
// hands each subscription: the bandwidth estimator reads it whole, and
// each packet goes to the subscription of the SSRC it is about (a
// report, a TWCC feedback or a REMB is about the connection). It runs on
// the filter's goroutine, one packet at a time.
func (p *participant) directRTCP(b []byte) {
	if e := p.bwe.Load(); e != nil {
		(*e).Feedback(b, nanotime())
	}
	for rest := b; len(rest) > 0; {
		kind, pkt, next, ok := rtpx.NextRTCP(rest)
		if !ok {
			break
		}
		rest = next
		switch kind {
		case rtpx.RTCPSenderReport:
			p.in.Load().senderReport(pkt, nanotime())
		case rtpx.RTCPPLI, rtpx.RTCPNack:
			// The media source SSRC follows the header and the sender's.
			if len(pkt) >= 12 {
				if s := p.bySSRC.get(binary.BigEndian.Uint32(pkt[8:12])); s != nil {
					p.handleRTCP(s, kind, pkt, &p.directNacks)
				}
			}
		case rtpx.RTCPFIR:
			// One entry of eight bytes per SSRC asked (RFC 5104 4.3.1).
			for fci := pkt[min(len(pkt), 12):]; len(fci) >= 8; fci = fci[8:] {
				if s := p.bySSRC.get(binary.BigEndian.Uint32(fci[:4])); s != nil {
					p.handleRTCP(s, kind, pkt, &p.directNacks)
				}
			}
		default:
			p.handleRTCP(nil, kind, pkt, &p.directNacks)
		}
	}
}

// maxNackPairs is how many NACK pairs rtcpLoop hands to Retransmit at a
// time (a 1,500-byte packet holds at most 371).
const maxNackPairs = 64

// handleLayer takes an explicit layer request: a rid, or "auto".
func (p *participant) handleLayer(iq, el *stanza.Element) error {
	p.mu.Lock()
	s := p.subs[el.Attr("track")]
	p.mu.Unlock()
	if s == nil {
		return refuse(errNotFound, "no such track")
	}
	rid := el.Attr("rid")
	if rid == "auto" || rid == "" {
		s.dt.SetTarget(s.dt.Target(), true)
		p.send(stanza.Result(iq))
		return nil
	}
	l := s.up.layerIndex(rid)
	if l < 0 {
		return refuse(errNotFound, "no layer %s", rid)
	}
	s.dt.SetTarget(l, false)
	p.send(stanza.Result(iq))
	return nil
}

// chooseLayers points each automatic video subscription at the best layer
// that fits its share of the bandwidth estimate.
func (p *participant) chooseLayers() {
	budget := 0
	if e := p.bwe.Load(); e != nil {
		budget = (*e).TargetBitrate()
	}
	if r := int(p.remb.Load()); r > 0 && (budget <= 0 || r < budget) {
		budget = r
	}
	p.mu.Lock()
	var video []*subscription
	for _, s := range p.subs {
		if len(s.up.layers) > 1 && s.dt.Auto() {
			video = append(video, s)
		}
	}
	p.mu.Unlock()
	if len(video) == 0 {
		return
	}
	if budget <= 0 {
		budget = maxEstimate // no estimate yet: the best layer that is sending
	}
	share := budget / len(video)
	for _, s := range video {
		l, cur := s.up.bestLayer(share), s.dt.Target()
		if l == cur {
			continue
		}
		// Step up only with 20% headroom, so a layer near the estimate
		// does not flap.
		if l < cur && s.up.layers[l].rate.Load() > int64(share)*4/5 {
			continue
		}
		s.dt.SetTarget(l, true)
	}
}

// retryKeyframes asks again for keyframes that subscribers still wait for.
func (p *participant) retryKeyframes() {
	p.mu.Lock()
	var waiting []*subscription
	for _, s := range p.subs {
		if s.dt.Kind() == webrtc.RTPCodecTypeVideo && s.dt.Current() != s.dt.Target() {
			waiting = append(waiting, s)
		}
	}
	p.mu.Unlock()
	for _, s := range waiting {
		s.up.requestKeyframe(s.dt.Target())
	}
}

// onTrack starts forwarding one incoming stream (one simulcast layer).
//
// Pion reports a stream that the client's SDP declares with its SSRC (an
// a=ssrc line: audio, and video without simulcast) as soon as the
// connection is up, before its first packet and without its codec
// (SetFireOnTrackBeforeFirstRTP): such a track is published at once,
// so the others' session is renegotiated for it while the publisher's
// media is still on its way rather than after its first packet, when
// its codec is the only one its media section negotiated (audio: Opus).
// Otherwise the codec is the first packet's (publishOnFirstPacket).
// Simulcast layers, known by their rid, are reported at their first
// packet, with their codec.
func (p *participant) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	codec := tr.Codec()
	if codec.MimeType == "" {
		var ok bool
		if codec, ok = onlyCodec(recv); !ok {
			p.mu.Lock()
			if !p.closed {
				p.wg.Add(1)
				go p.publishOnFirstPacket(tr, recv)
			}
			p.mu.Unlock()
			return
		}
	}
	p.publish(tr, recv, codec)
}

// publishOnFirstPacket publishes a stream pion reported before its first
// packet once that packet has named its codec (pion takes it from the
// payload type of what it reads). The packet itself is not forwarded:
// nobody can be subscribed to the track yet.
func (p *participant) publishOnFirstPacket(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		if _, _, err := tr.Read(buf); err != nil {
			return
		}
		if c := tr.Codec(); c.MimeType != "" {
			p.publish(tr, recv, c)
			return
		}
	}
}

// onlyCodec is the media codec negotiated for recv's section, when it is
// the only one (retransmission and FEC formats left out).
func onlyCodec(recv *webrtc.RTPReceiver) (webrtc.RTPCodecParameters, bool) {
	var only webrtc.RTPCodecParameters
	n := 0
	for _, c := range recv.GetParameters().Codecs {
		if isMediaCodec(c) {
			only = c
			n++
		}
	}
	return only, n == 1
}

// isMediaCodec reports whether c carries media itself, not repairs of it.
func isMediaCodec(c webrtc.RTPCodecParameters) bool {
	switch strings.ToLower(c.MimeType) {
	case "", strings.ToLower(webrtc.MimeTypeRTX), "video/red", "audio/red", "video/ulpfec", "video/flexfec-03", "video/flexfec":
		return false
	}
	return true
}

// publish starts forwarding stream tr, whose codec is codec, and
// publishes its track to the conference when it is the track's first
// stream.
func (p *participant) publish(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver, codec webrtc.RTPCodecParameters) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	u := p.ups[recv]
	isNew := u == nil
	if isNew {
		p.nextTrack++
		u = newUpTrack(p, p.id+"-"+strconv.Itoa(p.nextTrack), tr, recv, codec)
		p.ups[recv] = u
	}
	li := u.layerIndex(tr.RID())
	if li < 0 {
		li = 0
	}
	if !u.started[tr] { // pion may report one stream twice
		u.started[tr] = true
		u.start(tr, li)
		if !p.direct.recvReady.Load() {
			// The publisher's RTCP goes pion's way (see readRTCP).
			u.wg.Add(1)
			go u.readRTCP(recv, tr.RID())
		}
	}
	p.mu.Unlock()
	if isNew {
		p.room.addTrack(u)
	}
}

// close tears the PeerConnection down and waits for the participant's
// goroutines.
func (p *participant) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.offerTimer != nil {
		p.offerTimer.Stop()
	}

	subs := p.subs
	p.subs = map[string]*subscription{}
	pc := p.pc
	p.mu.Unlock()
	for _, s := range subs {
		s.up.fan.Remove(s.dt)
	}
	p.direct.stop()
	if err := pc.Close(); err != nil {
		p.log.Debug("sfu: close peer connection", "err", err)
	}
	p.wg.Wait()
	p.mu.Lock()
	ups := make([]*upTrack, 0, len(p.ups))
	for _, u := range p.ups {
		ups = append(ups, u)
	}
	p.mu.Unlock()
	for _, u := range ups {
		u.wait()
	}
}
