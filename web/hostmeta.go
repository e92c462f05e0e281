package web

import (
	"encoding/json"
	"encoding/xml"
	"net/http"
)

// webSocketURL is the XMPP WebSocket endpoint as the client reached us:
// wss behind TLS (or a proxy that says so), the request's host.
func (s *Server) webSocketURL(r *http.Request) string {
	scheme := "ws"
	if r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "wss"
	}
	host := r.Host
	if host == "" {
		host = s.cfg.Domain
	}
	return scheme + "://" + host + "/xmpp-websocket"
}

const relWebSocket = "urn:xmpp:alt-connections:websocket"

// hostMeta serves XEP-0156 discovery of the WebSocket endpoint, in XRD
// (/.well-known/host-meta) and JSON (/.well-known/host-meta.json), so web
// clients given only a JID find where to connect.
func (s *Server) hostMeta(w http.ResponseWriter, r *http.Request) {
	href := s.webSocketURL(r)
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if r.URL.Path == "/.well-known/host-meta.json" {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"links": []map[string]string{{"rel": relWebSocket, "href": href}},
		})
		return
	}
	w.Header().Set("Content-Type", "application/xrd+xml")
	type link struct {
		Rel  string `xml:"rel,attr"`
		Href string `xml:"href,attr"`
	}
	doc := struct {
		XMLName xml.Name `xml:"http://docs.oasis-open.org/ns/xri/xrd-1.0 XRD"`
		Links   []link   `xml:"Link"`
	}{Links: []link{{relWebSocket, href}}}
	_, _ = w.Write([]byte(xml.Header))
	_ = xml.NewEncoder(w).Encode(doc)
}
