package sfu

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// fuzzOffer is a browser-like offer: one audio and one video section,
// bundled, the video with three simulcast layers.
const fuzzOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=msid:s a\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=ssrc:1 cname:x\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
	"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
	"a=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=msid:s v\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\n" +
	"a=rid:h send\r\na=rid:m send\r\na=rid:l send\r\na=simulcast:send h;m;l\r\n"

var fuzzOfferSeeds = []string{
	fuzzOffer,
	strings.Replace(fuzzOffer, "a=rid:l send\r\n", "a=rid:l send\r\na=rid:x send\r\n", 1),
	strings.ReplaceAll(fuzzOffer, "sendonly", "recvonly"),
	strings.Replace(fuzzOffer, "m=video 9", "m=video 0", 1),
	"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
	"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n",
	"garbage",
}

// FuzzOfferLimits: the caps are monotonic (an offer within some caps is
// within larger ones) and an offer within them has no more media sections
// of its own than allowed.
func FuzzOfferLimits(f *testing.F) {
	for _, s := range fuzzOfferSeeds {
		f.Add(s, "", 2, 3)
		f.Add(s, "1", 1, 1)
	}
	f.Fuzz(func(t *testing.T, text, servedMid string, maxTracks, maxSections int) {
		sd, err := parseSDP(text)
		if err != nil {
			return
		}
		if len(sd.MediaDescriptions) == 0 {
			t.Fatalf("%q accepted without media", text)
		}
		maxTracks, maxSections = max(0, maxTracks%64), max(0, maxSections%64)
		served := map[string]bool{servedMid: servedMid != ""}
		if offerRefusal(sd, served, maxTracks, maxSections) != "" {
			return
		}
		own := 0
		for _, md := range sd.MediaDescriptions {
			if mid, ok := md.Attribute("mid"); !ok || !served[mid] {
				own++
			}
		}
		if own > maxSections {
			t.Fatalf("%d sections of its own passed a cap of %d: %q", own, maxSections, text)
		}
		if why := offerRefusal(sd, served, maxTracks+1, maxSections+1); why != "" {
			t.Fatalf("within caps %d/%d, refused at %d/%d: %s", maxTracks, maxSections, maxTracks+1, maxSections+1, why)
		}
	})
}

// fuzzPeer collects what the service sends one participant.
type fuzzPeer struct {
	jid jid.JID
	in  chan *stanza.Element
}

func (p *fuzzPeer) JID() jid.JID { return p.jid }
func (p *fuzzPeer) Send(el *stanza.Element) error {
	select {
	case p.in <- el:
	default: // the fuzz test reads only replies; drop the rest
	}
	return nil
}

// reply waits for the answer to the IQ with id.
func (p *fuzzPeer) reply(t *testing.T, id string) *stanza.Element {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case el := <-p.in:
			if el.Local == "iq" && el.ID() == id {
				return el
			}
		case <-deadline:
			t.Fatalf("no reply to IQ %s", id)
			return nil
		}
	}
}

// FuzzOffer sends one offer to a real conference, as a participant that
// has just joined, then leaves. The offer is answered with a result only
// within the caps, and otherwise with an error condition, and nothing of
// the conference stays behind when the participant leaves.
func FuzzOffer(f *testing.F) {
	svc, err := New(Config{
		Domain:                  "conference.localhost",
		UDPAddr:                 "127.0.0.1:0",
		IncludeLoopback:         true,
		MaxTracksPerParticipant: 2,
		MaxMediaSections:        3,
		Logger:                  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Close() })
	for _, s := range fuzzOfferSeeds {
		f.Add(s)
	}
	n := 0
	f.Fuzz(func(t *testing.T, text string) {
		n++
		p := &fuzzPeer{jid: jid.MustParse(fmt.Sprintf("u%d@localhost/r", n)), in: make(chan *stanza.Element, 64)}
		ctx := context.Background()
		iq := func(id string, payload *stanza.Element) *stanza.Element {
			el := iqSet(p.jid.String(), testRoom, id, payload)
			svc.HandleStanza(ctx, p, el)
			return p.reply(t, id)
		}
		if r := iq("j", stanza.New(NS, "join")); r.IQType() != stanza.ResultIQ {
			t.Fatalf("join: %s", r)
		}
		r := iq("o", stanza.New(NS, "offer").SetText(text))
		if text == fuzzOffer && r.IQType() != stanza.ResultIQ {
			t.Fatalf("a browser's offer refused: %s", r)
		}
		switch r.Type() {
		case "result":
			sd, err := parseSDP(text)
			if err != nil || offerRefusal(sd, nil, 2, 3) != "" || r.Child(NS, "answer") == nil {
				t.Fatalf("offer %q answered with %s", text, r)
			}
		case "error":
			if stanza.ErrorCondition(r) == "" {
				t.Fatalf("offer %q: error without a condition: %s", text, r)
			}
		default:
			t.Fatalf("offer %q: reply %s", text, r)
		}
		svc.SessionClosed(ctx, p)
		if rooms := svc.Rooms(); rooms != 0 {
			t.Fatalf("after the only participant left, %d conferences remain", rooms)
		}
	})
}
