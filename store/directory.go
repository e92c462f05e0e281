package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"golang.org/x/text/cases"
)

// DirectoryEntry is one user's listing in the people directory. Only users
// who opted in have one.
type DirectoryEntry struct {
	Username  string    // the account's localpart
	Nick      string    // the nickname shown, as given
	Country   string    // an ISO 3166-1 alpha-2 code, or ""
	Languages []string  // BCP 47 language tags, in the order given
	Interests []string  // free-text interests, in the order given
	Updated   time.Time // when the listing last changed
}

// DirectoryQuery selects listings. Every non-empty criterion must match;
// an empty query matches every listing. Text is matched case-insensitively
// (Unicode case folding).
type DirectoryQuery struct {
	// Nick matches listings whose nickname contains it.
	Nick string
	// Country matches listings with exactly this country code.
	Country string
	// Language matches listings with this language tag or a more specific
	// one: "de" matches "de" and "de-AT", "de-AT" only "de-AT".
	Language string
	// Interest matches listings with an interest that contains it.
	Interest string
	// Max is the most listings returned; 0 or less means 50.
	Max int
}

// Kinds of rows in directory_tags.
const (
	tagLanguage = "l"
	tagInterest = "i"
)

var folder = cases.Fold()

// foldText is the form text is matched in.
func foldText(s string) string { return folder.String(s) }

// likeEscaper escapes the wildcards of a LIKE pattern (the escape character
// is '!', which means the same in SQLite and MySQL).
var likeEscaper = strings.NewReplacer("!", "!!", "%", "!%", "_", "!_")

// DirectoryEntry returns username's listing, or ErrNotFound if the user is
// not listed.
func (db *DB) DirectoryEntry(ctx context.Context, username string) (DirectoryEntry, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT a.username, e.nick, e.country, e.languages, e.interests, e.updated_us
		FROM directory_entries e JOIN accounts a ON a.id = e.account_id
		WHERE a.username = ?`, username)
	if err != nil {
		return DirectoryEntry{}, fail("load directory entry", err)
	}
	out, err := scanDirectory(rows)
	if err != nil {
		return DirectoryEntry{}, fail("load directory entry", err)
	}
	if len(out) == 0 {
		return DirectoryEntry{}, ErrNotFound
	}
	return out[0], nil
}

// PutDirectoryEntry lists e.Username in the directory, replacing any
// listing it had. It returns ErrNotFound if there is no such account.
// Languages and interests that fold to the same text are matched once.
func (db *DB) PutDirectoryEntry(ctx context.Context, e DirectoryEntry) (err error) {
	const op = "save directory entry"
	langs, err := json.Marshal(directoryList(e.Languages))
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	interests, err := json.Marshal(directoryList(e.Interests))
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail(op, err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	id, err := db.lockAccount(ctx, tx, e.Username)
	if err != nil {
		return fail(op, err)
	}
	// The tags go with the entry (ON DELETE CASCADE).
	if _, err := tx.ExecContext(ctx, `DELETE FROM directory_entries WHERE account_id = ?`, id); err != nil {
		return fail(op, err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO directory_entries (account_id, nick, nick_fold, country, languages, interests, updated_us)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		id, e.Nick, foldText(e.Nick), e.Country, string(langs), string(interests), e.Updated.UnixMicro()); err != nil {
		return fail(op, err)
	}
	for _, tags := range []struct {
		kind   string
		values []string
	}{{tagLanguage, e.Languages}, {tagInterest, e.Interests}} {
		seen := make(map[string]bool, len(tags.values))
		for _, v := range tags.values {
			f := foldText(v)
			if f == "" || seen[f] {
				continue
			}
			seen[f] = true
			if _, err := tx.ExecContext(ctx,
				`INSERT INTO directory_tags (account_id, kind, value) VALUES (?, ?, ?)`, id, tags.kind, f); err != nil {
				return fail(op, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fail(op, err)
	}
	return nil
}

// DeleteDirectoryEntry removes username's listing. Removing a listing that
// does not exist is not an error.
func (db *DB) DeleteDirectoryEntry(ctx context.Context, username string) error {
	_, err := db.sql.ExecContext(ctx, `
		DELETE FROM directory_entries WHERE account_id = (SELECT id FROM accounts WHERE username = ?)`, username)
	if err != nil {
		return fail("delete directory entry", err)
	}
	return nil
}

// SearchDirectory returns the listings matching q, ordered by folded
// nickname, then username.
func (db *DB) SearchDirectory(ctx context.Context, q DirectoryQuery) ([]DirectoryEntry, error) {
	var (
		where []string
		args  []any
	)
	if q.Nick != "" {
		where = append(where, `e.nick_fold LIKE ? ESCAPE '!'`)
		args = append(args, "%"+likeEscaper.Replace(foldText(q.Nick))+"%")
	}
	if q.Country != "" {
		where = append(where, `e.country = ?`)
		args = append(args, q.Country)
	}
	if q.Language != "" {
		// The tag itself, or a longer one after a '-': the range
		// [f+"-", f+".") holds exactly those, since '.' follows '-'.
		f := foldText(q.Language)
		where = append(where, `e.account_id IN (SELECT t.account_id FROM directory_tags t
			WHERE t.kind = ? AND (t.value = ? OR (t.value >= ? AND t.value < ?)))`)
		args = append(args, tagLanguage, f, f+"-", f+".")
	}
	if q.Interest != "" {
		where = append(where, `e.account_id IN (SELECT t.account_id FROM directory_tags t
			WHERE t.kind = ? AND t.value LIKE ? ESCAPE '!')`)
		args = append(args, tagInterest, "%"+likeEscaper.Replace(foldText(q.Interest))+"%")
	}
	query := `SELECT a.username, e.nick, e.country, e.languages, e.interests, e.updated_us
		FROM directory_entries e JOIN accounts a ON a.id = e.account_id`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY e.nick_fold, a.username LIMIT ?`
	limit := q.Max
	if limit <= 0 {
		limit = 50
	}
	args = append(args, limit)
	rows, err := db.sql.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fail("search directory", err)
	}
	out, err := scanDirectory(rows)
	if err != nil {
		return nil, fail("search directory", err)
	}
	return out, nil
}

// scanDirectory reads the listings in rows and closes them.
func scanDirectory(rows *sql.Rows) ([]DirectoryEntry, error) {
	defer rows.Close()
	var out []DirectoryEntry
	for rows.Next() {
		var (
			e                DirectoryEntry
			langs, interests string
			updated          int64
		)
		if err := rows.Scan(&e.Username, &e.Nick, &e.Country, &langs, &interests, &updated); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(langs), &e.Languages); err != nil {
			return nil, fmt.Errorf("languages of %q: %w", e.Username, err)
		}
		if err := json.Unmarshal([]byte(interests), &e.Interests); err != nil {
			return nil, fmt.Errorf("interests of %q: %w", e.Username, err)
		}
		e.Updated = time.UnixMicro(updated).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// directoryList is s, or an empty list for nil (stored as [], not null).
func directoryList(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
