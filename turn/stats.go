package turn

import "sync/atomic"

// Stats are the relay's counters since Start, for a metrics exporter.
type Stats struct {
	Allocations  int    `json:"allocations"`   // live allocations
	AuthRefused  uint64 `json:"auth_refused"`  // forged, malformed, expired or foreign-realm credentials
	PeersRefused uint64 `json:"peers_refused"` // permissions refused by the peer policy
	SelfDropped  uint64 `json:"self_dropped"`  // datagrams between a relay and this host's own addresses, dropped
	QuotaRefused uint64 `json:"quota_refused"` // allocations refused at the per-user quota
	ConnsRefused uint64 `json:"conns_refused"` // TCP and TLS connections refused at the per-address cap
}

// counters back Stats.
type counters struct {
	auth, peer, quota, self atomic.Uint64
}

// Stats returns a snapshot of the relay's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Allocations:  s.AllocationCount(),
		AuthRefused:  s.counters.auth.Load(),
		PeersRefused: s.counters.peer.Load(),
		SelfDropped:  s.counters.self.Load(),
		QuotaRefused: s.counters.quota.Load(),
		ConnsRefused: s.perAddr.Refused(),
	}
}
