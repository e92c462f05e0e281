// Package confclient is a conference client written from
// docs/protocol.md: it enters the conference's group room (XEP-0045), as
// a room's call admits only the room's occupants, joins the conference
// over the same XMPP stream (urn:poosms:conference:0), negotiates one Pion
// PeerConnection, publishes synthetic, recognisable audio and (optionally
// simulcast) video, and records what it receives. Tests and the load tool
// use it.
package confclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/internal/xmppclient"
	"poosms.org/poosms/stanza"
)

// NS is the conference namespace.
const NS = "urn:poosms:conference:0"

// Options for Join.
type Options struct {
	Room      string // NAME@conference.DOMAIN
	Name      string // written into every payload, so receivers can tell who sent it
	Nick      string // nickname in the room; default Name
	Password  string // the room's password, if it has one
	Audio     bool
	Video     bool
	Simulcast bool // publish video as three layers h, m, l
	RelayOnly bool // ICE may use TURN relay candidates only
	Loopback  bool // gather loopback host candidates (tests on 127.0.0.1)
	// Timeout bounds each request; default 10s.
	Timeout time.Duration
}

// Layers are the simulcast rids, best first.
var Layers = []string{"h", "m", "l"}

// Track is what arrived on one remote track.
type Track struct {
	Participant string // the publisher's participant id (the stream id)
	ID          string // the track id
	Mime        string
	Packets     int
	Bytes       int
	Senders     map[string]int // payload name (publisher Name[-rid]) → packets
	Gaps        int            // sequence-number discontinuities seen
	LastSeq     uint16
	First, Last time.Time
	Jitter      time.Duration // RFC 3550 interarrival jitter estimate

	lastTS uint32
}

