// Package sfu is poosms's selective forwarding unit: voice and video
// conferences negotiated over XMPP in the urn:poosms:conference:0
// namespace, with all media on one multiplexed UDP port. Each participant
// has one PeerConnection on which it publishes and subscribes; packets are
// forwarded with per-subscriber rewriting and simulcast layer choice.
//
// # Locks
//
//  1. Service.mu: the conferences of the node.
//  2. room.mu: a conference's participants, tracks and speaker, and each
//     participant's occupant address.
//  3. participant.mu: one participant's negotiation state (closed,
//     answered, the pending offer, its subscriptions and published
//     tracks), held around the pion calls that change its session. It
//     serialises the participant's negotiation: a change to its session
//     and the server offer that carries it are made under one hold of it,
//     so they are ordered against the client's offers (see
//     participant.negotiateLocked).
//  4. participant.sigMu, and the forward package's own locks (Fanout,
//     DownTrack, PacketCache): leaves, taken under participant.mu or
//     none.
//
// The first three are never held together: each is let go before
// another is taken. A room lets go of room.mu before it calls into a
// participant (subscribe, unsubscribe, close), so no pion call is made
// under room.mu; a participant lets go of participant.mu before it tells
// its room something (ready, addTrack, remove); room.remove lets go of
// room.mu before dropRoom takes Service.mu. Should a future change need
// two of them at once, it takes them in the order above.
//
// Pion takes its own locks inside its calls and runs its callbacks
// (OnTrack, OnICECandidate, OnConnectionStateChange) on its goroutines;
// those callbacks take the locks above, so a pion call made under one of
// them must not wait for a callback.
package sfu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/udpbatch"
	"poosms.org/poosms/stanza"
)

// Peer is a participant's XMPP session (the signaling session satisfies it).
// Send is called from several goroutines (pion's callbacks, the room's
// timers) and must be safe for that; the service compares Peers with ==,
// so implementations should be pointers.
type Peer interface {
	JID() jid.JID                  // full JID
	Send(el *stanza.Element) error // non-blocking enqueue of a stanza to the client
}

// ICEServer is one STUN or TURN server handed to a joining client.
type ICEServer struct {
	URLs                 []string
	Username, Credential string
}

// Config configures the Service.
type Config struct {
	// Domain is the conference service domain, e.g. "conference.localhost".
	Domain string
	// UDPAddr is the one UDP address for all media. Default ":7882"; a
	// port of 0 picks a free one (see Service.UDPAddr).
	UDPAddr string
	// TCPAddr is the ICE-TCP fallback address (the daemon's default is
	// ":7881"); "" disables ICE over TCP.
	TCPAddr string
	// PublicIP is the address advertised in candidates (NAT 1:1); optional.
	PublicIP string
	// ICEServers returns the STUN/TURN servers for a joining user (TURN
	// with fresh credentials). May be nil.
	ICEServers func(user jid.JID) []ICEServer
	// MaxParticipants per conference. Default 100.
	MaxParticipants int
	// MaxConferences per node. Default 100.
	MaxConferences int
	// MaxTracksPerParticipant is how many tracks (audio or video media
	// sections it sends in) one participant may publish; an offer with
	// more is refused with policy-violation and nothing of it is applied.
	// Default 8.
	MaxTracksPerParticipant int
	// MaxMediaSections is how many media sections of its own one offer may
	// carry (those the server added to send the participant others' tracks
	// do not count); more is refused with policy-violation. Default 16.
	MaxMediaSections int
	// MaxConferencesPerUser is how many conferences one user (bare JID)
	// may have opened that still run on this node, so that one user
	// cannot take the node's MaxConferences. Joining a conference that
	// runs already is not limited. Default 5.
	MaxConferencesPerUser int
	// ConnectTimeout removes a participant whose ICE and DTLS have not
	// completed in time. Default 30s.
	ConnectTimeout time.Duration
	// IncludeLoopback offers loopback candidates (tests, one machine).
	IncludeLoopback bool
	// Authorize decides whether the session p may take part in the
	// conference of room (an error refuses it) and gives its address in
	// the room (room@service/nick, "" for none), which everyone in the
	// conference sees. It runs at each join and again at each Recheck.
	// Nil admits anyone, with no address in the room.
	Authorize func(ctx context.Context, room jid.JID, p Peer) (occupant string, err error)
	// SeesRealJIDs reports whether the participant viewer may see the
	// real JIDs of the others in room's conference, asked whenever one is
	// described to it. Nil lets everyone see them.
	SeesRealJIDs func(room jid.JID, viewer Peer) bool
	// Logger for the service's records; default slog.Default() with
	// service=sfu.
	Logger *slog.Logger
}

