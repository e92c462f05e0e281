package upload

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// A file lives at Dir/<user folder>/<slot id>/<name>, next to a .meta file
// holding its content type; an upload under way is written to .part in the
// same folder. Every part of that path is checked against the forms below
// before it touches the file system, so no request can leave Dir.

// maxNameBytes is the longest file name kept (file systems allow 255).
const maxNameBytes = 120

// Names inside a slot folder besides the file itself. Stored names never
// start with a dot, so these cannot collide with one.
const (
	partFile = ".part"
	metaFile = ".meta"
)

// slot is one upload slot: where the file goes and what the PUT must be.
type slot struct {
	user, id, name string
	size           int64
	ctype          string // normalised content type
	typed          bool   // the request named the content type
	expires        int64  // Unix seconds
}

// escapedPath is the slot's path below the base URL.
func (sl slot) escapedPath() string {
	return url.PathEscape(sl.user) + "/" + sl.id + "/" + url.PathEscape(sl.name)
}

// signature is the HMAC of everything the PUT is checked against.
func (sl slot) signature(secret []byte) string {
	m := hmac.New(sha256.New, secret)
	ctype := "-" // no content type named
	if sl.typed {
		ctype = "+" + sl.ctype
	}
	for _, part := range []string{"poosms upload 1", sl.user, sl.id, sl.name,
		strconv.FormatInt(sl.size, 10), ctype, strconv.FormatInt(sl.expires, 10)} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// userFolder is the folder name for a localpart: the localpart itself when
// it is plain (lower-case letters, digits, '.', '_', '-', starting with a
// letter or digit, at most 64 bytes), otherwise '~' and a hash of it.
func userFolder(localpart string) string {
	if plainUser(localpart) {
		return localpart
	}
	sum := sha256.Sum256([]byte(localpart))
	return "~" + hex.EncodeToString(sum[:16])
}

func plainUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validUser reports whether s is a folder name userFolder can return.
func validUser(s string) bool {
	if rest, ok := strings.CutPrefix(s, "~"); ok {
		return isHex(rest, 32)
	}
	return plainUser(s)
}

// slotID returns a new random slot id: 32 lower-case hex digits.
func slotID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// safeName turns the file name a client gave into one that is a single,
// harmless path element: the last element only, with separators, control
// and formatting characters and characters that mean something in URLs or
// shells replaced by '_', no leading or trailing dots or spaces, and at
// most maxNameBytes long (the extension kept). It is idempotent.
func safeName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == utf8.RuneError, unicode.IsControl(r), unicode.Is(unicode.Cf, r),
			strings.ContainsRune(`/\:*?"<>|#%`, r):
			b.WriteByte('_')
		case unicode.IsSpace(r):
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	n := strings.Trim(b.String(), ". ")
	if len(n) > maxNameBytes {
		ext := path.Ext(n)
		if len(ext) > 16 {
			ext = ""
		}
		base := n[:maxNameBytes-len(ext)]
		for !utf8.ValidString(base) {
			base = base[:len(base)-1]
		}
		n = strings.Trim(base, ". ") + ext
	}
	if n == "" || strings.HasPrefix(n, ".") {
		n = "file" + n
	}
	return n
}

// validName reports whether s is a name safeName can return.
func validName(s string) bool { return s != "" && safeName(s) == s }

// parseSlotPath splits a path below the base URL into a slot's parts.
func parseSlotPath(p string) (slot, bool) {
	parts := strings.Split(p, "/")
	if len(parts) != 3 || !validUser(parts[0]) || !isHex(parts[1], 32) || !validName(parts[2]) {
		return slot{}, false
	}
	return slot{user: parts[0], id: parts[1], name: parts[2]}, true
}

// slotDir and filePath are where a checked slot's file lives.
func (s *Service) slotDir(sl slot) string { return filepath.Join(s.dir, sl.user, sl.id) }

func (s *Service) filePath(sl slot) string { return filepath.Join(s.dir, sl.user, sl.id, sl.name) }

