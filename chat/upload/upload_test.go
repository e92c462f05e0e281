package upload

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"poosms.org/poosms/internal/testfake"
	"poosms.org/poosms/stanza"
)

// fakeSession records what the service sends it.
type fakeSession = testfake.Session

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     *testing.T
	svc   *Service
	srv   *httptest.Server
	dir   string // Config.Dir
	root  string // its parent, where nothing may be written
	clock *clock
}

// newHarness serves an upload service at <httptest server>/upload/ on
// loopback; cfg's limits apply.
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, root: t.TempDir(), clock: &clock{t: time.Now().Truncate(time.Second)}}
	h.dir = filepath.Join(h.root, "uploads")
	mux := http.NewServeMux()
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	cfg.Domain = "upload.localhost"
	cfg.ServerDomain = "localhost"
	cfg.Dir = h.dir
	cfg.BaseURL = func() string { return h.srv.URL + "/upload" }
	cfg.Now = h.clock.Now
	cfg.Logger = slog.New(slog.DiscardHandler)
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.svc = svc
	mux.Handle("/upload/", svc.HTTPHandler())
	return h
}

func session(full string) *fakeSession { return testfake.NewSession(full) }

// iq sends raw as sess and returns the one reply.
func (h *harness) iq(sess *fakeSession, raw string) *stanza.Element {
	h.t.Helper()
	el, err := stanza.Parse([]byte(raw))
	if err != nil {
		h.t.Fatalf("parse %s: %v", raw, err)
	}
	h.svc.HandleStanza(context.Background(), sess, el)
	got := sess.Take()
	if len(got) != 1 {
		h.t.Fatalf("%s: %d replies, want 1", raw, len(got))
	}
	if got[0].ID() != el.ID() || got[0].To() != sess.JID().String() {
		h.t.Fatalf("reply %s does not answer %s", got[0], raw)
	}
	return got[0]
}

func requestIQ(name string, size int64, ctype string) string {
	ct := ""
	if ctype != "" {
		ct = ` content-type='` + stanza.Escape(ctype) + `'`
	}
	return `<iq type='get' id='slot' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='` +
		stanza.Escape(name) + `' size='` + strconv.FormatInt(size, 10) + `'` + ct + `/></iq>`
}

// slot asks for a slot and returns its PUT and GET URLs.
func (h *harness) slot(sess *fakeSession, name string, size int64, ctype string) (put, get string) {
	h.t.Helper()
	r := h.iq(sess, requestIQ(name, size, ctype))
	sl := r.Child(NSUpload, "slot")
	if r.IQType() != stanza.ResultIQ || sl == nil {
		h.t.Fatalf("slot request for %q: %s", name, r)
	}
	put, get = sl.Child(NSUpload, "put").Attr("url"), sl.Child(NSUpload, "get").Attr("url")
	if put == "" || get == "" {
		h.t.Fatalf("slot without URLs: %s", r)
	}
	if len(sl.Child(NSUpload, "put").Elements()) != 0 {
		h.t.Errorf("slot asks for PUT headers: %s", r)
	}
	return put, get
}

// condition returns the error condition of a reply, or "".
func condition(r *stanza.Element) string {
	if !r.IsError() {
		return ""
	}
	for _, c := range r.Child("", "error").Elements() {
		if c.Space == stanza.NSStanzas && c.Local != "text" {
			return c.Local
		}
	}
	return "?"
}