// Service hosts the conferences of one node.
type Service struct {
	cfg    Config
	log    *slog.Logger
	domain string

	udpConn  net.PacketConn
	firstUDP net.Addr
	batch    *udpbatch.Group  // batches the media sockets' writes during fan-outs
	sockets  []*udpbatch.Conn // every media UDP socket, for the direct send path
	recv     recvTable        // the publishers the sockets' filter reads directly
	// inline: a publisher's packets read directly are forwarded on the
	// goroutine that reads the socket (see recvStream.deliver), with no
	// hand-off to the stream's reader. So with one CPU (GOMAXPROCS 1),
	// where a hand-off buys no parallelism and costs a goroutine switch
	// per packet; with more, the streams' readers spread the forwarding
	// over them.
	inline bool
	udpMux ice.UDPMux
	tcpLn  net.Listener
	tcpMux *ice.TCPMuxDefault
	se     webrtc.SettingEngine

	mu     sync.Mutex
	rooms  map[string]*room // by bare room JID
	opened map[string]int   // bare JID → conferences it opened that run now
	closed bool

	ids atomic.Uint64
}

// New validates cfg, fills its defaults and binds the media ports.
func New(cfg Config) (*Service, error) {
	if cfg.Domain == "" {
		return nil, errors.New("sfu: config: Domain is required")
	}
	d, err := jid.Parse(cfg.Domain)
	if err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("sfu: config: Domain %q is not a domain", cfg.Domain)
	}
	if cfg.UDPAddr == "" {
		cfg.UDPAddr = ":7882"
	}
	if cfg.MaxParticipants <= 0 {
		cfg.MaxParticipants = 100
	}
	if cfg.MaxConferences <= 0 {
		cfg.MaxConferences = 100
	}
	if cfg.MaxConferencesPerUser <= 0 {
		cfg.MaxConferencesPerUser = 5
	}
	if cfg.MaxTracksPerParticipant <= 0 {
		cfg.MaxTracksPerParticipant = DefaultMaxTracks
	}
	if cfg.MaxMediaSections <= 0 {
		cfg.MaxMediaSections = DefaultMaxMediaSections
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default().With("service", "sfu")
	}
	if cfg.PublicIP != "" && net.ParseIP(cfg.PublicIP) == nil {
		return nil, fmt.Errorf("sfu: config: PublicIP %q is not an IP address", cfg.PublicIP)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, domain: d.Domainpart(), rooms: map[string]*room{}, opened: map[string]int{}}
	s.inline = runtime.GOMAXPROCS(0) == 1

	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	udpAddr, err := net.ResolveUDPAddr("udp", cfg.UDPAddr)
	if err != nil {
		return nil, fmt.Errorf("sfu: media udp address %q: %w", cfg.UDPAddr, err)
	}
	if err := s.listenMediaUDP(udpAddr, lf.NewLogger("ice")); err != nil {
		return nil, err
	}
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if cfg.TCPAddr != "" {
		ln, err := net.Listen("tcp", cfg.TCPAddr)
		if err != nil {
			_ = s.udpMux.Close()
			return nil, fmt.Errorf("sfu: listen ice tcp %q: %w", cfg.TCPAddr, err)
		}
		s.tcpLn = ln
		s.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{Listener: ln, Logger: lf.NewLogger("ice"), ReadBufferSize: 64, WriteBufferSize: 4 << 20})
		networks = append(networks, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}

	s.se.LoggerFactory = lf
	s.se.SetICEUDPMux(s.udpMux)
	if s.tcpMux != nil {
		s.se.SetICETCPMux(s.tcpMux)
	}
	s.se.SetNetworkTypes(networks)
	s.se.SetIncludeLoopbackCandidate(cfg.IncludeLoopback)
	s.se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// A stream the client's SDP declares is reported (participant.onTrack)
	// when the connection is up, not at its first packet: its track is
	// offered to the others meanwhile.
	s.se.SetFireOnTrackBeforeFirstRTP(true)
	// AES-128-GCM first: with AES-NI it is the cheapest of the profiles
	// browsers offer (one pass for encryption and authentication, ten
	// rounds against AES-256's fourteen).
	s.se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if cfg.PublicIP != "" {
		if err := s.se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        []string{cfg.PublicIP},
			AsCandidateType: webrtc.ICECandidateTypeHost,
			Mode:            webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			s.closeMedia()
			return nil, fmt.Errorf("sfu: public ip: %w", err)
		}
	}
	return s, nil
}