// expired reports whether a stored file is past its retention.
func (s *Service) expired(info fs.FileInfo) bool {
	return s.retention > 0 && info.ModTime().Before(s.now().Add(-s.retention))
}

// usage returns the bytes and files user keeps stored plus those of its
// uploads under way. A file counts whatever its size. With prune, files
// past their retention are removed first.
func (s *Service) usage(user string, prune bool) (holding, error) {
	var total holding
	slots, err := os.ReadDir(filepath.Join(s.dir, user))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return total, err
	}
	for _, sd := range slots {
		if !sd.IsDir() {
			continue
		}
		dir := filepath.Join(s.dir, user, sd.Name())
		files, err := os.ReadDir(dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			}
			return total, err
		}
		if prune && s.abandoned(sd, files) {
			if err := os.RemoveAll(dir); err != nil {
				return total, err
			}
			s.log.Debug("upload: abandoned upload removed", "path", filepath.Join(user, sd.Name()))
			continue
		}
		for _, f := range files {
			if strings.HasPrefix(f.Name(), ".") {
				continue // .part is reserved below; .meta is tiny
			}
			info, err := f.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue
				}
				return total, err
			}
			if prune && s.expired(info) {
				if err := os.RemoveAll(dir); err != nil {
					return total, err
				}
				s.log.Debug("upload: expired file removed", "path", filepath.Join(user, sd.Name(), f.Name()))
				continue
			}
			total.bytes += info.Size()
			total.files++ // .part is not counted here: see reserved
		}
	}
	s.reservedMu.Lock()
	r := s.reserved[user]
	s.reservedMu.Unlock()
	total.bytes += r.bytes
	total.files += r.files
	return total, nil
}

// abandonAfter is how long a slot folder without a finished file may go
// unwritten before it counts as left by a crash.
const abandonAfter = time.Hour

// abandoned reports whether a slot folder holds no finished file and
// nothing in it was written for abandonAfter: an upload cut off by a crash
// of the server.
func (s *Service) abandoned(dir os.DirEntry, files []os.DirEntry) bool {
	cutoff := s.now().Add(-abandonAfter)
	if info, err := dir.Info(); err != nil || !info.ModTime().Before(cutoff) {
		return false
	}
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), ".") {
			return false
		}
		info, err := f.Info()
		if err != nil || !info.ModTime().Before(cutoff) {
			return false
		}
	}
	return true
}

// DeleteUser removes every file of the user with this localpart, for when
// the account is deleted, and refuses the upload URLs handed out to it
// until now (RevokeSlots).
func (s *Service) DeleteUser(localpart string) error {
	user := userFolder(localpart)
	lock := s.userLock(user)
	lock.Lock()
	defer lock.Unlock()
	s.revoke(user, s.now())
	if err := os.RemoveAll(filepath.Join(s.dir, user)); err != nil {
		return fmt.Errorf("upload: delete files of %q: %w", localpart, err)
	}
	return nil
}

// RevokeSlots refuses uploads to the slots handed out to the user with
// this localpart up to before: its account was deleted then, and a new
// account with the same name must not receive the old one's uploads. It
// keeps the user's files (those of the new account).
func (s *Service) RevokeSlots(localpart string, before time.Time) {
	s.revoke(userFolder(localpart), before)
}

func (s *Service) revoke(user string, before time.Time) {
	s.revokedMu.Lock()
	defer s.revokedMu.Unlock()
	now := s.now()
	for u, at := range s.revoked {
		// Every slot handed out before at has expired by at+ttl.
		if now.Sub(at) > s.ttl {
			delete(s.revoked, u)
		}
	}
	if before.After(s.revoked[user]) {
		s.revoked[user] = before
	}
}

// slotRevoked reports whether sl was handed out before its user's
// account was deleted.
func (s *Service) slotRevoked(sl slot) bool {
	s.revokedMu.Lock()
	at, ok := s.revoked[sl.user]
	s.revokedMu.Unlock()
	issued := time.Unix(sl.expires, 0).Add(-s.ttl)
	return ok && !issued.After(at)
}
