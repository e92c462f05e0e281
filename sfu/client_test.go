package sfu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/transport/v5"
	"github.com/pion/webrtc/v4"
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/confclient"
	"poosms.org/poosms/stanza"
)

// fakePeer is the client's XMPP session as the service sees it: stanzas
// the service sends land in a goroutine-safe inbox.
type fakePeer struct {
	j  jid.JID
	in chan *stanza.Element
}

func (f *fakePeer) JID() jid.JID { return f.j }
func (f *fakePeer) Send(el *stanza.Element) error {
	select {
	case f.in <- el.Copy():
		return nil
	default:
		return errors.New("inbox full")
	}
}

// received is what a test client got on one incoming track.
type received struct {
	streamID, trackID, mime string
	ssrc                    uint32
	payloads                [][]byte
	seqs                    []uint16
	timestamps              []uint32
}

// testClient is a Pion peer that talks to the service through the IQ API.
type testClient struct {
	t    *testing.T
	svc  *Service
	peer *fakePeer
	room string
	name string
	opts clientOpts
	rtc  *confclient.Peer // the PeerConnection and its media readers
	pc   *webrtc.PeerConnection
	id   string // participant id from the join result

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // loop

	mu         sync.Mutex
	cond       *sync.Cond
	replies    confclient.Replies
	events     []*stanza.Element
	tracks     map[string]*received // by trackID
	offers     int
	answerErr  error
	rtcpIn     []any // RTCP the publisher side received
	nextID     int
	candidates []string // the server's trickled candidates
	eoc        int      // <end-of-candidates/> iqs from the server
	offerSDPs  []string // the server's offers, in order

	holdOffers bool              // keep the server's offers unanswered in held
	held       []*stanza.Element // server offers not answered yet

	video string // video codec MIME type to publish; VP8 when empty

	plis atomic.Int64 // PLIs received: a new one makes the next video packet a keyframe

	// refuseOffer makes the client answer the server's next offer with an
	// error (to exercise glare handling).
	refuseOffer bool
}

type clientOpts struct {
	noICE     bool          // never send candidates and use no loopback: ICE cannot complete
	noTrickle bool          // send no candidate iqs: the offer's SDP carries them
	tcp       bool          // ICE over TCP only
	passive   bool          // the offer says a=setup:passive: the SFU is the DTLS client
	queued    bool          // mediaPairWith: the Service hands what it reads directly to the streams' readers (not inline)
	net       transport.Net // the PeerConnection's network (SettingEngine.SetNet); nil: the host's

	peer []confclient.PeerOption // more for the PeerConnection (confclient.NewPeer)
}

