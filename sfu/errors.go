package sfu

import (
	"errors"
	"fmt"

	"poosms.org/poosms/stanza"
)

// What the service refuses a request for. The package returns these
// (wrapped in a refusal that carries the text the client reads); the one
// place that turns them into XMPP conditions is errorReply, where the
// reply is built.
var (
	errBadRequest   = errors.New("bad request")                   // bad-request
	errNotFound     = errors.New("not found")                     // item-not-found
	errForbidden    = errors.New("not admitted")                  // forbidden
	errOverLimit    = errors.New("over a limit of the offer")     // policy-violation
	errGlare        = errors.New("the server's offer is pending") // unexpected-request
	errCannotAnswer = errors.New("cannot answer")                 // not-acceptable
	errNoRoom       = errors.New("no room")                       // resource-constraint
	errShuttingDown = errors.New("shutting down")                 // service-unavailable

	// errConferenceClosed is what room.join reports for a conference
	// that closed between lookup and join: the caller looks again.
	errConferenceClosed = errors.New("conference closed")
)

// refusal is a refused request: why (one of the errors above) and the
// text for the client, "" for none.
type refusal struct {
	why  error
	text string
}

func (r *refusal) Error() string {
	if r.text == "" {
		return r.why.Error()
	}
	return r.why.Error() + ": " + r.text
}

func (r *refusal) Unwrap() error { return r.why }

// refuse returns a refusal for why with the formatted text.
func refuse(why error, format string, args ...any) error {
	return &refusal{why: why, text: fmt.Sprintf(format, args...)}
}

// errorReply is the error reply to iq for err: its condition, and the
// refusal's text. Any other error is an internal-server-error whose
// details stay in the server's log.
func errorReply(iq *stanza.Element, err error) *stanza.Element {
	text := ""
	var r *refusal
	if errors.As(err, &r) {
		text = r.text
	}
	return stanza.ErrorReply(iq, conditionOf(err), text)
}

// conditionOf maps a refusal to its XMPP condition.
func conditionOf(err error) stanza.Condition {
	switch {
	case errors.Is(err, errBadRequest):
		return stanza.BadRequest
	case errors.Is(err, errNotFound):
		return stanza.ItemNotFound
	case errors.Is(err, errForbidden):
		return stanza.Forbidden
	case errors.Is(err, errOverLimit):
		return stanza.PolicyViolation
	case errors.Is(err, errGlare):
		return stanza.UnexpectedRequest
	case errors.Is(err, errCannotAnswer):
		return stanza.NotAcceptable
	case errors.Is(err, errNoRoom):
		return stanza.ResourceConstraint
	case errors.Is(err, errShuttingDown):
		return stanza.ServiceUnavailable
	}
	return stanza.InternalServerError
}
