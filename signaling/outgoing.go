package signaling

import (
	"time"

	"poosms.org/poosms/stanza"
)

// outgoing is a stanza on its way to the client, as a session keeps it in
// its queue, among those held back from an inactive client, and in the
// unacknowledged list: its encoded bytes (shared with the other recipients
// of a room message), its to, and what the session must know of it
// without parsing it again. A queued tree cost up to 24 times its encoded
// size; the bytes are what the session's bounds count.
type outgoing struct {
	w    stanza.Encoded
	to   string
	kind outKind
	// queued is when a message was queued, in Unix seconds: a message
	// handed back at teardown carries it as its XEP-0203 delay stamp.
	queued int64
}

// outKind says what a session does with a stanza beyond writing it.
type outKind uint8

const (
	kindMessage outKind = 1 << iota // handed back to the router if never received
	kindHold                        // may wait while the client is inactive (XEP-0352)
)

// newOutgoing is el, encoded as w, for to, queued at now (read only for a
// message). el is only looked at.
func newOutgoing(el *stanza.Element, w stanza.Encoded, to string, now func() time.Time) outgoing {
	o := outgoing{w: w, to: to}
	if el.Local == "message" {
		o.kind |= kindMessage
		o.queued = now().Unix()
	}
	if holdWhileInactive(el) {
		o.kind |= kindHold
	}
	return o
}

// size is the stanza's length on the wire (within a TCP stream).
func (o outgoing) size() int {
	n := o.w.Len()
	if o.to != "" {
		n += len(" to=''") + len(o.to)
	}
	return n
}

// element parses the stanza back, for the router.
func (o outgoing) element() (*stanza.Element, error) { return o.w.Element(o.to) }

// handedBack parses a message that never reached its client back for the
// router, stamped (XEP-0203) from domain with the time it was queued, so
// that the resource or offline queue it goes to instead shows it as
// late. A stamp from domain already there (an offline message being
// delivered) is the older and stays alone.
func (o outgoing) handedBack(domain string) (*stanza.Element, error) {
	el, err := o.element()
	if err != nil {
		return nil, err
	}
	if stanza.HasDelayFrom(el, domain) {
		return el, nil
	}
	return el.Append(stanza.New(stanza.NSDelay, "delay").
		SetAttr("from", domain).
		SetAttr("stamp", time.Unix(o.queued, 0).UTC().Format(time.RFC3339))), nil
}
