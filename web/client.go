package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
)

// The browser client: plain ES modules and CSS, served as they are.
//
//go:embed client
var clientFS embed.FS

// clientCSP lets the client reach its own origin only (WebSocket
// included), plus the upload service's origin when it has another one
// (files are sent there and pictures shown from there), and show camera,
// microphone and remote streams.
func clientCSP(upload string) string {
	if upload != "" {
		upload = " " + upload
	}
	return "default-src 'self'; connect-src 'self'" + upload + "; img-src 'self' data: blob:" + upload +
		"; media-src 'self' blob: mediastream:" + upload + "; worker-src 'self'; " +
		"style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
}

// uploadOrigin is the origin (scheme://host[:port]) of the upload base
// URL, or "" when there is none or it is not a plain http(s) origin that
// can stand in a CSP.
func uploadOrigin(base string) string {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	for _, c := range u.Host {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-:[]", c)) {
			return ""
		}
	}
	return u.Scheme + "://" + u.Host
}

// clientTypes are the content types of the client's files (others: by
// extension, from the system's table).
var clientTypes = map[string]string{
	".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".html": "text/html; charset=utf-8",
	".svg": "image/svg+xml", ".png": "image/png", ".webmanifest": "application/manifest+json",
}

// clientFiles are the client's files as assets, with the version that
// names them: a hash of every file, so a changed file is a new URL and
// each URL can be cached for good.
type clientFiles struct {
	version string
	assets  map[string]*asset // file name (no folder) -> asset
}

// clientAssets prepares the embedded files once per process: they are
// the same for every server, and compressing them takes a moment.
var clientAssets = sync.OnceValues(func() (*clientFiles, error) {
	files, err := fs.Sub(clientFS, "client")
	if err != nil {
		return nil, fmt.Errorf("web: client files: %w", err)
	}
	return loadClientFiles(files)
})

func loadClientFiles(files fs.FS) (*clientFiles, error) {
	cf := &clientFiles{assets: map[string]*asset{}}
	h := sha256.New()
	var names []string
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: client files: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(files, n)
		if err != nil {
			return nil, fmt.Errorf("web: client file %s: %w", n, err)
		}
		a := newAsset(n, clientTypes[path.Ext(n)], b)
		cf.assets[n] = a
		fmt.Fprintf(h, "%s %s\n", n, a.etag)
	}
	cf.version = hex.EncodeToString(h.Sum(nil)[:8])
	return cf, nil
}

// mountClient serves the client: its page at /, its files under
// /client/v/VERSION/ (cached for a year: the version changes with any
// file) and under /client/ (revalidated), its service worker at /sw.js
// and the web app manifest at /manifest.webmanifest.
func (s *Server) mountClient() error {
	cf, err := clientAssets()
	if err != nil {
		return err
	}
	index, manifest, worker := cf.assets["index.html"], cf.assets["manifest.webmanifest"], cf.assets["sw.js"]
	if index == nil || manifest == nil || worker == nil {
		return fmt.Errorf("web: client page, manifest or service worker missing")
	}
	assets := "/client/v/" + cf.version
	reg, link := "closed", ""
	if s.cfg.Registration {
		reg, link = "open", `<p class="help">Or use the <a href="/register">registration page</a>.</p>`
	}
	origin := uploadOrigin(s.cfg.UploadURL)
	page := newAsset("index.html", "text/html; charset=utf-8", []byte(strings.NewReplacer(
		"{{DOMAIN}}", html.EscapeString(s.cfg.Domain),
		"{{REGISTRATION}}", reg, "{{SIGNUP_LINK}}", link,
		"{{ASSETS}}", assets, "{{UPLOAD}}", html.EscapeString(origin),
	).Replace(string(index.raw))))
	// The shell the service worker keeps: the page and every file it loads.
	shell := []string{"/"}
	for _, n := range []string{"app.js", "xmpp.js", "call.js", "app.css", "icon.svg"} {
		shell = append(shell, assets+"/"+n)
	}
	for n := range cf.assets {
		if strings.HasSuffix(n, ".js") && n != "sw.js" && !slices.Contains(shell, assets+"/"+n) {
			shell = append(shell, assets+"/"+n)
		}
	}
	sort.Strings(shell[1:])
	list, _ := json.Marshal(shell) // strings always marshal
	sw := newAsset("sw.js", "text/javascript; charset=utf-8", []byte(strings.NewReplacer(
		`"{{VERSION}}"`, `"`+cf.version+`"`, `["{{SHELL}}"]`, string(list)).Replace(string(worker.raw))))

	csp := clientCSP(origin)
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Permissions-Policy", "camera=(self), microphone=(self), display-capture=(self)")
		page.serve(w, r, "no-cache")
	})
	s.mux.HandleFunc("GET /sw.js", func(w http.ResponseWriter, r *http.Request) {
		sw.serve(w, r, "no-cache")
	})
	s.mux.HandleFunc("GET /manifest.webmanifest", func(w http.ResponseWriter, r *http.Request) {
		manifest.serve(w, r, "no-cache")
	})
	file := func(w http.ResponseWriter, r *http.Request, name, cacheControl string) {
		a := cf.assets[name]
		if a == nil || name == "index.html" || name == "sw.js" {
			http.NotFound(w, r)
			return
		}
		a.serve(w, r, cacheControl)
	}
	s.mux.HandleFunc("GET /client/v/{version}/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("version") != cf.version {
			// Another server version's file: not this one's bytes under
			// that name, or they would be cached as such for a year.
			http.NotFound(w, r)
			return
		}
		file(w, r, r.PathValue("name"), "public, max-age=31536000, immutable")
	})
	s.mux.HandleFunc("GET /client/", func(w http.ResponseWriter, r *http.Request) {
		name := strings.TrimPrefix(r.URL.Path, "/client/")
		if name == "" || name == "index.html" {
			http.Redirect(w, r, "/", http.StatusMovedPermanently)
			return
		}
		// Revalidate each time (the ETag makes that cheap): these names
		// stay the same when the files change.
		file(w, r, name, "no-cache")
	})
	return nil
}