// put uploads body to u with the content type (none when "") and returns
// the status code.
func put(t *testing.T, u string, body []byte, ctype string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, u, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// get downloads u and returns the status, body and headers.
func get(t *testing.T, u string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, b, resp.Header
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestUploadRoundTrip(t *testing.T) {
	h := newHarness(t, Config{})
	alice := session("alice@localhost/phone")
	data := randomBytes(t, 300_000)
	putURL, getURL := h.slot(alice, "holiday photo.jpg", int64(len(data)), "image/JPEG")
	if !strings.HasPrefix(getURL, h.srv.URL+"/upload/alice/") || !strings.HasSuffix(getURL, "/holiday%20photo.jpg") {
		t.Errorf("GET URL = %s", getURL)
	}
	if st, _, _ := get(t, getURL); st != http.StatusNotFound {
		t.Errorf("GET before the upload = %d, want 404", st)
	}
	if st := put(t, putURL, data, "image/jpeg"); st != http.StatusCreated {
		t.Fatalf("PUT = %d, want 201", st)
	}
	st, body, hdr := get(t, getURL)
	if st != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("GET = %d with %d bytes, want 200 and the %d bytes uploaded", st, len(body), len(data))
	}
	if ct := hdr.Get("Content-Type"); ct != "image/jpeg" {
		t.Errorf("Content-Type = %q, want image/jpeg", ct)
	}
	if hdr.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(hdr.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("download headers let a browser run the file: %v", hdr)
	}
	if hdr.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("no CORS header: %v", hdr)
	}
	// The file is in alice's folder.
	matches, _ := filepath.Glob(filepath.Join(h.dir, "alice", "*", "holiday photo.jpg"))
	if len(matches) != 1 {
		t.Errorf("files in alice's folder: %v", matches)
	}
	// A second PUT to the same slot is refused and the file stays.
	if st := put(t, putURL, bytes.Repeat([]byte{'x'}, len(data)), "image/jpeg"); st != http.StatusConflict {
		t.Errorf("second PUT = %d, want 409", st)
	}
	if _, body, _ := get(t, getURL); !bytes.Equal(body, data) {
		t.Error("a second PUT changed the file")
	}
	// A range request works (resumed downloads).
	req, _ := http.NewRequest(http.MethodGet, getURL, nil)
	req.Header.Set("Range", "bytes=10-19")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	part, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(part, data[10:20]) {
		t.Errorf("range GET = %d %x", resp.StatusCode, part)
	}
	// Preflight for browser clients.
	req, _ = http.NewRequest(http.MethodOptions, putURL, nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Errorf("OPTIONS = %d %v", resp.StatusCode, resp.Header)
	}
}

func TestUntypedSlotAndEmptyFile(t *testing.T) {
	h := newHarness(t, Config{})
	alice := session("alice@localhost/phone")
	putURL, getURL := h.slot(alice, "notes", 0, "")
	if st := put(t, putURL, nil, "text/plain"); st != http.StatusCreated {
		t.Fatalf("PUT = %d", st)
	}
	st, body, hdr := get(t, getURL)
	if st != http.StatusOK || len(body) != 0 || hdr.Get("Content-Type") != "text/plain" {
		t.Errorf("GET = %d %q %q", st, body, hdr.Get("Content-Type"))
	}
}

func TestFileTooLarge(t *testing.T) {
	h := newHarness(t, Config{MaxFileBytes: 1000})
	alice := session("alice@localhost/phone")
	r := h.iq(alice, requestIQ("big.bin", 1001, "application/octet-stream"))
	if condition(r) != "not-acceptable" {
		t.Fatalf("oversized request = %s, want not-acceptable", r)
	}
	e := r.Child("", "error")
	if e.Attr("type") != "modify" {
		t.Errorf("error type = %q, want modify", e.Attr("type"))
	}
	tl := e.Child(NSUpload, "file-too-large")
	if tl == nil || tl.ChildText(NSUpload, "max-file-size") != "1000" {
		t.Errorf("no <file-too-large> with max-file-size 1000: %s", r)
	}
	// Exactly the limit is fine.
	h.slot(alice, "ok.bin", 1000, "")

	// Disco announces the limit.
	r = h.iq(alice, `<iq type='get' id='d' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>`)
	q := r.Child(NSDiscoInfo, "query")
	id := q.Child(NSDiscoInfo, "identity")
	if id == nil || id.Attr("category") != "store" || id.Attr("type") != "file" {
		t.Errorf("identity = %v", id)
	}
	var hasFeature bool
	for _, f := range q.Elements() {
		if f.Local == "feature" && f.Attr("var") == NSUpload {
			hasFeature = true
		}
	}
	if !hasFeature {
		t.Errorf("disco lacks %s: %s", NSUpload, r)
	}
	x := q.Child(NSData, "x")
	var max string
	for _, f := range x.Elements() {
		if f.Attr("var") == "max-file-size" {
			max = f.ChildText(NSData, "value")
		}
	}
	if max != "1000" {
		t.Errorf("disco max-file-size = %q, want 1000: %s", max, r)
	}
}

