package signaling

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/coder/websocket"

	"poosms.org/poosms/internal/clientaddr"
)

// WebSocketHandler serves XMPP over WebSocket (RFC 7395, subprotocol
// "xmpp"). A request that arrived over TLS, from a loopback address (a
// local client, or a TLS-terminating proxy on the same host), or through a
// trusted proxy that says the client used HTTPS counts as encrypted;
// others may not authenticate.
//
// Browsers may connect only from the page's own origin or one listed in
// WebSocketOrigins, so another site cannot open a stream with a visitor's
// browser; requests without Origin (native clients) are allowed.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !s.originAllowed(r, origin) {
			s.log.Info("websocket refused: foreign origin", "origin", origin, "remote", clientaddr.Key(s.proxies.Client(r)))
			http.Error(w, "this origin may not open XMPP streams here (see --websocket-origins)", http.StatusForbidden)
			return
		}
		// The address a trusted proxy names is the client's; the limits
		// count it, not the proxy.
		client := s.proxies.Client(r)
		pl, refused := s.admit(client)
		if refused != "" {
			s.metrics.refused.WithLabelValues("websocket", refused).Inc()
			s.log.Debug("websocket refused: "+refusals[refused], "remote", clientaddr.Key(client))
			w.Header().Set("Retry-After", "10")
			http.Error(w, refusals[refused], http.StatusTooManyRequests)
			return
		}
		upgraded := false
		defer func() {
			if !upgraded {
				pl.negotiating()
				pl.stream()
			}
		}()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols: []string{"xmpp"},
			// The origin was checked above, with the host a trusted
			// proxy forwarded; the library only knows r.Host.
			InsecureSkipVerify: true,
		})
		if err != nil {
			s.log.Debug("websocket upgrade failed", "err", err)
			return
		}
		if c.Subprotocol() != "xmpp" {
			_ = c.Close(websocket.StatusPolicyViolation, "the xmpp subprotocol is required")
			return
		}
		peer := clientaddr.Peer(r)
		var addr net.Addr = &net.TCPAddr{}
		if client.IsValid() {
			addr = &net.TCPAddr{IP: client.AsSlice()}
		}
		secure := r.TLS != nil || (peer.IsValid() && peer.IsLoopback()) || s.proxies.HTTPS(r)
		s.metrics.connections.WithLabelValues("websocket").Inc()
		upgraded = true
		sess := s.serve(newWSTransport(c, addr, r.TLS, s.cfg.MaxStanzaBytes, s.cfg.StanzaLimits, s.cfg.WriteTimeout), secure, pl)
		if sess == nil {
			return
		}
		// The handler returns at once; the session goroutine owns the socket.
	})
}

// originAllowed: the page's own origin (the Host asked for, or the one a
// trusted proxy forwarded), or one the operator listed: an exact origin
// ("https://app.example.org") or a host pattern ("*.example.org").
func (s *Server) originAllowed(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return false // "null" (sandboxed frames, files) and other schemes
	}
	if strings.EqualFold(u.Host, s.proxies.Host(r)) {
		return true
	}
	for _, allowed := range s.cfg.WebSocketOrigins {
		if strings.Contains(allowed, "://") {
			if strings.EqualFold(strings.TrimSuffix(allowed, "/"), u.Scheme+"://"+u.Host) {
				return true
			}
			continue
		}
		if ok, err := path.Match(strings.ToLower(allowed), strings.ToLower(u.Host)); err == nil && ok {
			return true
		}
	}
	return false
}