func newTestClient(t *testing.T, svc *Service, name, room string, o clientOpts) *testClient {
	t.Helper()
	j := jid.MustParse(name + "@localhost/test")
	c := &testClient{
		t: t, svc: svc, name: name, room: room, opts: o,
		peer:   &fakePeer{j: j, in: make(chan *stanza.Element, 1024)},
		tracks: map[string]*received{},
	}
	c.cond = sync.NewCond(&c.mu)
	c.ctx, c.cancel = context.WithCancel(context.Background())

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(!o.noICE)
	if o.tcp {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	if o.net != nil {
		se.SetNet(o.net)
	}
	se.SetICEMulticastDNSMode(0)
	se.SetIPFilter(func(ip net.IP) bool { return !o.noICE && ip.IsLoopback() })
	se.DisableSRTPReplayProtection(true)
	rtc, err := confclient.NewPeer(se, webrtc.Configuration{}, o.peer...)
	if err != nil {
		t.Fatal(err)
	}
	c.rtc, c.pc = rtc, rtc.PC
	if !o.noICE && !o.noTrickle {
		rtc.Trickle(func(el *stanza.Element) { c.sendIQ(el) }, false)
	}
	rtc.Receive(func(tr *webrtc.TrackRemote) func(*rtp.Packet) {
		r := &received{streamID: tr.StreamID(), trackID: tr.ID(), mime: tr.Codec().MimeType, ssrc: uint32(tr.SSRC())}
		c.mu.Lock()
		c.tracks[tr.ID()] = r
		c.mu.Unlock()
		return func(pkt *rtp.Packet) {
			c.mu.Lock()
			r.payloads = append(r.payloads, append([]byte(nil), pkt.Payload...))
			r.seqs = append(r.seqs, pkt.SequenceNumber)
			r.timestamps = append(r.timestamps, pkt.Timestamp)
			c.cond.Broadcast()
			c.mu.Unlock()
		}
	})
	c.wg.Add(1)
	go c.loop()
	t.Cleanup(c.close)
	return c
}

func (c *testClient) close() {
	c.cancel()
	_ = c.rtc.Close()
	c.wg.Wait()
}

func (c *testClient) jid() string { return c.peer.j.String() }

// deliver hands a stanza from the client to the service, as the
// signaling layer would.
func (c *testClient) deliver(el *stanza.Element) {
	el.SetAttr("from", c.jid())
	if el.To() == "" {
		el.SetAttr("to", c.room)
	}
	c.svc.HandleStanza(c.ctx, c.peer, el)
}

func (c *testClient) newID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	return c.name + strconv.Itoa(c.nextID)
}

// sendIQ sends an iq set and returns a channel for its reply.
func (c *testClient) sendIQ(payload *stanza.Element) <-chan *stanza.Element {
	id := c.newID()
	ch := c.replies.Expect(id)
	c.deliver(stanza.NewIQ(stanza.SetIQ).SetAttr("id", id).Append(payload))
	return ch
}

// iq sends an iq set and waits for its reply.
func (c *testClient) iq(payload *stanza.Element) *stanza.Element {
	c.t.Helper()
	select {
	case r := <-c.sendIQ(payload):
		return r
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no reply to %s", c.name, payload.Local)
		return nil
	}
}

func (c *testClient) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case el := <-c.peer.in:
			c.handle(el)
		}
	}
}

