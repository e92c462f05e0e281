package upload

import (
	"crypto/hmac"
	"errors"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HTTPHandler serves PUT (upload to a signed slot URL), GET and HEAD
// (download) and OPTIONS (CORS preflight, so browser clients can upload).
// Mount it at the path of BaseURL, e.g. "/upload/", without stripping the
// prefix; a handler behind http.StripPrefix works too.
func (s *Service) HTTPHandler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, PUT, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization")
	h.Set("Access-Control-Max-Age", "86400")
	sl, ok := parseSlotPath(s.relativePath(r.URL.Path))
	switch {
	case r.Method == http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
	case !ok:
		http.NotFound(w, r)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		s.download(w, r, sl)
	case r.Method == http.MethodPut:
		s.upload(w, r, sl)
	default:
		h.Set("Allow", "GET, HEAD, PUT, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// relativePath is p below the base URL's path (or p without its leading
// slash, when a prefix was already stripped).
func (s *Service) relativePath(p string) string {
	if u, err := url.Parse(s.baseURL()); err == nil {
		if base := strings.TrimRight(u.Path, "/"); base != "" {
			if rest, ok := strings.CutPrefix(p, base+"/"); ok {
				return rest
			}
		}
	}
	return strings.TrimPrefix(p, "/")
}

// upload takes a PUT to a slot URL.
func (s *Service) upload(w http.ResponseWriter, r *http.Request, sl slot) {
	q := r.URL.Query()
	var err1, err2 error
	sl.expires, err1 = strconv.ParseInt(q.Get("expires"), 10, 64)
	sl.size, err2 = strconv.ParseInt(q.Get("size"), 10, 64)
	sl.typed = q.Has("type")
	sl.ctype = q.Get("type")
	if err1 != nil || err2 != nil || sl.size < 0 ||
		!hmac.Equal([]byte(q.Get("sig")), []byte(sl.signature(s.secret))) {
		http.Error(w, "this is not a valid upload URL", http.StatusForbidden)
		return
	}
	if s.now().Unix() > sl.expires {
		http.Error(w, "the upload slot has expired; ask for a new one", http.StatusForbidden)
		return
	}
	if s.slotRevoked(sl) {
		http.Error(w, "the account this upload slot was given to is deleted", http.StatusForbidden)
		return
	}
	if sl.size > s.maxBytes {
		http.Error(w, "the file is larger than the server accepts", http.StatusRequestEntityTooLarge)
		return
	}
	if r.ContentLength < 0 {
		http.Error(w, "Content-Length is required", http.StatusLengthRequired)
		return
	}
	if r.ContentLength != sl.size {
		http.Error(w, "Content-Length does not match the slot's size", http.StatusBadRequest)
		return
	}
	ctype := defaultType
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if n, err := normalizeType(ct); err == nil {
			ctype = n
		} else if sl.typed {
			http.Error(w, "Content-Type is not a media type", http.StatusBadRequest)
			return
		}
	}
	if sl.typed && ctype != sl.ctype {
		http.Error(w, "Content-Type does not match the slot's content type", http.StatusBadRequest)
		return
	}

	lock := s.userLock(sl.user)
	lock.Lock()
	used, err := s.usage(sl.user, false)
	if err != nil {
		lock.Unlock()
		s.log.Error("upload: measure quota", "user", sl.user, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if used.bytes+sl.size > s.quota {
		lock.Unlock()
		http.Error(w, "upload quota reached", http.StatusInsufficientStorage)
		return
	}
	if used.files >= s.maxFiles {
		lock.Unlock()
		http.Error(w, "upload file limit reached", http.StatusInsufficientStorage)
		return
	}
	s.reserve(sl.user, holding{bytes: sl.size, files: 1})
	lock.Unlock()
	defer s.reserve(sl.user, holding{bytes: -sl.size, files: -1})

	status, err := s.store(r.Body, sl, ctype)
	if err == nil && s.slotRevoked(sl) {
		// The account was deleted while the file was coming in; its
		// files went, and so does this one.
		lock.Lock()
		os.RemoveAll(s.slotDir(sl))
		lock.Unlock()
		status, err = http.StatusForbidden, errors.New("the account this upload slot was given to is deleted")
	}
	if err != nil {
		if status == http.StatusInternalServerError {
			s.log.Error("upload: store file", "user", sl.user, "err", err)
			http.Error(w, "internal error", status)
		} else {
			http.Error(w, err.Error(), status)
		}
		return
	}
	s.log.Debug("upload: stored", "user", sl.user, "slot", sl.id, "bytes", sl.size)
	w.WriteHeader(http.StatusCreated)
}

// errUsed is the answer to a second PUT on one slot.
var errUsed = errors.New("this slot has been used already")

// store writes body, which must be sl.size bytes, as sl's file. The slot's
// folder is created exclusively, so one slot takes one upload; a failed
// upload leaves nothing behind and the slot may be tried again while it is
// valid. On error it returns the HTTP status to answer.
func (s *Service) store(body io.Reader, sl slot, ctype string) (status int, err error) {
	if err := os.MkdirAll(filepath.Join(s.dir, sl.user), 0o700); err != nil {
		return http.StatusInternalServerError, err
	}
	dir := s.slotDir(sl)
	if err := os.Mkdir(dir, 0o700); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return http.StatusConflict, errUsed
		}
		return http.StatusInternalServerError, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := os.WriteFile(filepath.Join(dir, metaFile), []byte(ctype), 0o600); err != nil {
		return http.StatusInternalServerError, err
	}
	part := filepath.Join(dir, partFile)
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return http.StatusInternalServerError, err
	}
	n, err := io.Copy(f, io.LimitReader(body, sl.size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return http.StatusBadRequest, errors.New("the upload was cut short")
	}
	if n != sl.size {
		return http.StatusBadRequest, errors.New("the body does not match the slot's size")
	}
	if err := os.Rename(part, s.filePath(sl)); err != nil {
		return http.StatusInternalServerError, err
	}
	return 0, nil
}

// download serves a stored file. Files are served so that a browser never
// runs them as part of this site: no type sniffing, a sandboxing content
// security policy.
func (s *Service) download(w http.ResponseWriter, r *http.Request, sl slot) {
	f, err := os.Open(s.filePath(sl))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		http.NotFound(w, r)
		return
	}
	if s.expired(info) {
		os.RemoveAll(s.slotDir(sl))
		http.NotFound(w, r)
		return
	}
	ctype := defaultType
	if b, err := os.ReadFile(filepath.Join(s.slotDir(sl), metaFile)); err == nil && len(b) > 0 {
		ctype = string(b)
	}
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "public, max-age=604800, immutable")
	if cd := mime.FormatMediaType("inline", map[string]string{"filename": sl.name}); cd != "" {
		h.Set("Content-Disposition", cd)
	}
	http.ServeContent(w, r, "", info.ModTime(), f)
}

// reserve adds h (negative to release) to what user's uploads under way
// hold.
func (s *Service) reserve(user string, h holding) {
	s.reservedMu.Lock()
	defer s.reservedMu.Unlock()
	r := s.reserved[user]
	r.bytes += h.bytes
	r.files += h.files
	if r == (holding{}) {
		delete(s.reserved, user)
	} else {
		s.reserved[user] = r
	}
}
