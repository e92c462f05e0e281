// Package upload is poosms's file sharing: HTTP File Upload (XEP-0363) on
// upload.DOMAIN. A local user asks the service for a slot over XMPP and
// gets a signed, short-lived PUT URL and a GET URL; the service's HTTP
// handler, mounted on poosmsd's web server, takes the upload, checks it
// against the slot, keeps the file in a folder per user under a size limit
// and a per-user quota, and serves it to anyone who has the GET URL.
package upload

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"mime"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"mellium.im/xmpp/jid"

	"poosms.org/poosms/chat/component"
	"poosms.org/poosms/stanza"
)

// Namespaces the service implements or reads.
const (
	NSUpload     = "urn:xmpp:http:upload:0"
	NSData       = "jabber:x:data"
	NSDiscoInfo  = "http://jabber.org/protocol/disco#info"
	NSDiscoItems = "http://jabber.org/protocol/disco#items"
)

// Defaults for Config.
const (
	DefaultMaxFileBytes = 100 << 20 // 100 MiB
	DefaultQuotaBytes   = 1 << 30   // 1 GiB
	DefaultMaxFiles     = 1000
	DefaultSlotTTL      = 5 * time.Minute
)

// defaultType is the content type of a file whose slot named none.
const defaultType = "application/octet-stream"

// Session is one bound client stream. chat.Session and *signaling.Session
// satisfy it.
type Session interface {
	// JID is the session's full JID.
	JID() jid.JID
	// Send queues a stanza for the client without blocking.
	Send(el *stanza.Element) error
}

// Config configures the upload service.
type Config struct {
	// Domain is the service's domain, e.g. "upload.localhost". Required.
	Domain string
	// ServerDomain is the server's own domain, e.g. "localhost". Only its
	// users may upload. Required.
	ServerDomain string
	// Dir is the folder the files are kept in, one subfolder per user.
	// It is created (0700) if missing. Required.
	Dir string
	// BaseURL returns the public URL the HTTP handler is reached at, e.g.
	// "https://chat.example.org:5281/upload", with no trailing slash
	// needed. It is called for every slot, so it may change while the
	// server runs. Required.
	BaseURL func() string
	// MaxFileBytes is the largest file accepted. Default 100 MiB.
	MaxFileBytes int64
	// QuotaBytes is how much one user may keep stored in all. Default 1 GiB.
	QuotaBytes int64
	// MaxFiles is how many files one user may keep stored, empty ones and
	// uploads under way included. Default 1000.
	MaxFiles int
	// SlotTTL is how long a PUT URL stays valid. Default 5 minutes.
	SlotTTL time.Duration
	// FileRetention is how long a file is kept; 0 keeps files until an
	// operator removes them. Expired files of a user are removed when
	// that user next asks for a slot, so they stop counting against the
	// quota.
	FileRetention time.Duration
	// Secret is the HMAC key signing PUT URLs; every node serving the same
	// Dir needs the same one. Default: 32 random bytes (slots given out
	// before a restart are then refused after it).
	Secret []byte
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the service's logs. Default slog.Default().
	Logger *slog.Logger
}

// Service hands out upload slots and serves uploads and downloads. It is
// safe for concurrent use and starts no goroutine.
type Service struct {
	domain    string
	server    string
	dir       string
	baseURL   func() string
	maxBytes  int64
	quota     int64
	maxFiles  int
	ttl       time.Duration
	retention time.Duration
	secret    []byte
	now       func() time.Time
	log       *slog.Logger

	// userLocks serialise the quota check and reservation of one user's
	// uploads (by hash of the user's folder name); reservedMu guards
	// reserved, the uploads under way per user folder.
	userLocks  [32]sync.Mutex
	reservedMu sync.Mutex
	reserved   map[string]holding

	// revokedMu guards revoked: user folder → slots handed out up to this
	// time are refused (the account was deleted; see RevokeSlots).
	revokedMu sync.Mutex
	revoked   map[string]time.Time
}

// holding is what a user keeps, or reserves for uploads under way.
type holding struct {
	bytes int64
	files int
}