func (c *testClient) handle(el *stanza.Element) {
	if el.Local == "message" && !el.IsError() {
		c.mu.Lock()
		c.events = append(c.events, el.FirstElement())
		c.cond.Broadcast()
		c.mu.Unlock()
		return
	}
	switch el.Type() {
	case "result", "error": // to an iq, or a message refused
		if a := el.Child(NS, "answer"); a != nil && el.IQType() == stanza.ResultIQ {
			// Apply the answer in stanza order, as a client reading its
			// stream one stanza at a time would.
			if err := c.rtc.SetAnswer(a.Text()); err != nil {
				c.t.Errorf("%s: apply answer: %v", c.name, err)
			}
		}
		c.replies.Deliver(el)
		return
	}
	p := el.FirstElement()
	reply := stanza.Result(el)
	switch p.Local {
	case "offer":
		c.mu.Lock()
		refuse := c.refuseOffer
		c.refuseOffer = false
		c.mu.Unlock()
		if refuse {
			c.deliver(stanza.ErrorReply(el, stanza.UnexpectedRequest, "glare"))
			return
		}
		c.mu.Lock()
		if c.holdOffers {
			c.held = append(c.held, el)
			c.cond.Broadcast()
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		ans, err := c.rtc.Answer(p.Text())
		c.mu.Lock()
		c.offers++
		c.offerSDPs = append(c.offerSDPs, p.Text())
		if err != nil {
			c.answerErr = err
		}
		c.cond.Broadcast()
		c.mu.Unlock()
		if err != nil {
			c.deliver(stanza.ErrorReply(el, stanza.NotAcceptable, err.Error()))
			return
		}
		reply.Append(stanza.New(NS, "answer").SetText(ans))
	case "end-of-candidates":
		c.mu.Lock()
		c.eoc++
		c.mu.Unlock()
	case "candidate":
		c.mu.Lock()
		c.candidates = append(c.candidates, p.Text())
		c.mu.Unlock()
		if err := c.rtc.AddCandidate(confclient.ParseCandidate(p)); err != nil && c.ctx.Err() == nil && c.pc.ConnectionState() != webrtc.PeerConnectionStateClosed {
			c.t.Errorf("%s: server candidate %q: %v", c.name, p.Text(), err)
		}
	}
	reply.SetAttr("to", "").SetAttr("from", "")
	c.deliver(reply)
}

// join joins the room and checks the result.
func (c *testClient) join() *stanza.Element {
	c.t.Helper()
	r := c.iq(stanza.New(NS, "join"))
	if r.IQType() != stanza.ResultIQ {
		c.t.Fatalf("%s: join: %s", c.name, r)
	}
	j := r.Child(NS, "joined")
	if j == nil || j.Attr("participant") == "" {
		c.t.Fatalf("%s: join result without <joined participant=…>: %s", c.name, r)
	}
	c.id = j.Attr("participant")
	return j
}

// publish adds tracks and sends the first offer.
func (c *testClient) offer() {
	c.t.Helper()
	off, err := c.rtc.Offer()
	if err != nil {
		c.t.Fatal(err)
	}
	if c.opts.passive {
		off = strings.ReplaceAll(off, "a=setup:actpass", "a=setup:passive")
	}
	r := c.iq(stanza.New(NS, "offer").SetText(off))
	a := r.Child(NS, "answer")
	if r.IQType() != stanza.ResultIQ || a == nil {
		c.t.Fatalf("%s: offer: %s", c.name, r)
	}
}

// waitFor waits until cond (called with c.mu held) is true.
func (c *testClient) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	stop := time.AfterFunc(d, func() {
		c.mu.Lock()
		c.cond.Broadcast()
		c.mu.Unlock()
	})
	defer stop.Stop()
	c.mu.Lock()
	defer c.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s: timed out waiting for %s\n%s", c.name, what, c.dumpLocked())
		}
		c.cond.Wait()
	}
}

