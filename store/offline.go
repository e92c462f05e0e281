package store

import (
	"context"
	"time"
)

// PushOffline queues stanza, sent by the bare JID sender, for the user
// owner, received at stamp. It
// returns ErrQueueFull, storing nothing, if owner already has limit
// messages queued (so a limit of 0 or less refuses every message), and
// ErrNotFound if owner has no account. The count and the insert are one
// transaction: concurrent pushes never take the queue past limit.
func (db *DB) PushOffline(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit int) error {
	return db.PushOfflineWithin(ctx, owner, sender, stamp, stanza, limit, 0)
}

// PushOfflineWithin is PushOffline that also gives each sender a share of
// the queue: it returns ErrLimit, storing nothing, if sender already has
// perSender messages queued for owner (0 or less: no share), so one sender
// cannot fill a queue for the others.
func (db *DB) PushOfflineWithin(ctx context.Context, owner, sender string, stamp time.Time, stanza []byte, limit, perSender int) (err error) {
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return fail("queue offline message", err)
	}
	defer func() {
		if err != nil {
			rollback(tx)
		}
	}()

	// SQLite transactions begin IMMEDIATE and so already hold the database's
	// write lock; on MySQL, locking the account row serialises the pushes
	// for one owner (and only that owner).
	id, err := db.lockAccount(ctx, tx, owner)
	if err != nil {
		return fail("queue offline message", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx,
		`SELECT COUNT(*) FROM offline_messages WHERE account_id = ?`, id).Scan(&n); err != nil {
		return fail("queue offline message", err)
	}
	if n >= limit {
		return ErrQueueFull
	}
	if perSender > 0 {
		var mine int
		if err := tx.QueryRowContext(ctx,
			`SELECT COUNT(*) FROM offline_messages WHERE account_id = ? AND sender = ?`, id, sender).Scan(&mine); err != nil {
			return fail("queue offline message", err)
		}
		if mine >= perSender {
			return ErrLimit
		}
	}
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO offline_messages (account_id, sender, stamp_us, stanza) VALUES (?, ?, ?, ?)`,
		id, sender, micros(stamp), blob(stanza)); err != nil {
		return fail("queue offline message", err)
	}
	if err := tx.Commit(); err != nil {
		return fail("queue offline message", err)
	}
	return nil
}

// OfflineMessages returns the messages queued for owner, oldest first.
func (db *DB) OfflineMessages(ctx context.Context, owner string) ([]OfflineMessage, error) {
	rows, err := db.sql.QueryContext(ctx, `
		SELECT o.id, o.stamp_us, o.stanza
		FROM offline_messages o JOIN accounts a ON a.id = o.account_id
		WHERE a.username = ?
		ORDER BY o.id`, owner)
	if err != nil {
		return nil, fail("load offline messages", err)
	}
	defer rows.Close()
	var msgs []OfflineMessage
	for rows.Next() {
		var (
			m  OfflineMessage
			us int64
		)
		if err := rows.Scan(&m.ID, &us, &m.Stanza); err != nil {
			return nil, fail("load offline messages", err)
		}
		m.Stamp = fromMicros(us)
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fail("load offline messages", err)
	}
	return msgs, nil
}

// DeleteOffline removes owner's queued messages whose ID is at most upToID:
// call it with the last ID delivered. Messages queued since then stay.
func (db *DB) DeleteOffline(ctx context.Context, owner string, upToID int64) error {
	_, err := db.sql.ExecContext(ctx, `
		DELETE FROM offline_messages
		WHERE account_id = (SELECT id FROM accounts WHERE username = ?) AND id <= ?`,
		owner, upToID)
	if err != nil {
		return fail("delete offline messages", err)
	}
	return nil
}

// CountOffline returns how many messages are queued for owner.
func (db *DB) CountOffline(ctx context.Context, owner string) (int, error) {
	var n int
	err := db.sql.QueryRowContext(ctx, `
		SELECT COUNT(*)
		FROM offline_messages o JOIN accounts a ON a.id = o.account_id
		WHERE a.username = ?`, owner).Scan(&n)
	if err != nil {
		return 0, fail("count offline messages", err)
	}
	return n, nil
}
