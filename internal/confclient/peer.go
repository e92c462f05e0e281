package confclient

import (
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"poosms.org/poosms/stanza"
)

// Peer is the media side of a conference client, whatever carries its
// signaling: one Pion PeerConnection with the codecs and interceptors a
// conference negotiates, the server candidates that arrived before a
// remote description, and the goroutines reading its tracks' media and
// RTCP. Client drives it over an XMPP stream; the sfu package's tests
// drive it in-process. Peer sends nothing by itself: what goes to the
// server (answers, candidates) is handed back to the caller.
type Peer struct {
	PC *webrtc.PeerConnection

	mu        sync.Mutex
	pending   []webrtc.ICECandidateInit
	remoteSet bool

	wg sync.WaitGroup // track and RTCP readers
}

// PeerOption adds to the codecs, header extensions and interceptors a
// Peer negotiates. NewPeer applies its options in order, after its own
// registrations; of the interceptors, the last added sees a packet the
// Peer sends first.
type PeerOption func(*webrtc.MediaEngine, *interceptor.Registry) error

// SendTransportCC makes the Peer number every packet it sends with a
// transport-wide sequence number, as browsers do, so the server can send
// it TWCC feedback. Without it the Peer negotiates the transport-cc
// header extension and feedback (for the TWCC feedback it sends on what
// it receives) but sends its own packets unnumbered.
func SendTransportCC(m *webrtc.MediaEngine, reg *interceptor.Registry) error {
	return webrtc.ConfigureTWCCHeaderExtensionSender(m, reg)
}

// NewPeer makes a PeerConnection with Pion's default codecs, the
// audio-level header extension and the default interceptors (NACK, RTCP
// reports, TWCC feedback), then opts, configured by se and cfg.
func NewPeer(se webrtc.SettingEngine, cfg webrtc.Configuration, opts ...PeerOption) (*Peer, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, fmt.Errorf("confclient: codecs: %w", err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("confclient: audio level extension: %w", err)
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, fmt.Errorf("confclient: interceptors: %w", err)
	}
	for _, o := range opts {
		if err := o(m, reg); err != nil {
			return nil, fmt.Errorf("confclient: peer option: %w", err)
		}
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se))
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, fmt.Errorf("confclient: peer connection: %w", err)
	}
	return &Peer{PC: pc}, nil
}

// Trickle hands each local candidate to send as a <candidate/> payload;
// with end, the end of gathering as <end-of-candidates/>.
func (p *Peer) Trickle(send func(payload *stanza.Element), end bool) {
	p.PC.OnICECandidate(func(cand *webrtc.ICECandidate) {
		if cand == nil {
			if end {
				send(stanza.New(NS, "end-of-candidates"))
			}
			return
		}
		init := cand.ToJSON()
		el := stanza.New(NS, "candidate").SetText(init.Candidate)
		if init.SDPMid != nil {
			el.SetAttr("mid", *init.SDPMid)
		}
		if init.SDPMLineIndex != nil {
			el.SetAttr("mline", strconv.Itoa(int(*init.SDPMLineIndex)))
		}
		send(el)
	})
}

// ParseCandidate is the candidate a server's <candidate/> carries.
func ParseCandidate(el *stanza.Element) webrtc.ICECandidateInit {
	init := webrtc.ICECandidateInit{Candidate: el.Text()}
	if mid := el.Attr("mid"); mid != "" {
		init.SDPMid = &mid
	}
	if ml, err := strconv.Atoi(el.Attr("mline")); err == nil {
		u := uint16(ml)
		init.SDPMLineIndex = &u
	}
	return init
}

// AddCandidate adds a server candidate, or keeps it until a remote
// description is set.
func (p *Peer) AddCandidate(init webrtc.ICECandidateInit) error {
	p.mu.Lock()
	if !p.remoteSet {
		p.pending = append(p.pending, init)
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	return p.PC.AddICECandidate(init)
}

// ErrCandidate marks a server candidate the PeerConnection refused.
var ErrCandidate = errors.New("confclient: server candidate")

// remoteDescribed adds the candidates that arrived before a remote
// description.
func (p *Peer) remoteDescribed() error {
	p.mu.Lock()
	pending := p.pending
	p.pending = nil
	p.remoteSet = true
	p.mu.Unlock()
	var errs []error
	for _, cand := range pending {
		if err := p.PC.AddICECandidate(cand); err != nil {
			errs = append(errs, fmt.Errorf("%w %q: %w", ErrCandidate, cand.Candidate, err))
		}
	}
	return errors.Join(errs...)
}

// Offer makes an offer for the local tracks and sets it as the local
// description; its SDP goes in an <offer/>.
func (p *Peer) Offer() (string, error) {
	offer, err := p.PC.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("confclient: create offer: %w", err)
	}
	if err := p.PC.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("confclient: set local offer: %w", err)
	}
	return offer.SDP, nil
}

