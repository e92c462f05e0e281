package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// ArchivedMessage is one message in a user's history (XEP-0313).
type ArchivedMessage struct {
	ID     string    // the XEP-0359 stanza-id, unique for the owner
	With   string    // the other party's full (or bare) JID
	Stamp  time.Time // when the server received it
	Stanza []byte    // the serialised <message/>
}

// ArchiveQuery selects and pages a user's history. Zero fields do not
// filter. Results are always in arrival order, oldest first.
type ArchiveQuery struct {
	// With keeps the messages exchanged with this JID: a bare JID matches
	// every resource, a full JID only that one.
	With string
	// Start and End keep messages received at or after Start and at or
	// before End.
	Start, End time.Time
	// AfterID and BeforeID keep the messages strictly after or before the
	// message with that id; IDs keeps only the listed messages. These
	// narrow the result set (and its count).
	AfterID, BeforeID string
	IDs               []string
	// After and Before are paging cursors (XEP-0059): the page starts just
	// after After, or ends just before Before. Last asks for the last page
	// (Before set implies it).
	After, Before string
	Last          bool
	// Max is the most messages returned; 0 or less returns none (a count).
	Max int
}

// ArchivePage is one page of a query.
type ArchivePage struct {
	Messages []ArchivedMessage
	// Complete is true when the page reaches the end of the result set in
	// its paging direction (the last message, or the first for Last).
	Complete bool
	// Count is the size of the whole result set, ignoring After/Before.
	Count int
}

// ArchiveMessage adds m to owner's history. It returns ErrNotFound if
// owner has no account and ErrExists if owner already has a message with
// m.ID.
func (db *DB) ArchiveMessage(ctx context.Context, owner string, m ArchivedMessage) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("archive message", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	if err := insertArchiveEntries(ctx, tx, []ArchiveEntry{{Owner: owner, Message: m}}); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fail("archive message", err)
	}
	return nil
}

// ArchiveEntry is one message for one owner's archive.
type ArchiveEntry struct {
	Owner   string
	Message ArchivedMessage
	// Limit caps the owner's archive; the zero value is no cap.
	Limit ArchiveLimit
}

// ArchiveMessages stores entries in one transaction, all or none (a
// message goes into its sender's and its recipient's archives at once). It
// returns ErrNotFound if an owner has no account and ErrExists if an owner
// already has a message with that ID.
//
// Concurrent calls share transactions (see archiveWriter); each returns
// once its own entries are committed.
func (db *DB) ArchiveMessages(ctx context.Context, entries []ArchiveEntry) error {
	return db.archive().submit(ctx, entries)
}

// insertArchiveEntries adds entries inside tx, each counted against its
// owner's archive limit.
func insertArchiveEntries(ctx context.Context, tx *sql.Tx, entries []ArchiveEntry) error {
	for _, e := range entries {
		m := e.Message
		bare, _, _ := strings.Cut(m.With, "/")
		var acct int64
		if err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE username = ?`, e.Owner).Scan(&acct); err != nil {
			return fail("archive messages", err)
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO archive_messages (account_id, stanza_id, with_bare, with_full, stamp_us, stanza)
			VALUES (?, ?, ?, ?, ?, ?)`,
			acct, m.ID, bare, m.With, micros(m.Stamp), blob(m.Stanza)); err != nil {
			return fail("archive messages", err)
		}
		if err := e.Limit.count(ctx, tx, acct, len(m.Stanza)); err != nil {
			return err
		}
	}
	return nil
}

