package web

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

// PasswordStore is what /api/turn needs to check a user's password.
type PasswordStore interface {
	Account(ctx context.Context, username string) (store.Account, error)
}

// TURNIssuer returns the relay description for an authenticated user
// (ICE server URLs with fresh credentials), marshalled as JSON.
type TURNIssuer func(user string) any

// EnableTURNAPI serves GET /api/turn: a client authenticates with its
// account (HTTP Basic, user name or bare JID and password) and receives
// TURN credentials. Only requests over TLS, or from loopback (a local
// client or a TLS-terminating proxy on the same host), are answered, so a
// password never crosses a network in clear.
func (s *Server) EnableTURNAPI(accounts PasswordStore, issue TURNIssuer) {
	limit := newLimiter(30, 10*time.Minute, s.cfg.Now)
	s.mux.HandleFunc("GET /api/turn", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.TLS == nil && !loopbackRequest(r) {
			http.Error(w, "use HTTPS: /api/turn takes your password", http.StatusForbidden)
			return
		}
		if ok, wait := limit.allow(clientAddr(r)); !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			http.Error(w, "too many requests from your address; try again later", http.StatusTooManyRequests)
			return
		}
		name, password, ok := r.BasicAuth()
		user, err := s.localpart(name)
		if !ok || err != nil {
			unauthorized(w)
			return
		}
		a, err := accounts.Account(r.Context(), user)
		if errors.Is(err, store.ErrNotFound) || (err == nil && !sasl.CheckPassword(a.Credentials, password)) {
			s.log.Info("turn api: failed login", "user", user, "remote", clientAddr(r))
			unauthorized(w)
			return
		}
		if err != nil {
			s.log.Error("turn api: account lookup", "err", err)
			http.Error(w, "the server could not check your password; try again", http.StatusInternalServerError)
			return
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

func loopbackRequest(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