func TestQuota(t *testing.T) {
	h := newHarness(t, Config{QuotaBytes: 100})
	alice, bob := session("alice@localhost/a"), session("bob@localhost/b")
	p1, _ := h.slot(alice, "one", 60, "")
	// Both slots are given while nothing is stored yet.
	p2, _ := h.slot(alice, "two", 60, "")
	if st := put(t, p1, randomBytes(t, 60), ""); st != http.StatusCreated {
		t.Fatalf("first PUT = %d", st)
	}
	// Now the quota holds 60 of 100 bytes.
	r := h.iq(alice, requestIQ("three", 41, ""))
	if condition(r) != "resource-constraint" {
		t.Errorf("request over quota = %s, want resource-constraint", r)
	}
	if st := put(t, p2, randomBytes(t, 60), ""); st != http.StatusInsufficientStorage {
		t.Errorf("PUT over quota = %d, want 507", st)
	}
	h.slot(alice, "four", 40, "") // what is left still fits
	// Another user's quota is their own.
	h.slot(bob, "bobs", 100, "")
}

// TestFileLimit: a user keeps at most MaxFiles files, empty ones
// included, however small they are against the byte quota.
func TestFileLimit(t *testing.T) {
	h := newHarness(t, Config{MaxFiles: 3})
	alice, bob := session("alice@localhost/a"), session("bob@localhost/b")
	late, _ := h.slot(alice, "late", 0, "")
	for i := range 3 {
		p, _ := h.slot(alice, fmt.Sprintf("empty%d", i), 0, "")
		if st := put(t, p, nil, ""); st != http.StatusCreated {
			t.Fatalf("PUT of empty file %d = %d", i, st)
		}
	}
	r := h.iq(alice, requestIQ("fourth", 0, ""))
	if condition(r) != "resource-constraint" || !strings.Contains(r.String(), "3 of 3 files") {
		t.Errorf("a fourth file = %s, want resource-constraint naming the limit", r)
	}
	// A slot given before the limit was reached cannot take it past.
	if st := put(t, late, nil, ""); st != http.StatusInsufficientStorage {
		t.Errorf("PUT past the file limit = %d, want 507", st)
	}
	if n := countDirs(t, filepath.Join(h.dir, "alice")); n != 3 {
		t.Errorf("alice keeps %d files, want 3", n)
	}
	// Another user's files are their own.
	h.slot(bob, "bobs", 0, "")
}

func TestRetentionFreesQuota(t *testing.T) {
	h := newHarness(t, Config{QuotaBytes: 100, FileRetention: 24 * time.Hour})
	alice := session("alice@localhost/a")
	p, g := h.slot(alice, "old", 100, "")
	if st := put(t, p, randomBytes(t, 100), ""); st != http.StatusCreated {
		t.Fatalf("PUT = %d", st)
	}
	if r := h.iq(alice, requestIQ("new", 1, "")); condition(r) != "resource-constraint" {
		t.Fatalf("request with a full quota = %s", r)
	}
	// The file's time is the real one; the service's clock moves on.
	h.clock.Add(25 * time.Hour)
	if st, _, _ := get(t, g); st != http.StatusNotFound {
		t.Errorf("GET of an expired file = %d, want 404", st)
	}
	h.slot(alice, "new", 100, "")
}

