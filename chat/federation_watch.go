package chat

import (
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/stanza"
)

// Bounds of the presence watch.
const (
	maxWatchedPerUser = 1000
	maxWatched        = 100000
)

// presenceWatch remembers which available presences of other servers'
// users and services the local users were shown, so that they do not
// stay shown once the server they came from is gone. When the last
// stream with a domain is lost, every local user who saw someone there
// probes them again; what no fresh presence confirms within the timeout
// (or what the probe cannot reach) is reported unavailable, and probed
// again when a stream with that domain is back.
type presenceWatch struct {
	timeout time.Duration

	// mu guards the fields below; it is never held while sending.
	mu     sync.Mutex
	users  map[string]map[string]int // local user → remote full JID → 0 (confirmed) or the round awaiting confirmation
	count  int
	rounds map[string]int                // domain → last round started
	lost   map[string]map[[2]string]bool // domain → {local user, remote bare JID} reported gone
	nlost  int                           // entries in lost, at most maxWatched
	timers map[*time.Timer]struct{}      // rounds waiting to expire
	closed bool
}

func newPresenceWatch(timeout time.Duration) *presenceWatch {
	return &presenceWatch{
		timeout: timeout,
		users:   map[string]map[string]int{},
		rounds:  map[string]int{},
		lost:    map[string]map[[2]string]bool{},
		timers:  map[*time.Timer]struct{}{},
	}
}

// seen records that local was shown from available.
func (w *presenceWatch) seen(local string, from jid.JID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.users[local]
	if _, ok := m[from.String()]; !ok {
		if len(m) >= maxWatchedPerUser || w.count >= maxWatched {
			return
		}
		if m == nil {
			m = map[string]int{}
			w.users[local] = m
		}
		w.count++
	}
	m[from.String()] = 0
	if l := w.lost[from.Domainpart()]; l != nil {
		key := [2]string{local, from.Bare().String()}
		if l[key] {
			delete(l, key)
			w.nlost--
		}
	}
}

// gone forgets what local saw from 'from' (with a bare JID, every
// resource of it) and returns the full JIDs forgotten.
func (w *presenceWatch) gone(local string, from jid.JID) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.users[local]
	var out []string
	for full := range m {
		if full == from.String() || from.Resourcepart() == "" && strings.HasPrefix(full, from.String()+"/") {
			out = append(out, full)
		}
	}
	for _, full := range out {
		delete(m, full)
		w.count--
	}
	if len(m) == 0 {
		delete(w.users, local)
	}
	return out
}

// forget drops what local saw (its last session ended).
func (w *presenceWatch) forget(local string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count -= len(w.users[local])
	delete(w.users, local)
}

// inDomain reports whether a full JID's domain is domain.
func inDomain(full, domain string) bool {
	_, d, _ := jidParts(full)
	return d == domain
}

// RemoteAvailability is told when this server gains its first stream
// with another server (up) or loses its last one (package s2s calls it).
func (s *Service) RemoteAvailability(domain string, up bool) {
	if up {
		s.watch.back(s, domain)
	} else {
		s.remoteNotify.lost(domain)
		s.watch.lostStreams(s, domain)
	}
}

// lostStreams starts a round for domain: what was seen from it awaits a
// fresh presence, asked for with probes from the users' bare JIDs.
func (w *presenceWatch) lostStreams(s *Service, domain string) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.rounds[domain]++
	round := w.rounds[domain]
	probes := map[[2]string]bool{}
	for local, m := range w.users {
		for full := range m {
			if inDomain(full, domain) {
				m[full] = round
				b, _, _ := strings.Cut(full, "/")
				probes[[2]string{local, b}] = true
			}
		}
	}
	if len(probes) == 0 {
		w.mu.Unlock()
		return
	}
	var t *time.Timer
	t = time.AfterFunc(w.timeout, func() {
		w.mu.Lock()
		_, live := w.timers[t]
		delete(w.timers, t)
		w.mu.Unlock()
		if live {
			w.expire(s, domain, round)
		}
	})
	w.timers[t] = struct{}{}
	w.mu.Unlock()
	w.sendProbes(s, probes)
}

// unreachable expires at once what awaits confirmation from domain: a
// stanza for it came back unreachable.
func (w *presenceWatch) unreachable(s *Service, domain string) { w.expire(s, domain, -1) }

// expire reports unavailable what still awaits confirmation from domain
// (of the given round; -1: any), and remembers it for when the domain
// is back.
func (w *presenceWatch) expire(s *Service, domain string, round int) {
	type gone struct{ local, full string }
	var out []gone
	w.mu.Lock()
	for local, m := range w.users {
		for full, r := range m {
			if r != 0 && (round < 0 || r == round) && inDomain(full, domain) {
				out = append(out, gone{local, full})
				delete(m, full)
				w.count--
			}
		}
		if len(m) == 0 {
			delete(w.users, local)
		}
	}
	if len(out) > 0 && w.lost[domain] == nil {
		w.lost[domain] = map[[2]string]bool{}
	}
	for _, g := range out {
		b, _, _ := strings.Cut(g.full, "/")
		if key := [2]string{g.local, b}; !w.lost[domain][key] && w.nlost < maxWatched {
			w.lost[domain][key] = true
			w.nlost++
		}
	}
	w.mu.Unlock()
	for _, g := range out {
		user, err := jid.New(g.local, s.domain, "")
		if err != nil {
			continue
		}
		p := stanza.New(stanza.NSClient, "presence").SetAttr("from", g.full).SetType(stanza.UnavailablePresence)
		s.presenceToUser(p, user)
	}
}

// presenceToUser sends a copy of p addressed to bare to every available
// session of bare, those other nodes of a cluster serve included: the
// presence the watch withdraws reached them too, through this node.
func (s *Service) presenceToUser(p *stanza.Element, bare jid.JID) {
	q := p.Copy()
	q.SetAttr("to", bare.String())
	for _, t := range s.available(bare.Localpart()) {
		s.send(t.sess, q)
	}
}

// back probes again, for the users who saw them, the contacts of domain
// that were reported unavailable when it was lost.
func (w *presenceWatch) back(s *Service, domain string) {
	w.mu.Lock()
	probes := w.lost[domain]
	delete(w.lost, domain)
	w.nlost -= len(probes)
	w.mu.Unlock()
	w.sendProbes(s, probes)
}

func (w *presenceWatch) sendProbes(s *Service, probes map[[2]string]bool) {
	for p := range probes {
		user, err1 := jid.New(p[0], s.domain, "")
		contact, err2 := jid.Parse(p[1])
		if err1 == nil && err2 == nil && len(s.available(p[0])) > 0 {
			s.probe(user, contact)
		}
	}
}

// close stops the rounds' timers.
func (w *presenceWatch) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for t := range w.timers {
		t.Stop()
	}
	w.timers = map[*time.Timer]struct{}{}
}
