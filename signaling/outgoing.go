package signaling

import "poosms.org/poosms/stanza"

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
}

// outKind says what a session does with a stanza beyond writing it.
type outKind uint8

const (
	kindMessage outKind = 1 << iota // handed back to the router if never received
	kindHold                        // may wait while the client is inactive (XEP-0352)
)

// newOutgoing is el, encoded as w, for to. el is only looked at.
func newOutgoing(el *stanza.Element, w stanza.Encoded, to string) outgoing {
	o := outgoing{w: w, to: to}
	if el.Local == "message" {
		o.kind |= kindMessage
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