// Client is one participant.
type Client struct {
	x      *xmppclient.Client
	o      Options
	peer   *Peer
	pc     *webrtc.PeerConnection // peer.PC
	sendMu sync.Mutex             // serialises writes to the XMPP stream

	replies Replies
	// applying is closed once the offer whose result readLoop hands over
	// has been applied: the reader waits for it before it takes the
	// stanzas after that result (a server offer may follow at once).
	applyMu  sync.Mutex
	applyID  string
	applying chan struct{}

	mu     sync.Mutex
	events []*stanza.Element
	tracks map[string]*Track

	Participant string             // our id, from <joined/>
	ICEServers  []webrtc.ICEServer // from <joined/>

	changed notifier // what until waits on

	audio   *webrtc.TrackLocalStaticRTP
	video   []*webrtc.TrackLocalStaticRTP // one, or one per layer
	vtr     *webrtc.RTPTransceiver
	nextID  atomic.Int64
	keyReqs atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Join joins the conference on x (which must be logged in), negotiates and
// starts the reader. x must not be read by anyone else afterwards.
func Join(ctx context.Context, x *xmppclient.Client, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Nick == "" {
		o.Nick = o.Name
	}
	if err := enterRoom(ctx, x, o); err != nil {
		return nil, err
	}
	c := &Client{x: x, o: o, tracks: map[string]*Track{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.readLoop()

	joined, err := c.request(ctx, stanza.New(NS, "join"))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("confclient: join: %w", err)
	}
	j := joined.Child(NS, "joined")
	if j == nil {
		c.Close()
		return nil, fmt.Errorf("confclient: join: no <joined/> in %s", joined)
	}
	c.Participant = j.Attr("participant")
	for _, s := range j.Elements() {
		if s.Local == "ice-server" {
			c.ICEServers = append(c.ICEServers, webrtc.ICEServer{
				URLs: strings.Fields(s.Attr("urls")), Username: s.Attr("username"), Credential: s.Attr("credential"),
			})
		}
	}
	if err := c.newPeerConnection(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.addTracks(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.Offer(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Namespaces of group rooms (XEP-0045) and data forms.
const (
	nsMUC      = "http://jabber.org/protocol/muc"
	nsMUCUser  = nsMUC + "#user"
	nsMUCOwner = nsMUC + "#owner"
	nsData     = "jabber:x:data"
)

// enterRoom enters the conference's room as o.Nick, before x has a
// reader. A room that enterRoom creates is accepted as an instant room; a
// room its creator is still setting up (item-not-found) is tried again
// until o.Timeout has passed.
func enterRoom(ctx context.Context, x *xmppclient.Client, o Options) error {
	occupant := o.Room + "/" + o.Nick
	deadline := time.Now().Add(o.Timeout)
	for {
		mx := stanza.New(nsMUC, "x").Append(stanza.New(nsMUC, "history").SetAttr("maxstanzas", "0"))
		if o.Password != "" {
			mx.Append(stanza.New(nsMUC, "password").SetText(o.Password))
		}
		if err := x.Send(stanza.New(stanza.NSClient, "presence").SetAttr("to", occupant).Append(mx)); err != nil {
			return fmt.Errorf("confclient: enter %s: %w", o.Room, err)
		}
		p, err := x.Expect(time.Until(deadline), func(e *stanza.Element) bool {
			return e.Local == "presence" && e.From() == occupant && (e.IsError() || hasStatus(e, "110"))
		})
		if err != nil {
			return fmt.Errorf("confclient: enter %s: %w", o.Room, err)
		}
		if !p.IsError() {
			if hasStatus(p, "201") {
				return acceptInstantRoom(x, o.Room, deadline)
			}
			return nil
		}
		cond, text := stanzaErrorOf(p)
		if cond != "item-not-found" || time.Now().After(deadline) {
			return fmt.Errorf("confclient: enter %s: %w", o.Room, &stanzaError{cond, text})
		}
		select { // the room's creator has not configured it yet
		case <-ctx.Done():
			return fmt.Errorf("confclient: enter %s: %w", o.Room, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// acceptInstantRoom submits an empty configuration for a room just
// created, so that others may enter it.
func acceptInstantRoom(x *xmppclient.Client, room string, deadline time.Time) error {
	iq := stanza.NewIQ(stanza.SetIQ).SetAttr("to", room).SetAttr("id", "cc-instant").
		Append(stanza.New(nsMUCOwner, "query").Append(stanza.New(nsData, "x").SetAttr("type", "submit")))
	if err := x.Send(iq); err != nil {
		return fmt.Errorf("confclient: configure %s: %w", room, err)
	}
	r, err := x.Expect(time.Until(deadline), func(e *stanza.Element) bool { return e.Local == "iq" && e.ID() == "cc-instant" })
	if err != nil {
		return fmt.Errorf("confclient: configure %s: %w", room, err)
	}
	if r.IQType() != stanza.ResultIQ {
		cond, text := stanzaErrorOf(r)
		return fmt.Errorf("confclient: configure %s: %w", room, &stanzaError{cond, text})
	}
	return nil
}

// hasStatus reports whether room presence p carries the status code.
func hasStatus(p *stanza.Element, code string) bool {
	x := p.Child(nsMUCUser, "x")
	if x == nil {
		return false
	}
	for _, s := range x.Elements() {
		if s.Local == "status" && s.Attr("code") == code {
			return true
		}
	}
	return false
}

// stanzaErrorOf is the condition and text of an error stanza.
func stanzaErrorOf(el *stanza.Element) (cond, text string) {
	if e := el.Child("", "error"); e != nil {
		if f := e.FirstElement(); f != nil {
			cond = f.Local
		}
		text = e.ChildText("", "text")
	}
	return cond, text
}

func (c *Client) newPeerConnection() error {
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(c.o.Loopback)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	se.SetICEMulticastDNSMode(0)
	if c.o.Loopback {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	}
	cfg := webrtc.Configuration{ICEServers: c.ICEServers}
	if c.o.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	peer, err := NewPeer(se, cfg)
	if err != nil {
		return err
	}
	c.peer, c.pc = peer, peer.PC
	pc := peer.PC
	pc.OnConnectionStateChange(func(webrtc.PeerConnectionState) { c.changed.notify() })
	pc.OnSignalingStateChange(func(webrtc.SignalingState) { c.changed.notify() })
	peer.Trickle(c.sendAsync, true)
	peer.Receive(func(tr *webrtc.TrackRemote) func(*rtp.Packet) {
		t := &Track{Participant: tr.StreamID(), ID: tr.ID(), Mime: tr.Codec().MimeType, Senders: map[string]int{}}
		clock := tr.Codec().ClockRate
		c.mu.Lock()
		c.tracks[tr.ID()] = t
		c.mu.Unlock()
		c.changed.notify()
		return func(pkt *rtp.Packet) {
			now := time.Now()
			c.mu.Lock()
			if t.Packets > 0 && pkt.SequenceNumber != t.LastSeq+1 {
				t.Gaps++
			}
			if t.Packets > 0 && clock > 0 {
				// D = arrival spacing minus sending spacing; J += (|D|-J)/16.
				sent := time.Duration(int64(int32(pkt.Timestamp-t.lastTS)) * int64(time.Second) / int64(clock))
				d := now.Sub(t.Last) - sent
				if d < 0 {
					d = -d
				}
				t.Jitter += (d - t.Jitter) / 16
			}
			t.lastTS = pkt.Timestamp
			if t.Packets == 0 {
				t.First = now
			}
			t.Packets++
			t.Bytes += len(pkt.Payload)
			t.LastSeq, t.Last = pkt.SequenceNumber, now
			if name, ok := payloadName(pkt.Payload); ok {
				t.Senders[name]++
			}
			c.mu.Unlock()
			c.changed.notify()
		}
	})
	return nil
}

func (c *Client) addTracks() error {
	pli := CountPLI(func(n int64) { c.keyReqs.Add(n) })
	if c.o.Audio {
		a, err := webrtc.NewTrackLocalStaticRTP(Opus, "audio", c.o.Name)
		if err != nil {
			return err
		}
		if _, err := c.peer.AddSender(pli, a); err != nil {
			return err
		}
		c.audio = a
	}
	if c.o.Video {
		rids := []string{""}
		if c.o.Simulcast {
			rids = Layers
		}
		for _, rid := range rids {
			var opts []func(*webrtc.TrackLocalStaticRTP)
			if rid != "" {
				opts = append(opts, webrtc.WithRTPStreamID(rid))
			}
			v, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", c.o.Name, opts...)
			if err != nil {
				return err
			}
			c.video = append(c.video, v)
		}
		tr, err := c.peer.AddSender(pli, c.video...)
		if err != nil {
			return err
		}
		c.vtr = tr
	}
	if !c.o.Audio && !c.o.Video {
		if _, err := c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return err
		}
	}
	return nil
}

// KeyframeRequests counts PLIs the server sent this publisher.
func (c *Client) KeyframeRequests() int64 { return c.keyReqs.Load() }

// Offer sends a new offer for our tracks and applies the answer.
func (c *Client) Offer(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		offer, err := c.peer.Offer()
		if err != nil {
			return err
		}
		res, applied, err := c.requestApplied(ctx, stanza.New(NS, "offer").SetText(offer))
		var se *stanzaError
		if errors.As(err, &se) && se.cond == "unexpected-request" && attempt < 5 {
			// Glare: the server's offer is on its way. Roll back, let the
			// reader answer it, and offer again.
			_ = c.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
			if err := c.waitStable(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("confclient: offer: %w", err)
		}
		defer applied()
		ans := res.Child(NS, "answer")
		if ans == nil {
			return fmt.Errorf("confclient: no <answer/> in %s", res)
		}
		if err := c.peer.SetAnswer(ans.Text()); err != nil && !errors.Is(err, ErrCandidate) {
			return err
		}
		return nil
	}
}

// waitStable waits, up to the client's timeout, until the server's offer
// that crossed ours has been answered.
func (c *Client) waitStable(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	if err := c.until(ctx, "the server's offer", func() bool { return c.pc.SignalingState() == webrtc.SignalingStateStable }); err != nil {
		return fmt.Errorf("confclient: the server's offer did not come: %w", err)
	}
	return nil
}

type stanzaError struct{ cond, text string }

func (e *stanzaError) Error() string { return e.cond + ": " + e.text }

// request sends an iq set to the room and waits for its result.
func (c *Client) request(ctx context.Context, payload *stanza.Element) (*stanza.Element, error) {
	return c.requestWith(ctx, "cc"+strconv.FormatInt(c.nextID.Add(1), 10), payload)
}

// requestApplied is request for an offer: the reader takes no further
// stanza after its result until the caller's done returns, so the answer
// is applied before a server offer sent right after it is read. The
// server sends its offer for others' tracks as soon as it has answered
// ours, in that order on the stream; were the answer still unapplied
// when that offer is read, answer would take our offer for one that
// crossed the server's and roll it back.
// On success the caller calls applied once the answer is applied.
func (c *Client) requestApplied(ctx context.Context, payload *stanza.Element) (res *stanza.Element, applied func(), err error) {
	id := "cc" + strconv.FormatInt(c.nextID.Add(1), 10)
	done := make(chan struct{})
	c.applyMu.Lock()
	c.applyID, c.applying = id, done
	c.applyMu.Unlock()
	applied = func() {
		c.applyMu.Lock()
		defer c.applyMu.Unlock()
		if c.applying == done {
			c.applyID, c.applying = "", nil
			close(done)
		}
	}
	res, err = c.requestWith(ctx, id, payload)
	if err != nil {
		applied()
		return nil, nil, err
	}
	return res, applied, nil
}

func (c *Client) requestWith(ctx context.Context, id string, payload *stanza.Element) (*stanza.Element, error) {
	ch := c.replies.Expect(id)
	defer c.replies.Forget(id)
	if err := c.send(stanza.NewIQ(stanza.SetIQ).SetAttr("to", c.o.Room).SetAttr("id", id).Append(payload)); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	select {
	case r := <-ch:
		if r.IsError() {
			cond, text := stanzaErrorOf(r)
			return nil, &stanzaError{cond, text}
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("confclient: no answer to %s: %w", payload.Local, ctx.Err())
	case <-c.ctx.Done():
		return nil, errors.New("confclient: closed")
	}
}

func (c *Client) send(el *stanza.Element) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.x.Send(el)
}

// sendAsync sends an iq set whose result nobody waits for (candidates).
func (c *Client) sendAsync(payload *stanza.Element) {
	id := "cc" + strconv.FormatInt(c.nextID.Add(1), 10)
	_ = c.send(stanza.NewIQ(stanza.SetIQ).SetAttr("to", c.o.Room).SetAttr("id", id).Append(payload))
}

// readLoop owns x's reading: results, server offers and candidates, events.
// Close unblocks it by setting a read deadline in the past.
func (c *Client) readLoop() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		el, err := c.x.RecvTimeout(24 * time.Hour)
		if err != nil {
			return
		}
		c.handle(el)
	}
}

func (c *Client) handle(el *stanza.Element) {
	switch {
	case el.Local == "iq" && (el.IQType() == stanza.ResultIQ || el.IsError()):
		c.applyMu.Lock()
		var wait chan struct{}
		if el.ID() != "" && el.ID() == c.applyID {
			wait = c.applying
		}
		c.applyMu.Unlock()
		if c.replies.Deliver(el) && wait != nil {
			select {
			case <-wait:
			case <-c.ctx.Done():
			}
		}
	case el.Local == "iq" && el.IQType() == stanza.SetIQ && el.Child(NS, "offer") != nil:
		c.answer(el)
	case el.Local == "iq" && el.IQType() == stanza.SetIQ && el.Child(NS, "candidate") != nil:
		_ = c.peer.AddCandidate(ParseCandidate(el.Child(NS, "candidate")))
		_ = c.send(stanza.Result(el))
	case el.Local == "iq" && el.IQType() == stanza.SetIQ:
		_ = c.send(stanza.Result(el))
	case el.Local == "message" && el.MessageType() == stanza.HeadlineMessage:
		c.mu.Lock()
		for _, p := range el.Elements() {
			if p.Space == NS {
				c.events = append(c.events, p)
			}
		}
		c.mu.Unlock()
		c.changed.notify()
	}
}

// answer applies a server offer and replies with our answer (rolling back
// our own offer if ours is outstanding: we are the polite side).
func (c *Client) answer(iq *stanza.Element) {
	fail := func(err error) {
		_ = c.send(stanza.ErrorReply(iq, stanza.BadRequest, err.Error()))
	}
	if c.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		_ = c.pc.SetLocalDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeRollback})
	}
	ans, err := c.peer.Answer(iq.Child(NS, "offer").Text())
	if err != nil {
		fail(err)
		return
	}
	_ = c.send(stanza.Result(iq, stanza.New(NS, "answer").SetText(ans)))
}

// WaitConnected waits until ICE and DTLS are up.
func (c *Client) WaitConnected(ctx context.Context) error {
	return c.until(ctx, "connected", func() bool { return c.pc.ConnectionState() == webrtc.PeerConnectionStateConnected })
}

// until waits until cond is true, checking it again at every change of
// the client's state (connection and signaling state, tracks, packets,
// events), until ctx or three times the client's timeout ends.
func (c *Client) until(ctx context.Context, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, 3*c.o.Timeout)
	defer cancel()
	for {
		changed := c.changed.wait() // before cond: a change in between is not missed
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("confclient: %s: waiting for %s: %w (%s)", c.o.Name, what, ctx.Err(), c.Summary())
		case <-changed:
		}
	}
}

// notifier wakes those waiting for a change. It costs nothing while
// nobody waits, so it can be told of every packet.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// wait returns a channel closed at the next notify.
func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// WaitMedia waits until, for each publisher name, some remote track whose
// MIME type starts with kind ("audio", "video") has carried at least n
// packets naming it (simulcast layers count as Name-RID).
func (c *Client) WaitMedia(ctx context.Context, n int, kind string, names ...string) error {
	return c.until(ctx, kind+" from "+strings.Join(names, ", "), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, name := range names {
			ok := false
			for _, t := range c.tracks {
				if !strings.HasPrefix(t.Mime, kind) {
					continue
				}
				for sender, got := range t.Senders {
					if (sender == name || strings.HasPrefix(sender, name+"-")) && got >= n {
						ok = true
					}
				}
			}
			if !ok {
				return false
			}
		}
		return true
	})
}

// WaitEvent waits for a room event with this local name matching f.
func (c *Client) WaitEvent(ctx context.Context, local string, f func(*stanza.Element) bool) (*stanza.Element, error) {
	var found *stanza.Element
	err := c.until(ctx, "event "+local, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, e := range c.events {
			if e.Local == local && (f == nil || f(e)) {
				found = e
				return true
			}
		}
		return false
	})
	return found, err
}

