package signaling

import (
	"context"
	"sync"

	"poosms.org/poosms/stanza"
)

// Service is what the router hands stanzas to. Bound and Closed may be nil.
type Service struct {
	// Handle answers a stanza the client sent; from is already stamped.
	Handle func(ctx context.Context, s *Session, el *stanza.Element)
	// Bound runs after a session binds its resource.
	Bound func(ctx context.Context, s *Session)
	// Closed runs after a bound session ends.
	Closed func(ctx context.Context, s *Session)
	// Undelivered receives messages queued for a session that ended before
	// the client received them (or, with stream management, acknowledged
	// them), to route them elsewhere: other resources or offline storage.
	Undelivered func(ctx context.Context, el *stanza.Element)
	// Remote receives stanzas from other servers (federation has checked
	// their from and to); nil: the service takes none.
	Remote func(ctx context.Context, el *stanza.Element)
}

// Router picks the service for each stanza by the domain of its 'to'
// address: a service registered for that domain (conference.DOMAIN, say),
// or the default service (chat) for everything else.
type Router struct {
	mu       sync.RWMutex
	domains  map[string]Service
	fallback Service
	all      []Service
}

// NewRouter returns a router whose default service is fallback.
func NewRouter(fallback Service) *Router {
	return &Router{domains: map[string]Service{}, fallback: fallback, all: []Service{fallback}}
}

// Handle registers svc for stanzas addressed to domain or to JIDs at it.
func (r *Router) Handle(domain string, svc Service) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.domains[domain] = svc
	r.all = append(r.all, svc)
}

func (r *Router) route(ctx context.Context, s *Session, el *stanza.Element) {
	svc := r.fallback
	if el.To() != "" {
		if j, err := el.ToJID(); err == nil {
			r.mu.RLock()
			if d, ok := r.domains[j.Domainpart()]; ok {
				svc = d
			}
			r.mu.RUnlock()
		}
	}
	svc.Handle(ctx, s, el)
}

// Has reports whether a service is registered for domain.
func (r *Router) Has(domain string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.domains[domain]
	return ok
}

// RouteRemote hands a stanza from another server to the service of its
// 'to' domain (the default service for unregistered ones). It reports
// false when that service takes no stanzas from other servers.
func (r *Router) RouteRemote(ctx context.Context, el *stanza.Element) bool {
	svc := r.fallback
	if j, err := el.ToJID(); err == nil {
		r.mu.RLock()
		if d, ok := r.domains[j.Domainpart()]; ok {
			svc = d
		}
		r.mu.RUnlock()
	}
	if svc.Remote == nil {
		return false
	}
	svc.Remote(ctx, el)
	return true
}

func (r *Router) services() []Service {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]Service(nil), r.all...)
}

func (r *Router) bound(ctx context.Context, s *Session) {
	for _, svc := range r.services() {
		if svc.Bound != nil {
			svc.Bound(ctx, s)
		}
	}
}

func (r *Router) undelivered(ctx context.Context, s *Session, el *stanza.Element) {
	if r.fallback.Undelivered != nil {
		r.fallback.Undelivered(ctx, el)
	}
}

func (r *Router) closed(ctx context.Context, s *Session) {
	for _, svc := range r.services() {
		if svc.Closed != nil {
			svc.Closed(ctx, s)
		}
	}
}
