package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/signaling/sasl"
	"poosms.org/poosms/store"
)

const (
	csrfCookie   = "poosms_csrf"
	maxFormBytes = 16 << 10
)

func (s *Server) registerForm(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Registration {
		s.render(w, http.StatusForbidden, "closed", s.page("Registration is closed"))
		return
	}
	p := s.page("Create an account")
	p.CSRF = s.csrf.issue(w, s.proxies.HTTPS(r), r, false)
	s.render(w, http.StatusOK, "register", p)
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Registration {
		s.render(w, http.StatusForbidden, "closed", s.page("Registration is closed"))
		return
	}
	p := s.page("Create an account")
	fail := func(status int, invalid []string, msgs ...string) {
		p.Errors = msgs
		p.Invalid = make(map[string]bool)
		for _, f := range invalid {
			p.Invalid[f] = true
		}
		p.CSRF = s.csrf.issue(w, s.proxies.HTTPS(r), r, status == http.StatusForbidden)
		s.render(w, status, "register", p)
	}

	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	addr := s.clientAddr(r)
	if ok, wait := s.limit.allow(addr); !ok {
		p.Username = strings.TrimSpace(r.FormValue("username"))
		mins := int(math.Ceil(wait.Minutes()))
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		s.log.Info("web: registration rate limited", "addr", addr)
		fail(http.StatusTooManyRequests, nil, fmt.Sprintf(
			"Too many attempts from your network. Please wait %d minute%s and try again.", mins, plural(mins)))
		return
	}

	if err := r.ParseForm(); err != nil {
		fail(http.StatusBadRequest, nil, "The form could not be read. Please fill it in again.")
		return
	}
	username := strings.TrimSpace(r.PostFormValue("username"))
	password, confirm := r.PostFormValue("password"), r.PostFormValue("confirm")
	p.Username = username

	if !s.csrf.valid(r, r.PostFormValue("csrf")) {
		s.log.Info("web: registration refused: bad form token", "addr", addr)
		fail(http.StatusForbidden, nil,
			"This form has expired or was sent from another page. Please fill it in again.")
		return
	}

	var msgs, invalid []string
	local, problem := s.checkUsername(username)
	if problem != "" {
		msgs, invalid = append(msgs, problem), append(invalid, "username")
	}
	if len([]rune(password)) < sasl.MinPasswordLength {
		msgs = append(msgs, fmt.Sprintf("The password must be at least %d characters long.", sasl.MinPasswordLength))
		invalid = append(invalid, "password")
	} else if confirm != password {
		msgs = append(msgs, "The two passwords do not match. Please type the same password twice.")
		invalid = append(invalid, "confirm")
	}
	if len(msgs) > 0 {
		fail(http.StatusBadRequest, invalid, msgs...)
		return
	}

	creds, err := sasl.NewCredentials(password, s.cfg.Iterations)
	if err != nil {
		fail(http.StatusBadRequest, []string{"password"},
			"That password contains characters that cannot be used in a password. Please choose another.")
		return
	}
	switch err := s.accounts.CreateAccount(r.Context(), local, creds); {
	case errors.Is(err, store.ErrExists):
		fail(http.StatusConflict, []string{"username"},
			fmt.Sprintf("The username %q is already taken. Please choose another.", local))
		return
	case err != nil:
		s.log.Error("web: create account", "user", local, "err", err)
		fail(http.StatusInternalServerError, nil,
			"Something went wrong on the server and your account was not created. Please try again later.")
		return
	}
	s.log.Info("web: account registered", "user", local, "addr", addr)

	done := s.page("Your account is ready")
	done.JID = local + "@" + s.cfg.Domain
	done.Server = s.cfg.Domain
	done.C2SPort = port(s.cfg.C2SAddr)
	done.TLSPort = port(s.cfg.C2STLSAddr)
	done.WebSocketURL = s.webSocketURL(r)
	s.render(w, http.StatusOK, "registered", done)
}

