package web

import (
	"embed"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"strings"
)

// The browser client: plain ES modules and CSS, served as they are.
//
//go:embed client
var clientFS embed.FS

// clientCSP lets the client reach its own origin only (WebSocket
// included) and show camera, microphone and remote streams.
const clientCSP = "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; " +
	"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

// mountClient serves the client: its page at /, its files under
// /client/ and the web app manifest at /manifest.webmanifest.
func (s *Server) mountClient() error {
	files, err := fs.Sub(clientFS, "client")
	if err != nil {
		return fmt.Errorf("web: client files: %w", err)
	}
	index, err := fs.ReadFile(files, "index.html")
	if err != nil {
		return fmt.Errorf("web: client page: %w", err)
	}
	reg, link := "closed", ""
	if s.cfg.Registration {
		reg, link = "open", `<p class="help">Or use the <a href="/register">registration page</a>.</p>`
	}
	page := []byte(strings.NewReplacer("{{DOMAIN}}", html.EscapeString(s.cfg.Domain),
		"{{REGISTRATION}}", reg, "{{SIGNUP_LINK}}", link).Replace(string(index)))
	manifest, err := fs.ReadFile(files, "manifest.webmanifest")
	if err != nil {
		return fmt.Errorf("web: client manifest: %w", err)
	}
	fileServer := http.StripPrefix("/client/", http.FileServerFS(files))

	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", clientCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
		h.Set("Cache-Control", "no-cache")
		w.Write(page)
	})
	s.mux.HandleFunc("GET /manifest.webmanifest", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/manifest+json")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(manifest)
	})
	s.mux.Handle("GET /client/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/client/" || r.URL.Path == "/client/index.html" {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Revalidate each time: files change with the server binary.
		w.Header().Set("Cache-Control", "no-cache")
		fileServer.ServeHTTP(w, r)
	}))
	return nil
}
