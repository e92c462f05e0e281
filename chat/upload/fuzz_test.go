package upload

import (
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzSafeName: the name a client asks for becomes one harmless path
// element, and the slot path built from it parses back to the same slot.
func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"photo.jpg", "../../etc/passwd", `C:\x\y.txt`, ".hidden", "a\u202ething.exe", " . ", "", "%2e%2e", "x#y?z",
		strings.Repeat("é", 100) + ".jpeg", strings.Repeat("a", 200) + "." + strings.Repeat("b", 20), "\xff\xfe.png"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n := safeName(name)
		if n == "" || strings.ContainsAny(n, `/\`) || n == ".." || strings.HasPrefix(n, ".") || !utf8.ValidString(n) || len(n) > maxNameBytes+16 {
			t.Fatalf("%q became %q", name, n)
		}
		if safeName(n) != n {
			t.Fatalf("safeName is not idempotent: %q → %q → %q", name, n, safeName(n))
		}
		sl := slot{user: userFolder("alice"), id: strings.Repeat("ab", 16), name: n}
		p, err := url.PathUnescape(sl.escapedPath())
		if err != nil {
			t.Fatal(err)
		}
		back, ok := parseSlotPath(p)
		if !ok || back != sl {
			t.Fatalf("slot path %q for %q parses to %+v (%v)", p, n, back, ok)
		}
	})
}

// FuzzUploadHTTP sends requests with any method, path, query and
// Content-Type to the upload endpoint. Nothing is a server error, a file
// is stored only for a correctly signed PUT, and every file stays a
// <user>/<slot>/<name> inside the upload folder.
func FuzzUploadHTTP(f *testing.F) {
	dir := f.TempDir()
	now := time.Unix(1700000000, 0)
	svc, err := New(Config{Domain: "upload.localhost", ServerDomain: "localhost", Dir: filepath.Join(dir, "files"),
		BaseURL: func() string { return "https://localhost/upload" }, Secret: []byte("fuzz-secret"),
		MaxFileBytes: 64, QuotaBytes: 1 << 20, MaxFiles: 1 << 20,
		Now: func() time.Time { return now }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	sl := slot{user: "alice", id: strings.Repeat("0f", 16), name: "a.txt", size: 5, expires: now.Unix() + 60, typed: true, ctype: "text/plain"}
	signed := func(sl slot) string {
		return url.Values{"expires": {strconv.FormatInt(sl.expires, 10)}, "size": {strconv.FormatInt(sl.size, 10)},
			"type": {sl.ctype}, "sig": {sl.signature(svc.secret)}}.Encode()
	}
	for _, s := range [][4]string{
		{"PUT", "/upload/" + sl.escapedPath(), signed(sl), "text/plain"},
		{"PUT", "/upload/" + sl.escapedPath(), signed(sl), "image/png"},
		{"GET", "/upload/" + sl.escapedPath(), "", ""},
		{"HEAD", "/upload/" + sl.escapedPath(), "", ""},
		{"OPTIONS", "/upload/x", "", ""},
		{"PUT", "/upload/alice/" + sl.id + "/..%2f..%2fx", signed(sl), ""},
		{"PUT", "/upload/alice/" + sl.id + "/a.txt", "expires=1&size=-1&sig=x", ""},
		{"DELETE", "/upload/" + sl.escapedPath(), "", ""},
		{"GET", "/upload/~00112233445566778899aabbccddeeff/" + sl.id + "/a.txt", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], []byte("hello"))
	}
	f.Fuzz(func(t *testing.T, method, path, query, ctype string, body []byte) {
		u := &url.URL{Scheme: "https", Host: "localhost", Path: path, RawQuery: query}
		if !validMethod(method) {
			return
		}
		r := httptest.NewRequest(method, "https://localhost/", strings.NewReader(string(body)))
		r.URL = u
		r.ContentLength = int64(len(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		w := httptest.NewRecorder()
		svc.HTTPHandler().ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%s: %d %s", method, path, query, w.Code, w.Body)
		}
		if method == http.MethodPut && w.Code == http.StatusCreated {
			got, ok := parseSlotPath(svc.relativePath(path))
			q := u.Query()
			got.expires, _ = strconv.ParseInt(q.Get("expires"), 10, 64)
			got.size, _ = strconv.ParseInt(q.Get("size"), 10, 64)
			got.typed, got.ctype = q.Has("type"), q.Get("type")
			if !ok || q.Get("sig") != got.signature(svc.secret) {
				t.Fatalf("PUT %s?%s stored a file without a valid signature", path, query)
			}
		}
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join(dir, "files"), p)
			parts := strings.Split(rel, string(filepath.Separator))
			if len(parts) != 3 || !validUser(parts[0]) || !isHex(parts[1], 32) || !validName(parts[2]) && parts[2] != metaFile {
				t.Fatalf("after %s %s?%s, a file at %s", method, path, query, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// validMethod is what net/http accepts as a method: a token.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, c := range []byte(m) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}
