package s2s

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
)

// Resolver looks up SRV records; *net.Resolver is one.
type Resolver interface {
	LookupSRV(ctx context.Context, service, proto, name string) (cname string, addrs []*net.SRV, err error)
}

var _ Resolver = (*net.Resolver)(nil)

// target is one place to connect to for a domain.
type target struct {
	host   string
	port   uint16
	direct bool // TLS from the first byte (XEP-0368), else STARTTLS
}

func (t target) addr() string { return net.JoinHostPort(t.host, strconv.Itoa(int(t.port))) }

// defaultPort is where a domain without SRV records is reached (RFC 6120 §3.2.2).
const defaultPort = 5269

// errNoService: the domain's SRV records say it offers no XMPP service.
var errNoService = errors.New("s2s: the domain's DNS says it offers no server-to-server service")

// targets lists where to reach domain, in the order to try: its static
// route (or that of the nearest parent domain: a server's services live
// where it does); else its _xmpps-server and _xmpp-server SRV records
// mixed as one set and ordered by priority and weight (RFC 6120 §3.2.1,
// RFC 2782, XEP-0368); else, when the domain has neither, the domain
// itself on port 5269 (RFC 6120 §3.2.2).
func (s *Server) targets(ctx context.Context, domain string) ([]target, error) {
	if r, ok := s.route(domain); ok {
		host, port, err := net.SplitHostPort(r)
		if err != nil {
			return nil, fmt.Errorf("s2s: route for %s: %w", domain, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("s2s: route for %s: bad port %q", domain, port)
		}
		return []target{{host: host, port: uint16(p)}}, nil
	}
	_, direct, derr := s.cfg.Resolver.LookupSRV(ctx, "xmpps-server", "tcp", domain)
	_, plain, perr := s.cfg.Resolver.LookupSRV(ctx, "xmpp-server", "tcp", domain)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	s.log.Debug("srv lookup", "domain", domain, "xmpps", len(direct), "xmpps_err", derr, "xmpp", len(plain), "xmpp_err", perr)
	return orderTargets(domain, direct, plain, rand.IntN)
}

// route finds the static route of domain or of its nearest parent.
func (s *Server) route(domain string) (string, bool) {
	for d := domain; d != ""; {
		if r, ok := s.cfg.Routes[d]; ok {
			return r, true
		}
		_, parent, found := strings.Cut(d, ".")
		if !found {
			break
		}
		d = parent
	}
	return "", false
}

// orderTargets applies RFC 6120 §3.2 and XEP-0368 to the two SRV answers;
// pick(n) returns a random number in [0, n).
func orderTargets(domain string, direct, plain []*net.SRV, pick func(int) int) ([]target, error) {
	// A single record with the target "." says the service is not offered.
	refused := func(recs []*net.SRV) bool {
		return len(recs) == 1 && strings.TrimSuffix(recs[0].Target, ".") == ""
	}
	directRefused, plainRefused := refused(direct), refused(plain)
	if directRefused {
		direct = nil
	}
	if plainRefused {
		plain = nil
	}
	if len(direct) == 0 && len(plain) == 0 {
		if directRefused || plainRefused {
			// The domain publishes SRV records: no A/AAAA fallback.
			return nil, errNoService
		}
		return []target{{host: domain, port: defaultPort}}, nil
	}
	type rec struct {
		t        target
		priority uint16
		weight   uint16
	}
	var all []rec
	add := func(recs []*net.SRV, isDirect bool) {
		for _, r := range recs {
			host := strings.TrimSuffix(r.Target, ".")
			if host == "" {
				continue
			}
			all = append(all, rec{target{host: host, port: r.Port, direct: isDirect}, r.Priority, r.Weight})
		}
	}
	add(direct, true)
	add(plain, false)
	slices.SortStableFunc(all, func(a, b rec) int { return int(a.priority) - int(b.priority) })
	out := make([]target, 0, len(all))
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && all[j].priority == all[i].priority {
			j++
		}
		// RFC 2782: within a priority, pick by weight at random, records
		// of weight 0 first in the running sums so they are rarely chosen
		// before the others.
		group := slices.Clone(all[i:j])
		slices.SortStableFunc(group, func(a, b rec) int { return int(a.weight) - int(b.weight) })
		for len(group) > 0 {
			total := 0
			for _, r := range group {
				total += int(r.weight)
			}
			k := 0
			if total > 0 {
				n := pick(total + 1)
				sum := 0
				for k = range group {
					sum += int(group[k].weight)
					if sum >= n {
						break
					}
				}
			}
			out = append(out, group[k].t)
			group = slices.Delete(group, k, k+1)
		}
		i = j
	}
	return out, nil
}