// New validates cfg, fills in defaults and creates the upload folder.
func New(cfg Config) (*Service, error) {
	d, err := jid.Parse(cfg.Domain)
	if cfg.Domain == "" || err != nil || d.Localpart() != "" || d.Resourcepart() != "" {
		return nil, fmt.Errorf("upload: invalid domain %q", cfg.Domain)
	}
	sd, err := jid.Parse(cfg.ServerDomain)
	if cfg.ServerDomain == "" || err != nil || sd.Localpart() != "" || sd.Resourcepart() != "" {
		return nil, fmt.Errorf("upload: invalid server domain %q", cfg.ServerDomain)
	}
	if cfg.Dir == "" {
		return nil, errors.New("upload: no folder for the files")
	}
	if cfg.BaseURL == nil {
		return nil, errors.New("upload: no base URL")
	}
	switch {
	case cfg.MaxFileBytes < 0:
		return nil, fmt.Errorf("upload: max file size %d is negative", cfg.MaxFileBytes)
	case cfg.QuotaBytes < 0:
		return nil, fmt.Errorf("upload: quota %d is negative", cfg.QuotaBytes)
	case cfg.MaxFiles < 0:
		return nil, fmt.Errorf("upload: file limit %d is negative", cfg.MaxFiles)
	case cfg.SlotTTL < 0:
		return nil, fmt.Errorf("upload: slot lifetime %v is negative", cfg.SlotTTL)
	case cfg.FileRetention < 0:
		return nil, fmt.Errorf("upload: file retention %v is negative", cfg.FileRetention)
	}
	s := &Service{
		domain:    d.Domainpart(),
		server:    sd.Domainpart(),
		dir:       cfg.Dir,
		baseURL:   cfg.BaseURL,
		maxBytes:  cfg.MaxFileBytes,
		quota:     cfg.QuotaBytes,
		maxFiles:  cfg.MaxFiles,
		ttl:       cfg.SlotTTL,
		retention: cfg.FileRetention,
		secret:    cfg.Secret,
		now:       cfg.Now,
		log:       cfg.Logger,
		reserved:  make(map[string]holding),
		revoked:   make(map[string]time.Time),
	}
	if s.maxBytes == 0 {
		s.maxBytes = DefaultMaxFileBytes
	}
	if s.quota == 0 {
		s.quota = DefaultQuotaBytes
	}
	if s.maxFiles == 0 {
		s.maxFiles = DefaultMaxFiles
	}
	if s.ttl == 0 {
		s.ttl = DefaultSlotTTL
	}
	if len(s.secret) == 0 {
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, fmt.Errorf("upload: generate secret: %w", err)
		}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, fmt.Errorf("upload: create folder: %w", err)
	}
	return s, nil
}

// Domain is the service's domain.
func (s *Service) Domain() string { return s.domain }

// HandleStanza answers one stanza sess sent to the service's domain.
func (s *Service) HandleStanza(ctx context.Context, sess Session, el *stanza.Element) {
	el.SetAttr("from", sess.JID().String())
	typ := el.Type()
	q, reply := component.Request(el, sess.JID(), s.domain, s.server, component.Refusals{
		Message:  "the upload service takes slot requests, not messages",
		Stranger: "only this server's users may upload files",
	})
	if reply != nil {
		s.reply(sess, reply)
	}
	if q == nil {
		return
	}
	get := typ == "get"
	var r *stanza.Element
	switch {
	case q.Space == NSDiscoInfo && q.Local == "query" && get:
		if q.Attr("node") != "" {
			r = stanza.ErrorReply(el, stanza.ItemNotFound, "")
		} else {
			r = stanza.Result(el, s.discoInfo())
		}
	case q.Space == NSDiscoItems && q.Local == "query" && get:
		if q.Attr("node") != "" {
			r = stanza.ErrorReply(el, stanza.ItemNotFound, "")
		} else {
			r = stanza.Result(el, stanza.New(NSDiscoItems, "query"))
		}
	case q.Space == NSUpload && q.Local == "request" && get:
		r = s.requestSlot(ctx, sess, el, q)
	case q.Space == NSDiscoInfo || q.Space == NSDiscoItems || q.Space == NSUpload:
		r = stanza.ErrorReply(el, stanza.BadRequest, "")
	default:
		r = stanza.ErrorReply(el, stanza.ServiceUnavailable, "")
	}
	s.reply(sess, r)
}

// discoInfo is the service's disco#info with the size limit (XEP-0363 §3
// with a XEP-0128 form).
func (s *Service) discoInfo() *stanza.Element {
	q := stanza.New(NSDiscoInfo, "query")
	q.Append(stanza.New(NSDiscoInfo, "identity").
		SetAttr("category", "store").
		SetAttr("type", "file").
		SetAttr("name", "HTTP File Upload"))
	for _, f := range []string{NSDiscoInfo, NSDiscoItems, NSUpload} {
		q.Append(stanza.New(NSDiscoInfo, "feature").SetAttr("var", f))
	}
	q.Append(stanza.New(NSData, "x").SetAttr("type", "result").Append(
		stanza.New(NSData, "field").SetAttr("var", "FORM_TYPE").SetAttr("type", "hidden").Append(
			stanza.New(NSData, "value").SetText(NSUpload)),
		stanza.New(NSData, "field").SetAttr("var", "max-file-size").Append(
			stanza.New(NSData, "value").SetText(strconv.FormatInt(s.maxBytes, 10))),
	))
	return q
}