// event returns the first event with this name matching f, waiting for it.
func (c *testClient) waitEvent(local string, d time.Duration, f func(*stanza.Element) bool) *stanza.Element {
	c.t.Helper()
	var got *stanza.Element
	c.waitFor("event "+local, d, func() bool {
		for _, e := range c.events {
			if e.Local == local && e.Space == NS && (f == nil || f(e)) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// trackOf returns the received track from participant pid of this kind.
func (c *testClient) trackFrom(pid, mimePrefix string) *received {
	for _, r := range c.tracks {
		if r.streamID == pid && len(r.mime) >= len(mimePrefix) && r.mime[:len(mimePrefix)] == mimePrefix {
			return r
		}
	}
	return nil
}

// media is synthetic RTP being sent on local tracks; Stop ends it.
type media = confclient.Media

// vp8Payload is a recognisable VP8 packet: a payload descriptor with S=1
// and PID=0, a frame header byte (keyframe when key), then a marker text.
func vp8Payload(name string, n int, key bool) []byte {
	b := []byte{0x10, 0x00}
	if !key {
		b[1] = 0x01
	}
	return append(b, fmt.Sprintf("vp8:%s:%d", name, n)...)
}

func opusPayload(name string, n int) []byte {
	return append([]byte{0xfc}, fmt.Sprintf("opus:%s:%d", name, n)...)
}

// addTracks adds an Opus track and a video track (of c.video).
func (c *testClient) addTracks() (*webrtc.TrackLocalStaticRTP, *webrtc.TrackLocalStaticRTP) {
	c.t.Helper()
	a := c.addAudio()
	v, err := webrtc.NewTrackLocalStaticRTP(c.videoCodec(), "video", c.name)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.rtc.AddSender(c.gotRTCP, v); err != nil {
		c.t.Fatal(err)
	}
	return a, v
}

// gotRTCP records RTCP the publisher side received; a PLI makes the next
// video packet a keyframe.
func (c *testClient) gotRTCP(pkts []rtcp.Packet) {
	c.mu.Lock()
	for _, p := range pkts {
		c.rtcpIn = append(c.rtcpIn, p)
		if _, ok := p.(*rtcp.PictureLossIndication); ok {
			c.plis.Add(1)
		}
	}
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *testClient) sendMedia(a, v *webrtc.TrackLocalStaticRTP, keyEvery int) *media {
	return c.sendMediaLevel(a, v, keyEvery, 0, nil)
}

// audioLevelID is the negotiated id of the audio-level extension on c's
// audio sender.
func (c *testClient) audioLevelID() uint8 {
	for _, tr := range c.pc.GetTransceivers() {
		if tr.Kind() != webrtc.RTPCodecTypeAudio || tr.Sender() == nil {
			continue
		}
		for _, e := range tr.Sender().GetParameters().HeaderExtensions {
			if e.URI == sdp.AudioLevelURI {
				return uint8(e.ID)
			}
		}
	}
	return 0
}

// sendMediaLevel is sendMedia with the audio-level extension set from
// level() on every audio packet.
// A PLI from the SFU makes the next video packet a keyframe.
func (c *testClient) sendMediaLevel(a, v *webrtc.TrackLocalStaticRTP, keyEvery int, levelID uint8, level func() uint8) *media {
	name, video := c.name, c.video
	var vs []*webrtc.TrackLocalStaticRTP
	if v != nil {
		vs = append(vs, v)
	}
	var w confclient.RTPWriter = confclient.NewTrackWriter(a, nil, vs...)
	if level != nil {
		w = levelWriter{w, levelID, level}
	}
	return confclient.Publisher{
		Audio: a != nil, VideoLayers: len(vs), KeyEvery: keyEvery, KeyRequests: c.plis.Load,
		Payload: func(kind webrtc.RTPCodecType, _, n int, key bool) []byte {
			if kind == webrtc.RTPCodecTypeAudio {
				return opusPayload(name, n)
			}
			return videoPayload(video, name, n, key)
		},
	}.Start(w)
}

// levelWriter sets the audio-level extension on every audio packet.
type levelWriter struct {
	confclient.RTPWriter
	id    uint8
	level func() uint8
}

func (w levelWriter) WriteRTP(kind webrtc.RTPCodecType, layer int, p *rtp.Packet) error {
	if kind == webrtc.RTPCodecTypeAudio {
		_ = p.Header.SetExtension(w.id, []byte{w.level()})
	}
	return w.RTPWriter.WriteRTP(kind, layer, p)
}

// hasPayload reports whether r holds a payload with this prefix, checking
// the rest parses as the expected sequence.
func hasIntact(r *received, prefix func(n int) []byte) bool {
	for _, p := range r.payloads {
		for _, sep := range [][]byte{[]byte("vp8:"), []byte("opus:")} {
			i := bytes.Index(p, sep)
			if i < 0 {
				continue
			}
			rest := p[bytes.LastIndexByte(p, ':')+1:]
			n, err := strconv.Atoi(string(rest))
			if err != nil {
				return false
			}
			if bytes.Equal(p, prefix(n)) {
				return true
			}
		}
	}
	return false
}

// dumpLocked describes the client's state for a failure message.
func (c *testClient) dumpLocked() string {
	s := fmt.Sprintf("pc=%s signaling=%s offers=%d answerErr=%v events=%d\n", c.pc.ConnectionState(), c.pc.SignalingState(), c.offers, c.answerErr, len(c.events))
	for id, r := range c.tracks {
		s += fmt.Sprintf("  track %s stream=%s %s packets=%d\n", id, r.streamID, r.mime, len(r.payloads))
	}
	for _, e := range c.events {
		s += "  event " + e.String() + "\n"
	}
	return s
}

// simulcastTrack publishes one video track in three layers, each a
// TrackLocalStaticRTP with its rid; packets carry the mid and rid header
// extensions as a browser's would.
type simulcastTrack struct {
	layers []*webrtc.TrackLocalStaticRTP
	tr     *webrtc.RTPTransceiver
}

var simulcastRIDs = []string{"h", "m", "l"}

func (c *testClient) addSimulcast() *simulcastTrack {
	c.t.Helper()
	st := &simulcastTrack{}
	for _, rid := range simulcastRIDs {
		tl, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", c.name, webrtc.WithRTPStreamID(rid))
		if err != nil {
			c.t.Fatal(err)
		}
		st.layers = append(st.layers, tl)
	}
	tr, err := c.rtc.AddSender(c.gotRTCP, st.layers...)
	if err != nil {
		c.t.Fatal(err)
	}
	st.tr = tr
	return st
}

// simulcastPayload is a VP8 packet naming its layer, padded to a size per
// layer so the layers' bitrates differ as real ones do.
func simulcastPayload(name, rid string, n int, key bool) []byte {
	p := append(vp8Payload(name+"-"+rid, n, key), '|')
	size := map[string]int{"h": 1000, "m": 300, "l": 60}[rid]
	for len(p) < size {
		p = append(p, '.')
	}
	return p
}

// send publishes the layers (after negotiation), a keyframe every keyEvery
// packets.
func (st *simulcastTrack) send(name string, keyEvery int) *media {
	return confclient.Publisher{
		VideoLayers: len(st.layers), KeyEvery: keyEvery,
		Payload: func(_ webrtc.RTPCodecType, layer, n int, key bool) []byte {
			return simulcastPayload(name, simulcastRIDs[layer], n, key)
		},
	}.Start(confclient.NewTrackWriter(nil, st.tr, st.layers...))
}

var videoCodecs = map[string]webrtc.RTPCodecCapability{
	webrtc.MimeTypeVP8:  {MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	webrtc.MimeTypeVP9:  {MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
	webrtc.MimeTypeH264: {MimeType: webrtc.MimeTypeH264, ClockRate: 90000, SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	webrtc.MimeTypeAV1:  {MimeType: webrtc.MimeTypeAV1, ClockRate: 90000},
}

func (c *testClient) videoCodec() webrtc.RTPCodecCapability {
	if c.video == "" {
		return videoCodecs[webrtc.MimeTypeVP8]
	}
	return videoCodecs[c.video]
}

// videoPayload is a recognisable packet of the codec: a first byte that
// marks a keyframe start (or not) as the codec's payload format does,
// then a marker text.
func videoPayload(mime, name string, n int, key bool) []byte {
	var b []byte
	switch mime {
	case "", webrtc.MimeTypeVP8:
		return vp8Payload(name, n, key)
	case webrtc.MimeTypeVP9:
		b = []byte{0x08} // B=1, P=0
		if !key {
			b[0] = 0x48
		}
	case webrtc.MimeTypeH264:
		b = []byte{0x65} // IDR slice
		if !key {
			b[0] = 0x41
		}
	case webrtc.MimeTypeAV1:
		b = []byte{0x08} // N=1
		if !key {
			b[0] = 0x00
		}
	}
	return append(b, fmt.Sprintf("vid:%s:%d", name, n)...)
}

// addAudio adds only an Opus track.
func (c *testClient) addAudio() *webrtc.TrackLocalStaticRTP {
	c.t.Helper()
	a, err := webrtc.NewTrackLocalStaticRTP(confclient.Opus, "audio", c.name)
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.rtc.AddSender(c.gotRTCP, a); err != nil {
		c.t.Fatal(err)
	}
	return a
}

// seenCandidates returns the server candidates containing s (c.mu held).
func (c *testClient) seenCandidates(s string) []string {
	var out []string
	for _, x := range c.candidates {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}