// SetAnswer applies the server's answer to our offer, then adds the
// server candidates kept until now. An error adding one of those
// (ErrCandidate) is returned after all are tried.
func (p *Peer) SetAnswer(answer string) error {
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("confclient: set answer: %w", err)
	}
	return p.remoteDescribed()
}

// Answer applies a server offer (adding the server candidates kept until
// then) and returns our answer, set as the local description.
func (p *Peer) Answer(offer string) (string, error) {
	if err := p.PC.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", err
	}
	_ = p.remoteDescribed() // a stale candidate does not spoil the answer
	ans, err := p.PC.CreateAnswer(nil)
	if err != nil {
		return "", err
	}
	if err := p.PC.SetLocalDescription(ans); err != nil {
		return "", err
	}
	return ans.SDP, nil
}

// Opus is the audio every conference client publishes.
var Opus = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}

// AddSender adds a send-only transceiver for layers[0], with the other
// layers as further simulcast encodings, and reads its RTCP (so the
// interceptors run), handing each batch to onRTCP (which may be nil).
func (p *Peer) AddSender(onRTCP func([]rtcp.Packet), layers ...*webrtc.TrackLocalStaticRTP) (*webrtc.RTPTransceiver, error) {
	tr, err := p.PC.AddTransceiverFromTrack(layers[0], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("confclient: add %s: %w", layers[0].Kind(), err)
	}
	for _, l := range layers[1:] {
		if err := tr.Sender().AddEncoding(l); err != nil {
			return nil, fmt.Errorf("confclient: add layer %s: %w", l.RID(), err)
		}
	}
	s := tr.Sender()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			pkts, _, err := s.ReadRTCP()
			if err != nil {
				return
			}
			if onRTCP != nil {
				onRTCP(pkts)
			}
		}
	}()
	return tr, nil
}

// CountPLI returns an RTCP handler for AddSender that adds the picture
// loss indications (keyframe requests) it sees to n.
func CountPLI(n func(int64)) func([]rtcp.Packet) {
	return func(pkts []rtcp.Packet) {
		for _, p := range pkts {
			if _, ok := p.(*rtcp.PictureLossIndication); ok {
				n(1)
			}
		}
	}
}

// Receive reads every remote track until the PeerConnection closes: open
// is called once per track and returns what is called with each of its
// packets.
func (p *Peer) Receive(open func(*webrtc.TrackRemote) func(*rtp.Packet)) {
	p.PC.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		p.wg.Add(1)
		defer p.wg.Done()
		got := open(tr)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			got(pkt)
		}
	})
}

// Close closes the PeerConnection and waits for its readers.
func (p *Peer) Close() error {
	err := p.PC.Close()
	p.wg.Wait()
	return err
}

// Replies matches iq results and errors to the requests waiting for them.
// The zero value is ready to use.
type Replies struct {
	mu      sync.Mutex
	waiting map[string]chan *stanza.Element
}

// Expect returns the channel that the reply to the iq with this id will
// be delivered on.
func (r *Replies) Expect(id string) <-chan *stanza.Element {
	ch := make(chan *stanza.Element, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waiting == nil {
		r.waiting = map[string]chan *stanza.Element{}
	}
	r.waiting[id] = ch
	return ch
}

// Forget stops waiting for the reply to id.
func (r *Replies) Forget(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.waiting, id)
}

// Deliver hands a result or error to whoever expects it, and reports
// whether anyone did.
func (r *Replies) Deliver(el *stanza.Element) bool {
	r.mu.Lock()
	ch := r.waiting[el.ID()]
	delete(r.waiting, el.ID())
	r.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- el
	return true
}