// requestSlot answers a slot request (XEP-0363 §4, errors §5).
func (s *Service) requestSlot(ctx context.Context, sess Session, iq, req *stanza.Element) *stanza.Element {
	name := req.Attr("filename")
	if name == "" {
		return stanza.ErrorReply(iq, stanza.BadRequest, "the request names no file")
	}
	size, err := strconv.ParseInt(req.Attr("size"), 10, 64)
	if err != nil || size < 0 {
		return stanza.ErrorReply(iq, stanza.BadRequest, "the size is not a number of bytes")
	}
	ctype := defaultType
	if ct := req.Attr("content-type"); ct != "" {
		if ctype, err = normalizeType(ct); err != nil {
			return stanza.ErrorReply(iq, stanza.BadRequest, "the content type is not a media type")
		}
	}
	if size > s.maxBytes {
		r := stanza.ErrorReply(iq, stanza.NotAcceptable,
			fmt.Sprintf("the file is too large: at most %d bytes may be uploaded", s.maxBytes))
		r.Child("", "error").Append(stanza.New(NSUpload, "file-too-large").Append(
			stanza.New(NSUpload, "max-file-size").SetText(strconv.FormatInt(s.maxBytes, 10))))
		return r
	}
	user := userFolder(sess.JID().Localpart())
	used, err := s.usage(user, true)
	if err != nil {
		s.log.Error("upload: measure quota", "jid", sess.JID().Bare().String(), "err", err)
		return stanza.ErrorReply(iq, stanza.InternalServerError, "")
	}
	if used.bytes+size > s.quota {
		return stanza.ErrorReply(iq, stanza.ResourceConstraint,
			fmt.Sprintf("upload quota reached: %d of %d bytes used", used.bytes, s.quota))
	}
	if used.files >= s.maxFiles {
		return stanza.ErrorReply(iq, stanza.ResourceConstraint,
			fmt.Sprintf("upload file limit reached: %d of %d files kept", used.files, s.maxFiles))
	}
	id, err := slotID()
	if err != nil {
		s.log.Error("upload: slot id", "err", err)
		return stanza.ErrorReply(iq, stanza.InternalServerError, "")
	}
	sl := slot{
		user:    user,
		id:      id,
		name:    safeName(name),
		size:    size,
		ctype:   ctype,
		typed:   req.Attr("content-type") != "",
		expires: s.now().Add(s.ttl).Unix(),
	}
	base := strings.TrimRight(s.baseURL(), "/")
	get := base + "/" + sl.escapedPath()
	put := get + "?" + s.sign(sl).Encode()
	s.log.Debug("upload: slot", "jid", sess.JID().Bare().String(), "size", size, "type", ctype)
	return stanza.Result(iq, stanza.New(NSUpload, "slot").Append(
		stanza.New(NSUpload, "put").SetAttr("url", put),
		stanza.New(NSUpload, "get").SetAttr("url", get),
	))
}

// normalizeType returns a media type in canonical form (lower-case type,
// parameters in order), or an error.
func normalizeType(ct string) (string, error) {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return "", err
	}
	out := mime.FormatMediaType(mt, params)
	if out == "" {
		return "", errors.New("unformattable media type")
	}
	return out, nil
}

func (s *Service) reply(sess Session, el *stanza.Element) {
	if err := sess.Send(el); err != nil {
		s.log.Debug("upload: reply not sent", "jid", sess.JID().String(), "err", err)
	}
}

// userLock is the lock serialising quota decisions for a user folder.
func (s *Service) userLock(user string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(user))
	return &s.userLocks[h.Sum32()%uint32(len(s.userLocks))]
}

// slotQuery holds the signed parameters of a PUT URL.
func (s *Service) sign(sl slot) url.Values {
	v := url.Values{}
	v.Set("expires", strconv.FormatInt(sl.expires, 10))
	v.Set("size", strconv.FormatInt(sl.size, 10))
	if sl.typed {
		v.Set("type", sl.ctype)
	}
	v.Set("sig", sl.signature(s.secret))
	return v
}