func TestCrashLeftoversAndDeleteUser(t *testing.T) {
	h := newHarness(t, Config{QuotaBytes: 100})
	alice, bob := session("alice@localhost/a"), session("bob@localhost/b")
	p, g := h.slot(alice, "kept", 10, "")
	if st := put(t, p, randomBytes(t, 10), ""); st != http.StatusCreated {
		t.Fatalf("PUT = %d", st)
	}
	// An upload cut off by a crash: a slot folder with .meta and .part only.
	crashed := filepath.Join(h.dir, "alice", "0123456789abcdef0123456789abcdef")
	if err := os.MkdirAll(crashed, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(crashed, metaFile), []byte("text/plain"), 0o600)
	os.WriteFile(filepath.Join(crashed, partFile), make([]byte, 50), 0o600)
	h.slot(alice, "x", 1, "")
	if _, err := os.Stat(crashed); err != nil {
		t.Fatalf("a fresh leftover was removed: %v", err)
	}
	h.clock.Add(2 * time.Hour)
	h.slot(alice, "x", 1, "")
	if _, err := os.Stat(crashed); !os.IsNotExist(err) {
		t.Errorf("an hour-old leftover is still there: %v", err)
	}
	if st, _, _ := get(t, g); st != http.StatusOK {
		t.Errorf("the finished file went with the leftover: GET = %d", st)
	}

	pb, gb := h.slot(bob, "bobs", 10, "")
	put(t, pb, randomBytes(t, 10), "")
	if err := h.svc.DeleteUser("alice"); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if st, _, _ := get(t, g); st != http.StatusNotFound {
		t.Errorf("GET after DeleteUser = %d, want 404", st)
	}
	if st, _, _ := get(t, gb); st != http.StatusOK {
		t.Errorf("DeleteUser(alice) touched bob's file: GET = %d", st)
	}
	if err := h.svc.DeleteUser("nobody"); err != nil {
		t.Errorf("DeleteUser of a user without files: %v", err)
	}
}

// TestSlotsOfADeletedAccountRefused: an upload URL handed out before the
// account was deleted stores nothing afterwards, even once a new account
// has the name; the new account's own URLs work.
func TestSlotsOfADeletedAccountRefused(t *testing.T) {
	h := newHarness(t, Config{})
	alice := session("alice@localhost/a")
	old, oldGet := h.slot(alice, "old.txt", 5, "")
	kept, keptGet := h.slot(alice, "kept.txt", 5, "")
	if err := h.svc.DeleteUser("alice"); err != nil {
		t.Fatal(err)
	}
	if st := put(t, old, []byte("hello"), ""); st != http.StatusForbidden {
		t.Errorf("PUT to a slot of the deleted account = %d, want 403", st)
	}
	if st, _, _ := get(t, oldGet); st != http.StatusNotFound {
		t.Errorf("GET after the refused PUT = %d, want 404", st)
	}

	// The name is registered again: its slots work, the old ones do not.
	h.clock.Add(time.Second)
	fresh, freshGet := h.slot(alice, "new.txt", 5, "")
	if st := put(t, fresh, []byte("fresh"), ""); st != http.StatusCreated {
		t.Fatalf("PUT to the new account's slot = %d, want 201", st)
	}
	if st := put(t, kept, []byte("stale"), ""); st != http.StatusForbidden {
		t.Errorf("PUT to an old slot after the name was taken again = %d, want 403", st)
	}
	if st, _, _ := get(t, keptGet); st != http.StatusNotFound {
		t.Errorf("GET of the old slot = %d, want 404", st)
	}

	// A node that learns of a deletion after the name was taken again
	// refuses the old account's slots and keeps the new account's files.
	h.clock.Add(time.Second)
	before, beforeGet := h.slot(alice, "before.txt", 5, "")
	h.svc.RevokeSlots("alice", h.clock.Now())
	if st := put(t, before, []byte("stale"), ""); st != http.StatusForbidden {
		t.Errorf("PUT to a revoked slot = %d, want 403", st)
	}
	if st, _, _ := get(t, beforeGet); st != http.StatusNotFound {
		t.Errorf("GET of the revoked slot = %d, want 404", st)
	}
	if st, b, _ := get(t, freshGet); st != http.StatusOK || string(b) != "fresh" {
		t.Errorf("the new account's file after RevokeSlots: %d %q", st, b)
	}
	h.clock.Add(time.Second)
	after, afterGet := h.slot(alice, "after.txt", 5, "")
	if st := put(t, after, []byte("later"), ""); st != http.StatusCreated {
		t.Errorf("PUT to a slot handed out after the revocation = %d, want 201", st)
	}
	if st, _, _ := get(t, afterGet); st != http.StatusOK {
		t.Errorf("GET = %d", st)
	}
}