// QueryArchive returns one page of owner's history matching q. It returns
// ErrNotFound when a message named by AfterID, BeforeID, After or Before
// is not in owner's archive. An unknown owner has an empty archive.
func (db *DB) QueryArchive(ctx context.Context, owner string, q ArchiveQuery) (ArchivePage, error) {
	var page ArchivePage
	where := []string{"a.username = ?"}
	args := []any{owner}
	if q.With != "" {
		if strings.Contains(q.With, "/") {
			where = append(where, "m.with_full = ?")
		} else {
			where = append(where, "m.with_bare = ?")
		}
		args = append(args, q.With)
	}
	if !q.Start.IsZero() {
		where = append(where, "m.stamp_us >= ?")
		args = append(args, micros(q.Start))
	}
	if !q.End.IsZero() {
		where = append(where, "m.stamp_us <= ?")
		args = append(args, micros(q.End))
	}
	for _, b := range []struct {
		id, op string
	}{{q.AfterID, ">"}, {q.BeforeID, "<"}} {
		if b.id == "" {
			continue
		}
		row, err := db.archiveRow(ctx, owner, b.id)
		if err != nil {
			return page, err
		}
		where = append(where, "m.id "+b.op+" ?")
		args = append(args, row)
	}
	if q.IDs != nil {
		if len(q.IDs) == 0 {
			return ArchivePage{Complete: true}, nil
		}
		where = append(where, "m.stanza_id IN (?"+strings.Repeat(", ?", len(q.IDs)-1)+")")
		for _, id := range q.IDs {
			args = append(args, id)
		}
	}
	from := ` FROM archive_messages m JOIN accounts a ON a.id = m.account_id WHERE ` + strings.Join(where, " AND ")
	if err := db.sql.QueryRowContext(ctx, "SELECT COUNT(*)"+from, args...).Scan(&page.Count); err != nil {
		return page, fail("query archive", err)
	}

	last := q.Last || q.Before != ""
	cursor, op := q.After, ">"
	if q.Before != "" {
		cursor, op = q.Before, "<"
	}
	if cursor != "" {
		row, err := db.archiveRow(ctx, owner, cursor)
		if err != nil {
			return page, err
		}
		from += " AND m.id " + op + " ?"
		args = append(args, row)
	}
	if q.Max <= 0 {
		// A count only: complete when there is nothing in that direction.
		var n int
		if err := db.sql.QueryRowContext(ctx, "SELECT COUNT(*)"+from, args...).Scan(&n); err != nil {
			return page, fail("query archive", err)
		}
		page.Complete = n == 0
		return page, nil
	}
	order := " ORDER BY m.id"
	if last {
		order += " DESC"
	}
	rows, err := db.sql.QueryContext(ctx,
		"SELECT m.stanza_id, m.with_full, m.stamp_us, m.stanza"+from+order+" LIMIT ?",
		append(args, q.Max+1)...)
	if err != nil {
		return page, fail("query archive", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			m  ArchivedMessage
			us int64
		)
		if err := rows.Scan(&m.ID, &m.With, &us, &m.Stanza); err != nil {
			return page, fail("query archive", err)
		}
		m.Stamp = fromMicros(us)
		page.Messages = append(page.Messages, m)
	}
	if err := rows.Err(); err != nil {
		return page, fail("query archive", err)
	}
	page.Complete = len(page.Messages) <= q.Max
	if !page.Complete {
		page.Messages = page.Messages[:q.Max]
	}
	if last {
		for i, j := 0, len(page.Messages)-1; i < j; i, j = i+1, j-1 {
			page.Messages[i], page.Messages[j] = page.Messages[j], page.Messages[i]
		}
	}
	return page, nil
}

// archiveRow returns the row id of owner's message with stanza id sid.
func (db *DB) archiveRow(ctx context.Context, owner, sid string) (int64, error) {
	var row int64
	err := db.sql.QueryRowContext(ctx, `
		SELECT m.id FROM archive_messages m JOIN accounts a ON a.id = m.account_id
		WHERE a.username = ? AND m.stanza_id = ?`, owner, sid).Scan(&row)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fail("query archive", err)
	}
	return row, nil
}

// PruneArchive deletes every archived message received before cutoff, in
// every user's history, and returns how many went.
func (db *DB) PruneArchive(ctx context.Context, cutoff time.Time) (int64, error) {
	res, err := db.sql.ExecContext(ctx, `DELETE FROM archive_messages WHERE stamp_us < ?`, micros(cutoff))
	if err != nil {
		return 0, fail("prune archive", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fail("prune archive", err)
	}
	return n, nil
}
