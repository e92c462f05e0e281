// Package component holds what poosms's built-in services on their own
// domains (directory.DOMAIN, upload.DOMAIN) check the same way before
// answering a request.
package component

import (
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Request vets an IQ addressed to the service at domain, sent by from.
// It returns the request's one payload, or the error reply to send; both
// are nil for IQs that want no answer (results and errors). Only users of
// server may use the service; refused names why in its error text.
func Request(el *stanza.Element, from jid.JID, domain, server, refused string) (payload, reply *stanza.Element) {
	if typ := el.Type(); typ != "get" && typ != "set" {
		return nil, nil
	}
	to, err := jid.Parse(el.To())
	switch {
	case err != nil || to.Domainpart() != domain:
		return nil, stanza.ErrorReply(el, "jid-malformed", "")
	case to.Localpart() != "" || to.Resourcepart() != "":
		return nil, stanza.ErrorReply(el, "service-unavailable", "")
	case from.Domainpart() != server || from.Localpart() == "":
		return nil, stanza.ErrorReply(el, "forbidden", refused)
	}
	els := el.Elements()
	if len(els) != 1 {
		return nil, stanza.ErrorReply(el, "bad-request", "an iq request carries exactly one payload")
	}
	return els[0], nil
}