func TestExpiredSlotRefused(t *testing.T) {
	h := newHarness(t, Config{SlotTTL: time.Minute})
	alice := session("alice@localhost/a")
	p, g := h.slot(alice, "late.txt", 5, "text/plain")
	h.clock.Add(61 * time.Second)
	if st := put(t, p, []byte("hello"), "text/plain"); st != http.StatusForbidden {
		t.Errorf("PUT after the slot expired = %d, want 403", st)
	}
	if st, _, _ := get(t, g); st != http.StatusNotFound {
		t.Errorf("GET after a refused PUT = %d, want 404", st)
	}
}

func TestForgedSlotRefused(t *testing.T) {
	h := newHarness(t, Config{})
	alice := session("alice@localhost/a")
	p, _ := h.slot(alice, "a.txt", 5, "text/plain")
	u, err := url.Parse(p)
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(u *url.URL, q url.Values)) string {
		c := *u
		q := c.Query()
		f(&c, q)
		c.RawQuery = q.Encode()
		return c.String()
	}
	other, err := New(Config{Domain: "upload.localhost", ServerDomain: "localhost", Dir: t.TempDir(),
		BaseURL: func() string { return h.srv.URL + "/upload" }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	otherPut, _ := requestWith(t, other, alice, "a.txt", 5, "text/plain")
	for name, tc := range map[string]struct {
		url  string
		body string
		want int
	}{
		"bigger size":         {edit(func(_ *url.URL, q url.Values) { q.Set("size", "6") }), "hello!", http.StatusForbidden},
		"later expiry":        {edit(func(_ *url.URL, q url.Values) { q.Set("expires", "99999999999") }), "hello", http.StatusForbidden},
		"other type":          {edit(func(_ *url.URL, q url.Values) { q.Set("type", "text/html") }), "hello", http.StatusForbidden},
		"no signature":        {edit(func(_ *url.URL, q url.Values) { q.Del("sig") }), "hello", http.StatusForbidden},
		"other name":          {edit(func(u *url.URL, _ url.Values) { u.Path = strings.Replace(u.Path, "a.txt", "b.txt", 1) }), "hello", http.StatusForbidden},
		"other user":          {edit(func(u *url.URL, _ url.Values) { u.Path = strings.Replace(u.Path, "/alice/", "/bob/", 1) }), "hello", http.StatusForbidden},
		"another key":         {otherPut, "hello", http.StatusForbidden},
		"signature of a GET":  {strings.SplitN(p, "?", 2)[0], "hello", http.StatusForbidden},
		"malformed slot path": {h.srv.URL + "/upload/alice/xyz/a.txt?" + u.RawQuery, "hello", http.StatusNotFound},
	} {
		if st := put(t, tc.url, []byte(tc.body), "text/plain"); st != tc.want {
			t.Errorf("%s: PUT = %d, want %d", name, st, tc.want)
		}
	}
	if n := countFiles(t, h.dir); n != 0 {
		t.Errorf("%d files stored after forged PUTs", n)
	}
	// The genuine URL still works.
	if st := put(t, p, []byte("hello"), "text/plain"); st != http.StatusCreated {
		t.Errorf("genuine PUT = %d", st)
	}
}

// requestWith asks svc directly for a slot.
func requestWith(t *testing.T, svc *Service, sess *fakeSession, name string, size int64, ctype string) (string, string) {
	el, _ := stanza.Parse([]byte(requestIQ(name, size, ctype)))
	svc.HandleStanza(context.Background(), sess, el)
	got := sess.Take()
	r := got[len(got)-1]
	sl := r.Child(NSUpload, "slot")
	if sl == nil {
		t.Fatalf("no slot: %s", r)
	}
	return sl.Child(NSUpload, "put").Attr("url"), sl.Child(NSUpload, "get").Attr("url")
}

func TestPutMustMatchSlot(t *testing.T) {
	h := newHarness(t, Config{})
	alice := session("alice@localhost/a")
	p, g := h.slot(alice, "a.png", 10, "image/png")
	for name, tc := range map[string]struct {
		body  []byte
		ctype string
		want  int
	}{
		"shorter":      {make([]byte, 9), "image/png", http.StatusBadRequest},
		"longer":       {make([]byte, 11), "image/png", http.StatusBadRequest},
		"other type":   {make([]byte, 10), "text/html", http.StatusBadRequest},
		"no type":      {make([]byte, 10), "", http.StatusBadRequest},
		"invalid type": {make([]byte, 10), "image/", http.StatusBadRequest},
	} {
		if st := put(t, p, tc.body, tc.ctype); st != tc.want {
			t.Errorf("%s: PUT = %d, want %d", name, st, tc.want)
		}
		if st, _, _ := get(t, g); st != http.StatusNotFound {
			t.Errorf("%s: a refused PUT left a file (GET = %d)", name, st)
		}
	}
	if n := countFiles(t, h.dir); n != 0 {
		t.Errorf("%d files left after refused PUTs", n)
	}
	// The same type in another spelling is the same type; the slot still works.
	if st := put(t, p, make([]byte, 10), "IMAGE/PNG"); st != http.StatusCreated {
		t.Errorf("matching PUT = %d", st)
	}

	// A body shorter than its Content-Length (a dropped connection) leaves
	// nothing behind.
	p2, g2 := h.slot(alice, "b.bin", 1000, "")
	u, _ := url.Parse(p2)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "PUT "+u.RequestURI()+" HTTP/1.1\r\nHost: "+u.Host+"\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 500))
	// Half-close: the server reads the end of the body early and answers.
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("cut-short PUT: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("cut-short PUT = %d, want 400", resp.StatusCode)
	}
	if n := countDirs(t, filepath.Join(h.dir, "alice")); n != 1 {
		t.Errorf("alice has %d slot folders after a cut-short upload, want 1", n)
	}
	if st, _, _ := get(t, g2); st != http.StatusNotFound {
		t.Errorf("GET after a cut-short upload = %d", st)
	}
}

// countFiles counts the regular files below dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func countDirs(t *testing.T, dir string) int {
	entries, _ := os.ReadDir(dir)
	return len(entries)
}