// UDPAddr is the address the media port is bound to.
func (s *Service) UDPAddr() net.Addr { return s.firstUDP }

// TCPAddr is the address of the ICE-TCP listener, nil when disabled.
func (s *Service) TCPAddr() net.Addr {
	if s.tcpLn == nil {
		return nil
	}
	return s.tcpLn.Addr()
}

func (s *Service) closeMedia() {
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
	if s.tcpLn != nil {
		_ = s.tcpLn.Close()
	}
	_ = s.udpMux.Close()
	if s.udpConn != nil {
		_ = s.udpConn.Close()
	}
}

// Close ends every conference and releases the media ports. It is safe to
// call more than once.
func (s *Service) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		r.close(reasonShutdown)
	}
	s.closeMedia()
	return nil
}

func (s *Service) nextID() string { return "sfu" + strconv.FormatUint(s.ids.Add(1), 36) }

// HandleStanza handles one stanza the client addressed to the service or
// to a conference; from is already the client's full JID. Replies and
// events go out through p.Send. It may block for the few milliseconds a
// PeerConnection operation takes; call it in stream order, one stanza at
// a time per session.
func (s *Service) HandleStanza(ctx context.Context, p Peer, el *stanza.Element) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("sfu: handler panic", "jid", p.JID().String(), "panic", v)
			if el.Local == "iq" && (el.IQType() == stanza.SetIQ || el.IQType() == stanza.GetIQ) {
				_ = p.Send(stanza.ErrorReply(el, stanza.InternalServerError, ""))
			}
		}
	}()
	switch el.Local {
	case "iq":
		s.handleIQ(ctx, p, el)
	case "message":
		if !el.IsError() {
			_ = p.Send(stanza.ErrorReply(el, stanza.ServiceUnavailable, "conferences take no messages"))
		}
	}
}

