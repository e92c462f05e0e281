package sfu

import (
	"strconv"
	"strings"

	"poosms.org/poosms/stanza"
)

// NS is the conference namespace; docs/protocol.md describes every element.
const NS = "urn:poosms:conference:0"

// Reasons a participant is removed, carried in <participant-left reason=…/>.
const (
	reasonLeave       = "leave"
	reasonClosed      = "stream-closed"
	reasonTimeout     = "connect-timeout"
	reasonFailed      = "connection-failed"
	reasonPCClosed    = "connection-closed"
	reasonReplaced    = "replaced"
	reasonNegotiation = "negotiation-failed"
	reasonShutdown    = "shutdown"
	reasonRemoved     = "removed" // the room's membership no longer admits the participant
	reasonMoved       = "moved"   // the conference runs on another node of the cluster now
)

func iqSet(from, to, id string, payload *stanza.Element) *stanza.Element {
	return stanza.NewIQ(stanza.SetIQ).SetAttr("id", id).
		SetAttr("from", from).SetAttr("to", to).Append(payload)
}

func headline(from, to string, payload *stanza.Element) *stanza.Element {
	return stanza.NewMessage(stanza.HeadlineMessage).
		SetAttr("from", from).SetAttr("to", to).Append(payload)
}

func sdpElement(local, sdp string) *stanza.Element {
	return stanza.New(NS, local).SetText(sdp)
}

func candidateElement(cand, mid string, mline *uint16, ufrag string) *stanza.Element {
	e := stanza.New(NS, "candidate").SetAttr("mid", mid).SetAttr("ufrag", ufrag)
	if mline != nil {
		e.SetAttr("mline", strconv.Itoa(int(*mline)))
	}
	return e.SetText(cand)
}

func trackElement(local string, u *upTrack) *stanza.Element {
	e := stanza.New(NS, local).SetAttr("id", u.id).SetAttr("participant", u.owner.id).
		SetAttr("kind", u.kind.String()).SetAttr("codec", u.codec.MimeType)
	if len(u.layers) > 1 {
		rids := make([]string, len(u.layers))
		for i, l := range u.layers {
			rids[i] = l.rid
		}
		e.SetAttr("layers", strings.Join(rids, " "))
	}
	return e
}

// ridRank orders simulcast layer names from the best to the worst quality.
// Known names: h/m/l, f/h/q, hi/mid/lo, 2/1/0; others keep their SDP order
// after the known ones.
func ridRank(rid string) int {
	switch strings.ToLower(rid) {
	case "f", "hi", "high", "2":
		return 0
	case "h":
		return 1
	case "m", "mid", "medium", "1":
		return 2
	case "q", "l", "lo", "low", "0":
		return 3
	}
	return 4
}

func itoa(i int) string { return strconv.Itoa(i) }
