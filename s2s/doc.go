// Package s2s is poosms's federation with other XMPP servers (RFC 6120
// server-to-server streams): it accepts incoming server streams (STARTTLS
// and direct TLS, XEP-0368), opens outgoing ones found through DNS SRV or
// static routes, authenticates peers with SASL EXTERNAL when their
// certificate is valid for their domain (XEP-0178) and with Server
// Dialback over TLS otherwise (XEP-0220, keys per XEP-0185), and keeps one
// bounded queue per pair of domains for what waits to be sent.
//
// It owns streams and routing by domain, never chat semantics: stanzas
// from other servers go to the Deliver function given in Config, and
// stanzas for other servers come in through Server.Send. Stanzas that
// cannot reach their server go back to Deliver as errors (bounces).
//
// It must never trust a 'from' outside the domains a stream proved: every
// stanza read from a peer has a from in a domain that stream authenticated
// and a to in a domain this server hosts, or the stream ends with an error.
package s2s