// checkUsername normalises a username with PRECIS (UsernameCaseMapped)
// and returns it, or a plain-words problem.
func (s *Server) checkUsername(username string) (local, problem string) {
	switch {
	case username == "":
		return "", "Please choose a username."
	case strings.Contains(username, "@"):
		return "", fmt.Sprintf("A username cannot contain @. Enter only the part before @%s.", s.cfg.Domain)
	case strings.IndexFunc(username, unicode.IsSpace) >= 0:
		return "", "A username cannot contain spaces."
	}
	j, err := jid.New(username, s.cfg.Domain, "")
	if err != nil || j.Localpart() == "" {
		return "", "That username contains characters that are not allowed. Use letters, digits and symbols such as . - _"
	}
	if len(j.Localpart()) > MaxUsernameBytes {
		return "", fmt.Sprintf("That username is too long: at most %d letters (accented and non-Latin letters count as two or more).", MaxUsernameBytes)
	}
	return j.Localpart(), ""
}

func port(addr string) string {
	if addr == "" {
		return ""
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// csrfGuard binds the registration form to the browser that fetched it:
// a random value in a SameSite=Strict cookie, and in the form an HMAC of
// that value under a key that lives only in this process.
type csrfGuard struct {
	key []byte
}

func newCSRFGuard() (*csrfGuard, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("web: csrf key: %w", err)
	}
	return &csrfGuard{key: key}, nil
}

func (g *csrfGuard) mac(nonce string) string {
	m := hmac.New(sha256.New, g.key)
	m.Write([]byte("poosms register\x00"))
	m.Write([]byte(nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns the form token for the request's cookie, setting a new
// cookie when there is none (or when fresh is true). The cookie is Secure
// when the page was served over HTTPS (directly or by a trusted proxy).
func (g *csrfGuard) issue(w http.ResponseWriter, https bool, r *http.Request, fresh bool) string {
	if c, err := r.Cookie(csrfCookie); err == nil && !fresh && wellFormed(c.Value) {
		return g.mac(c.Value)
	}
	b := make([]byte, 24)
	rand.Read(b) // never fails (crypto/rand)
	nonce := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name:     csrfCookie,
		Value:    nonce,
		Path:     "/register",
		HttpOnly: true,
		Secure:   https,
		SameSite: http.SameSiteStrictMode,
	})
	return g.mac(nonce)
}

func (g *csrfGuard) valid(r *http.Request, token string) bool {
	c, err := r.Cookie(csrfCookie)
	if err != nil || !wellFormed(c.Value) || token == "" {
		return false
	}
	return hmac.Equal([]byte(token), []byte(g.mac(c.Value)))
}

func wellFormed(nonce string) bool {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	return err == nil && len(b) == 24
}

// limiter allows n attempts per key in each window, starting the window
// at the key's first attempt.
type limiter struct {
	n      int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	seen map[string]*attempts // guarded by mu
}

type attempts struct {
	start time.Time
	count int
}

// maxTracked bounds the limiter's memory: past it, a new key first drops
// expired keys, then arbitrary ones.
const maxTracked = 10000

func newLimiter(n int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{n: n, window: window, now: now, seen: make(map[string]*attempts)}
}

// allow counts an attempt by key and says whether it may proceed; if not,
// also how long until it may.
func (l *limiter) allow(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.now()
	a := l.seen[key]
	if a == nil || t.Sub(a.start) >= l.window {
		if a == nil && len(l.seen) >= maxTracked {
			for k, old := range l.seen {
				if t.Sub(old.start) >= l.window {
					delete(l.seen, k)
				}
			}
			for k := range l.seen { // still full: forget someone
				if len(l.seen) < maxTracked {
					break
				}
				delete(l.seen, k)
			}
		}
		a = &attempts{start: t}
		l.seen[key] = a
	}
	if a.count >= l.n {
		return false, a.start.Add(l.window).Sub(t)
	}
	a.count++
	return true, 0
}
