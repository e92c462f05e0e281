package signaling

import (
	"net"
	"net/http"

	"github.com/coder/websocket"
)

// WebSocketHandler serves XMPP over WebSocket (RFC 7395, subprotocol
// "xmpp"). A request that arrived over TLS, or from a loopback address (a
// local client, or a TLS-terminating proxy on the same host), counts as
// encrypted; others may not authenticate.
func (s *Server) WebSocketHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
			Subprotocols:   []string{"xmpp"},
			OriginPatterns: []string{"*"},
		})
		if err != nil {
			s.log.Debug("websocket upgrade failed", "err", err)
			return
		}
		if c.Subprotocol() != "xmpp" {
			_ = c.Close(websocket.StatusPolicyViolation, "the xmpp subprotocol is required")
			return
		}
		remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		var addr net.Addr = remote
		if remote == nil {
			addr = &net.TCPAddr{}
		}
		secure := r.TLS != nil || isLoopback(addr)
		s.metrics.connections.WithLabelValues("websocket").Inc()
		sess := s.serve(newWSTransport(c, addr, r.TLS, s.cfg.MaxStanzaBytes, s.cfg.StanzaLimits, s.cfg.WriteTimeout), secure)
		if sess == nil {
			return
		}
		// The handler returns at once; the session goroutine owns the socket.
	})
}
