// Package signaling owns poosms's client streams: TCP with STARTTLS,
// direct TLS and WebSocket transports, RFC 6120 stream negotiation, SASL,
// resource binding, per-session write queues, stream errors and limits, and
// the router that hands each stanza to the service that answers it.
//
// It knows nothing of chat semantics: the chat service, the conference SFU
// and other services register with the Router by domain.
package signaling
