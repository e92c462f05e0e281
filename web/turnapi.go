package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/internal/clientaddr"
	"poosms.org/poosms/internal/loginlimit"
	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

// PasswordStore is what /api/turn needs to check a user's password and to
// upgrade weak verifiers once the password is known.
type PasswordStore interface {
	Account(ctx context.Context, username string) (store.Account, error)
	sasl.Upgrader
}

// TURNIssuer returns the relay description for an authenticated user
// (ICE server URLs with fresh credentials), marshalled as JSON.
type TURNIssuer func(user string) any

// EnableTURNAPI serves GET /api/turn: a client authenticates with its
// account (HTTP Basic, user name or bare JID and password) and receives
// TURN credentials. Only requests over HTTPS (directly or through a
// trusted proxy), or from loopback (a local client or a TLS-terminating
// proxy on the same host), are answered, so a password never crosses a
// network in clear. Failed logins count in the login throttle that XMPP
// logins use; an unknown user costs the same password check as a real one.
func (s *Server) EnableTURNAPI(accounts PasswordStore, issue TURNIssuer) {
	limit := newLimiter(30, 10*time.Minute, s.cfg.Now)
	s.mux.HandleFunc("GET /api/turn", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if peer := clientaddr.Peer(r); !s.proxies.HTTPS(r) && !(peer.IsValid() && peer.IsLoopback()) {
			http.Error(w, "use HTTPS: /api/turn takes your password", http.StatusForbidden)
			return
		}
		addr := s.clientAddr(r)
		if ok, wait := limit.allow(addr); !ok {
			tooMany(w, wait, "too many requests from your address")
			return
		}
		if refusal, wait := s.cfg.Limiter.CheckAddress(addr); refusal != loginlimit.Allowed {
			tooMany(w, wait, refusal.String())
			return
		}
		name, password, ok := r.BasicAuth()
		user, err := s.localpart(name)
		if !ok || err != nil {
			unauthorized(w)
			return
		}
		if refusal, wait := s.cfg.Limiter.Check(user, addr); refusal != loginlimit.Allowed {
			s.log.Info("turn api: login throttled", "user", user, "remote", addr, "why", refusal.String())
			tooMany(w, wait, refusal.String())
			return
		}
		var checked store.Credentials
		good, err := sasl.CheckLogin(r.Context(), sasl.Options{
			Lookup: func(ctx context.Context, user string) (store.Credentials, error) {
				a, err := accounts.Account(ctx, user)
				checked = a.Credentials
				return a.Credentials, err
			},
			FakeKey:    s.fakeKey,
			Iterations: s.cfg.Iterations,
		}, user, password)
		if err != nil {
			s.log.Error("turn api: account lookup", "err", err)
			http.Error(w, "the server could not check your password; try again", http.StatusInternalServerError)
			return
		}
		if !good {
			s.cfg.Limiter.Fail(user, addr)
			s.log.Info("turn api: failed login", "user", user, "remote", addr)
			unauthorized(w)
			return
		}
		s.cfg.Limiter.Succeed(user, addr)
		if _, err := sasl.Upgrade(r.Context(), accounts, user, checked, password, s.cfg.Iterations); err != nil {
			s.log.Error("turn api: upgrade verifiers", "user", user, "err", err)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(issue(user + "@" + s.cfg.Domain))
	})
}

// localpart accepts "alice" or "alice@domain" and returns the stored form.
func (s *Server) localpart(name string) (string, error) {
	if local, domain, ok := strings.Cut(name, "@"); ok {
		if domain != s.cfg.Domain {
			return "", errors.New("another domain")
		}
		name = local
	}
	j, err := jid.New(name, s.cfg.Domain, "")
	if err != nil || j.Localpart() == "" {
		return "", errors.New("bad user name")
	}
	return j.Localpart(), nil
}

func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="poosms", charset="UTF-8"`)
	http.Error(w, "user name or password is wrong", http.StatusUnauthorized)
}

func tooMany(w http.ResponseWriter, wait time.Duration, why string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
	http.Error(w, why+"; try again later", http.StatusTooManyRequests)
}
