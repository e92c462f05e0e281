package store

import (
	"context"
	"database/sql"
)

// ArchiveLimit caps one user's archive (XEP-0313). Past a cap the oldest
// messages are dropped, as retention drops them, in batches: when the
// messages (or bytes) added since the last trim reach a sixteenth of the
// cap, the archive is trimmed, oldest first, to fifteen sixteenths of it,
// so it never holds more than the cap. The newest message is always kept,
// even alone over MaxBytes. Zero fields are no cap.
type ArchiveLimit struct {
	Messages int   // the most messages kept
	Bytes    int64 // the most stanza bytes kept
}

// slack is a sixteenth of a cap, at least 1; 0 for no cap.
func slack(limit int64) int64 {
	if limit <= 0 {
		return 0
	}
	return max(limit/16, 1)
}

// count records one archived message of size bytes for account acct in
// tx and trims the archive when it is due. archive_quota keeps what was
// added since the last trim; a missing row (an archive from before the
// limit, or never trimmed) makes the trim due at once.
func (l ArchiveLimit) count(ctx context.Context, tx *sql.Tx, acct int64, size int) error {
	res, err := tx.ExecContext(ctx,
		`UPDATE archive_quota SET added = added + 1, added_bytes = added_bytes + ? WHERE account_id = ?`, size, acct)
	if err != nil {
		return fail("count archived message", err)
	}
	sn, sb := slack(int64(l.Messages)), slack(l.Bytes)
	if sn == 0 && sb == 0 {
		return nil
	}
	due := true
	if n, err := res.RowsAffected(); err != nil {
		return fail("count archived message", err)
	} else if n > 0 {
		var added, addedBytes int64
		if err := tx.QueryRowContext(ctx, `SELECT added, added_bytes FROM archive_quota WHERE account_id = ?`,
			acct).Scan(&added, &addedBytes); err != nil {
			return fail("count archived message", err)
		}
		due = (sn > 0 && added >= sn) || (sb > 0 && addedBytes >= sb)
	}
	if !due {
		return nil
	}
	return l.trim(ctx, tx, acct, sn, sb)
}

// trim drops the oldest messages of account acct's archive beyond
// fifteen sixteenths of each cap (sn and sb are the sixteenths) and starts
// counting afresh.
func (l ArchiveLimit) trim(ctx context.Context, tx *sql.Tx, acct int64, sn, sb int64) error {
	const op = "trim archive"
	rows, err := tx.QueryContext(ctx,
		`SELECT id, LENGTH(stanza) FROM archive_messages WHERE account_id = ? ORDER BY id DESC`, acct)
	if err != nil {
		return fail(op, err)
	}
	var kept, keptBytes, cutoff int64
	for rows.Next() {
		var id, size int64
		if err := rows.Scan(&id, &size); err != nil {
			rows.Close()
			return fail(op, err)
		}
		if kept > 0 && ((sn > 0 && kept+1 > int64(l.Messages)-sn) || (sb > 0 && keptBytes+size > l.Bytes-sb)) {
			cutoff = id
			break
		}
		kept++
		keptBytes += size
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fail(op, err)
	}
	rows.Close()
	if cutoff > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM archive_messages WHERE account_id = ? AND id <= ?`, acct, cutoff); err != nil {
			return fail(op, err)
		}
	}
	res, err := tx.ExecContext(ctx, `UPDATE archive_quota SET added = 0, added_bytes = 0 WHERE account_id = ?`, acct)
	if err != nil {
		return fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(op, err)
	} else if n == 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO archive_quota (account_id, added, added_bytes) VALUES (?, 0, 0)`, acct); err != nil {
			return fail(op, err)
		}
	}
	return nil
}