func (s *Service) handleIQ(ctx context.Context, p Peer, iq *stanza.Element) {
	to, err := iq.ToJID()
	if err != nil || to.Domainpart() != s.domain {
		if iq.IQType() == stanza.SetIQ || iq.IQType() == stanza.GetIQ {
			_ = p.Send(stanza.ErrorReply(iq, stanza.ItemNotFound, "not a conference of this service"))
		}
		return
	}
	roomJID := to.Bare()
	switch iq.Type() {
	case "result", "error":
		if r := s.room(roomJID.String()); r != nil {
			if part := r.byPeer(p); part != nil {
				part.handleReply(iq)
			}
		}
		return
	case "get":
		_ = p.Send(stanza.ErrorReply(iq, stanza.FeatureNotImplemented, ""))
		return
	case "set":
	default:
		_ = p.Send(stanza.ErrorReply(iq, stanza.BadRequest, "unknown iq type"))
		return
	}
	payload := iq.FirstElement()
	if payload == nil || payload.Space != NS {
		_ = p.Send(stanza.ErrorReply(iq, stanza.FeatureNotImplemented, ""))
		return
	}
	if roomJID.Localpart() == "" {
		_ = p.Send(stanza.ErrorReply(iq, stanza.BadRequest, "address a conference: name@"+s.domain))
		return
	}
	if payload.Local == "join" {
		s.join(ctx, p, iq, roomJID)
		return
	}
	r := s.room(roomJID.String())
	var part *participant
	if r != nil {
		part = r.byPeer(p)
	}
	if part == nil {
		_ = p.Send(stanza.ErrorReply(iq, stanza.ItemNotFound, "not in this conference: join first"))
		return
	}
	// The handlers send their results; a refusal is turned into its
	// error reply here.
	var refused error
	switch payload.Local {
	case "offer":
		refused = part.handleOffer(iq, payload.Text())
	case "candidate":
		refused = part.handleCandidate(iq, payload)
	case "end-of-candidates":
		part.handleEndOfCandidates(iq)
	case "layer":
		refused = part.handleLayer(iq, payload)
	case "leave":
		_ = p.Send(stanza.Result(iq))
		r.remove(part, reasonLeave)
	case "answer":
		_ = p.Send(stanza.ErrorReply(iq, stanza.BadRequest, "an answer is the result of the server's offer iq"))
	default:
		_ = p.Send(stanza.ErrorReply(iq, stanza.FeatureNotImplemented, "unknown element "+payload.Local))
	}
	if refused != nil {
		_ = p.Send(errorReply(iq, refused))
	}
}

func (s *Service) room(key string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[key]
}

func (s *Service) join(ctx context.Context, p Peer, iq *stanza.Element, roomJID jid.JID) {
	if err := s.tryJoin(ctx, p, iq, roomJID); err != nil {
		_ = p.Send(errorReply(iq, err))
	}
}

// tryJoin admits p to the conference of roomJID, opening it if need be,
// and sends the join result.
func (s *Service) tryJoin(ctx context.Context, p Peer, iq *stanza.Element, roomJID jid.JID) error {
	occupant := ""
	if s.cfg.Authorize != nil {
		var err error
		if occupant, err = s.cfg.Authorize(ctx, roomJID, p); err != nil {
			return refuse(errForbidden, "%s", err.Error())
		}
	}
	for range 3 {
		r, err := s.roomFor(roomJID, p.JID().Bare().String())
		if err != nil {
			return err
		}
		part, err := r.join(p, occupant)
		if errors.Is(err, errConferenceClosed) {
			continue
		}
		if err != nil {
			r.closeIfEmpty() // a conference opened for nothing
			return err
		}
		_ = p.Send(stanza.Result(iq, r.joinedElement(part)))
		r.announceJoin(part)
		return nil
	}
	return refuse(errConferenceClosed, "conference closing")
}

// roomFor returns the conference for roomJID, opening it for user (a
// bare JID) within the limits.
func (s *Service) roomFor(roomJID jid.JID, user string) (*room, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, refuse(errShuttingDown, "shutting down")
	}
	key := roomJID.String()
	if r := s.rooms[key]; r != nil {
		return r, nil
	}
	if n := s.cfg.MaxConferencesPerUser; s.opened[user] >= n {
		return nil, refuse(errNoRoom, "you have opened %d conferences that are still running, the most one user may; end one first", n)
	}
	if len(s.rooms) >= s.cfg.MaxConferences {
		return nil, refuse(errNoRoom, "too many conferences on this server")
	}
	r := newRoom(s, roomJID, user)
	s.rooms[key] = r
	s.opened[user]++
	return r, nil
}

// dropRoom forgets r once it is empty and closed.
func (s *Service) dropRoom(r *room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rooms[r.key] == r {
		delete(s.rooms, r.key)
		if s.opened[r.opener]--; s.opened[r.opener] <= 0 {
			delete(s.opened, r.opener)
		}
	}
}