// Tracks returns a snapshot of the remote tracks.
func (c *Client) Tracks() []Track {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Track, 0, len(c.tracks))
	for _, t := range c.tracks {
		cp := *t
		cp.Senders = map[string]int{}
		for k, v := range t.Senders {
			cp.Senders[k] = v
		}
		out = append(out, cp)
	}
	return out
}

// SelectedCandidateType is the local candidate type of the nominated
// pair ("host", "srflx", "relay"), or "" before one is selected.
func (c *Client) SelectedCandidateType() string {
	stats := c.pc.GetStats()
	for _, s := range stats {
		if p, ok := s.(webrtc.ICECandidatePairStats); ok && p.Nominated {
			if l, ok := stats[p.LocalCandidateID].(webrtc.ICECandidateStats); ok {
				return l.CandidateType.String()
			}
		}
	}
	return ""
}

// SelectedRemoteAddr is the remote address (IP and port) of the ICE
// candidate pair the PeerConnection selected: where its media goes. Every
// track and the SCTP association share one bundled transport, so this is
// the pair of the whole session. It fails before a pair is selected.
func (c *Client) SelectedRemoteAddr() (netip.AddrPort, error) {
	var ice *webrtc.ICETransport
	if sctp := c.pc.SCTP(); sctp != nil && sctp.Transport() != nil {
		ice = sctp.Transport().ICETransport()
	}
	for _, tr := range c.pc.GetTransceivers() {
		if ice != nil {
			break
		}
		if s := tr.Sender(); s != nil && s.Transport() != nil {
			ice = s.Transport().ICETransport()
		}
	}
	if ice == nil {
		return netip.AddrPort{}, errors.New("confclient: no ICE transport")
	}
	pair, err := ice.GetSelectedCandidatePair()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("confclient: selected candidate pair: %w", err)
	}
	if pair == nil || pair.Remote == nil {
		return netip.AddrPort{}, errors.New("confclient: no candidate pair selected yet")
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("confclient: selected remote candidate %q: %w", pair.Remote.Address, err)
	}
	return netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port), nil
}

