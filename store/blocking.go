package store

import "context"

// BlockList returns the JIDs owner has blocked (XEP-0191), sorted
// byte-wise. An unknown owner has an empty list.
func (db *DB) BlockList(ctx context.Context, owner string) ([]string, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT b.jid FROM blocked_jids b JOIN accounts a ON a.id = b.account_id
		WHERE a.username = ? ORDER BY b.jid`, owner)
	if err != nil {
		return nil, fail("load blocklist", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, fail("load blocklist", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load blocklist", err)
	}
	return out, nil
}

// Block adds jids to owner's blocklist; JIDs already there stay once. It
// returns ErrNotFound if owner has no account.
func (db *DB) Block(ctx context.Context, owner string, jids []string) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("block", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()
	var id int64
	if err := tx.QueryRowContext(ctx, `SELECT id FROM accounts WHERE username = ?`, owner).Scan(&id); err != nil {
		return fail("block", err)
	}
	for _, j := range jids {
		var n int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM blocked_jids WHERE account_id = ? AND jid = ?`, id, j).Scan(&n); err != nil {
			return fail("block", err)
		}
		if n > 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO blocked_jids (account_id, jid) VALUES (?, ?)`, id, j); err != nil {
			return fail("block", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fail("block", err)
	}
	return nil
}

// Unblock removes jids from owner's blocklist, or empties it when jids is
// empty. JIDs not on the list are ignored.
func (db *DB) Unblock(ctx context.Context, owner string, jids []string) error {
	if len(jids) == 0 {
		_, err := db.sql.ExecContext(ctx, `
			DELETE FROM blocked_jids WHERE account_id = (SELECT id FROM accounts WHERE username = ?)`, owner)
		if err != nil {
			return fail("unblock", err)
		}
		return nil
	}
	for _, j := range jids {
		_, err := db.sql.ExecContext(ctx, `
			DELETE FROM blocked_jids
			WHERE account_id = (SELECT id FROM accounts WHERE username = ?) AND jid = ?`, owner, j)
		if err != nil {
			return fail("unblock", err)
		}
	}
	return nil
}
