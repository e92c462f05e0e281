package web

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

func TestClientIsTheStartPage(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	resp, body := get(t, c, e.ts.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{
		`<meta name="poosms-domain" content="example.org">`, `<meta name="poosms-registration" content="open">`,
		`<script type="module" src="/client/v/`, `rel="manifest"`, `name="viewport"`, `lang="en"`,
		`<label for="login-username"`, `<label for="login-password"`, `href="/register"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("client page lacks %s", want)
		}
	}
	if strings.Contains(body, "{{") {
		t.Error("client page has an unfilled placeholder")
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("client CSP %q", csp)
	}

	for path, ctype := range map[string]string{
		"/client/app.js": "text/javascript", "/client/xmpp.js": "text/javascript", "/client/call.js": "text/javascript",
		"/client/app.css": "text/css", "/client/icon.svg": "image/svg+xml",
		"/client/icon-192.png": "image/png", "/client/icon-512.png": "image/png",
	} {
		resp, body := get(t, c, e.ts.URL+path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || body == "" {
			t.Errorf("%s: %s %q, want 200 %s", path, resp.Status, resp.Header.Get("Content-Type"), ctype)
		}
	}
}

func TestClientClosedRegistrationHidesSignUp(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Registration = false })
	_, body := get(t, browser(t), e.ts.URL+"/")
	if !strings.Contains(body, `<meta name="poosms-registration" content="closed">`) {
		t.Error("client page does not say registration is closed")
	}
}

func TestClientManifestMakesItInstallable(t *testing.T) {
	e := newEnv(t, nil)
	c := browser(t)
	resp, body := get(t, c, e.ts.URL+"/manifest.webmanifest")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/manifest+json" {
		t.Fatalf("manifest: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	var m struct {
		Name, StartURL, Display string
		Icons                   []struct{ Src, Sizes, Type string }
	}
	if err := json.Unmarshal([]byte(strings.NewReplacer(`"start_url"`, `"StartURL"`).Replace(body)), &m); err != nil {
		t.Fatal(err)
	}
	if m.Name == "" || m.StartURL != "/" || m.Display != "standalone" {
		t.Errorf("manifest %+v", m)
	}
	sizes := map[string]bool{}
	for _, i := range m.Icons {
		if resp, _ := get(t, c, e.ts.URL+i.Src); resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != i.Type {
			t.Errorf("icon %s: %s %s", i.Src, resp.Status, resp.Header.Get("Content-Type"))
		}
		sizes[i.Sizes] = true
	}
	if !sizes["192x192"] || !sizes["512x512"] {
		t.Errorf("installable apps need 192 and 512 pixel icons; have %v", sizes)
	}
	if resp, _ := get(t, c, e.ts.URL+"/client/nope.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing client file: %s", resp.Status)
	}
}

// fetch GETs u with the given request headers and returns the response and
// the body exactly as sent (no transparent decompression).
func fetch(t *testing.T, u string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

var assetsRE = regexp.MustCompile(`src="(/client/v/[0-9a-f]{16})/app.js"`)

// TestClientFilesCompressedAndCached: the client's files come compressed
// (brotli, else gzip) under a versioned path cached for a year, with ETags
// that make a second visit a 304; pages with secrets are never compressed.
func TestClientFilesCompressedAndCached(t *testing.T) {
	e := newEnv(t, nil)
	_, page := fetch(t, e.ts.URL+"/", "Accept-Encoding", "identity")
	m := assetsRE.FindSubmatch(page)
	if m == nil {
		t.Fatalf("the page names no versioned app.js:\n%s", page)
	}
	base := e.ts.URL + string(m[1])
	plainResp, plain := fetch(t, e.ts.URL+"/client/app.js", "Accept-Encoding", "identity")
	if plainResp.Header.Get("Content-Encoding") != "" || !strings.Contains(plainResp.Header.Get("Cache-Control"), "no-cache") || plainResp.Header.Get("ETag") == "" {
		t.Fatalf("unversioned app.js: %v", plainResp.Header)
	}
	for _, tc := range []struct{ accept, want string }{
		{"gzip, deflate, br", "br"}, {"gzip", "gzip"}, {"br;q=0, gzip;q=0.5", "gzip"}, {"identity", ""}, {"*", "br"}, {"gzip;q=0, br;q=0", ""},
	} {
		resp, body := fetch(t, base+"/app.js", "Accept-Encoding", tc.accept)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Encoding") != tc.want {
			t.Fatalf("Accept-Encoding %q: %s Content-Encoding %q, want %q", tc.accept, resp.Status, resp.Header.Get("Content-Encoding"), tc.want)
		}
		if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "max-age=31536000") || !strings.Contains(cc, "immutable") {
			t.Errorf("versioned file Cache-Control %q", cc)
		}
		if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Errorf("headers %v", resp.Header)
		}
		var r io.Reader = bytes.NewReader(body)
		switch tc.want {
		case "br":
			r = brotli.NewReader(r)
		case "gzip":
			zr, err := gzip.NewReader(r)
			if err != nil {
				t.Fatal(err)
			}
			r = zr
		}
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s body does not decode to app.js (%v)", tc.want, err)
		}
		if tc.want != "" && len(body) >= len(plain) {
			t.Errorf("%s: %d bytes, not smaller than %d", tc.want, len(body), len(plain))
		}
		// The next visit revalidates for nothing.
		again, _ := fetch(t, base+"/app.js", "Accept-Encoding", tc.accept, "If-None-Match", resp.Header.Get("ETag"))
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("If-None-Match %s: %s, want 304", resp.Header.Get("ETag"), again.Status)
		}
	}
	// Another version's path is not these bytes.
	if resp, _ := fetch(t, e.ts.URL+"/client/v/0123456789abcdef/app.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown version: %s", resp.Status)
	}
	if resp, _ := fetch(t, base+"/sw.js"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the service worker under the versioned path: %s", resp.Status)
	}
	// Pages and answers that carry a secret (a form token) or depend on the
	// request are never compressed.
	for _, path := range []string{"/register", "/healthz", "/welcome"} {
		resp, _ := fetch(t, e.ts.URL+path, "Accept-Encoding", "gzip, br")
		if enc := resp.Header.Get("Content-Encoding"); enc != "" {
			t.Errorf("%s is sent with Content-Encoding %q", path, enc)
		}
	}
}

// TestClientServiceWorker: /sw.js names this version's shell, and is
// revalidated on every visit so a new version reaches people.
func TestClientServiceWorker(t *testing.T) {
	e := newEnv(t, nil)
	_, page := fetch(t, e.ts.URL+"/")
	base := string(assetsRE.FindSubmatch(page)[1])
	resp, body := fetch(t, e.ts.URL+"/sw.js", "Accept-Encoding", "identity")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(resp.Header.Get("Cache-Control"), "no-cache") {
		t.Fatalf("/sw.js: %s %v", resp.Status, resp.Header)
	}
	sw := string(body)
	for _, want := range []string{`"` + strings.TrimPrefix(base, "/client/v/") + `"`, `"/"`, `"` + base + `/app.js"`, `"` + base + `/xmpp.js"`, `"` + base + `/app.css"`, `"` + base + `/lang-fr.js"`} {
		if !strings.Contains(sw, want) {
			t.Errorf("the service worker lacks %s", want)
		}
	}
	if strings.Contains(sw, "{{") {
		t.Error("the service worker has an unfilled placeholder")
	}
}

// TestClientPolicyAllowsTheUploadOrigin: files go to, and pictures come
// from, the upload service's origin and no other; a hostile setting cannot
// widen the policy.
func TestClientPolicyAllowsTheUploadOrigin(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UploadURL = "https://files.example.org:8443/upload" })
	resp, page := fetch(t, e.ts.URL+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"connect-src 'self' https://files.example.org:8443;", "img-src 'self' data: blob: https://files.example.org:8443;"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if !bytes.Contains(page, []byte(`<meta name="poosms-upload" content="https://files.example.org:8443">`)) {
		t.Error("the page does not name the upload origin")
	}
	e = newEnv(t, func(c *Config) { c.UploadURL = "https://evil.example; script-src *" })
	resp, _ = fetch(t, e.ts.URL+"/")
	if csp := resp.Header.Get("Content-Security-Policy"); strings.Contains(csp, "evil") || strings.Contains(csp, "script-src *") {
		t.Errorf("a hostile upload URL reached the CSP: %q", csp)
	}
}