func TestOnlyLocalUsers(t *testing.T) {
	h := newHarness(t, Config{})
	for _, from := range []string{"mallory@evil.example/x", "localhost", "upload.localhost"} {
		r := h.iq(session(from), requestIQ("a", 1, ""))
		if condition(r) != "forbidden" {
			t.Errorf("slot request from %s = %s, want forbidden", from, r)
		}
	}
	alice := session("alice@localhost/a")
	for _, tc := range []struct{ raw, want string }{
		{`<iq type='get' id='1' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' size='1'/></iq>`, "bad-request"},
		{`<iq type='get' id='2' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='a' size='-1'/></iq>`, "bad-request"},
		{`<iq type='get' id='3' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='a' size='x'/></iq>`, "bad-request"},
		{`<iq type='get' id='4' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='a' size='1' content-type='not a type'/></iq>`, "bad-request"},
		{`<iq type='set' id='5' to='upload.localhost'><request xmlns='urn:xmpp:http:upload:0' filename='a' size='1'/></iq>`, "bad-request"},
		{`<iq type='get' id='6' to='upload.localhost'><query xmlns='jabber:iq:version'/></iq>`, "service-unavailable"},
		{`<message id='7' to='upload.localhost'><body>hi</body></message>`, "service-unavailable"},
	} {
		if r := h.iq(alice, tc.raw); condition(r) != tc.want {
			t.Errorf("%s = %s, want %s", tc.raw, r, tc.want)
		}
	}
}