// SetLayer asks for one simulcast layer of a track ("auto" hands the
// choice back to the server).
func (c *Client) SetLayer(ctx context.Context, track, rid string) error {
	_, err := c.request(ctx, stanza.New(NS, "layer").SetAttr("track", track).SetAttr("rid", rid))
	return err
}

// Leave leaves the conference.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.request(ctx, stanza.New(NS, "leave"))
	return err
}

// Summary describes the client's state, for failure messages.
func (c *Client) Summary() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "pc=%s signaling=%s", c.pc.ConnectionState(), c.pc.SignalingState())
	for _, t := range c.tracks {
		fmt.Fprintf(&b, " [%s %s %d pkts %v]", t.ID, t.Mime, t.Packets, t.Senders)
	}
	for _, e := range c.events {
		fmt.Fprintf(&b, " <%s %s>", e.Local, e.Attr("id")+e.Attr("participant"))
	}
	return b.String()
}

// Close stops media and the reader, and closes the PeerConnection. The
// XMPP stream is the caller's to close.
func (c *Client) Close() {
	c.cancel()
	_ = c.x.Conn().SetReadDeadline(time.Now())
	if c.peer != nil {
		_ = c.peer.Close()
	}
	c.wg.Wait()
}

// Media is a running publisher; Stop ends it.
type Media struct {
	stop chan struct{}
	done chan struct{}
}

