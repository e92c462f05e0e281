package chat

import (
	"errors"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// ErrSessionGone is returned by Session.Send when the session has ended or
// its write queue is full (a slow client is being disconnected).
var ErrSessionGone = errors.New("chat: session gone")

// Session is one bound client stream as chat sees it. signaling implements
// it; chat never touches the connection itself. chat tells sessions apart
// with ==, so an implementation must be comparable: use a pointer type.
type Session interface {
	// JID is the session's full JID (user@domain/resource).
	JID() jid.JID
	// Send queues a stanza for the client without blocking. The stanza must
	// not be changed afterwards by the caller.
	Send(el *stanza.Element) error
}