func TestNoPathTraversal(t *testing.T) {
	h := newHarness(t, Config{})
	secret := filepath.Join(h.root, "secret.txt")
	if err := os.WriteFile(secret, []byte("top secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Hostile file names stay one element inside the user's folder.
	for _, name := range []string{"../../secret.txt", `..\..\evil.txt`, "..", ".", ".hidden", "/etc/passwd",
		"a/../../b", ".meta", ".part", "x\x00y", "\u202etxt.exe", strings.Repeat("é", 200) + ".jpg"} {
		alice := session("alice@localhost/a")
		el := stanza.NewIQ(stanza.GetIQ).SetAttr("id", "x").SetAttr("to", "upload.localhost")
		el.Append(stanza.New(NSUpload, "request").SetAttr("filename", strings.ReplaceAll(name, "\x00", "")).SetAttr("size", "3"))
		h.svc.HandleStanza(context.Background(), alice, el)
		r := alice.Received()[0]
		sl := r.Child(NSUpload, "slot")
		if sl == nil {
			t.Errorf("no slot for %q: %s", name, r)
			continue
		}
		p, g := sl.Child(NSUpload, "put").Attr("url"), sl.Child(NSUpload, "get").Attr("url")
		if st := put(t, p, []byte("abc"), ""); st != http.StatusCreated {
			t.Errorf("PUT for %q = %d", name, st)
			continue
		}
		if st, body, _ := get(t, g); st != http.StatusOK || string(body) != "abc" {
			t.Errorf("GET for %q = %d %q", name, st, body)
		}
		u, _ := url.Parse(g)
		stored := strings.TrimPrefix(u.Path, "/upload/")
		parts := strings.Split(stored, "/")
		if len(parts) != 3 || parts[0] != "alice" || strings.HasPrefix(parts[2], ".") || len(parts[2]) > maxNameBytes {
			t.Errorf("name %q stored as %q", name, stored)
		}
		if _, err := os.Stat(filepath.Join(h.dir, filepath.FromSlash(stored))); err != nil {
			t.Errorf("name %q: file not at %s: %v", name, stored, err)
		}
	}
	// Localparts that are path elements get a hashed folder.
	for _, lp := range []string{"..", ".", "a/b", "ALICE", "x\\y"} {
		f := userFolder(lp)
		if !strings.HasPrefix(f, "~") || !validUser(f) {
			t.Errorf("userFolder(%q) = %q", lp, f)
		}
	}
	// Nothing was written beside the upload folder.
	entries, _ := os.ReadDir(h.root)
	if len(entries) != 2 {
		t.Errorf("files beside the upload folder: %v", entries)
	}
	// Hand-made GET paths cannot reach outside the folder.
	for _, p := range []string{
		"/upload/../secret.txt",
		"/upload/%2e%2e/secret.txt",
		"/upload/alice/%2e%2e/%2e%2e/secret.txt",
		"/upload/alice/00000000000000000000000000000000/..%2f..%2f..%2fsecret.txt",
		"/upload/..%2f..%2f/00000000000000000000000000000000/secret.txt",
		"/upload/~/00000000000000000000000000000000/secret.txt",
		"/upload/alice/00000000000000000000000000000000/.meta",
	} {
		req, _ := http.NewRequest(http.MethodGet, h.srv.URL+p, nil)
		req.URL.Opaque = p // send the path exactly as written
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK || bytes.Contains(body, []byte("top secret")) {
			t.Errorf("GET %s = %d %q", p, resp.StatusCode, body)
		}
	}
}

// TestHandlerAloneRefusesDotDot calls the handler without a ServeMux in
// front (which would clean the path), as a server mounting it directly would.
func TestHandlerAloneRefusesDotDot(t *testing.T) {
	h := newHarness(t, Config{})
	const id = "0123456789abcdef0123456789abcdef"
	if err := os.MkdirAll(filepath.Join(h.root, id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.root, id, "secret.txt"), []byte("top secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(h.dir, "alice", id), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		"/upload/../" + id + "/secret.txt",
		"/upload/alice/../../" + id + "/secret.txt",
		"/upload/alice/" + id + "/../../../" + id + "/secret.txt",
		"/upload/alice/" + id + "/..",
	} {
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
		req.URL.Path = p
		rec := httptest.NewRecorder()
		h.svc.HTTPHandler().ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "top secret") {
			t.Errorf("GET %s = %d %q, want 404", p, rec.Code, rec.Body.String())
		}
	}
}

func TestSafeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"photo.jpg", "photo.jpg"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\a\doc.pdf`, "doc.pdf"},
		{"..", "file"},
		{".bashrc", "bashrc"},
		{"a?b#c%d.txt", "a_b_c_d.txt"},
		{"tab\there", "tab_here"},
		{"no\u00a0break", "no break"},
		{"\u202egpj.exe", "_gpj.exe"},
		{"  spaced  ", "spaced"},
	} {
		if got := safeName(tc.in); got != tc.want {
			t.Errorf("safeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if got := safeName(tc.in); safeName(got) != got || !validName(got) {
			t.Errorf("safeName(%q) = %q is not stable", tc.in, got)
		}
	}
	long := safeName(strings.Repeat("日本", 100) + ".tar.gz")
	if len(long) > maxNameBytes || !strings.HasSuffix(long, ".gz") || !validName(long) {
		t.Errorf("long name = %q (%d bytes)", long, len(long))
	}
}

func TestNewValidates(t *testing.T) {
	base := func() string { return "http://127.0.0.1/upload" }
	dir := t.TempDir()
	for _, cfg := range []Config{
		{ServerDomain: "localhost", Dir: dir, BaseURL: base},
		{Domain: "upload.localhost", Dir: dir, BaseURL: base},
		{Domain: "upload.localhost", ServerDomain: "localhost", BaseURL: base},
		{Domain: "upload.localhost", ServerDomain: "localhost", Dir: dir},
		{Domain: "upload.localhost", ServerDomain: "localhost", Dir: dir, BaseURL: base, MaxFileBytes: -1},
		{Domain: "upload.localhost", ServerDomain: "localhost", Dir: dir, BaseURL: base, QuotaBytes: -1},
		{Domain: "upload.localhost", ServerDomain: "localhost", Dir: dir, BaseURL: base, SlotTTL: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	svc, err := New(Config{Domain: "upload.localhost", ServerDomain: "localhost", Dir: filepath.Join(dir, "a", "b"), BaseURL: base})
	if err != nil {
		t.Fatal(err)
	}
	if svc.maxBytes != DefaultMaxFileBytes || svc.quota != DefaultQuotaBytes || svc.ttl != DefaultSlotTTL {
		t.Errorf("defaults = %d %d %v", svc.maxBytes, svc.quota, svc.ttl)
	}
	if info, err := os.Stat(filepath.Join(dir, "a", "b")); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("upload folder: %v %v", info, err)
	}
}