// Stop ends publishing and waits for the sender to finish.
func (m *Media) Stop() {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
}

// Publish sends synthetic media every 20 ms: an Opus packet and a VP8
// frame per layer, a keyframe every keyEvery frames (and right after a
// keyframe request). Payloads name the sender (Name, or Name-RID).
func (c *Client) Publish(keyEvery int) *Media {
	return Publisher{
		Name: c.o.Name, Audio: c.audio != nil, VideoLayers: len(c.video),
		KeyEvery: keyEvery, KeyRequests: c.keyReqs.Load,
	}.Start(NewTrackWriter(c.audio, c.vtr, c.video...))
}

// TrackWriter writes a Publisher's packets to local tracks, with the mid
// and rid header extensions on simulcast layers, as a browser sends them.
type TrackWriter struct {
	audio        *webrtc.TrackLocalStaticRTP
	video        []*webrtc.TrackLocalStaticRTP
	midID, ridID uint8
	mid          string
}

// NewTrackWriter writes audio to the audio track (which may be nil) and
// video layer i to video[i]; vtr is the video's transceiver, after
// negotiation (it carries the ids of the mid and rid extensions).
func NewTrackWriter(audio *webrtc.TrackLocalStaticRTP, vtr *webrtc.RTPTransceiver, video ...*webrtc.TrackLocalStaticRTP) *TrackWriter {
	w := &TrackWriter{audio: audio, video: video}
	if vtr != nil && len(video) > 1 {
		for _, e := range vtr.Sender().GetParameters().HeaderExtensions {
			switch e.URI {
			case sdp.SDESMidURI:
				w.midID = uint8(e.ID)
			case sdp.SDESRTPStreamIDURI:
				w.ridID = uint8(e.ID)
			}
		}
		w.mid = vtr.Mid()
	}
	return w
}

