package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
)

// asset is one static response prepared once: its bytes as they are and,
// for text, compressed with gzip and brotli. Only files without secrets
// are made assets (the client's code, styles, icons, its page and
// manifest): a response that carries a token, a password or anything a
// request can reflect is never compressed (BREACH).
type asset struct {
	name  string // for the content type and ServeContent
	ctype string
	etag  string // a strong ETag of the uncompressed bytes
	raw   []byte

	once sync.Once // compresses on the first request, not at start
	gz   []byte    // nil: not worth it, or not text
	br   []byte
}

// compressible says whether a content type is text that compresses.
func compressible(ctype string) bool {
	for _, p := range []string{"text/", "application/javascript", "application/json", "application/manifest+json", "image/svg+xml"} {
		if strings.HasPrefix(ctype, p) {
			return true
		}
	}
	return false
}

func newAsset(name, ctype string, raw []byte) *asset {
	if ctype == "" {
		ctype = mime.TypeByExtension(path.Ext(name))
	}
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	sum := sha256.Sum256(raw)
	return &asset{name: name, ctype: ctype, raw: raw, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// compress makes the gzip and brotli forms of a text asset.
func (a *asset) compress() {
	raw := a.raw
	if compressible(a.ctype) && len(raw) > 256 {
		var gz, br bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // the level is valid
		zw.Write(raw)
		zw.Close()
		bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
		bw.Write(raw)
		bw.Close()
		if gz.Len() < len(raw) {
			a.gz = gz.Bytes()
		}
		if br.Len() < len(raw) {
			a.br = br.Bytes()
		}
	}
}

// accepts reports whether the Accept-Encoding header value allows coding
// (a q of 0 refuses it; "*" stands for any coding not named).
func accepts(header, coding string) bool {
	star := false
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if k, v, ok := strings.Cut(strings.TrimSpace(params), "="); ok && strings.TrimSpace(strings.ToLower(k)) == "q" {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				q = f
			}
		}
		switch name {
		case coding:
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}

// serve answers r with the asset: the best encoding the client accepts,
// the ETag (conditional requests and ranges through ServeContent) and
// cacheControl.
func (a *asset) serve(w http.ResponseWriter, r *http.Request, cacheControl string) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Content-Type-Options", "nosniff")
	a.once.Do(a.compress)
	body, etag := a.raw, a.etag
	if a.gz != nil || a.br != nil {
		h.Add("Vary", "Accept-Encoding")
		ae := r.Header.Get("Accept-Encoding")
		switch {
		case a.br != nil && accepts(ae, "br"):
			body, etag = a.br, strings.TrimSuffix(a.etag, `"`)+`-br"`
			h.Set("Content-Encoding", "br")
		case a.gz != nil && accepts(ae, "gzip"):
			body, etag = a.gz, strings.TrimSuffix(a.etag, `"`)+`-gz"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(body))
}