// SessionClosed removes the participants of a client whose stream ended.
func (s *Service) SessionClosed(ctx context.Context, p Peer) {
	s.mu.Lock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	s.mu.Unlock()
	for _, r := range rooms {
		if part := r.byPeer(p); part != nil {
			r.remove(part, reasonClosed)
		}
	}
}

// Recheck applies a change in room to its conference: every participant
// that Config.Authorize now refuses (banned, no longer a member of a
// members-only room, out of the room) is removed, told with reason
// "removed"; the others learn of a participant whose address in the room
// changed (a new nickname).
func (s *Service) Recheck(ctx context.Context, roomJID jid.JID) {
	if s.cfg.Authorize == nil {
		return
	}
	r := s.room(roomJID.String())
	if r == nil {
		return
	}
	parts := r.participants()
	for _, p := range parts {
		occupant, err := s.cfg.Authorize(ctx, roomJID, p.peer)
		if err != nil {
			r.remove(p, reasonRemoved)
			continue
		}
		r.readmit(p, occupant)
	}
}

// Moved ends the conference of room here because another node of a
// cluster runs it now: every participant is removed with reason "moved",
// on which clients join again (and reach the other node).
func (s *Service) Moved(ctx context.Context, roomJID jid.JID) {
	r := s.room(roomJID.String())
	if r == nil {
		return
	}
	parts := r.participants()
	for _, p := range parts {
		r.remove(p, reasonMoved)
	}
}

// Running reports whether the conference of roomJID is open here.
func (s *Service) Running(roomJID jid.JID) bool { return s.room(roomJID.String()) != nil }

// Rooms reports the number of conferences open now.
func (s *Service) Rooms() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.rooms)
}

// newAPI builds the pion API for one participant's PeerConnection:
// codecs, header extensions and interceptors: in, the feedback to the
// publisher (TWCC feedback, NACKs, receiver reports), and out, its send
// path (sender reports and, with an estimator, transport-wide sequence
// numbers and bandwidth estimation).
// With out.direct, the participant's RTP leaves through it (see
// directSender): the SFU answers as the DTLS server and direct sees the
// handshake's key log and ServerHello. The API makes one PeerConnection.
func (s *Service) newAPI(in *recvFeedback, out *sendPath) (*webrtc.API, error) {
	direct := out.direct
	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		return nil, err
	}
	for _, ext := range []struct {
		uri  string
		kind webrtc.RTPCodecType
	}{
		{sdp.AudioLevelURI, webrtc.RTPCodecTypeAudio},
	} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: ext.uri}, ext.kind); err != nil {
			return nil, err
		}
	}
	// Only the interceptors the SFU needs, all its own: the feedback to
	// publishers (in: NACKs for lost packets, receiver reports, TWCC
	// feedback; it starts its ticker with the first remote stream), sender
	// reports (out) and, below, TWCC sequence numbers and the bandwidth
	// estimate toward subscribers. The SFU answers subscribers' NACKs
	// itself, from one cache per published track (forward.PacketCache). A
	// packet forwarded on the direct path passes none of them (sendPath).
	// No stats interceptor: nothing reads the server's GetStats.
	reg := &interceptor.Registry{}
	se := s.se
	if direct != nil {
		// First: the bottom of every local stream's chain.
		reg.Add(directFactory{direct})
		se.SetDTLSKeyLogWriter(direct)
		se.SetDTLSServerHelloMessageHook(direct.serverHello)
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			return nil, err
		}
	}
	reg.Add(sendFactory{out})
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return nil, err
	}
	// Transport-wide sequence numbers, both ways: the publishers' for the
	// TWCC feedback sent to them, the SFU's own toward subscribers (bwe).
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, err
		}
	}
	reg.Add(recvFeedbackFactory{in})
	if out.est != nil {
		reg.Add(bweFactory{out.est})
	}
	if direct != nil {
		// Last: the top of every remote stream's chain.
		reg.Add(directTopFactory{direct})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)), nil
}