// WriteRTP implements RTPWriter.
func (w *TrackWriter) WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error {
	if kind == webrtc.RTPCodecTypeAudio {
		return w.audio.WriteRTP(p)
	}
	if w.ridID != 0 {
		_ = p.Header.SetExtension(w.midID, []byte(w.mid))
		_ = p.Header.SetExtension(w.ridID, []byte(w.video[layer].RID()))
	}
	return w.video[layer].WriteRTP(p)
}

// RTPWriter is where a Publisher's packets go: the audio track, or layer
// layer (an index into Layers) of the video track.
type RTPWriter interface {
	WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error
}

// Publisher is the synthetic media one participant sends, whatever stack
// carries it (confclient's own PeerConnection, or another server's SDK in
// the load tool).
type Publisher struct {
	Name        string // written into every payload
	Audio       bool   // an Opus packet every 20 ms
	VideoLayers int    // VP8 layers: 0, 1, or len(Layers) for simulcast (named Name-RID)
	KeyEvery    int    // a keyframe every KeyEvery frames; 0: only on request
	// KeyRequests counts keyframe requests from the server; a change makes
	// the next frame a keyframe. Nil for none.
	KeyRequests func() int64
	// Payload, if set, makes the payload of packet n of the audio track
	// or of video layer layer (key: a keyframe) in place of the synthetic
	// Opus and VP8 ones naming Name.
	Payload func(kind webrtc.RTPCodecType, layer, n int, key bool) []byte
}

