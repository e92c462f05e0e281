package web

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
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
		`<script type="module" src="/client/app.js">`, `rel="manifest"`, `name="viewport"`, `lang="en"`,
		`<label for="login-username">`, `<label for="login-password">`, `href="/register"`,
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
