// Package component holds what poosms's built-in services on their own
// domains (directory.DOMAIN, upload.DOMAIN) check the same way before
// answering a request.
package component

import (
	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Refusals are the texts a service gives when it refuses a stanza.
type Refusals struct {
	Message  string // to a message: the service takes requests only
	Stranger string // to a user of another server
}

// Request vets a stanza addressed to the service at domain, sent by from.
// It returns an IQ request's one payload, or the error reply to send; both
// are nil for stanzas that want no answer (presence, results, errors).
// Messages are refused, and only users of server may use the service:
// anyone else (a user or server of another domain, through federation)
// may only ask what it is (disco#info and disco#items).
func Request(el *stanza.Element, from jid.JID, domain, server string, why Refusals) (payload, reply *stanza.Element) {
	typ := el.Type()
	switch {
	case el.Local == "message" && typ != "error":
		return nil, stanza.ErrorReply(el, stanza.ServiceUnavailable, why.Message)
	case el.Local != "iq", typ != "get" && typ != "set":
		return nil, nil
	}
	to, err := el.ToJID()
	switch {
	case err != nil || to.Domainpart() != domain:
		return nil, stanza.ErrorReply(el, stanza.JIDMalformed, "")
	case to.Localpart() != "" || to.Resourcepart() != "":
		return nil, stanza.ErrorReply(el, stanza.ServiceUnavailable, "")
	}
	els := el.Elements()
	stranger := from.Domainpart() != server || from.Localpart() == ""
	switch {
	case stranger && !(typ == "get" && len(els) == 1 && discoQuery(els[0])):
		return nil, stanza.ErrorReply(el, stanza.Forbidden, why.Stranger)
	case len(els) != 1:
		return nil, stanza.ErrorReply(el, stanza.BadRequest, "an iq request carries exactly one payload")
	}
	return els[0], nil
}

const (
	nsDiscoInfo  = "http://jabber.org/protocol/disco#info"
	nsDiscoItems = "http://jabber.org/protocol/disco#items"
)

func discoQuery(q *stanza.Element) bool {
	return q.Local == "query" && (q.Space == nsDiscoInfo || q.Space == nsDiscoItems)
}