// Start sends every 20 ms an Opus packet (if Audio) and a VP8 frame per
// video layer through w until the returned Media is stopped. Write errors
// are ignored: a packet the stack cannot send yet is lost, as on a
// network.
func (pub Publisher) Start(w RTPWriter) *Media {
	m := &Media{stop: make(chan struct{}), done: make(chan struct{})}
	keyReqs := pub.KeyRequests
	if keyReqs == nil {
		keyReqs = func() int64 { return 0 }
	}
	payload := pub.Payload
	if payload == nil {
		payload = pub.synthetic
	}
	go func() {
		defer close(m.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		lastReq := keyReqs()
		for n := 0; ; n++ {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			if pub.Audio {
				_ = w.WriteRTP(webrtc.RTPCodecTypeAudio, 0, &rtp.Packet{
					Header:  rtp.Header{Version: 2, SequenceNumber: uint16(n), Timestamp: uint32(n * 960)},
					Payload: payload(webrtc.RTPCodecTypeAudio, 0, n, false),
				})
			}
			req := keyReqs()
			key := pub.KeyEvery > 0 && n%pub.KeyEvery == 0 || req != lastReq
			lastReq = req
			for i := range pub.VideoLayers {
				_ = w.WriteRTP(webrtc.RTPCodecTypeVideo, i, &rtp.Packet{
					Header:  rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n + 1000*i), Timestamp: uint32(n * 3000)},
					Payload: payload(webrtc.RTPCodecTypeVideo, i, n, key),
				})
			}
		}
	}()
	return m
}

// synthetic is the default payload: Opus and VP8 packets naming the
// sender (Name, or Name-RID for a simulcast layer).
func (pub Publisher) synthetic(kind webrtc.RTPCodecType, layer, n int, key bool) []byte {
	if kind == webrtc.RTPCodecTypeAudio {
		return audioPayload(pub.Name, n)
	}
	name := pub.Name
	if pub.VideoLayers > 1 {
		name += "-" + Layers[layer]
	}
	return vp8Frame(name, n, key, LayerSizes[layer])
}

// audioPayload is the synthetic Opus packet number n of sender name.
func audioPayload(name string, n int) []byte { return append([]byte{0xfc}, payloadTag(name, n)...) }

// LayerSizes are the sizes of the synthetic VP8 frames of Layers, and of
// the one layer without simulcast.
var LayerSizes = []int{900, 300, 80}

// payloadTag is the marker text every synthetic payload carries.
func payloadTag(name string, n int) []byte {
	return []byte("poosms:" + name + ":" + strconv.Itoa(n) + ":")
}

// vp8Frame is a one-packet VP8 frame: payload descriptor (S=1, PID=0),
// the frame tag's first byte (P bit clear on keyframes), the marker text,
// padding to size.
func vp8Frame(name string, n int, key bool, size int) []byte {
	b := []byte{0x10, 0x00}
	if !key {
		b[1] = 0x01
	}
	b = append(b, payloadTag(name, n)...)
	for len(b) < size {
		b = append(b, '.')
	}
	return b
}

// payloadName finds the sender name in a synthetic payload.
func payloadName(p []byte) (string, bool) {
	s := string(p)
	i := strings.Index(s, "poosms:")
	if i < 0 {
		return "", false
	}
	rest := s[i+len("poosms:"):]
	j := strings.IndexByte(rest, ':')
	if j < 0 {
		return "", false
	}
	return rest[:j], true
}
