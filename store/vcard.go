package store

import (
	"context"
	"database/sql"
)

// VCard returns owner's vCard (XEP-0054) as stored, or ErrNotFound.
func (db *DB) VCard(ctx context.Context, owner string) ([]byte, error) {
	var v []byte
	err := db.sql.QueryRowContext(ctx, `
		SELECT v.vcard FROM vcards v JOIN accounts a ON a.id = v.account_id
		WHERE a.username = ?`, owner).Scan(&v)
	if err != nil {
		return nil, fail("load vcard", err)
	}
	return v, nil
}

// SetVCard replaces owner's vCard. It returns ErrNotFound if owner has no
// account.
func (db *DB) SetVCard(ctx context.Context, owner string, vcard []byte) error {
	return db.putByAccount(ctx, "save vcard", owner,
		`UPDATE vcards SET vcard = ? WHERE account_id = ?`,
		`INSERT INTO vcards (vcard, account_id) VALUES (?, ?)`, blob(vcard))
}

// putByAccount runs update, or insert when update matched no row, with
// args followed by owner's account id, in one transaction.
func (db *DB) putByAccount(ctx context.Context, op, owner, update, insert string, args ...any) error {
	return db.inAccountTx(ctx, op, owner, func(tx *sql.Tx, id int64) error {
		return upsert(ctx, tx, op, update, insert, append(args, id)...)
	})
}

// upsert runs update in tx, or insert when update matched no row, with
// args.
func upsert(ctx context.Context, tx *sql.Tx, op, update, insert string, args ...any) error {
	res, err := tx.ExecContext(ctx, update, args...)
	if err != nil {
		return fail(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fail(op, err)
	} else if n == 0 {
		if _, err := tx.ExecContext(ctx, insert, args...); err != nil {
			return fail(op, err)
		}
	}
	return nil
}
